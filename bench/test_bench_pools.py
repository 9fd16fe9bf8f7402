"""Benchmarks of mixed use: NumPy's BLAS pool and Numba's OpenMP pool in one process.

OpenBLAS's threads busy-wait about 0.1 s after each product; a parallel cpu kernel started
in that window loses a core to them (on 2 cores, most of its speed). ``fastinit.threads``
has the documented remedy, ``limit_blas(1)`` (``pools_for("cpu")``), which ``fastinit``'s
commands hold around their cpu-backend runs.

Group ``pools_mixed``: a block of one backend timed right after a block of the other,
against the same block after a pause (its settled time). ``benchmark`` times the second
block under ``limit_blas(1)`` with ``pedantic`` (the first block is the untimed ``setup``
of each round). ``extra_info`` gives, for both the documented setting and the process
default (measured in alternating rounds, so both see the same machine): the median over
rounds of (after / settled) and the ratio of the best times, the target (within
``TARGET`` of settled) and ``meets_target`` for the setting.

Group ``pools_train_command``: ``fastinit train --init he --seeds 0`` (``ITERATIONS``
steps) in subprocesses, three arms in turns per round: the command by default, the command
with ``OPENBLAS_NUM_THREADS=1``, and the library's ``train()`` called from a script (no
thread setting: what the command did before it held ``pools_for``). ``benchmark`` holds
the default command's times; ``extra_info`` every arm's median and the ratios. Target:
the default command is no slower than with ``OPENBLAS_NUM_THREADS=1`` (within the
``NOISE`` a shared machine adds to whole-process timings).

    pytest bench/test_bench_pools.py --benchmark-only
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import targets_asserted

TARGET = 1.15  # a block after the other backend's: at most this times its settled time
NOISE = 1.05  # whole commands: "no slower" within 5%
ROUNDS = 9
PAUSE_S = 0.25  # > OpenBLAS's 0.1 s busy-wait and OpenMP's few ms
BLOCK_S = 0.03  # length of each timed block
SETTING = "fastinit.threads.limit_blas(1) (== pools_for('cpu'), what fastinit's cpu-backend commands hold)"
SHAPES = {"128x784x100": (128, 784, 100), "1024^3": (1024, 1024, 1024)}
ITERATIONS = 600
COMMAND_ROUNDS = 3


def _operands(m, k, n):
    rng = np.random.default_rng(0)
    return rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)


def _repeat(fn, a, b, count):
    def block():
        for _ in range(count):
            fn(a, b)

    return block


def _count_for(fn, a, b):
    """Calls of ``fn(a, b)`` that take about ``BLOCK_S`` on a settled machine (at least 1)."""
    fn(a, b)
    time.sleep(PAUSE_S)
    t = time.perf_counter()
    fn(a, b)
    return max(1, int(BLOCK_S / max(time.perf_counter() - t, 1e-6)))


def _timed(block):
    """(wall seconds, CPU seconds of the process's other threads) of ``block()``. The second
    counts a spinning pool whatever the machine's load: on a busy machine wall times
    scatter, but the CPU a pool burns while this thread works is still its own."""
    t, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    block()
    own, cpu = time.thread_time() - own, time.process_time() - cpu
    return time.perf_counter() - t, cpu - own


def _rounds(first, second, settings, rounds=ROUNDS):
    """{setting: (settled, after)} of ``second``, each a list of ``_timed`` pairs: per round
    and setting (in turns), ``second`` after a pause, then ``first`` and at once ``second``."""
    out = {name: ([], []) for name in settings}
    for _ in range(rounds):
        for name, ctx in settings.items():
            with ctx():
                time.sleep(PAUSE_S)
                out[name][0].append(_timed(second))
                first()
                out[name][1].append(_timed(second))
    return out


def _summary(settled, after):
    (settled, settled_cpu), (after, after_cpu) = np.asarray(settled).T, np.asarray(after).T
    return {
        "settled_median_ms": round(float(np.median(settled)) * 1e3, 3),
        "after_median_ms": round(float(np.median(after)) * 1e3, 3),
        "ratio_median": round(float(np.median(after / settled)), 3),
        "ratio_of_best": round(float(after.min() / settled.min()), 3),
        # CPU the other threads burn during the block beyond what they burn when it runs settled:
        # the first pool's busy-wait (robust to the machine's load, unlike the wall times)
        "extra_cpu_of_other_threads_ms": round(float(np.median(after_cpu) - np.median(settled_cpu)) * 1e3, 3),
    }


@pytest.mark.benchmark(group="pools_mixed")
@pytest.mark.parametrize("order", ["cpu_after_numpy", "numpy_after_cpu"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_pools_mixed(benchmark, shape, order):
    import contextlib

    import fastinit.kernels.cpu as kc
    from fastinit.threads import limit_blas

    a, b = _operands(*SHAPES[shape])
    np.testing.assert_allclose(kc.matmul(a, b), a @ b, rtol=2e-4, atol=1e-3)
    with limit_blas(1):  # the same work in both settings: sized where NumPy is slower
        np_block = _repeat(np.matmul, a, b, _count_for(np.matmul, a, b))
    cpu_block = _repeat(kc.matmul, a, b, _count_for(kc.matmul, a, b))
    first, second = (np_block, cpu_block) if order == "cpu_after_numpy" else (cpu_block, np_block)
    first(), second()
    if getattr(benchmark, "disabled", False):  # --benchmark-disable: checked, nothing to time
        return
    runs = _rounds(first, second, {"setting": limit_blas, "default": contextlib.nullcontext})
    setting, default = _summary(*runs["setting"]), _summary(*runs["default"])

    with limit_blas(1):
        benchmark.pedantic(second, setup=first, rounds=ROUNDS, warmup_rounds=1)
    info = benchmark.extra_info
    info.update(
        shape=shape,
        order=order,
        dtype="float32",
        rounds=ROUNDS,
        pause_s=PAUSE_S,
        setting=SETTING,
        under_setting=setting,
        under_default=default,
        default_note="process default: OpenBLAS at its own thread count (all cores), "
        "busy-waiting ~0.1 s after each product",
        target_ratio=TARGET,
    )
    met = setting["ratio_median"] <= TARGET
    info["meets_target"] = bool(met)
    if targets_asserted():
        assert met, f"{shape} {order} under {SETTING}: {setting} (default: {default})"


def _train_args(out):
    return [
        "train",
        "--init",
        "he",
        "--seeds",
        "0",
        "--no-plot",
        "-q",
        "--iterations",
        str(ITERATIONS),
        "--out",
        out,
    ]


_LIBRARY_CALL = (
    "import sys\n"
    "from fastinit.experiments.train import TrainConfig, train\n"
    "train(TrainConfig(runs=('he',), seeds=(0,), iterations=int(sys.argv[1])), sys.argv[2], progress=False,\n"
    "      log=lambda *a: None)\n"
)


_CPU = {}  # argv/env key -> CPU seconds (user + system) of each run, in order


def _run(argv, env, key="default"):
    """Wall seconds of the process; its CPU seconds go to ``_CPU[key]`` (a spinning pool burns CPU
    that a busy machine's scattered wall times may hide)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU.setdefault(key, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


@pytest.mark.benchmark(group="pools_train_command")
def test_train_command_default_vs_openblas_one_thread(benchmark, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    one = dict(env, OPENBLAS_NUM_THREADS="1")
    out = str(tmp_path / "r.h5")
    command = [sys.executable, "-m", "fastinit", *_train_args(out)]
    library = [sys.executable, "-c", _LIBRARY_CALL, str(ITERATIONS), str(tmp_path / "lib.h5")]
    _run(command, env, "warm-up")  # compile (or load the cache) and load the data once, untimed
    _CPU.clear()
    arms = {"openblas_1": [], "library_call_default": []}

    def others():  # the untimed setup of each round: the other arms, in turns with the timed one
        arms["openblas_1"].append(_run(command, one, "openblas_1"))
        arms["library_call_default"].append(_run(library, env, "library_call_default"))

    benchmark.pedantic(_run, args=(command, env), setup=others, rounds=COMMAND_ROUNDS)
    info = benchmark.extra_info
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    default = float(stats.stats.median)
    medians = {name: float(np.median(v)) for name, v in arms.items()}
    ratio = default / medians["openblas_1"]
    info.update(
        command="fastinit " + " ".join(_train_args("OUT")),
        rounds=COMMAND_ROUNDS,
        default_median_s=round(default, 3),
        openblas_1_median_s=round(medians["openblas_1"], 3),
        library_call_default_median_s=round(medians["library_call_default"], 3),
        default_vs_openblas_1=round(ratio, 3),
        library_call_vs_openblas_1=round(medians["library_call_default"] / medians["openblas_1"], 3),
        note="whole processes (start-up, data loading, cached compile included); the library call "
        "holds no thread setting, as the command did before fastinit.threads",
        target=f"default <= {NOISE} x OPENBLAS_NUM_THREADS=1",
        cpu_s_median={name: round(float(np.median(v)), 3) for name, v in _CPU.items()},
    )
    met = ratio <= NOISE
    info["meets_target"] = bool(met)
    if targets_asserted():
        one_s = medians["openblas_1"]
        assert met, f"fastinit train: default {default:.2f} s vs OPENBLAS_NUM_THREADS=1 {one_s:.2f} s"
