"""Adding a run to a large results set costs what it adds, not what is already stored.

Group ``results add``: ``fastinit train --init he --iterations 200`` (the
cpu backend, its Numba cache warm) adds ``/train/he`` to

- an empty results folder (``empty``), and
- a results set of 100 MB or more (``large``: synthetic runs written through
  :mod:`fastinit.store`, built once, outside the timings).

Every add runs in a fresh process; its wall time and its peak resident memory
(``os.wait4``'s ``ru_maxrss`` of that child alone) are measured. The benchmark
times the adds to the large set; before each of its rounds an add to a new
empty folder is measured the same way, so both see the same machine (on a
shared machine the load drifts). ``extra_info``: ``time_ratio`` and
``memory_ratio`` (medians, large over empty), their targets (1.15 and 1.2),
``time_ratio_of_minima`` (the least disturbed rounds, for a busy machine),
the medians themselves and the size of the large set (``du``-style, bytes on
disk). ``--bench-assert-targets`` fails the benchmark when a ratio misses its
target.

    pytest bench/test_bench_store.py --benchmark-only
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from conftest import targets_asserted

from fastinit.store import open_results, replace_group
from fastinit.timing import settle

TIME_TARGET = 1.15
MEMORY_TARGET = 1.2
LARGE_BYTES = 100 * 2**20
ROUNDS = 5


def _command(out):
    return [
        sys.executable,
        "-m",
        "fastinit",
        "train",
        "--init",
        "he",
        "--iterations",
        "200",
        "--backend",
        "cpu",
        "--no-plot",
        "-q",
        "--out",
        str(out),
    ]


def _add(out):
    """Run one add in a fresh process; return (wall seconds, peak RSS bytes of that process)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        if proc.returncode:
            err.seek(0)
            raise AssertionError(f"{' '.join(_command(out))} failed: {err.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024  # kilobytes on Linux


def _disk_bytes(folder):
    return sum(
        os.stat(os.path.join(root, name)).st_blocks * 512
        for root, _, files in os.walk(folder)
        for name in files
    )


@pytest.fixture(scope="module")
def large_set(tmp_path_factory):
    """A results folder of >= 100 MB: 24 synthetic runs of random (incompressible) float32 snapshots."""
    folder = tmp_path_factory.mktemp("large")
    out = folder / "fastinit.h5"
    rng = np.random.default_rng(0)
    with open_results(out, command_line="bench: a large results set") as f:
        for i in range(24):
            g = replace_group(f, f"/train/run{i}")
            g.create_dataset(
                "activations",
                data=rng.standard_normal((21, 4, 200, 80), dtype=np.float32),
                chunks=(1, 4, 200, 80),
            )
            g.create_dataset("loss", data=rng.random(2000))
    assert _disk_bytes(folder) >= LARGE_BYTES
    return out


def test_adding_a_run_costs_what_it_adds(benchmark, large_set, tmp_path):
    benchmark.group = "results add"
    empty_times, empty_rss, large_rss = [], [], []
    (tmp_path / "warm").mkdir()
    _add(tmp_path / "warm" / "fastinit.h5")  # fills Numba's cache: no add below compiles

    def add_to_empty():
        folder = tempfile.mkdtemp(dir=tmp_path)
        settle()
        seconds, rss = _add(os.path.join(folder, "fastinit.h5"))
        shutil.rmtree(folder)
        empty_times.append(seconds)
        empty_rss.append(rss)
        settle()

    def add_to_large():
        large_rss.append(_add(large_set)[1])

    benchmark.pedantic(add_to_large, setup=add_to_empty, rounds=ROUNDS, iterations=1)
    large_time = benchmark.stats.stats.median
    time_ratio = large_time / statistics.median(empty_times)
    memory_ratio = statistics.median(large_rss) / statistics.median(empty_rss)
    benchmark.extra_info.update(
        time_ratio=time_ratio,
        time_target=TIME_TARGET,
        memory_ratio=memory_ratio,
        memory_target=MEMORY_TARGET,
        empty_median_s=statistics.median(empty_times),
        large_median_s=large_time,
        time_ratio_of_minima=benchmark.stats.stats.min / min(empty_times),
        empty_peak_rss_mb=statistics.median(empty_rss) / 2**20,
        large_peak_rss_mb=statistics.median(large_rss) / 2**20,
        large_set_mb=_disk_bytes(large_set.parent) / 2**20,
        rounds=ROUNDS,
    )
    if targets_asserted():
        assert time_ratio <= TIME_TARGET, (
            f"adding to a large set took {time_ratio:.2f}x the time of an empty one"
        )
        assert memory_ratio <= MEMORY_TARGET, f"adding to a large set took {memory_ratio:.2f}x the memory"
