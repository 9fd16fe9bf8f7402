"""``kill -9`` at random moments of ``fastinit train``: every finished run stays readable.

Each run (each seed) is its own part file, written once and then linked from
the top file, which is replaced atomically; so a process killed at any moment
(while importing, training, writing a part or committing the top file) leaves
the runs finished before it readable, ``fastinit show`` working, and only
temp or unlinked part files, which the next update removes.
"""

import os
import random
import signal
import subprocess
import time

import h5py
import pytest
from commands import TINY_TRAIN, argv, fastinit_command

from fastinit.cli import main
from fastinit.store import parts_folder

ITERATIONS = 100
INITS = ("he", "xavier", "std=0.01", "lecun")
SEEDS = (0, 1)
TRIALS = 10


def _command(out):
    options = dict(batch_size=16, eval_every=25, snapshot_every=25, no_plot=True, q=True, out=out)
    return fastinit_command(
        argv("train", init=INITS, seeds=SEEDS, iterations=ITERATIONS, **TINY_TRAIN, **options)
    )


def _finished_runs(out):
    """The (init, seed) runs linked from the results, each checked to be whole and complete."""
    runs = set()
    with h5py.File(out, "r") as f:
        for name, group in f.get("train", {}).items():
            for seed in SEEDS:
                key = f"seed={seed}"
                if key not in group:
                    continue
                run = group[key]  # a linked part is a finished part: it must open and be whole
                assert run.attrs["status"] == "complete", (name, seed, run.attrs["status"])
                assert run["loss"].shape == (ITERATIONS,) and run["grad_norm"].shape == (ITERATIONS, 5)
                assert run["test_accuracy"].shape == (ITERATIONS // 25 + 1,)
                runs.add((name, seed))
    return runs


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_9_at_random_moments_keeps_every_finished_run(tmp_path, capsys):
    out = tmp_path / "r.h5"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # small products: no spinning pools
    t0 = time.monotonic()
    whole = subprocess.run(_command(out), env=env, capture_output=True, text=True, timeout=300)
    duration = time.monotonic() - t0
    assert whole.returncode == 0, whole.stderr
    finished = _finished_runs(out)
    assert len(finished) == len(INITS) * len(SEEDS)
    rng = random.Random(int(os.environ.get("FASTINIT_CRASH_SEED", "0")) or None)
    mid_write = 0
    for trial in range(TRIALS):
        proc = subprocess.Popen(_command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = os.stat(out).st_mtime_ns
        try:  # any moment (start-up included) on even trials, the training half on odd ones
            time.sleep(rng.uniform(0.0 if trial % 2 == 0 else 0.5, 1.0) * duration)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        mid_write += alive and os.stat(out).st_mtime_ns != before  # killed after committing some runs
        now = _finished_runs(out)
        assert finished <= now, (trial, finished - now)  # every run finished before is still there
        finished = now
        capsys.readouterr()
        assert main(["show", str(out)]) == 0, capsys.readouterr().err
        assert main(["show", str(out), "/train/he"]) == 0
    print(
        f"\n{TRIALS} kill -9 trials ({mid_write} while runs were being committed), "
        f"a whole command takes {duration:.1f} s"
    )
    # The next update removes what killed processes left: temp and unlinked part files.
    assert main(argv("train", init="he", iterations=5, **TINY_TRAIN, no_plot=True, q=True, out=out)) == 0
    parts = sorted(os.listdir(parts_folder(out)))
    with h5py.File(out, "r") as f:
        linked = {
            os.path.basename(f["train"][name].get(key, getlink=True).filename)
            for name in f["train"]
            if name != "he"
            for key in f["train"][name]
        }
        linked.add(os.path.basename(f["train"].get("he", getlink=True).filename))
    assert set(parts) == linked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]
