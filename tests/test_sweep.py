"""The sweep over sw2 x depth x seed: cells, resuming, determinism across executors and on Dask."""

import math
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest
from commands import argv

from fastinit.experiments import sweep as sw
from fastinit.experiments import sweep as sweep_module
from fastinit.experiments.sweep import Cell, SweepConfig, run_cell, sweep, trainable_depth

# Tiny cells: a fraction of a second each.
TINY = dict(width=16, steps=30, batch_size=32, eval_samples=200, train_limit=500, lr=0.05)
COMPARED = ("train_loss", "train_accuracy", "test_accuracy", "diverged")  # wall_time_s is not deterministic


def _same(a, b):
    return all(
        np.array_equal(a.metrics[m], b.metrics[m], equal_nan=True) for m in COMPARED
    ) and np.array_equal(a.done, b.done)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("sw2", (), "empty"),
        ("sw2", (1.0, 1.0), "repeated"),
        ("sw2", (-1.0,), "finite numbers > 0"),
        ("sw2", (math.nan,), "finite"),
        ("depths", (0,), "integers from 1"),
        ("depths", (2.5,), "integers"),
        ("seeds", (-1,), ">= 0"),
        ("sw2", "1 2", "sequence"),
        ("steps", 0, "positive integer"),
        ("lr", 0.0, "lr"),
        ("activation", "swish", "activation"),
        ("sb2", -0.1, "sb2"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(field, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SweepConfig(**{field: value}).validate()


def test_cell_is_deterministic_and_backends_agree():
    config = SweepConfig(**TINY, dtype="float64").validate()
    cell = Cell(0, 0, 0, sw2=2.0, depth=3, seed=1)
    a, b = run_cell(config, cell), run_cell(config, cell)
    assert all(a[m] == b[m] for m in COMPARED)
    ref = run_cell(config, cell, backend="numpy")
    for m in ("train_loss", "train_accuracy", "test_accuracy"):
        assert ref[m] == pytest.approx(a[m], rel=1e-9, abs=1e-9), m
    assert 0 < a["train_loss"] < 2.5 and a["diverged"] == 0.0
    other = run_cell(config, Cell(0, 0, 0, sw2=2.0, depth=3, seed=2))
    assert other["train_loss"] != a["train_loss"]  # the seed matters


def test_an_exploding_network_is_recorded_as_diverged():
    config = SweepConfig(**TINY, activation="relu").validate()
    result = run_cell(config, Cell(0, 0, 0, sw2=100.0, depth=40, seed=0))  # (100/2)^20: float32 overflows
    assert result["diverged"] == 1.0 and math.isnan(result["train_loss"])


def test_run_gives_the_cells_sweep_stores_and_writes_no_file(tmp_path):
    config = SweepConfig(sw2=(1.0, 3.0), depths=(2, 3), seeds=(0, 1), checkpoints=(10,), **TINY)
    out = tmp_path / "s.h5"
    stored = sweep(config, str(out), "g", executor="engine", progress=False)
    before = set(os.listdir(tmp_path))
    result = sw.run(config, name="g", executor="engine", progress=False)
    assert set(os.listdir(tmp_path)) == before and result.complete and result.name == "g"
    assert _same(result, stored) and _same(result, sweep_module.read(out, "g"))
    for m in COMPARED:
        assert np.array_equal(result.checkpoint_metrics[m], stored.checkpoint_metrics[m], equal_nan=True)
    assert np.array_equal(result.trainable_depth(), stored.trainable_depth(), equal_nan=True)
    with pytest.raises(ValueError, match="executor"):
        sw.run(config, executor="threads", progress=False)


def test_sweep_writes_the_grid_resumes_and_keeps_shared_cells(tmp_path, monkeypatch):
    out = str(tmp_path / "s.h5")
    calls = []
    real = sw.run_cell
    monkeypatch.setattr(
        sw, "run_cell", lambda c, cell, backend="cpu": calls.append(cell) or real(c, cell, backend)
    )
    first = sweep(
        SweepConfig(sw2=(1.0, 3.0), depths=(2,), **TINY), out, "g", executor="engine", progress=False
    )
    assert len(calls) == 2 and first.complete
    with h5py.File(out, "r") as f:
        g = f["/sweep/g"]
        assert g["train_accuracy"].shape == (2, 1, 1) and g.attrs["status"] == "complete"
        assert list(g["sw2"][()]) == [1.0, 3.0] and list(g["depths"][()]) == [2]
        assert g["xi_c"][0] == pytest.approx(3.627, rel=1e-3)  # fastinit theory's table
        assert g["train_accuracy"].attrs["units"]
    calls.clear()
    grown = sweep(
        SweepConfig(sw2=(1.0, 3.0), depths=(2, 4), **TINY), out, "g", executor="engine", progress=False
    )
    assert sorted((c.sw2, c.depth) for c in calls) == [(1.0, 4), (3.0, 4)]  # only the new column ran
    for m in COMPARED:
        assert np.array_equal(grown.metrics[m][:, :1], first.metrics[m])
    calls.clear()
    sweep(SweepConfig(sw2=(1.0, 3.0), depths=(2, 4), **TINY), out, "g", executor="engine", progress=False)
    assert calls == []
    with pytest.raises(ValueError, match="steps 30 .now 31.*--name.*--restart"):
        sweep(SweepConfig(sw2=(1.0,), depths=(2,), **dict(TINY, steps=31)), out, "g", progress=False)
    again = sweep(
        SweepConfig(sw2=(1.0,), depths=(2,), **dict(TINY, steps=31)),
        out,
        "g",
        restart=True,
        executor="engine",
        progress=False,
    )
    assert again.done.shape == (1, 1, 1) and len(calls) == 1


def test_an_interrupted_sweep_keeps_its_cells_and_resumes(tmp_path, monkeypatch):
    out = str(tmp_path / "s.h5")
    config = SweepConfig(sw2=(1.0, 2.0, 3.0), depths=(2,), **TINY)
    real = sw.run_cell
    done = []

    def stop_after_two(c, cell, backend="cpu"):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(cell)
        return real(c, cell, backend)

    monkeypatch.setattr(sw, "run_cell", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        sweep(config, out, "i", executor="engine", progress=False)
    partial = sweep_module.read(out, "i")
    assert partial.done.sum() == 2 and not partial.complete
    with h5py.File(out, "r") as f:
        assert f["/sweep/i"].attrs["status"] == "incomplete"
    monkeypatch.setattr(sw, "run_cell", real)
    full = sweep(config, out, "i", executor="engine", progress=False)
    straight = sweep(config, str(tmp_path / "t.h5"), "i", executor="engine", progress=False)
    assert full.complete and _same(full, straight)


def test_process_pool_gives_the_numbers_of_the_in_process_run(tmp_path):
    config = SweepConfig(sw2=(1.0, 4.0), depths=(2, 3), seeds=(0, 1), **TINY)
    here = sweep(config, str(tmp_path / "a.h5"), "p", executor="engine", progress=False)
    pool = sweep(config, str(tmp_path / "b.h5"), "p", executor="pool", processes=2, progress=False)
    assert pool.complete and _same(here, pool)


def test_trainable_depth_and_summary():
    config = SweepConfig(sw2=(1.0, 2.0), depths=(5, 10, 20), seeds=(0, 1)).validate()
    result = sw._empty("x", config)
    acc = np.array(
        [
            [[0.9, 0.9], [0.6, 0.2], [0.1, 0.1]],  # depth 10 averages 0.4: not trainable
            [[0.9, 0.9], [0.9, 0.8], [0.7, 0.7]],
        ]
    )
    result.metrics["train_accuracy"][:] = acc
    result.done[:] = True
    assert list(trainable_depth(result, 0.5)) == [5.0, 20.0]
    text = sw.format_summary(result, 0.5)
    assert "20+" in text and "21.8" in text  # 6 xi_c at sw2 = 1


def test_cli_sweep_prints_the_summary_and_draws_the_phase_diagram(tmp_path, capsys):
    from fastinit.cli import main

    out = tmp_path / "r.h5"
    args = ["sweep", "--sw2", "1", "2", "--depths", "2", "--steps", "20", "--width", "8"]
    args += ["--executor", "engine", "--out", str(out)]
    code = main([*args, "-q"])
    assert code == 0
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0 and "2 of 2 cells already" in captured.err and "6 xi_c" in captured.out
    assert (tmp_path / "r-sweep-sweep.png").stat().st_size > 10_000
    assert main(["sweep", "--sw2", "0", "--out", str(out)]) == 2
    assert main(["sweep", "--steps", "21", "--sw2", "1", "2", "--depths", "2", "--out", str(out)]) == 2
    assert "--restart" in capsys.readouterr().err


# --------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    client = distributed.Client(cluster)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


def test_dask_cluster_gives_the_in_process_numbers_even_when_a_worker_dies(tmp_path, dask_cluster):
    cluster, client = dask_cluster
    config = SweepConfig(sw2=(1.0, 4.0), depths=(2, 6), **dict(TINY, steps=300))
    here = sweep(config, str(tmp_path / "a.h5"), "d", executor="engine", progress=False)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():  # SIGKILL the first worker seen running a cell: its cell must run again
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any("fastinit-sweep-cell" in str(k) for k in keys) and worker in pids:
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    remote = sweep(config, str(tmp_path / "b.h5"), "d", scheduler=cluster.scheduler_address, progress=False)
    killer.join()
    assert killed, "no worker was seen running a cell"
    assert remote.complete and _same(here, remote)


def test_a_cell_failing_on_a_worker_is_one_clear_error(tmp_path, dask_cluster):
    cluster, _ = dask_cluster
    config = SweepConfig(sw2=(1.0,), depths=(2,), **TINY, data_dir=str(tmp_path / "no-such-folder"))
    with pytest.raises(sw.SweepError, match="sw2=1 depth=2 seed=0 failed on the cluster: DataError"):
        sweep(config, str(tmp_path / "a.h5"), "f", scheduler=cluster.scheduler_address, progress=False)
    assert not os.path.exists(tmp_path / "a.h5")


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(sw.SweepError, match="cannot reach the Dask scheduler"):
        sweep(
            SweepConfig(sw2=(1.0,), depths=(2,), **TINY),
            str(tmp_path / "a.h5"),
            "u",
            scheduler="tcp://127.0.0.1:9",
            connect_timeout=1.0,
            progress=False,
        )
    assert not os.path.exists(tmp_path / "a.h5")


# --------------------------------------------------------------------------- checkpoints and n(t)


def test_checkpoints_are_validated_sorted_and_end_at_steps():
    config = SweepConfig(steps=50, checkpoints=(20, 5)).validate()
    assert config.checkpoints == (5, 20, 50) and config.stops == (5, 20, 50)
    assert SweepConfig(steps=50).validate().stops == (50,)
    for bad, match in (
        ((0,), "from 1 to steps"),
        ((51,), "from 1 to steps .50."),
        ((5, 5), "repeated"),
        ("10", "sequence"),
        ((2.5,), "integers"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            SweepConfig(steps=50, checkpoints=bad).validate()


@pytest.mark.parametrize("sw2, depth", [(2.0, 3), (100.0, 40)])  # the second diverges (ReLU overflow)
def test_checkpoint_metrics_equal_runs_stopped_at_those_steps(sw2, depth):
    activation = "relu" if sw2 > 10 else "tanh"
    cell = Cell(0, 0, 0, sw2=sw2, depth=depth, seed=3)
    config = SweepConfig(**dict(TINY, steps=25), activation=activation, checkpoints=(1, 10)).validate()
    both = run_cell(config, cell)
    series = both["checkpoints"]
    assert all(len(v) == 3 for v in series.values())
    for k, stop in enumerate((1, 10, 25)):
        alone = run_cell(SweepConfig(**dict(TINY, steps=stop), activation=activation).validate(), cell)
        assert "checkpoints" not in alone
        for m in COMPARED:
            assert np.array_equal(series[m][k], alone[m], equal_nan=True), (stop, m)
    for m in COMPARED:
        assert np.array_equal(both[m], series[m][-1], equal_nan=True)
    assert series["wall_time_s"] == sorted(series["wall_time_s"])


def test_sweep_with_checkpoints_stores_resumes_and_old_sweeps_still_read(tmp_path, monkeypatch):
    out = str(tmp_path / "c.h5")
    config = SweepConfig(sw2=(1.0, 3.0), depths=(2,), **dict(TINY, steps=20), checkpoints=(5,))
    calls = []
    real = sw.run_cell
    monkeypatch.setattr(
        sw, "run_cell", lambda c, cell, backend="cpu": calls.append(cell) or real(c, cell, backend)
    )
    first = sweep(config, out, "c", executor="engine", progress=False)
    with h5py.File(out, "r") as f:
        g = f["/sweep/c"]
        assert list(g["checkpoints/steps"][()]) == [5, 20] and list(g.attrs["checkpoints"]) == [5, 20]
        assert g["checkpoints/train_accuracy"].shape == (2, 1, 1, 2)
        assert list(g["checkpoints/train_accuracy"].attrs["steps"]) == [5, 20]
        assert np.array_equal(g["checkpoints/train_accuracy"][..., -1], g["train_accuracy"][()])
    back = sweep_module.read(out, "c")
    assert back.config.checkpoints == (5, 20)
    for m in COMPARED:
        assert np.array_equal(back.checkpoint_metrics[m], first.checkpoint_metrics[m], equal_nan=True)
    calls.clear()
    grown = sweep(replace_depths(config, (2, 3)), out, "c", executor="engine", progress=False)
    assert sorted((c.sw2, c.depth) for c in calls) == [(1.0, 3), (3.0, 3)]
    for m in COMPARED:
        assert np.array_equal(grown.checkpoint_metrics[m][:, :1], first.checkpoint_metrics[m], equal_nan=True)
    with pytest.raises(ValueError, match="checkpoints"):
        sweep(replace_depths(config, (2,), checkpoints=(6,)), out, "c", progress=False)
    # a sweep stored before checkpoints existed (no checkpoints in its config, no xi_q) still reads
    plain = sweep(SweepConfig(sw2=(1.0,), depths=(2,), **TINY), out, "old", executor="engine", progress=False)
    with h5py.File(out, "r+") as f:
        g = f["/sweep/old"]
        import json

        cfg = json.loads(g.attrs["config"])
        del cfg["checkpoints"]
        g.attrs["config"] = json.dumps(cfg)
        del g["xi_q"]
    old = sweep_module.read(out, "old")
    assert old.checkpoint_metrics == {} and old.config.checkpoints == ()
    assert old.xi_q.shape == (1,) and np.array_equal(old.metrics["train_loss"], plain.metrics["train_loss"])
    assert "step     30:" in sw.format_summary(old)


def replace_depths(config, depths, **more):
    from dataclasses import replace

    return replace(config, depths=depths, **more)


def _synthetic(sw2, xi, depths, n_true, steps=(10, 100)):
    """A result whose rows train exactly up to n_true[k] * xi (rounded down to the grid) at checkpoint k."""
    config = SweepConfig(sw2=sw2, depths=depths, seeds=(0, 1), steps=steps[-1], checkpoints=steps).validate()
    result = sw._empty("syn", config)
    result.xi_c = np.asarray(xi, np.float64)
    d = np.asarray(depths, np.float64)
    for k, n in enumerate(n_true):
        trains = d[None, :] <= n * result.xi_c[:, None] + 1e-9
        acc = np.where(trains, 0.9, 0.1)[:, :, None].repeat(2, axis=2)
        result.checkpoint_metrics["train_accuracy"][..., k] = acc
        if k == len(n_true) - 1:
            result.metrics["train_accuracy"][:] = acc
    result.done[:] = True
    return result


def test_multiplier_fit_recovers_a_known_n_per_phase_and_checkpoint():
    # sw2 1.0 and 1.5 ordered, 3.0 and 4.0 chaotic (edge 1.76); xi chosen so n * xi hits grid depths
    depths = tuple(range(2, 101, 2))
    result = _synthetic((1.0, 1.5, 3.0, 4.0), (4.0, 8.0, 5.0, 10.0), depths, n_true=(2.0, 4.0))
    result.checkpoint_metrics["train_accuracy"][2, :, :, 0] = 0.1  # at step 10 the sw2 = 3 row trains nowhere
    early, late = sw.fit_multiplier(result, 0.5, 0), sw.fit_multiplier(result, 0.5, -1)
    assert early["ordered"].n == pytest.approx(2.0) and early["ordered"].step == 10
    assert early["chaotic"].n == pytest.approx(2.0) and early["chaotic"].below == (3.0,)
    assert early["chaotic"].sw2 == (4.0,)
    assert late["ordered"].n == pytest.approx(4.0) and late["chaotic"].n == pytest.approx(4.0)
    assert late["ordered"].n_upper == pytest.approx(np.exp(np.mean(np.log([18 / 4, 34 / 8]))))
    assert sw.fit_multiplier(result, 0.5)["chaotic"].n == pytest.approx(4.0)  # None: after all steps
    # a row whose deepest grid depth trains is only a lower bound: left out and counted
    wide = _synthetic((1.0, 3.0), (4.0, 30.0), depths, n_true=(4.0,), steps=(10,))
    fit = sw.fit_multiplier(wide, 0.5, 0)
    assert fit["chaotic"].above == (3.0,) and math.isnan(fit["chaotic"].n)
    text = sw.format_summary(result, 0.5)
    assert "step     10: ordered (chi1 < 1) n = 2.00" in text and "n = 4.00" in text
    assert "width 100" in text and "E[x^2] = 0.112" in text and "2 seed(s)" in text


def test_relu_rows_use_the_variance_depth_scale():
    config = SweepConfig(sw2=(1.5, 2.5), depths=(5, 10), activation="relu", sb2=0.0).validate()
    result = sw._empty("r", config)
    scale, names = sw.depth_scales(result)
    assert names == ["xi_q", "xi_q"] and np.all(np.isfinite(scale))
    assert scale[0] == pytest.approx(-1 / math.log(0.75))
    assert sw.phases(result) == ["ordered", "chaotic"]
    assert "xi_q" in sw.format_summary(result)


def test_cli_sweep_with_checkpoints_prints_n_and_draws_both_figures(tmp_path, capsys):
    from fastinit.cli import main

    out = tmp_path / "r.h5"
    args = argv(
        "sweep",
        sw2=(1, 3),
        depths=(2, 4),
        checkpoints=(10, 5),
        width=8,
        eval_samples=300,
        executor="engine",
        out=out,
    )
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "deepest trainable after step      5     10" in text
    assert "step      5:" in text and "caveats" in text
    assert (tmp_path / "r-sweep-sweep.png").stat().st_size > 10_000
    assert (tmp_path / "r-sweep-sweep-steps.png").stat().st_size > 10_000
    assert sweep_module.read(str(out), "sweep").config.steps == 10
    assert main(args[:-2] + ["--steps", "8", "--out", str(tmp_path / "x.h5")]) == 2
    assert "beyond --steps 8" in capsys.readouterr().err
    assert main(["sweep", "--checkpoints", "0", "--out", str(tmp_path / "y.h5")]) == 2
    assert sw.PRESETS["schoenholz-time"]["checkpoints"] == (100, 300, 1000, 3000)
