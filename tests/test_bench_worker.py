"""The side-by-side benchmark's worker process (``bench/train_step_worker.py``) still runs.

The benchmarks are not part of the test suite, so this drives the worker the way
``bench/test_bench_train_step.py`` does: wait for its ready line, ask for a few timed steps,
end it. Slow (a fresh process loads the cpu engine); CI runs it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parent.parent / "bench" / "train_step_worker.py"


def _numpy_first_loss():
    """The loss of the worker's first step, on the numpy backend in this process."""
    from fastinit import MLP

    sys.path.insert(0, str(WORKER.parent))
    try:
        import train_step_worker as w
    finally:
        sys.path.remove(str(WORKER.parent))
    x, labels = w.batch()
    return MLP(w.SIZES, backend="numpy", seed=w.SEED).train_step(x, labels, w.LR)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_the_train_step_worker_times_steps_on_request(backend):
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("ready") == backend, proc.stderr.read()
        assert ready["first_loss"] == pytest.approx(_numpy_first_loss(), rel=1e-5)
        proc.stdin.write("3\n")
        proc.stdin.flush()
        times = json.loads(proc.stdout.readline())
        assert len(times) == 3 and all(0 < t < 5 for t in times)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
