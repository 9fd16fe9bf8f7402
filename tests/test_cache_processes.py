"""What one process leaves in Numba's on-disk cache must never crash the next.

Real processes in sequence, from a fresh ``NUMBA_CACHE_DIR``: a test that compiles and loads
in one process cannot see a cache entry that crashes the next process (numba#8578). Each
public entry point (``tests/entry_points.py``: every public function of ``fastinit.kernels.cpu``,
``MLP.train_step`` on cpu, each CLI command) runs alone in a process of its own, in order,
each compiling against what the earlier ones cached; then each runs again, first in a fresh
process, loading what every other entry point left. Forward and reverse order (two caches),
so every pair of entry points meets in both orders; the forward cache starts with a cold sweep
on 2 pool workers that compile at the same moment.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import entry_points  # noqa: E402
from commands import argv, fastinit_command, run_python  # noqa: E402

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow  # real processes, each importing and compiling: CI runs them


def _env(cache, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(NUMBA_CACHE_DIR=str(cache), PYTHONFAULTHANDLER="1", **extra)
    return env


def _argv(name, work):
    if name.startswith("cli:"):
        return fastinit_command(entry_points.cli_commands(work)[name])
    return [sys.executable, str(HERE / "entry_points.py"), name]


def _run(name, cache, work, env=None):
    """Run entry point ``name`` in a fresh process; a one-line failure, or None."""
    proc = subprocess.run(
        _argv(name, work), env=env or _env(cache), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return f"{name}: {why}: {proc.stderr.strip()[-600:]}"
    return None


def _cold_sweep(cache, work):
    """A sweep whose 2 pool workers start at once on ``cache`` (numba#4807: concurrent compiles
    into one cache); a one-line failure, or None."""
    tiny = dict(sw2=(1, 2), depths=(2, 3), seeds=0, steps=5)
    sweep = fastinit_command(argv("sweep", **tiny, processes=2, no_plot=True, q=True, out=work / "sweep.h5"))
    proc = subprocess.run(sweep, env=_env(cache), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return f"cold sweep: exit {proc.returncode}: {proc.stderr.strip()[-600:]}"
    return None


def _workdir(root):
    """``root/cache`` and ``root/work``, the latter with the file that cli:show reads."""
    cache, work = root / "cache", root / "work"
    work.mkdir(parents=True)
    with h5py.File(work / "show.h5", "w") as f:  # for cli:show, which may run first
        f["x"] = np.arange(3.0)
    return cache, work


def _sequence(order, root, failures, cold_sweep=False):
    cache, work = _workdir(root)
    if cold_sweep:
        why = _cold_sweep(cache, work)
        if why:
            failures.append(why)
    for phase in ("compile", "load"):
        for name in order:
            why = _run(name, cache, work)
            if why:
                failures.append(f"{phase} phase, after {order.index(name)} others: {why}")


def all_entry_points():
    return entry_points.KERNELS + [entry_points.MLP_ENTRY] + list(entry_points.cli_commands("."))


def test_every_entry_point_survives_a_cache_filled_by_the_others(tmp_path):
    """Forward order on a cache that a cold sweep on 2 pool workers filled first; reverse order
    on an empty cache."""
    order = all_entry_points()
    failures = []
    threads = [
        threading.Thread(target=_sequence, args=(o, tmp_path / d, failures, sweep))
        for o, d, sweep in ((order, "forward", True), (order[::-1], "reverse", False))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, "\n".join(failures)


THREADS_SCRIPT = """
import numba, numpy as np
from fastinit.kernels import cpu
from fastinit import MLP
a = np.ones((512, 512), np.float32)
cpu.matmul(a, a)
MLP([64, 32, 10], backend="cpu", seed=0).train_step(np.ones((64, 64), np.float32), np.zeros(64, int), 0.1)
rows, cols = cpu.product_tiles(512, 512, 512, numba.get_num_threads())
pieces = -(-512 // rows) * -(-512 // cols)
print(numba.get_num_threads(), pieces, sum(cpu.matmul_into.stats.cache_hits.values()))
"""


def test_thread_count_is_read_at_run_time_not_frozen_into_the_cache(tmp_path):
    """A cache filled under NUMBA_NUM_THREADS=1 (a batch job's setting) must not leave a later
    2-thread process planning its products for one thread."""
    runs = []
    for threads in ("1", "2"):
        proc = run_python(THREADS_SCRIPT, env=_env(tmp_path / "cache", NUMBA_NUM_THREADS=threads))
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append([int(v) for v in proc.stdout.split()])
    assert runs[0][:2] == [1, 1]  # one thread: one piece, compiled into the cache
    threads, pieces, hits = runs[1]
    assert (threads, pieces) == (2, 2), runs
    assert hits >= 1, "the 2-thread process should have loaded matmul_into from the cache"


@pytest.mark.skipif(
    not os.environ.get("FASTINIT_COLD_SWEEP_ROUNDS"),
    reason="a stress test: FASTINIT_COLD_SWEEP_ROUNDS=N runs it N times (the forward sequence "
    "of test_every_entry_point_survives_a_cache_filled_by_the_others starts with one round)",
)
def test_cold_sweep_on_two_pool_workers_then_every_entry_point(tmp_path):
    """A cold sweep whose 2 pool workers start at once, then every entry point in a fresh
    process; FASTINIT_COLD_SWEEP_ROUNDS rounds, each from an empty cache."""
    failures = []
    for r in range(int(os.environ["FASTINIT_COLD_SWEEP_ROUNDS"])):
        cache, work = _workdir(tmp_path / f"round{r}")
        why = _cold_sweep(cache, work)
        if why:
            failures.append(f"round {r}: {why}")
        for name in all_entry_points():
            why = _run(name, cache, work)
            if why:
                failures.append(f"round {r}: {why}")
    assert not failures, "\n".join(failures)
