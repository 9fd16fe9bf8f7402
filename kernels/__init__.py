"""Reusable MLP kernels with one API on three backends.

- ``fastinit.kernels.reference``: plain NumPy, the oracle;
- ``fastinit.kernels.cpu``: Numba ``@njit`` (compiled on first call, cached on disk);
- ``fastinit.kernels.cuda``: Numba ``@cuda.jit`` kernels with thin host wrappers.

Importing this package imports none of the backends, so it never needs a GPU
or a CUDA toolkit. See each module for shapes, dtypes and errors.
"""

from .checks import ACTIVATIONS

__all__ = ["ACTIVATIONS"]
