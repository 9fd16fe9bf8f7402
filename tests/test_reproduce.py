"""`fastinit reproduce --quick`: the whole pipeline end to end on tiny sizes."""

import os

import h5py
import pytest

from fastinit.cli import main
from fastinit.experiments.reproduce import HISTOGRAM_ACTIVATIONS, REPRODUCE_RUNS, REPRODUCE_SEEDS


def _result(name, loss, acc=0.5, seed=None, activation="relu"):
    """A complete 2000-iteration run with these final numbers, as the summary's findings read it;
    with a ``seed``, one seed's run of several."""
    from fastinit.experiments.train import RunResult

    return RunResult(
        name=name,
        init=name.split(":")[0],
        activation=activation,
        status="complete",
        iterations_done=2000,
        final_train_loss=loss,
        final_test_accuracy=acc,
        wall_time_s=1.0,
        group="" if seed is None else f"/train/{name}/seed={seed}",
        seed=seed or 0,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``fastinit reproduce --quick`` once for the module: about a minute of one core, so the
    tests that read it are marked slow (CI runs them)."""
    out = tmp_path_factory.mktemp("repro") / "results"
    status = main(["reproduce", "--out", str(out), "--quick", "--backend", "numpy", "-q"])
    return status, out


@pytest.mark.slow
def test_exit_status_and_files(quick_run):
    status, out = quick_run
    assert status == 0
    names = {p.name for p in out.iterdir()}
    assert {"fastinit.h5", "summary.md", "mnist-loss.png", "mnist-accuracy.png"} <= names
    for act in HISTOGRAM_ACTIVATIONS:
        assert f"histogram-{act}.png" in names and f"histogram-{act}-gradient-histogram.png" in names
    assert len([n for n in names if n.endswith(".png")]) == 28  # the README's count
    for run in ("std-0.01", "xavier", "he", "xavier-sigmoid"):
        assert f"mnist-activations-{run}.png" in names
    assert all((out / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    assert not [n for n in names if n.endswith(".tmp")]
    assert "fastinit.h5.parts" in names and not [
        n for n in os.listdir(out / "fastinit.h5.parts") if n.startswith(".")
    ]  # no temp part left


@pytest.mark.slow
def test_hdf5_holds_histograms_and_runs(quick_run):
    _, out = quick_run
    with h5py.File(out / "fastinit.h5", "r") as f:
        for act in HISTOGRAM_ACTIVATIONS:
            assert {"xavier", "he", "std=0.01"} <= set(f[f"histogram/{act}"])
            assert "gradients" in f[f"histogram/{act}/xavier"]
        assert set(f["train"]) == set(REPRODUCE_RUNS)
        assert f["train/xavier:sigmoid"].attrs["activation"] == "sigmoid"
        for run in REPRODUCE_RUNS:
            assert f[f"train/{run}"].attrs["status"] == "complete"
            assert f[f"train/{run}"].attrs["seeds"].tolist() == list(REPRODUCE_SEEDS)
            assert sorted(f[f"train/{run}"]) == [f"seed={s}" for s in REPRODUCE_SEEDS]
            assert f[f"train/{run}/seed=0/gradients"].shape == f[f"train/{run}/seed=0/activations"].shape
            assert "activations" not in f[f"train/{run}/seed=1"]  # probe snapshots: the first seed's only
        for lr in ("0.1", "0.5"):  # the history runs at other learning rates: curves only
            g = f[f"history/lr={lr}/xavier:sigmoid"]
            assert g["loss"].shape == (40,) and "activations" not in g and "gradients" not in g


@pytest.mark.slow
def test_summary_states_numbers_and_setup(quick_run):
    _, out = quick_run
    text = (out / "summary.md").read_text()
    assert "QUICK" in text and "Backend numpy" in text and "Numba" in text and "NumPy" in text
    for act in HISTOGRAM_ACTIVATIONS:
        assert f"### {act}" in text
    for run in REPRODUCE_RUNS:
        assert f"| {run} |" in text
    assert "test accuracy" in text and "Wall times" in text
    assert "xavier:sigmoid" in text and "ln 10" in text
    assert "Hidden activations of the probe batch" in text
    assert "seeds 0, 1, 2" in text and "Over the seeds (mean ± sample std of the complete runs)" in text
    assert "| he | 3/3 |" in text and "(final train loss)" in text and "for every seed" in text


def test_findings_follow_the_numbers():
    # The summary's sentences come from the numbers, not from a script.
    from fastinit.experiments.reproduce import _train_findings

    good = _train_findings(
        [
            _result("std=0.01", 2.302, 0.11),
            _result("xavier", 0.4, 0.88),
            _result("he", 0.2, 0.94),
            _result("xavier:sigmoid", 2.29, 0.11),
        ],
        quick=False,
    )
    text = "\n".join(good)
    assert "as in the classic figure" in text and "does not learn" in text
    assert "(at least 90%)" in text and "barely moves" in text
    bad = "\n".join(
        _train_findings(
            [
                _result("std=0.01", 0.3, 0.9),
                _result("xavier", 0.4, 0.88),
                _result("he", 0.5, 0.85),
                _result("xavier:sigmoid", 0.6, 0.8),
            ],
            quick=False,
        )
    )
    assert "NOT the classic" in bad and "does not learn" not in bad and "barely moves" not in bad


def test_findings_use_the_mean_over_seeds():
    from fastinit.experiments.reproduce import _train_findings

    def run(name, seed, loss, acc):
        return _result(name, loss, acc, seed=seed)

    runs = [
        run("std=0.01", 0, 2.302, 0.11),
        run("std=0.01", 1, 2.302, 0.11),
        run("xavier", 0, 0.3, 0.9),
        run("xavier", 1, 0.45, 0.9),
        run("he", 0, 0.2, 0.95),
        run("he", 1, 0.5, 0.91),
    ]
    text = "\n".join(_train_findings(runs, quick=False))
    assert (
        "Mean final loss orders he (0.350) < xavier (0.375) < std=0.01 (2.302): He < Xavier < std=0.01"
        in text
    )
    assert "he reaches 93.0% mean test accuracy (at least 90%)." in text
    assert (
        "Seed by seed: he < xavier < std=0.01 (final train loss) does NOT hold for every seed: it fails for "
        "seed 1 (xavier < he < std=0.01)." in text
    )


def test_history_verdicts_follow_the_numbers():
    from fastinit.experiments.reproduce import _history_findings
    from fastinit.experiments.train import TrainConfig

    def run(name, loss):
        return _result(name, loss, activation="sigmoid")

    by = {
        "xavier:sigmoid": run("xavier:sigmoid", 2.30),
        "lsuv:sigmoid": run("lsuv:sigmoid", 0.4),
        "pretrain:sigmoid": run("pretrain:sigmoid", 2.29),
    }
    probe = {
        0.1: [run("xavier:sigmoid", 2.3), run("pretrain:sigmoid", 2.2)],
        0.5: [run("xavier:sigmoid", 0.4), run("pretrain:sigmoid", 0.3)],
    }
    text = "\n".join(_history_findings(by, probe, TrainConfig()))
    assert "Layer-wise pre-training does NOT rescue" in text and "It learns from lr 0.5 (of 0.1, 0.5)" in text
    assert "LSUV rescues the 5-layer sigmoid network at lr 0.01" in text and "Xavier from lr 0.5." in text


@pytest.mark.slow
def test_the_real_run_writes_the_history_section(quick_run):
    _, out = quick_run  # the lr probe included
    summary = (out / "summary.md").read_text()
    assert (
        "## History: layer-wise pre-training and LSUV" in summary and "| 0.5 | pretrain:sigmoid |" in summary
    )
    with h5py.File(out / "fastinit.h5", "r") as f:
        assert set(f["history/lr=0.1"]) == {"xavier:sigmoid", "lsuv:sigmoid", "pretrain:sigmoid"}
        assert f["train/pretrain:sigmoid/seed=0"].attrs["init_seconds"] > 0


def test_out_must_be_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["reproduce", "--out", str(target), "--quick", "-q"]) == 1
    assert "not a directory" in capsys.readouterr().err


def _contents(path):
    """{object path: (attrs, data)} of a results file, without what says when and how fast it ran."""
    skip = {"written_utc", "command_line", "wall_time_s", "init_seconds"}
    out = {}
    with h5py.File(path, "r") as f:

        def walk(group):
            for name in group:
                obj = group[name]
                attrs = {k: repr(v.tolist() if hasattr(v, "tolist") else v) for k, v in obj.attrs.items()}
                data = obj[()] if isinstance(obj, h5py.Dataset) else None
                out[obj.name] = ({k: v for k, v in attrs.items() if k not in skip}, data)
                if isinstance(obj, h5py.Group):
                    walk(obj)

        walk(f)
    return out


@pytest.mark.parametrize("processes", [1, 2])
def test_runs_side_by_side_store_what_train_stores(tmp_path, processes):
    import numpy as np

    from fastinit.experiments.reproduce import _train_studies
    from fastinit.experiments.train import TrainConfig, train

    config = TrainConfig(
        runs=("he", "xavier:sigmoid"),
        seeds=(0, 1),
        iterations=6,
        train_limit=300,
        test_limit=100,
        eval_every=3,
        snapshot_every=2,
        probe_samples=10,
        final_window=3,
    ).validate()
    one = config.__class__(**{**config.__dict__, "seeds": (0,), "snapshot_seeds": "none"})
    train(config, tmp_path / "train.h5", progress=False)
    train(one, tmp_path / "train.h5", root="history/lr=0.01", progress=False)
    drawing = [(divmod, (7, 2))]
    done = _train_studies(
        [("train", config), ("history/lr=0.01", one)],
        str(tmp_path / "side.h5"),
        drawing,
        str(tmp_path / "m-loss.png"),
        processes,
        False,
        print,
    )
    assert [r.label for r in done.results[0]] == [
        "he/seed=0",
        "he/seed=1",
        "xavier:sigmoid/seed=0",
        "xavier:sigmoid/seed=1",
    ]
    assert [r.name for r in done.results[1]] == ["he", "xavier:sigmoid"]
    assert done.drawn == [(3, 1)]
    assert sorted(done.run_figures) == ["he", "xavier:sigmoid"]
    assert done.run_figures["he"] == [
        str(tmp_path / "m-activations-he.png"),
        str(tmp_path / "m-gradients-he.png"),
    ]
    expected, got = _contents(tmp_path / "train.h5"), _contents(tmp_path / "side.h5")
    assert sorted(got) == sorted(expected)
    for name, (attrs, data) in expected.items():
        # The loss is a sum over the batch whose order depends on the thread count: the same to
        # float64 rounding. Everything else is the same to the bit.
        loss = float(attrs.pop("final_train_loss", "nan"))
        assert float(got[name][0].pop("final_train_loss", "nan")) == pytest.approx(
            loss, rel=1e-12, nan_ok=True
        )
        assert got[name][0] == attrs, name
        if name.endswith("/loss"):
            np.testing.assert_allclose(got[name][1], data, rtol=1e-12)
        elif data is not None:
            np.testing.assert_array_equal(got[name][1], data, err_msg=name)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


@pytest.mark.slow
def test_ctrl_c_stops_the_processes_and_keeps_the_finished_runs(tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "fastinit", "reproduce", "--out", str(out), "--quick", "--backend", "numpy"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("train "):  # a run has finished and been copied in
                break
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    with h5py.File(out / "fastinit.h5", "r") as f:
        statuses = [f[f"train/{run}"].attrs["status"] for run in f["train"]]
        assert statuses and set(statuses) <= {"complete", "interrupted"}
        finished = [
            f"train/{run}/{seed}"
            for run in f["train"]
            for seed in f[f"train/{run}"]
            if "loss" in f[f"train/{run}/{seed}"]
        ]
        assert finished and all(f[name]["loss"].shape == (40,) for name in finished)
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temp or lock file left
