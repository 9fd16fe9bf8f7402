"""Reusable MLP kernels with one API on three backends.

- ``kernels.reference``: plain NumPy, the oracle;
- ``kernels.cpu``: Numba ``@njit`` (compiled on first call, cached on disk);
- ``kernels.cuda``: Numba ``@cuda.jit`` kernels with thin host wrappers.

Importing this package imports none of the backends, so it never needs a GPU
or a CUDA toolkit. See each module for shapes, dtypes and errors.
"""

from .checks import ACTIVATIONS

__all__ = ["ACTIVATIONS"]
