"""Sweep throughput: cells per minute here, in a local process pool and on a local Dask cluster.

Group ``sweep cells``: the same 8-cell grid (tanh, width 100, depths 10 and
20, 200 SGD steps, metrics on 2000 images) run three ways:

- ``engine``: one cell at a time in this process on the engine's parallel step;
- ``pool``: one single-threaded cell per core in a fresh pool of spawned
  processes (``fastinit sweep``'s default; the pool's start-up is timed, as a
  user pays it on every sweep);
- ``dask``: a local Dask cluster of one single-threaded worker process per
  core, started once outside the timing (as a running cluster would be).

``extra_info["cells_per_minute"]`` is the grid's cells over the median wall
time; every variant checks that its numbers equal the ``engine`` run's.

    pytest bench/test_bench_sweep.py --benchmark-only
"""

import os

import numpy as np
import pytest

from fastinit.experiments.sweep import SweepConfig, sweep
from fastinit.timing import settle

GRID = SweepConfig(sw2=(1.0, 1.75, 2.5, 4.0), depths=(10, 20), steps=200, eval_samples=2000)
COMPARED = ("train_loss", "train_accuracy", "test_accuracy", "diverged")
_REFERENCE = {}


@pytest.fixture(scope="module")
def dask_scheduler():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=50,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.mark.parametrize("where", ["engine", "pool", "dask"])
def test_sweep_cells_per_minute(benchmark, tmp_path, where, request):
    benchmark.group = "sweep cells"
    if where == "dask":
        kwargs = dict(scheduler=request.getfixturevalue("dask_scheduler"))
    else:
        kwargs = dict(executor=where)
    out = str(tmp_path / "bench.h5")

    def run():
        return sweep(GRID, out, "bench", restart=True, progress=False, log=lambda m: None, **kwargs)

    result = run()  # warm: compiles, loads the data (and, on Dask, warms the workers)
    reference = _REFERENCE.setdefault("metrics", result.metrics)
    assert all(np.array_equal(result.metrics[m], reference[m], equal_nan=True) for m in COMPARED)
    settle()
    benchmark.pedantic(run, rounds=3, iterations=1)
    cells = result.done.size
    benchmark.extra_info.update(
        cells=cells,
        cells_per_minute=60.0 * cells / benchmark.stats.stats.median,
        workers=os.cpu_count(),
        where=where,
    )
