"""Tests of ``fastinit profile`` (quick sizes; timings themselves are not asserted)."""

import json
import math

import h5py
import numpy as np
import pytest
from conftest import ON_SIMULATOR

from fastinit.experiments import profile as prof


def _fast(**kw):
    """A tiny profile: quick sizes, one timed batch, no timing budget."""
    kw.setdefault("quick", True)
    kw.setdefault("budget", 0.0)
    kw.setdefault("repeats", 1)
    return prof.run(prof.ProfileConfig(**kw), progress=False)


def test_records_cover_every_case_with_speedups_against_numpy():
    result = _fast(backends=("cpu", "numpy"), kernels=("matmul", "relu", "softmax_xent", "sgd_update"))
    assert result.backends == ("numpy", "cpu")  # canonical order
    kinds = {(r.kernel, r.backend) for r in result.records}
    for kernel in ("matmul", "relu", "softmax_xent", "sgd_update"):
        assert {(kernel, "numpy"), (kernel, "cpu")} <= kinds
    cases = {r.case for r in result.records if r.kernel == "matmul"}
    assert {"32^2", "64^2"} <= cases and any(c.startswith("mlp dW") for c in cases)
    for r in result.records:
        assert r.time_s > 0 and r.throughput > 0 and math.isnan(r.time_xfer_s)
        assert r.unit == ("GFLOP/s" if r.kernel == "matmul" else "GB/s")
        if r.backend == "numpy":
            assert r.speedup == pytest.approx(1.0)
        else:
            assert r.speedup > 0
    mm = next(r for r in result.records if r.case == "64^2" and r.backend == "numpy")
    assert mm.work == 2 * 64**3
    relu = next(r for r in result.records if r.kernel == "relu" and r.backend == "numpy" and r.size == 1024)
    assert relu.work == 2 * 1024 * 4  # float32: read + write


def test_wrong_results_are_refused_before_timing(monkeypatch):
    import fastinit.kernels.cpu as cpu

    def bad_relu(x, out=None):
        out[...] = 1.0
        return out

    monkeypatch.setattr(cpu, "relu", bad_relu)
    with pytest.raises(prof.ProfileError, match="relu .* on cpu: result differs"):
        _fast(backends=("cpu",), kernels=("relu",))


def test_config_validate_fills_in_the_defaults():
    c = prof.ProfileConfig(backends=("cpu", "numpy"), quick=True, dtype=np.float64, sizes=[8]).validate()
    assert c.backends == ("numpy", "cpu") and c.dtype == "float64" and c.sizes == (8,)
    assert (c.budget, c.repeats, c.kernels) == (0.02, 3, prof.KERNELS)
    assert c.validate() == c


def test_progress_lines_go_to_stderr_unless_turned_off(capsys):
    config = prof.ProfileConfig(("numpy",), quick=True, kernels=("relu",), budget=0.0, repeats=1)
    prof.run(config)
    assert "fastinit: profiling relu 1024 elements on numpy" in capsys.readouterr().err
    prof.run(config, progress=False, log=print)
    assert capsys.readouterr() == ("", "")


def test_argument_errors():
    from fastinit.backends import BackendError

    with pytest.raises(BackendError, match="unknown backend"):
        _fast(backends=("gpu",))
    with pytest.raises(ValueError, match="unknown kernel"):
        _fast(backends=("numpy",), kernels=("conv",))
    with pytest.raises(ValueError, match="must not repeat"):
        _fast(backends=("numpy", "numpy"))
    with pytest.raises(ValueError, match="dtype"):
        _fast(backends=("numpy",), dtype="int32")


def test_backends_are_timed_one_after_the_other_each_after_a_settle(monkeypatch):
    """The pool of the backend timed before is idle when the next one starts (not with quick);
    the records still come case by case, each case's backends side by side."""
    events = []
    monkeypatch.setattr(prof, "settle", lambda seconds: events.append(("settle", seconds)))
    config = prof.ProfileConfig(("numpy", "cpu"), sizes=(16,), kernels=("matmul",), budget=0.0, repeats=1)
    result = prof.run(config, log=events.append)
    kinds = [e if isinstance(e, tuple) else e.rsplit(" on ", 1)[1] for e in events]
    n_cases = len(result.records) // 2
    settle = ("settle", prof.SETTLE_S)
    assert kinds == [settle] + ["numpy"] * n_cases + [settle] + ["cpu"] * n_cases, kinds
    assert [r.backend for r in result.records] == ["numpy", "cpu"] * n_cases
    events.clear()
    _fast(backends=("numpy",), kernels=("relu",))
    assert events[0] == ("settle", 0.0)  # quick: no pause


def test_hdf5_and_json_round_trip(tmp_path):
    from fastinit.store import open_results

    result = _fast(backends=("numpy",), kernels=("sigmoid", "train_step"))
    path = tmp_path / "r.h5"
    with open_results(str(path)) as f:
        paths = prof.write(f, result)
    assert paths == ["/profile/float32/numpy"]
    with h5py.File(path, "r") as f:
        assert f["/profile/float32/numpy"].attrs["quick"]
    back = prof.read(path)
    assert (back.dtype, back.backends, back.quick, back.info) == ("float32", ("numpy",), True, result.info)
    assert [(r.kernel, r.case) for r in back.records] == [(r.kernel, r.case) for r in result.records]
    np.testing.assert_allclose([r.time_s for r in back.records], [r.time_s for r in result.records])
    with pytest.raises(KeyError, match="no /profile/float64"):
        prof.read(path, "float64")
    train = [r for r in back.records if r.kernel == "train_step"]
    assert len(train) == 1 and train[0].unit == "GFLOP/s"
    jpath = tmp_path / "r.json"
    prof.write_json(str(jpath), result)
    data = json.loads(jpath.read_text())
    assert data["dtype"] == "float32" and len(data["records"]) == len(result.records)
    assert data["records"][0]["time_xfer_s"] is None  # NaN becomes null
    assert "kernel" in prof.format_table(result).splitlines()[0]


@pytest.mark.skipif(not ON_SIMULATOR, reason="exercises the cuda path on the simulator only")
def test_cuda_path_on_the_simulator_when_asked_explicitly():
    from fastinit.backends import cuda_available

    if not cuda_available():
        pytest.skip("numba.cuda unavailable")
    result = _fast(backends=("numpy", "cuda"), kernels=("softmax_xent",))
    cuda_rows = [r for r in result.records if r.backend == "cuda"]
    assert cuda_rows and all(r.time_xfer_s > 0 for r in cuda_rows)
    assert result.info.get("cuda_simulator") is True


def test_cli_quick_profile_writes_h5_json_and_figure(tmp_path, capsys):
    from fastinit.cli import main

    out, js, png = tmp_path / "p.h5", tmp_path / "p.json", tmp_path / "p.png"
    status = main(
        [
            "profile",
            "--quick",
            "--backends",
            "numpy",
            "--kernels",
            "matmul",
            "sgd_update",
            "train_step",
            "--budget",
            "0.001",
            "--out",
            str(out),
            "--json",
            str(js),
            "--plot",
            str(png),
            "-q",
        ]
    )
    assert status == 0
    assert out.exists() and js.exists() and png.stat().st_size > 1000
    with h5py.File(out, "r") as f:
        kernels = {k.decode() if isinstance(k, bytes) else k for k in f["/profile/float32/numpy/kernel"][()]}
    assert kernels == {"matmul", "sgd_update", "train_step"}
    captured = capsys.readouterr()
    assert captured.out == ""  # -q


def test_cli_bad_path_fails_before_work(tmp_path, capsys):
    from fastinit.cli import main

    status = main(
        [
            "profile",
            "--quick",
            "--backends",
            "numpy",
            "--plot",
            str(tmp_path / "missing" / "p.png"),
            "--out",
            str(tmp_path / "p.h5"),
        ]
    )
    assert status != 0
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "p.h5").exists()


def test_cli_cuda_without_a_device_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    env.pop("FASTINIT_TEST_GPU", None)
    probe = subprocess.run(
        [sys.executable, "-c", "from numba import cuda; print(int(cuda.is_available()))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.stdout.strip().endswith("1"):
        pytest.skip("a real GPU is present")
    from fastinit.backends import NO_CUDA_MESSAGE

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastinit",
            "profile",
            "--backends",
            "cuda",
            "--quick",
            "--out",
            str(tmp_path / "p.h5"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1
    assert res.stderr.strip() == f"fastinit: error: {NO_CUDA_MESSAGE}"
    assert not (tmp_path / "p.h5").exists()
