"""Backend names and the kernel module behind each.

``numpy`` -> ``fastinit.kernels.reference``, ``cpu`` -> ``fastinit.kernels.cpu``,
``cuda`` -> ``fastinit.kernels.cuda``. Nothing here needs a GPU until ``cuda`` is asked for.
"""

import importlib

import numpy as np

from .errors import FastinitError

__all__ = [
    "BACKENDS",
    "NO_CUDA_MESSAGE",
    "BackendError",
    "check_backend",
    "cuda_available",
    "require_cuda",
    "available_backends",
    "kernels_for",
    "KernelBackend",
]

BACKENDS = ("numpy", "cpu", "cuda")
_MODULES = {
    "numpy": "fastinit.kernels.reference",
    "cpu": "fastinit.kernels.cpu",
    "cuda": "fastinit.kernels.cuda",
}

NO_CUDA_MESSAGE = (
    "no CUDA device was found (numba.cuda.is_available() is False). "
    "Use --backend cpu, or run the CUDA kernels on Numba's simulator with "
    "NUMBA_ENABLE_CUDASIM=1 set in the environment (slow: small sizes only)."
)


class BackendError(FastinitError, RuntimeError):
    """A backend was asked for that does not exist or cannot run here."""


def check_backend(name):
    """Check that `name` is a known backend.

    Parameters
    ----------
    name : str
        A backend name.

    Returns
    -------
    str
        `name`.

    Raises
    ------
    BackendError
        If `name` is not one of ``BACKENDS``.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def cuda_available():
    """Tell whether Numba sees a CUDA device (or runs its simulator).

    Returns
    -------
    bool
        False too when numba-cuda is missing or broken.
    """
    try:
        from numba import cuda
    except Exception:  # numba-cuda missing or broken: no CUDA here
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def require_cuda():
    """Make sure CUDA can run here.

    Raises
    ------
    BackendError
        With a one-line, actionable message (``NO_CUDA_MESSAGE``) if it cannot.
    """
    if not cuda_available():
        raise BackendError(NO_CUDA_MESSAGE)


def available_backends():
    """List the backends that can run on this machine.

    Returns
    -------
    tuple of str
        In canonical order (``BACKENDS``), without ``"cuda"`` when there is no GPU.
    """
    return tuple(b for b in BACKENDS if b != "cuda" or cuda_available())


def kernels_for(name):
    """Import the kernel module behind a backend.

    Parameters
    ----------
    name : {'numpy', 'cpu', 'cuda'}
        The backend.

    Returns
    -------
    module
        ``fastinit.kernels.reference``, ``fastinit.kernels.cpu`` or ``fastinit.kernels.cuda``.

    Raises
    ------
    BackendError
        If the backend is unknown, or is cuda without a GPU.
    """
    check_backend(name)
    if name == "cuda":
        require_cuda()
    return importlib.import_module(_MODULES[name])


class KernelBackend:
    """A backend's kernel module, with how to put arrays on it, read them back and wait for it.

    The one adapter that ``fastinit profile``, the benchmark suite and the tests use.

    Parameters
    ----------
    name : {'numpy', 'cpu', 'cuda'}
        The backend.

    Attributes
    ----------
    name : str
        The backend's name.
    k : module
        Its kernel module (``fastinit.kernels.reference``, ``fastinit.kernels.cpu`` or
        ``fastinit.kernels.cuda``).

    Raises
    ------
    BackendError
        If the backend is unknown, or is cuda without a GPU (or the simulator).
    """

    def __init__(self, name):
        self.name = name
        self.k = kernels_for(name)
        if name == "cuda":
            from numba import cuda

            self._cuda = cuda

    @property
    def is_cuda(self):
        """bool: Whether arrays live on a CUDA device."""
        return self.name == "cuda"

    def to_device(self, x):
        """Copy a host array to the backend.

        Parameters
        ----------
        x : array_like
            The host data.

        Returns
        -------
        ndarray or numba.cuda.DeviceNDArray
            A C-contiguous copy of `x` on the backend (on the host: a new array).
        """
        if self.is_cuda:
            return self._cuda.to_device(np.ascontiguousarray(x))
        return np.array(x, copy=True, order="C")

    def empty(self, shape, dtype):
        """Allocate an uninitialised array on the backend.

        Parameters
        ----------
        shape : tuple of int
            Its shape.
        dtype : numpy.dtype or type
            Its dtype.

        Returns
        -------
        ndarray or numba.cuda.DeviceNDArray
            The array.
        """
        if self.is_cuda:
            return self._cuda.device_array(shape, dtype=dtype)
        return np.empty(shape, dtype=dtype)

    def to_host(self, x):
        """Read an array (or a scalar) of the backend back to the host.

        Parameters
        ----------
        x : ndarray, numba.cuda.DeviceNDArray or scalar
            The backend's data.

        Returns
        -------
        ndarray
            A host array (a view when `x` already is one).
        """
        return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)

    def sync(self):
        """Wait until the backend has finished the work queued so far (a no-op on the host)."""
        if self.is_cuda:
            self._cuda.synchronize()

    def __repr__(self):
        return f"KernelBackend({self.name!r})"
