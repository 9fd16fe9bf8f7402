"""Which machine and software a number was measured on: CPU model, vector ISA, versions.

``describe()`` returns a flat dict of strings and ints, ready for a
benchmark's ``extra_info`` or HDF5 attributes. The vector ISA is reported
twice: what the host CPU has (``host_isa``) and what Numba generates code for
(``code_isa``). They differ when ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES``
ask for another CPU: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx2,+fma``
gives AVX2 code on an AVX-512 host. ``NUMBA_CPU_NAME`` alone does not: Numba
then keeps the host's features, AVX-512 included. The cache sizes are those the
cpu kernels plan their block sizes from (``fastinit.kernels.cpu_caches``).
"""

import functools
import os
import platform

__all__ = ["describe", "provenance", "gpu_name", "isa_of_features"]

# Vector ISA of the code LLVM generates for a CPU name given in NUMBA_CPU_NAME.
_ISA_BY_CPU_NAME = {
    **dict.fromkeys(("haswell", "broadwell", "skylake", "znver1", "znver2", "znver3", "alderlake"), "AVX2"),
    **dict.fromkeys(
        ("skylake-avx512", "cascadelake", "icelake-server", "sapphirerapids", "znver4", "znver5"), "AVX-512"
    ),
    **dict.fromkeys(("generic", "x86-64", "core2", "nehalem"), "SSE"),
}


def isa_of_features(has):
    """Name the widest vector ISA among a CPU's features.

    Parameters
    ----------
    has : callable
        ``has(feature_name) -> bool``, e.g. for ``"avx512f"``, ``"avx2"``, ``"sse2"``.

    Returns
    -------
    str
        ``'AVX-512'``, ``'AVX2'``, ``'SSE'`` or ``'other'``.
    """
    if has("avx512f"):
        return "AVX-512"
    if has("avx2"):
        return "AVX2"
    if has("sse2"):
        return "SSE"
    return "other"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def describe():
    """Describe the machine and the software that produced a number.

    Computed once per process.

    Returns
    -------
    dict of str to str or int
        Keys ``fastinit``, ``cpu_model``, ``host_cpu``, ``host_isa``, ``code_cpu``,
        ``code_isa``, ``l1d_bytes``, ``l2_bytes``, ``caches_from`` (``'sysconf'``,
        ``'sysfs'`` or ``'default'``), ``cores``, ``numba_threads``, ``python``, ``numpy``,
        ``numba``, ``llvmlite``, ``numba_cuda``, ``h5py``, ``platform``.
    """
    import llvmlite
    import numba
    import numpy as np
    from llvmlite import binding as llvm

    host_cpu = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features()
    host_isa = isa_of_features(lambda name: bool(features.get(name, False)))
    code_cpu = os.environ.get("NUMBA_CPU_NAME") or host_cpu
    features_env = os.environ.get("NUMBA_CPU_FEATURES")
    if features_env is None and code_cpu.lower() != "generic":
        code_isa = host_isa  # Numba keeps the host's features whatever NUMBA_CPU_NAME says
    else:
        wanted = {f.strip() for f in (features_env or "").split(",")}
        isa_by_name = _ISA_BY_CPU_NAME.get(code_cpu.lower(), "unknown")
        code_isa = "AVX-512" if "+avx512f" in wanted else isa_by_name
        if code_isa == "unknown" and "+avx2" in wanted:
            code_isa = "AVX2"
    import h5py

    from . import __version__
    from .kernels.cpu_caches import cache_sizes

    caches = cache_sizes()

    return {
        "fastinit": __version__,
        "cpu_model": _cpu_model(),
        "host_cpu": host_cpu,
        "host_isa": host_isa,
        "code_cpu": code_cpu,
        "code_isa": code_isa,
        "l1d_bytes": caches.l1d,
        "l2_bytes": caches.l2,
        "caches_from": caches.source,
        "cores": os.cpu_count() or 1,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "numba_cuda": _distribution_version("numba-cuda"),
        "h5py": h5py.__version__,
        "platform": platform.platform(),
    }


def _distribution_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance():
    """Return `describe` as HDF5 root attributes.

    Returns
    -------
    dict of str to str or int
        ``<package>_version`` for python, numpy, numba, llvmlite, numba_cuda and
        h5py, and ``cpu_model``, ``cpu_isa`` (the host's), ``code_isa`` (what Numba
        compiles for), ``cores``, ``threads`` (Numba's), ``platform``.
    """
    d = describe()
    out = {f"{k}_version": d[k] for k in ("python", "numpy", "numba", "llvmlite", "numba_cuda", "h5py")}
    out.update(
        cpu_model=d["cpu_model"],
        cpu_isa=d["host_isa"],
        code_isa=d["code_isa"],
        cores=d["cores"],
        threads=d["numba_threads"],
        platform=d["platform"],
    )
    return out


def gpu_name():
    """Name the CUDA device this process uses.

    Returns
    -------
    str
        The device name; ``''`` without a GPU, ``'SIMULATOR'`` on Numba's simulator.
    """
    try:
        from numba import cuda

        if not cuda.is_available():
            return ""
        device = cuda.get_current_device()
    except Exception:  # no driver, no device, no numba-cuda: no GPU to name
        return ""
    name = getattr(device, "name", "SIMULATOR")  # the simulator's device has no name
    return name.decode() if isinstance(name, bytes) else str(name)
