"""Robustness on a busy machine: the same work timed quiet, then beside one busy process per core.

Group ``busy <work>``: for each backend, the quiet median is measured first
(plain timing), then pytest-benchmark times the work while ``os.cpu_count()``
processes spin at full load. ``extra_info`` records ``quiet_median_ms``,
``busy_median_ms`` and ``slowdown`` (busy median / quiet median); for cpu also
numpy's slowdown from the same session and the target: cpu's slowdown no
worse than numpy's (``meets_target``).

Work: one MLP ``train_step`` (the seed's network, batch 128, float32) and a
64x64x64 matmul, where a parallel fork/join would cost more than the work.

    pytest bench/test_bench_busy.py --benchmark-only
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastinit.kernels.cpu as kcpu
import fastinit.kernels.reference as ref
from fastinit import MLP
from fastinit.mlp import compile_backend
from fastinit.timing import settle, time_calls

SIZES = (784, 100, 100, 100, 100, 10)
BATCH = 128
_SLOWDOWN = {}  # (work, backend) -> slowdown measured in this session


class Busy:
    """One spinning Python process per core for the duration of a ``with`` block."""

    def __init__(self, processes=None):
        self.n = processes or os.cpu_count() or 1

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.3)  # let them reach full load
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def _train_step(backend):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIZES[0]), dtype=np.float32)
    labels = rng.integers(0, SIZES[-1], BATCH)
    compile_backend(backend, "float32")
    mlp = MLP(SIZES, backend=backend, seed=0)
    for _ in range(3):
        mlp.train_step(x, labels, 0.01)
    return lambda: mlp.train_step(x, labels, 0.01)


def _matmul64(backend):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    out = np.empty((64, 64), np.float32)
    k = ref if backend == "numpy" else kcpu
    k.matmul(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=2e-4, atol=2e-4)
    return lambda: k.matmul(a, b, out)


WORK = {"train_step": _train_step, "matmul 64x64x64": _matmul64}


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("work", list(WORK))
def test_busy(benchmark, work, backend):
    fn = WORK[work](backend)
    settle()
    quiet = time_calls(fn, budget=1.0, repeats=50, inner=1).median_s
    benchmark.group = f"busy {work}"
    with Busy() as busy:
        assert all(p.poll() is None for p in busy.procs), "a busy process did not start"
        benchmark.pedantic(fn, rounds=200 if work == "train_step" else 2000, warmup_rounds=5)
    busy = benchmark.stats.stats.median
    slowdown = busy / quiet
    _SLOWDOWN[work, backend] = slowdown
    info = benchmark.extra_info
    info.update(
        backend=backend,
        busy_processes=os.cpu_count() or 1,
        quiet_median_ms=round(quiet * 1e3, 4),
        busy_median_ms=round(busy * 1e3, 4),
        slowdown=round(slowdown, 3),
    )
    if backend == "cpu" and (work, "numpy") in _SLOWDOWN:
        info["numpy_slowdown"] = round(_SLOWDOWN[work, "numpy"], 3)
        info["meets_target"] = bool(slowdown <= _SLOWDOWN[work, "numpy"])
