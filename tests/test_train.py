"""`fastinit.experiments.train`: run specs, the HDF5 layout, divergence, Ctrl-C, the figures.

Most tests train a tiny network on a small synthetic data set (fast); one
trains the default network on a slice of the shipped MNIST.
"""

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastinit.data import MNIST
from fastinit.experiments import train as train_module
from fastinit.experiments.train import (
    RunResult,
    TrainConfig,
    format_results,
    gradient_steps,
    parse_run,
    read_activations,
    read_runs,
    read_snapshots,
    seed_ranking,
    seed_statistics,
    snapshot_choice,
    train,
    write,
)
from fastinit.store import open_results, replace_group

FEATURES, CLASSES = 12, 3


def synthetic(n_train=240, n_test=60, seed=0):
    """Three Gaussian blobs in [0, 1]^12: learnable in a few dozen steps."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, (CLASSES, FEATURES))

    def make(n):
        y = rng.integers(0, CLASSES, n)
        x = np.clip(centres[y] + rng.normal(0, 0.08, (n, FEATURES)), 0, 1).astype(np.float32)
        return x, y.astype(np.int64)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return MNIST(xtr, ytr, xte, yte, source="synthetic", image_shape=(3, 4))


SMALL = dict(
    sizes=(FEATURES, 16, 16, CLASSES),
    iterations=60,
    batch_size=16,
    lr=0.1,
    eval_every=20,
    snapshot_every=25,
    probe_samples=10,
    final_window=10,
    backend="numpy",
)


def small_train(tmp_path, backend="numpy", **kw):
    cfg = dict(SMALL, backend=backend)
    cfg.update(kw)
    out = tmp_path / "t.h5"
    return train(TrainConfig(**cfg), out, dataset=synthetic(), progress=False, log=lambda m: None), out


def backends():
    names = ["numpy"]
    try:
        import fastinit.kernels.cpu  # noqa: F401

        names.append("cpu")
    except ImportError:
        pass
    return names


# --- run specs -------------------------------------------------------------------------


def test_parse_run():
    assert parse_run("he") == parse_run("he", "relu")
    r = parse_run("xavier:sigmoid")
    assert (r.name, r.init, r.activation) == ("xavier:sigmoid", "xavier", "sigmoid")
    assert parse_run("std=0.01", "tanh").activation == "tanh"
    assert parse_run("he,mode=fan_out:TANH").init == "he,mode=fan_out"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("xavier:swish", "unknown activation 'swish'"),
        ("bogus", "invalid init"),
        ("", "non-empty"),
        (":relu", "invalid init"),
    ],
)
def test_parse_run_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_run(spec)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(iterations=-1), "iterations"),
        (dict(lr=float("nan")), "lr"),
        (dict(runs=("he", "he")), "distinct"),
        (dict(runs=()), "runs"),
        (dict(runs=("he:gelu",)), "unknown activation"),
        (dict(sizes=(784,)), "sizes"),
        (dict(activation="swish"), "activation"),
        (dict(seeds=()), "seeds must be a non-empty sequence"),
        (dict(seeds=3), "seeds must be a non-empty sequence"),
        (dict(seeds=(0, -1)), "seeds must be integers from 0 to 2\\*\\*63 - 1, got -1"),
        (dict(seeds=(0, 1.5)), "got 1.5"),
        (dict(seeds=(True,)), "got True"),
        (dict(seeds=(2**63,)), "from 0 to 2"),
        (dict(seeds=(0, 1, 0)), "seeds must not repeat, got 0, 1, 0"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw).validate()


def test_bad_backend_and_dtype():
    from fastinit.backends import BackendError

    with pytest.raises(BackendError, match="unknown backend"):
        TrainConfig(backend="tpu").validate()
    with pytest.raises(TypeError, match="dtype"):
        TrainConfig(dtype="int8").validate()


def test_sizes_must_match_data(tmp_path):
    with pytest.raises(ValueError, match="sizes\\[0\\] is 784 but the images have 12 features"):
        train(
            TrainConfig(**dict(SMALL, sizes=(784, 10, 3))),
            tmp_path / "x.h5",
            dataset=synthetic(),
            progress=False,
        )


# --- the HDF5 layout ---------------------------------------------------------------


@pytest.mark.parametrize("backend", backends())
def test_layout_and_attrs(tmp_path, backend):
    results, out = small_train(tmp_path, backend, runs=("he", "xavier:tanh"))
    assert [r.status for r in results] == ["complete", "complete"]
    with h5py.File(out, "r") as f:
        assert set(f["train"]) == {"he", "xavier:tanh"}
        g = f["train/xavier:tanh"]
        assert g["loss"].shape == (60,)
        assert g["grad_norm"].shape == (60, 3)
        assert g["eval_steps"][()].tolist() == [0, 20, 40, 60]
        assert g["test_accuracy"].shape == (4,)
        assert g["snapshot_steps"][()].tolist() == [0, 25, 50]
        assert g["activations"].shape == (3, 2, 10, 16)
        assert g["loss"].chunks is not None and g["activations"].maxshape[0] is None
        a = g.attrs
        assert a["status"] == "complete" and a["init"] == "xavier" and a["activation"] == "tanh"
        assert a["iterations_done"] == 60 and a["diverged_step"] == -1
        assert a["final_train_loss"] == pytest.approx(np.mean(g["loss"][-10:]))
        assert a["final_test_accuracy"] == pytest.approx(g["test_accuracy"][-1])
        assert a["wall_time_s"] > 0
        cfg = json.loads(a["config"])
        assert cfg["lr"] == 0.1 and cfg["batch_size"] == 16 and cfg["runs"] == ["he", "xavier:tanh"]
        assert cfg["activation"] == "tanh" and cfg["init"] == "xavier" and cfg["run"] == "xavier:tanh"
        for name, ds in g.items():  # every dataset says what it holds and in which units
            assert ds.attrs["units"] and ds.attrs["description"], name
        assert g["test_accuracy"].attrs["units"] == "fraction (0-1)"
        assert list(g["grad_norm"].attrs["columns"]) == [
            "layer 1 (12->16)",
            "layer 2 (16->16)",
            "layer 3 (16->3)",
        ]
        for key in (
            "python_version",
            "numpy_version",
            "numba_version",
            "h5py_version",
            "cpu_model",
            "cpu_isa",
            "threads",
        ):
            assert key in f.attrs, key
        assert np.all(g["grad_norm"][()] > 0)
        acts = g["activations"][()]
        assert np.all(np.abs(acts) <= 1)  # tanh
        # Step-0 snapshot is the untrained network: changes once it trains.
        assert not np.allclose(acts[0], acts[-1])


def test_run_in_memory_gives_the_curves_train_stores_bit_for_bit(tmp_path):
    from fastinit.plots import plot_train_figures
    from fastinit.schema import TRAIN_RUN

    config = TrainConfig(**dict(SMALL, runs=("he", "xavier:tanh"), seeds=(0, 1)))
    quiet = dict(progress=False, log=lambda m: None)
    result = train_module.run(config, dataset=synthetic(), **quiet)
    assert list(tmp_path.iterdir()) == []  # no file
    stored = train(config, tmp_path / "t.h5", dataset=synthetic(), **quiet)
    assert [r.label for r in result.runs] == [r.label for r in stored] == list(result.curves)
    with open_results(tmp_path / "w.h5") as f:
        assert write(f, result) == [f"/train/{r.label}" for r in stored]
    for path in (tmp_path / "t.h5", tmp_path / "w.h5"):
        with h5py.File(path, "r") as f:
            for r in result.runs:
                group, curves = f[f"train/{r.label}"], result.curves[r.label]
                for entry in TRAIN_RUN.datasets:
                    value = getattr(curves, entry.name)
                    if entry.name not in group:
                        assert value is None, entry.name
                        continue
                    disk = group[entry.name][()]
                    assert (value.dtype, value.shape) == (disk.dtype, disk.shape), entry.name
                    assert value.tobytes() == disk.tobytes(), entry.name
                summary = ("status", "iterations_done", "final_train_loss", "final_test_accuracy", "seed")
                assert tuple(group.attrs[k] for k in summary) == tuple(getattr(r, k) for k in summary)
            assert f["train/he"].attrs["status"] == "complete"
    assert result.curves["he/seed=1"].activations is None  # snapshots for the first seed only
    assert result.statistics() == seed_statistics(stored)
    assert result.ranking() == seed_ranking(stored)
    # The figures from the result alone, as from the file.
    from_file = read_snapshots(tmp_path / "t.h5", read_runs(tmp_path / "t.h5"))
    for mine, theirs in zip(result.snapshots(), from_file, strict=True):
        for key in ("activations", "gradients"):
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(mine[key], theirs[key]))
    files = plot_train_figures(result.run_dicts(), result.snapshots(), tmp_path / "m-loss.png")
    assert all(Path(p).stat().st_size > 0 for p in files)


def test_runs_see_the_same_batches(tmp_path):
    # "he" and "he:relu" are the same network on the same batch sequence: identical curves.
    results, out = small_train(tmp_path, runs=("he", "he:relu", "xavier"))
    runs = read_runs(out)
    assert [r["name"] for r in runs] == ["he", "he:relu", "xavier"]
    np.testing.assert_array_equal(runs[0]["loss"], runs[1]["loss"])
    assert not np.array_equal(runs[0]["loss"], runs[2]["loss"])


def test_training_learns_and_init_matters(tmp_path):
    results, out = small_train(tmp_path, runs=("std=0.01", "he"), iterations=150)
    by = {r.name: r for r in results}
    he = read_runs(out, ["he"])[0]
    assert he["loss"][-10:].mean() < 0.5 * he["loss"][:10].mean()
    assert by["he"].final_test_accuracy > 0.9
    assert by["std=0.01"].final_train_loss > by["he"].final_train_loss + 0.5
    assert abs(by["std=0.01"].final_train_loss - math.log(CLASSES)) < 0.05  # stuck at ln(classes)


def test_float64_training(tmp_path):
    results, out = small_train(tmp_path, runs=("he",), dtype="float64")
    with h5py.File(out, "r") as f:
        assert f["train/he/activations"].dtype == np.float64
    assert results[0].status == "complete"


def test_other_groups_are_kept(tmp_path):
    out = tmp_path / "t.h5"
    with open_results(out) as f:
        replace_group(f, "/histogram/sigmoid/xavier").create_dataset("std", data=np.ones(5))
    train(TrainConfig(**dict(SMALL, runs=("he",))), out, dataset=synthetic(), progress=False)
    train(TrainConfig(**dict(SMALL, runs=("xavier",))), out, dataset=synthetic(), progress=False)
    with h5py.File(out, "r") as f:
        assert "histogram/sigmoid/xavier/std" in f
        assert set(f["train"]) == {"he", "xavier"}


def test_seeds_layout_and_each_seed_equals_a_one_seed_run(tmp_path):
    results, out = small_train(tmp_path, runs=("he", "xavier"), seeds=(0, 1), iterations=30)
    assert [(r.label, r.seed) for r in results] == [
        ("he/seed=0", 0),
        ("he/seed=1", 1),
        ("xavier/seed=0", 0),
        ("xavier/seed=1", 1),
    ]
    with h5py.File(out, "r") as f:
        he = f["train/he"]
        assert set(he) == {"seed=0", "seed=1"} and he.attrs["seeds"].tolist() == [0, 1]
        assert he.attrs["status"] == "complete" and he.attrs["init"] == "he"
        g = he["seed=1"]
        assert g.attrs["seed"] == 1 and json.loads(g.attrs["config"])["seed"] == 1
        assert g["loss"].shape == (30,) and he["seed=0/activations"].shape == (2, 2, 10, 16)
        # The probe snapshots are recorded for the first seed only (what the figures read) by default.
        assert "activations" not in g and "gradients" not in g and g["snapshot_steps"].shape == (0,)
    runs = read_runs(out, ["he"])
    assert [(r["name"], r["label"], r["seed"]) for r in runs] == [
        ("he", "he/seed=0", 0),
        ("he", "he/seed=1", 1),
    ]
    assert not np.array_equal(runs[0]["loss"], runs[1]["loss"])
    acts, steps = read_activations(out, "he/seed=0")
    assert acts.shape == (2, 2, 10, 16) and steps.tolist() == [0, 25]
    with pytest.raises(KeyError, match="no activations"):
        read_activations(out, "he/seed=1")
    (tmp_path / "all").mkdir()
    _, every = small_train(tmp_path / "all", runs=("he",), seeds=(0, 1), iterations=30, snapshot_seeds="all")
    acts, steps = read_activations(every, "he/seed=1")
    assert acts.shape == (2, 2, 10, 16) and steps.tolist() == [0, 25]
    for seed, run in zip((0, 1), runs):  # a run of several seeds is, seed by seed, the one-seed run
        folder = tmp_path / f"one{seed}"
        folder.mkdir()
        (one,), single = small_train(folder, runs=("he",), seeds=(seed,), iterations=30)
        (alone,) = read_runs(single)
        assert one.label == alone["label"] == "he" and alone["seed"] == seed
        np.testing.assert_array_equal(alone["loss"], run["loss"])
        np.testing.assert_array_equal(alone["grad_norm"], run["grad_norm"])


def _result(name, seed, loss, acc=0.9, status="complete"):
    return RunResult(
        name=name,
        init=name,
        activation="relu",
        status=status,
        iterations_done=10,
        final_train_loss=loss,
        final_test_accuracy=acc,
        wall_time_s=0.1,
        group=f"/train/{name}/seed={seed}",
        seed=seed,
    )


def test_summary_over_seeds():
    results = [
        _result("std=0.01", 0, 2.30, 0.11),
        _result("std=0.01", 1, 2.31, 0.12),
        _result("xavier", 0, 0.30, 0.90),
        _result("xavier", 1, 0.40, 0.92),
        _result("he", 0, 0.20, 0.94),
        _result("he", 1, 0.45, 0.93),
    ]
    text = format_results(results)
    assert "xavier/seed=1" in text and "over seeds 0, 1 (mean ± sample std" in text
    he = next(line for line in text.splitlines() if line.startswith("he "))
    assert "2/2" in he and "0.3250 ± 0.1768" in he and "93.50 ± 0.71%" in he
    assert text.endswith(
        "he < xavier < std=0.01 (final train loss) does NOT hold for every seed: "
        "it fails for seed 1 (xavier < he < std=0.01)."
    )
    results[-1] = _result("he", 1, 0.25)
    assert seed_ranking(results) == "he < xavier < std=0.01 (final train loss) holds for every seed (0, 1)."
    results[-1] = _result(
        "he", 1, float("nan"), status="diverged"
    )  # ranks last for its seed, left out of the mean
    assert "fails for seed 1 (xavier < std=0.01 < he)" in seed_ranking(results)
    he = next(line for line in format_results(results).splitlines() if line.startswith("he "))
    assert he.split()[:4] == ["he", "1/2", "0.2000", "±"]
    others = [
        _result("lecun", 0, 0.5),
        _result("lecun", 1, 0.3),
        _result("zeros", 0, 2.3),
        _result("zeros", 1, 2.3),
    ]
    assert seed_ranking(others) == "ranking by mean final train loss: lecun < zeros; the same for every seed."
    others[1] = _result("lecun", 1, 2.4)
    assert seed_ranking(others) == (
        "ranking by mean final train loss: lecun < zeros; NOT the same for every seed: "
        "seed 1 gives zeros < lecun."
    )
    assert "over seeds" not in format_results([_result("he", 0, 0.2)])  # one seed: the table only


def test_loss_figure_draws_the_mean_of_seeds_with_a_band():
    from fastinit.plots import train_accuracy_figure, train_loss_figure

    def run(name, seed, loss, status="complete"):
        return {
            "name": name,
            "seed": seed,
            "loss": np.asarray(loss, dtype=np.float64),
            "eval_steps": np.array([0, len(loss)]),
            "test_accuracy": np.array([0.1, 0.5]),
            "attrs": {"status": status, "diverged_step": -1},
        }

    runs = [
        run("he", 0, np.full(40, 1.0)),
        run("he", 1, np.r_[np.full(19, 3.0), np.nan], "diverged"),
        run("xavier", 0, np.full(40, 2.0)),
    ]
    ax = train_loss_figure(runs, window=5).axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "he (mean of 2 seeds; seed 1 diverged)" in labels and "xavier" in labels
    mean = ax.get_lines()[labels.index("he (mean of 2 seeds; seed 1 diverged)")].get_ydata()
    assert mean.shape == (40,) and mean[:15] == pytest.approx(2.0) and mean[25:] == pytest.approx(1.0)
    assert len(ax.collections) == 1 and "min-max band" in ax.get_title()  # one band: he's
    assert "mean of seeds" not in train_loss_figure(runs[2:]).axes[0].get_title()
    assert "min-max band" in train_accuracy_figure(runs).axes[0].get_title()


def test_read_activations_selects_snapshots(tmp_path):
    _, out = small_train(tmp_path, runs=("he",))
    acts, steps = read_activations(out, "he", [0, 2])
    assert acts.shape == (2, 2, 10, 16) and steps.tolist() == [0, 50]
    with pytest.raises(KeyError, match="no run /train/nope"):
        read_runs(out, ["nope"])


def test_uneven_hidden_layers_are_padded_with_nan(tmp_path):
    _, out = small_train(tmp_path, runs=("he",), sizes=(FEATURES, 16, 8, CLASSES))
    acts, _ = read_activations(out, "he")
    assert acts.shape == (3, 2, 10, 16)
    assert np.isnan(acts[:, 1, :, 8:]).all() and not np.isnan(acts[:, 1, :, :8]).any()


def test_gradients_only_at_the_snapshots_the_figure_draws(tmp_path):
    """Per-image gradients are stored at the gradient_snapshots (default 4) snapshots spread from the
    first to the last, the ones the activation figure draws too; the activations at every snapshot."""
    _, out = small_train(tmp_path, runs=("he",), iterations=100, snapshot_every=10)
    with h5py.File(out, "r") as f:
        g = f["train/he"]
        assert g["snapshot_steps"][()].tolist() == list(range(0, 101, 10))
        assert (
            g["gradient_steps"][()].tolist()
            == [0, 30, 70, 100]
            == gradient_steps(TrainConfig(iterations=100, snapshot_every=10))
        )
        assert g["activations"].shape[0] == 11 and g["gradients"].shape[0] == 4
    acts, act_steps = read_activations(out, "he", snapshot_choice(out, "he"))
    grads, grad_steps = read_activations(
        out, "he", snapshot_choice(out, "he", dataset="gradients"), "gradients"
    )
    assert act_steps.tolist() == grad_steps.tolist() == [0, 30, 70, 100]
    (tmp_path / "none").mkdir()
    _, out = small_train(tmp_path / "none", runs=("he",), gradient_snapshots=0)
    with h5py.File(out, "r") as f:
        assert "gradients" not in f["train/he"] and f["train/he/activations"].shape[0] == 3
    with pytest.raises(ValueError, match="snapshot_seeds must be one of first, all, none"):
        TrainConfig(snapshot_seeds="some").validate()


# --- divergence and interruption -------------------------------------------------------


def test_divergence_stops_that_run_only(tmp_path, monkeypatch):
    # Deterministic: the first run's loss turns NaN at step 7.
    from fastinit import mlp

    real = mlp.MLP.train_step_indices
    count = {"n": 0}

    def poisoned(self, idx, lr):
        count["n"] += 1
        loss = real(self, idx, lr)
        return float("nan") if count["n"] == 7 else loss

    monkeypatch.setattr(mlp.MLP, "train_step_indices", poisoned)
    messages = []
    cfg = TrainConfig(**dict(SMALL, runs=("std=10", "he")))
    results = train(cfg, tmp_path / "t.h5", dataset=synthetic(), progress=False, log=messages.append)
    bad, good = results
    assert bad.status == "diverged" and bad.diverged_step == 7 and bad.iterations_done == 7
    assert good.status == "complete" and good.iterations_done == 60
    assert any("std=10" in m and "diverged at step 7" in m for m in messages)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        g = f["train/std=10"]
        assert g.attrs["status"] == "diverged" and g.attrs["diverged_step"] == 7
        loss = g["loss"][()]
        assert loss.shape == (7,) and np.isnan(loss[-1]) and np.isfinite(loss[:-1]).all()
        assert g["grad_norm"].shape == (7, 3)
        assert f["train/he"].attrs["status"] == "complete"


def test_std10_diverges_on_mnist(tmp_path):
    # The real thing: a std=10 ReLU network on MNIST overflows within a few steps.
    cfg = TrainConfig(
        runs=("std=10",), iterations=50, train_limit=1000, test_limit=200, probe_samples=10, backend="numpy"
    )
    (res,) = train(cfg, tmp_path / "d.h5", progress=False, log=lambda m: None)
    assert res.status == "diverged" and 1 <= res.diverged_step < 50


def test_ctrl_c_leaves_a_readable_file(tmp_path, monkeypatch):
    from fastinit import mlp

    calls = {"n": 0}
    real = mlp.MLP.train_step_indices

    def flaky(self, idx, lr):
        calls["n"] += 1
        if calls["n"] == 37:
            raise KeyboardInterrupt
        return real(self, idx, lr)

    monkeypatch.setattr(mlp.MLP, "train_step_indices", flaky)
    out = tmp_path / "t.h5"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**dict(SMALL, runs=("he", "xavier"))), out, dataset=synthetic(), progress=False)
    runs = read_runs(out)
    assert [r["name"] for r in runs] == ["he"]
    he = runs[0]
    assert he["attrs"]["status"] == "interrupted"
    assert he["attrs"]["iterations_done"] == 36
    assert he["loss"].shape == (36,) and he["grad_norm"].shape == (36, 3)
    assert he["eval_steps"].tolist() == [0, 20]


# --- the real data ---------------------------------------------------------------------------


def test_default_network_on_mnist_subset(tmp_path):
    cfg = TrainConfig(
        runs=("he",),
        iterations=30,
        train_limit=1000,
        test_limit=300,
        eval_every=15,
        snapshot_every=15,
        probe_samples=20,
        backend="numpy",
    )
    (res,) = train(cfg, tmp_path / "m.h5", progress=False)
    assert res.status == "complete"
    with h5py.File(tmp_path / "m.h5", "r") as f:
        g = f["train/he"]
        assert g["grad_norm"].shape == (30, 5)
        assert g["activations"].shape == (3, 4, 20, 100)
        assert g["loss"][-5:].mean() < g["loss"][:5].mean()


# --- the command line --------------------------------------------------------------------------

CLI_SMALL = [
    "--backend",
    "numpy",
    "--iterations",
    "20",
    "--train-limit",
    "600",
    "--test-limit",
    "200",
    "--eval-every",
    "10",
    "--snapshot-every",
    "10",
    "--probe-samples",
    "8",
    "-q",
]


def test_cli_train_writes_runs_and_figures(tmp_path, capsys):
    from fastinit.cli import main

    out, plot = tmp_path / "r.h5", tmp_path / "mnist-loss.png"
    status = main(
        ["train", "--init", "he", "xavier:sigmoid", "--out", str(out), "--plot", str(plot), *CLI_SMALL]
    )
    assert status == 0
    runs = read_runs(out)
    assert [r["name"] for r in runs] == ["he", "xavier:sigmoid"]
    assert runs[1]["attrs"]["activation"] == "sigmoid" and runs[0]["loss"].shape == (20,)
    for name in (
        "mnist-loss.png",
        "mnist-accuracy.png",
        "mnist-activations-he.png",
        "mnist-activations-xavier-sigmoid.png",
    ):
        assert (tmp_path / name).stat().st_size > 1000


def test_cli_train_seeds(tmp_path, capsys):
    from fastinit.cli import main

    out = tmp_path / "r.h5"
    args = [a for a in CLI_SMALL if a != "-q"]
    assert main(["train", "--init", "he", "std=0.01", "--seeds", "3", "1", "--out", str(out), *args]) == 0
    stdout = capsys.readouterr().out
    assert "he/seed=1" in stdout and "over seeds 1, 3 (mean ± sample std" in stdout
    assert "ranking by mean final train loss:" in stdout
    assert [(r["label"], r["seed"]) for r in read_runs(out)] == [
        ("he/seed=3", 3),
        ("he/seed=1", 1),
        ("std=0.01/seed=3", 3),
        ("std=0.01/seed=1", 1),
    ]
    assert (tmp_path / "r-loss.png").stat().st_size > 1000
    assert (tmp_path / "r-activations-he.png").stat().st_size > 1000


def test_cli_train_reports_divergence(tmp_path, capsys):
    from fastinit.cli import main

    status = main(["train", "--init", "std=10", "he", "--out", str(tmp_path / "d.h5"), *CLI_SMALL])
    err = capsys.readouterr().err
    assert status == 3
    assert "diverged" in err and "std=10" in err
    runs = {r["name"]: r["attrs"]["status"] for r in read_runs(tmp_path / "d.h5")}
    assert runs == {"std=10": "diverged", "he": "complete"}


@pytest.mark.parametrize(
    "args, status, match",
    [
        (["--init", "bogus"], 2, "invalid init"),
        (["--init", "he:gelu"], 2, "unknown activation"),
        (["--init", "he", "he"], 2, "given twice"),
        (["--seeds", "1", "2", "1"], 2, "seeds must not repeat, got 1, 2, 1"),
        (["--seeds", "-1"], 2, "expected a non-negative integer"),
        (["--lr", "-1"], 2, "positive number"),
        (["--data-dir", "does-not-exist"], 1, "data directory not found"),
        (["--plot", "x.txt"], 1, "must end in"),
    ],
)
def test_cli_train_errors(tmp_path, capsys, monkeypatch, args, status, match):
    from fastinit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "r.h5", *CLI_SMALL, *args]) == status
    err = capsys.readouterr().err
    assert err.startswith("fastinit: error:") and match in err
    assert "Traceback" not in err
    assert not (tmp_path / "r.h5").exists()


def test_cli_train_corrupt_data_dir(tmp_path, capsys):
    from test_data import write_set  # the IDX writer of the data tests

    from fastinit.cli import main

    d = tmp_path / "data"
    write_set(d, rows=28, cols=28, n_train=200, n_test=50)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["train", "--data-dir", str(d), "--out", str(tmp_path / "r.h5"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte.gz" in err and "gzip" in err


def test_cli_train_other_data_dir(tmp_path):
    # Fashion-MNIST has the same format: any directory with the four names works.
    from test_data import write_set

    from fastinit.cli import main

    d = tmp_path / "data"
    write_set(d, rows=28, cols=28, n_train=200, n_test=50)
    out = tmp_path / "r.h5"
    assert (
        main(
            [
                "train",
                "--data-dir",
                str(d),
                "--out",
                str(out),
                "--init",
                "he",
                "--backend",
                "numpy",
                "--iterations",
                "5",
                "--batch-size",
                "32",
                "-q",
            ]
        )
        == 0
    )
    cfg = json.loads(read_runs(out)[0]["attrs"]["config"])
    assert cfg["data_dir"] == str(d)


def test_snapshots_hold_probe_gradients_equal_to_autograd_at_step_0(tmp_path):
    """Each snapshot stores, per hidden layer, the gradient of each probe image's own loss with respect
    to the layer's pre-activation; at step 0 it equals the autograd oracle's bias gradient of that image
    alone (z = h @ W + b, so dloss_i/dz_l[i] = dloss_i/db_l)."""
    import autograd as ag

    from fastinit import MLP

    sizes = (FEATURES, 16, 8, CLASSES)
    _, out = small_train(tmp_path, runs=("xavier:tanh",), sizes=sizes)
    with h5py.File(out, "r") as f:
        ds = f["train/xavier:tanh/gradients"]
        assert ds.shape == (3, 2, 10, 16) and ds.dtype == np.float32 and ds.maxshape[0] is None
        assert ds.attrs["units"] and "pre-activation" in ds.attrs["description"]
        grads = ds[()]
    assert np.isnan(grads[:, 1, :, 8:]).all() and not np.isnan(grads[:, :, :, :8]).any()  # layer 2 is 8 wide
    assert not np.allclose(grads[0, :, :, :8], grads[-1, :, :, :8])  # training changes them
    params = [
        (w.astype(np.float64), b.astype(np.float64))
        for w, b in MLP(list(sizes), activation="tanh", init="xavier", backend="numpy", seed=0).params
    ]
    data = synthetic()
    for i in range(10):
        loss, leaves = ag.mlp_loss(
            data.test_images[i : i + 1].astype(np.float64), data.test_labels[i : i + 1], params, "tanh"
        )
        loss.backward()
        for layer, width in enumerate(sizes[1:-1]):
            np.testing.assert_allclose(
                grads[0, layer, i, :width], leaves[layer][1].grad, rtol=1e-4, atol=1e-6
            )


def test_data_driven_inits_train_and_record_their_cost_and_calibration(tmp_path):
    """lsuv and pretrain calibrate on the training images only.

    Their cost and per-layer numbers are stored.
    """
    import json

    results, out = small_train(tmp_path, runs=("lsuv", "pretrain,steps=20", "he"))
    by_name = {r.name: r for r in results}
    assert all(r.status == "complete" for r in results)
    assert by_name["pretrain,steps=20"].init_seconds > 0 and by_name["lsuv"].init_seconds > 0
    with h5py.File(out, "r") as f:
        for name in ("lsuv", "pretrain,steps=20"):
            assert f[f"/train/{name}"].attrs["init_seconds"] > 0
            assert json.loads(f[f"/train/{name}"].attrs["init_info"])
        assert "init_info" not in f["/train/he"].attrs
    data = synthetic()
    from fastinit import MLP

    lsuv = MLP(list(SMALL["sizes"]), init="lsuv", backend="numpy", data=data.train_images)
    with h5py.File(out, "r") as f:
        assert json.loads(f["/train/lsuv"].attrs["init_info"]) == json.loads(
            json.dumps(
                lsuv.init_info,
                sort_keys=True,
                default=lambda v: v.tolist() if hasattr(v, "tolist") else float(v),
            )
        )  # calibrated on the training images, as MLP(data=train) does
    assert "init s" in format_results(results)


def test_gradient_figure_shows_the_probe_gradients_of_each_snapshot(tmp_path):
    from fastinit.plots import plot_train_figures, train_gradients_figure

    _, out = small_train(tmp_path, runs=("xavier:sigmoid",))
    runs = read_runs(out)
    written = plot_train_figures(runs, read_snapshots(out, runs), str(tmp_path / "m-loss.png"))
    assert [Path(p).name for p in written] == [
        "m-loss.png",
        "m-accuracy.png",
        "m-activations-xavier-sigmoid.png",
        "m-gradients-xavier-sigmoid.png",
    ]
    grads, steps = read_activations(out, "xavier:sigmoid", [0], "gradients")
    fig = train_gradients_figure(grads, steps, "xavier:sigmoid", "sigmoid")
    first = fig.axes[0]
    rms = float(np.sqrt(np.nanmean(grads[0, 0].astype(np.float64) ** 2)))
    assert f"RMS {rms:.3g}" in first.texts[0].get_text() and first.get_ylabel().startswith("step 0")
    with pytest.raises(ValueError, match="snapshots >= 1"):
        train_gradients_figure(grads[:0], steps[:0], "x", "sigmoid")
