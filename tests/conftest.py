"""Test configuration.

CUDA kernels run on Numba's CUDA simulator unless FASTINIT_TEST_GPU=1 is set
(then they run on the real GPU). The simulator must be switched on before
numba is imported, which is why this happens at the top of conftest.
"""

import os

if os.environ.get("FASTINIT_TEST_GPU", "0") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastinit.backends import KernelBackend  # noqa: E402  (the one adapter: profile and bench use it too)

ON_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
DTYPES = (np.float32, np.float64)
# Tolerances for comparing a backend against the NumPy reference.
RTOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}
ATOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def tolerances(dtype, scale=1.0):
    """(rtol, atol) for ``dtype``, with atol scaled by the result's magnitude."""
    d = np.dtype(dtype)
    return RTOL[d], ATOL[d] * max(1.0, scale)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    """On the CUDA simulator, the cuda cases of tests marked ``slow_on_simulator`` become ``slow``
    (CI runs them): the simulator runs each GPU thread in Python. On a GPU they stay."""
    if not ON_SIMULATOR:
        return
    for item in items:
        if item.get_closest_marker("slow_on_simulator") and _runs_cuda(item):
            item.add_marker(pytest.mark.slow)


def _runs_cuda(item):
    """Whether ``item`` is a cuda case: its backend parameter is cuda, or it has none."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    backends = [getattr(v, "name", v) for k, v in params.items() if k in ("backend", "fast_backend")]
    return not backends or "cuda" in backends


def _kernel_backend_names():
    names = ["numpy", "cpu"]
    try:
        from numba import cuda

        import fastinit.kernels.cuda  # noqa: F401

        if cuda.is_available():
            names.append("cuda")
    except ImportError:
        pass
    return names


KERNEL_BACKENDS = _kernel_backend_names()


@pytest.fixture(params=KERNEL_BACKENDS)
def backend(request):
    """Every available kernel backend (numpy, cpu, and cuda on the simulator or a GPU)."""
    return KernelBackend(request.param)


@pytest.fixture(params=[b for b in KERNEL_BACKENDS if b != "numpy"])
def fast_backend(request):
    """The compiled backends, compared against the reference."""
    return KernelBackend(request.param)


@pytest.fixture
def reference():
    import fastinit.kernels.reference as module

    return module


def make_mlp(backend, *args, **kwargs):
    """A ``fastinit.MLP`` on ``backend``; skips the test on cuda when this build has no CUDA MLP engine."""
    from fastinit import MLP
    from fastinit.backends import BackendError

    try:
        return MLP(*args, backend=backend, **kwargs)
    except BackendError as exc:
        if backend == "cuda" and "cuda engine cannot be imported" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, options)``: a tmpfs mounted with these mount options (``"ro,size=64k"``)
    on the new folder ``tmp_path / name``, returned; the test is skipped where mounting is not
    allowed. Unmounted when the test ends."""
    import subprocess

    mounted = []

    def mount(name, options):
        path = tmp_path / name
        path.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode:
            pytest.skip(f"cannot mount a tmpfs ({options}) here")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True)
