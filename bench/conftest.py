"""Shared helpers for the pytest-benchmark suite (``pytest bench --benchmark-only``).

- ``--bench-large``: also run the large sizes (e.g. 2048^3 matmul, 1e7 elements);
- ``--bench-assert-targets``: fail a benchmark that misses its performance
  target (by default targets are only recorded in ``extra_info``, because a
  shared or busy machine makes single timings noisy);
- ``bench_backend`` fixture: numpy, cpu, and cuda only when a real GPU is
  present (never the simulator: its timings mean nothing);
- every benchmark's ``extra_info`` names the CPU model, the host's vector ISA
  and the ISA of the generated code (``fastinit.machine.describe``), so a
  figure always travels with the machine that produced it, and the thread
  pools it ran with (BLAS threads, Numba's threading layer, the settle pause);
- each backend is timed after ``fastinit.timing.settle()``: a pause longer than the
  busy-wait of the pool used before (OpenBLAS's ~0.1 s), so it does not tax the next
  backend;
- ``check_then_time(benchmark, fn, expected, ...)``: check the result against
  the NumPy reference, warm up (JIT compilation excluded), then time with the
  device synchronised, and record GFLOP/s or GB/s and the speed-up over numpy
  measured in the same process (``fastinit.timing.time_calls``, the timing
  function of ``fastinit profile``).
"""

import numpy as np
import pytest

from fastinit.backends import KernelBackend  # the one adapter: profile and the tests use it too
from fastinit.timing import SETTLE_S, settle, time_calls, timed_backends

LARGE_OPTION = "--bench-large"
ASSERT_OPTION = "--bench-assert-targets"


def pytest_addoption(parser):
    group = parser.getgroup("fastinit benchmarks")
    group.addoption(
        LARGE_OPTION, action="store_true", default=False, help="also run the large benchmark sizes"
    )
    group.addoption(
        ASSERT_OPTION,
        action="store_true",
        default=False,
        help="fail benchmarks that miss their speed-up target (default: record it in extra_info only)",
    )


_SETTINGS = {"assert_targets": False}


def pytest_configure(config):
    _SETTINGS["assert_targets"] = bool(config.getoption(ASSERT_OPTION))
    config.addinivalue_line("markers", "large: a large benchmark size, run only with --bench-large")


def pytest_collection_modifyitems(config, items):
    if config.getoption(LARGE_OPTION):
        return
    skip = pytest.mark.skip(reason=f"large size: pass {LARGE_OPTION} to run it")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _machine_in_extra_info(request):
    """Put the CPU model, vector ISA and versions in every benchmark's ``extra_info``."""
    if "benchmark" in request.fixturenames:
        from fastinit.machine import describe

        info = request.getfixturevalue("benchmark").extra_info
        info.update(describe())
        info.update(_pools())


def _pools():
    """The thread pools a figure was measured with: BLAS's thread count, Numba's threading
    layer, and the pause (``settle``) taken before each backend's timing."""
    import numba

    from fastinit.threads import blas_threads

    numba.get_num_threads()  # the layer is known once it started
    return {
        "blas_threads": sorted(set(blas_threads().values())),
        "numba_threading_layer": numba.threading_layer(),
        "settle_s": SETTLE_S,
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    from fastinit.machine import describe

    machine_info["fastinit"] = describe()


BENCH_BACKENDS = list(timed_backends())  # cuda only on a real GPU, never the simulator


@pytest.fixture(params=BENCH_BACKENDS, scope="session")
def bench_backend(request):
    """numpy, cpu, and cuda when a real GPU is present."""
    return KernelBackend(request.param)


# (median, min) seconds of each group's numpy variant, measured once per process.
_NUMPY_TIMES = {}


def targets_asserted():
    """Whether ``--bench-assert-targets`` was given: a missed target fails the benchmark."""
    return _SETTINGS["assert_targets"]


def numpy_time(group, numpy_fn):
    """The numpy variant's (median, min) time for ``group`` (measured on first use, then cached):
    single calls, as pytest-benchmark times the other backends, for at least 0.2 s."""
    if group not in _NUMPY_TIMES:
        settle()
        timing = time_calls(numpy_fn, budget=0.2, repeats=5, inner=1)
        _NUMPY_TIMES[group] = (timing.median_s, timing.best_s)
    return _NUMPY_TIMES[group]


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def assert_matches(got, expected, rtol, atol, what="result"):
    """Assert each array of ``got`` matches ``expected``.

    Tuples are compared pairwise; ``None`` must match ``None``.
    """
    for i, (g, e) in enumerate(zip(_as_tuple(got), _as_tuple(expected))):
        if e is None:
            assert g is None, f"{what}[{i}]: expected None"
            continue
        g = np.asarray(g)
        e = np.asarray(e)
        assert g.shape == e.shape, f"{what}[{i}]: shape {g.shape}, expected {e.shape}"
        np.testing.assert_allclose(
            g, e, rtol=rtol, atol=atol, err_msg=f"{what}[{i}] differs from the reference"
        )


def check_then_time(
    benchmark,
    fn,
    expected,
    *,
    group,
    backend=None,
    rtol=2e-4,
    atol=1e-5,
    flops=None,
    nbytes=None,
    numpy_fn=None,
    target=None,
    **extra,
):
    """Check ``fn()`` against ``expected``, then time ``fn`` with pytest-benchmark.

    ``fn`` runs the kernel of ``backend`` (a ``KernelBackend``; None: plain NumPy
    arrays, nothing to wait for) and returns its result (an array or a tuple of
    arrays, on the device for cuda); the backend's ``to_host`` converts one array,
    its ``sync`` waits for the device and is inside the timed call. The first call (JIT
    compilation or cache load) is the check; a second warm-up call follows,
    so compilation never lands in the timing.

    ``group`` names the kernel and size so each group compares the backends.
    ``flops`` or ``nbytes`` (per call) give ``gflops``/``gbs`` in
    ``benchmark.extra_info``; ``numpy_fn`` (the same work on the NumPy
    reference) gives ``speedup_vs_numpy`` (by medians) and
    ``speedup_vs_numpy_min`` (by best times: steadier on a busy machine,
    where one descheduled thread stalls a whole parallel region). ``target`` is the required
    speed-up over numpy for ``backend``: recorded as
    ``target_vs_numpy`` and ``meets_target``, and asserted when pytest runs
    with ``--bench-assert-targets``. Other keywords go into ``extra_info``.
    Returns the median time in seconds (``None`` when timing is disabled).
    """
    benchmark.group = group
    if backend is None:
        to_host, sync, name = np.asarray, lambda: None, None
    else:
        to_host, sync, name = backend.to_host, backend.sync, backend.name
    result = fn()
    sync()
    got = tuple(None if r is None else to_host(r) for r in _as_tuple(result))
    assert_matches(got if isinstance(result, tuple) else got[0], expected, rtol, atol, what=group)
    fn()
    sync()
    settle()

    def timed():
        fn()
        sync()

    benchmark(timed)
    info = benchmark.extra_info
    info.update(extra)
    if name is not None:
        info["backend"] = name
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(benchmark, "disabled", False):
        return None
    median = stats.stats.median
    best = stats.stats.min
    if flops:
        info["gflops"] = round(flops / median / 1e9, 3)
    if nbytes:
        info["gbs"] = round(nbytes / median / 1e9, 3)
    if numpy_fn is not None:
        ref, ref_best = numpy_time(group, numpy_fn)
        info["numpy_median_s"] = ref
        info["numpy_min_s"] = ref_best
        info["speedup_vs_numpy"] = round(ref / median, 3)
        info["speedup_vs_numpy_min"] = round(ref_best / best, 3)
        if target is not None:
            info["target_vs_numpy"] = target
            info["meets_target"] = bool(ref / median >= target)
            if _SETTINGS["assert_targets"]:
                assert ref / median >= target, (
                    f"{group} on {name}: {ref / median:.2f}x numpy, target {target}x "
                    f"(median {median * 1e3:.3f} ms vs numpy {ref * 1e3:.3f} ms)"
                )
    return median
