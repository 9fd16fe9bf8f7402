"""The scripts in examples/ run on small settings, write their figure and print what they show."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(tmp_path, script, *args):
    out = tmp_path / f"{script}.png"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 1000
    return proc.stdout


def test_sigmoid_histograms_show_collapse_and_spread(tmp_path):
    text = _run(tmp_path, "sigmoid_histograms", "--samples", "300")
    std = {
        (m[1], int(m[2])): float(m[3]) for m in re.finditer(r"(\S+)\s+layer (\d): mean \S+ std (\S+)", text)
    }
    assert std[("std=0.01", 5)] < 0.05 < std[("xavier", 5)]


@pytest.mark.slow  # the whole of MNIST: loaded, put on the engine, predicted, three times
def test_mnist_init_comparison_runs(tmp_path):
    text = _run(tmp_path, "mnist_init_comparison", "--iterations", "30")
    assert [line.split()[0] for line in text.splitlines()[:3]] == ["std=0.01", "xavier", "he"]


def test_phase_diagram_runs(tmp_path):
    text = _run(tmp_path, "phase_diagram", "--steps", "10", "--depths", "2", "4", "--sw2", "1", "3")
    assert text.count("train accuracy") == 4
