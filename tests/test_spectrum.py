"""fastinit spectrum: the input-output Jacobian's singular values against the free-probability theory."""

import math

import h5py
import numpy as np
import pytest
from commands import argv

from fastinit.experiments.spectrum import (
    SpectrumConfig,
    _singular_values,
    format_summary,
    read,
    run,
    write,
)
from fastinit.theory import edge_of_chaos, jacobian_spectrum, mean_field, phi


@pytest.fixture(scope="module")
def moderate():
    """Depth 8 at width 192, 10 draws: L / width = 4%, so the infinite-width theory should hold to a
    few percent beyond the sampling error (seeds 0-5 all pass with the deviations under 0.85 of the
    allowance; about 5 s)."""
    config = SpectrumConfig(
        activations=("tanh", "relu"), depths=(2, 8), width=192, samples=10, backend="numpy"
    )
    return run(config, progress=False)


@pytest.mark.parametrize("name", ["tanh-gaussian", "tanh-orthogonal", "relu-gaussian", "relu-orthogonal"])
def test_mean_and_variance_of_squared_singular_values_follow_the_theory(moderate, name):
    r = moderate.runs[name]
    for depth in (2, 8):
        s = r.stats(depth)
        assert s.theory_mean == pytest.approx(1.0, abs=1e-9)  # the edge of chaos
        assert abs(s.mean - s.theory_mean) <= 3 * s.mean_se + 0.03 * s.theory_mean, s
        assert abs(s.variance - s.theory_variance) <= 3 * s.variance_se + 0.06 * s.theory_variance, s
    # what the theory says, in numbers: L (mu2/mu1^2 - 1 - s1)
    want = {"tanh-gaussian": 8.0, "relu-gaussian": 16.0, "relu-orthogonal": 8.0}
    if name in want:
        assert r.stats(8).theory_variance == pytest.approx(want[name], rel=2e-3)
    else:  # orthogonal tanh at q* = 1/64: nearly an isometry
        assert r.stats(8).theory_variance < 0.02 and r.stats(8).variance < 0.02


def test_orthogonal_tanh_is_the_isometry_and_relu_is_not(moderate):
    spread = {name: moderate.runs[name].stats(8).variance for name in moderate.runs}
    assert spread["tanh-orthogonal"] < 0.01 * min(spread[n] for n in spread if n != "tanh-orthogonal")
    assert moderate.runs["relu-gaussian"].stats(8).zero > 0.45  # ReLU zeroes about half the directions


def _network(activation, kind, sw2, sb2, q_in, depth, width, seed):
    """The same draw as _singular_values (input, then per layer weights and biases) and its forward pass."""
    rng = np.random.default_rng(seed)
    x0 = phi(np.sqrt(q_in) * rng.standard_normal(width), activation)
    layers = []
    for _ in range(depth):
        if kind == "gaussian":
            w = rng.normal(0.0, math.sqrt(sw2 / width), size=(width, width))
        else:
            q, r = np.linalg.qr(rng.standard_normal((width, width)))
            w = math.sqrt(sw2) * q * np.sign(np.diag(r))
        b = rng.normal(0.0, math.sqrt(sb2), size=width) if sb2 > 0 else np.zeros(width)
        layers.append((w, b))

    def forward(x):
        for w, b in layers:
            x = phi(x @ w + b, activation)
        return x

    return x0, forward


@pytest.mark.parametrize(
    "activation, kind", [("tanh", "orthogonal"), ("tanh", "gaussian"), ("sigmoid", "gaussian")]
)
def test_the_jacobian_product_matches_finite_differences(activation, kind):
    import fastinit.kernels.reference as k

    sw2, sb2 = (1.5, 0.1) if activation != "sigmoid" else (16.0, 0.0)
    width, depth, seed = 12, 3, [5, 1]
    rng = np.random.default_rng(seed)
    got = _singular_values(activation, kind, sw2, sb2, 0.7, (depth,), width, rng, k)[depth]
    x0, forward = _network(activation, kind, sw2, sb2, 0.7, depth, width, seed)
    eps = 1e-6
    jac = np.array([(forward(x0 + eps * e) - forward(x0 - eps * e)) / (2 * eps) for e in np.eye(width)])
    np.testing.assert_allclose(got, np.linalg.svd(jac, compute_uv=False), rtol=1e-6, atol=1e-9)


def test_hdf5_layout_roundtrip_and_summary(tmp_path):
    from fastinit.store import open_results

    res = run(
        SpectrumConfig(
            activations=("tanh",), weights=("orthogonal",), depths=(3, 1), width=8, samples=2, backend="numpy"
        ),
        progress=False,
    )
    path = tmp_path / "s.h5"
    with open_results(path) as f:
        assert write(f, res) == ["/spectrum/tanh-orthogonal"]
    with h5py.File(path, "r") as f:
        ds = f["/spectrum/tanh-orthogonal/depth=3/singular_values"]
        assert ds.dtype == np.float64 and ds.shape == (16,)
        sw2, sb2 = edge_of_chaos("tanh", 1 / 64)
        assert ds.attrs["sw2"] == pytest.approx(sw2) and ds.attrs["sb2"] == pytest.approx(sb2)
        assert ds.attrs["q_star"] == pytest.approx(1 / 64) and ds.attrs["chi1"] == pytest.approx(1.0)
        assert ds.attrs["width"] == 8 and ds.attrs["samples"] == 2
        mean, var = jacobian_spectrum("tanh", sw2, sb2, 3, "orthogonal")
        assert ds.attrs["theory_mean"] == pytest.approx(mean)
        assert ds.attrs["theory_variance"] == pytest.approx(var)
    back = read(str(path))
    np.testing.assert_array_equal(
        back.runs["tanh-orthogonal"].singular_values[3], res.runs["tanh-orthogonal"].singular_values[3]
    )
    assert back.config.depths == (1, 3) and "tanh-orthogonal" in format_summary(back)


def test_the_operating_point():
    c = SpectrumConfig().validate()
    assert c.point("relu") == (2.0, 0.0) and c.point("linear") == (1.0, 0.0)
    sw2, sb2 = c.point("tanh")
    assert mean_field("tanh", sw2, sb2).q_star == pytest.approx(1 / 64, rel=1e-9)
    assert mean_field("sigmoid", *c.point("sigmoid")).phase == "critical"  # its edge at sb2 = 0
    assert SpectrumConfig(sb2=0.05).validate().point("tanh")[0] == pytest.approx(1.7609546, rel=1e-6)
    assert SpectrumConfig(sw2=1.5).validate().point("tanh") == (1.5, 0.0)
    with pytest.raises(ValueError, match="q_star or sw2"):
        SpectrumConfig(q_star=1.0, sw2=1.0).validate()
    with pytest.raises(ValueError, match="weights"):
        SpectrumConfig(weights=("uniform",)).validate()


def test_cli_spectrum(tmp_path, capsys):
    from fastinit.cli import main

    out = tmp_path / "s.h5"
    assert (
        main(
            [
                "spectrum",
                "--activation",
                "tanh",
                "--weights",
                "orthogonal",
                "--depths",
                "2",
                "4",
                "--width",
                "8",
                "--samples",
                "2",
                "--backend",
                "numpy",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "s-spectrum.png").stat().st_size > 0
    with h5py.File(out, "r") as f:
        assert set(f["spectrum/tanh-orthogonal"]) == {"depth=2", "depth=4"}
    assert main(["spectrum", "--q-star", "1", "--sw2", "1", "--out", str(out)]) == 2
    assert main(["spectrum", "--activation", "sigmoid", "--q-star", "0.01", "--out", str(out)]) == 2
    capsys.readouterr()
    assert (
        main(
            [
                "spectrum",
                "--activation",
                "relu",
                "--weights",
                "gaussian",
                "--depths",
                "3",
                "--width",
                "6",
                "--samples",
                "1",
                "--backend",
                "numpy",
                "--out",
                str(out),
                "--no-plot",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "relu-gaussian" in text and "theory" in text


# --------------------------------------------------------------------------- learning speed (--train)

TINY_TRAIN = dict(
    depths=(3,),
    width=16,
    seeds=(0, 1),
    lr=0.1,
    batch_size=32,
    eval_every=10,
    eval_samples=200,
    max_steps=40,
    train_limit=400,
    target=0.3,
)


def test_training_config_is_validated():
    from fastinit.experiments.spectrum_training import TrainingConfig

    for bad, match in (
        (dict(weights=("uniform",)), "weights"),
        (dict(target=1.5), "target"),
        (dict(q_star=0.1, sw2=1.0, sb2=0.0), "not both"),
        (dict(sw2=1.0), "together"),
        (dict(depths=()), "empty"),
        (dict(eval_every=0), "eval_every"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            TrainingConfig(**bad).validate()
    c = TrainingConfig(max_steps=120, eval_every=50).validate()
    assert list(c.eval_steps) == [0, 50, 100, 120]
    assert c.point() == pytest.approx(edge_of_chaos("tanh", 1 / 64))


def test_training_runs_share_minibatches_stop_at_the_target_and_round_trip(tmp_path):
    from fastinit.experiments import spectrum_training as st
    from fastinit.store import open_results

    config = st.TrainingConfig(**TINY_TRAIN)
    result = st.run(config, progress=False)
    assert set(result.runs) == {("orthogonal", 3), ("gaussian", 3)}
    for r in result.runs.values():
        for k in range(2):
            acc, reached = r.train_accuracy[k], r.steps_to_target[k]
            if not math.isnan(reached):  # stopped at the first evaluation at or above the target
                e = int(np.flatnonzero(r.eval_steps == reached)[0])
                assert acc[e] >= 0.3 and np.all(acc[:e] < 0.3) and np.all(np.isnan(acc[e + 1 :]))
            else:
                assert not np.any(acc >= 0.3)
    again = st.run(config, progress=False)  # deterministic
    for key, r in result.runs.items():
        assert np.array_equal(r.train_accuracy, again.runs[key].train_accuracy, equal_nan=True)
    # at sw2 -> the same gain, orthogonal and Gaussian differ only in the weights: with a learning rate of
    # ~0 both stay at their init, and the first evaluation (step 0) differs between them
    assert not np.array_equal(
        result.runs[("orthogonal", 3)].train_loss[:, 0], result.runs[("gaussian", 3)].train_loss[:, 0]
    )
    out = str(tmp_path / "t.h5")
    with open_results(out) as f:
        assert st.write(f, result) == "/spectrum/training"
    back = st.read(out)
    assert back.sw2 == result.sw2 and back.config.seeds == (0, 1)
    for key, r in result.runs.items():
        assert np.array_equal(back.runs[key].steps_to_target, r.steps_to_target, equal_nan=True)
    text = st.format_training_summary(result)
    assert "steps to train accuracy >= 0.3" in text and "orthogonal" in text and "gaussian" in text
    with pytest.raises(KeyError, match="holds no /spectrum group"):
        read(out)  # the training group is not a spectrum run


def test_same_seed_same_minibatches_for_both_weight_distributions(monkeypatch):
    from fastinit import training
    from fastinit.experiments import spectrum_training as st

    seen = []
    real = training.batch_indices

    def spy(n, batch_size, iterations, seed):
        for idx in real(n, batch_size, iterations, seed):
            seen.append((seed, tuple(idx[:3])))
            yield idx

    monkeypatch.setattr(training, "batch_indices", spy)
    config = st.TrainingConfig(**dict(TINY_TRAIN, seeds=(5,), target=1.0, max_steps=10))
    st.run(config, progress=False)
    half = len(seen) // 2
    assert half == 10 and seen[:half] == seen[half:]


def test_cli_spectrum_train(tmp_path, capsys):
    from fastinit.cli import main

    out = tmp_path / "r.h5"
    args = argv(
        "spectrum",
        train=True,
        depths=3,
        width=16,
        seeds=0,
        lr=0.1,
        batch_size=32,
        eval_every=10,
        eval_samples=200,
        max_steps=20,
        target=0.3,
        out=out,
    )
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "learning speed at the edge of chaos" in text and "/spectrum/training" in text
    assert (tmp_path / "r-spectrum-training.png").stat().st_size > 10_000
    assert main(["spectrum", "--lr", "0.1", "--out", str(out)]) == 2
    assert "only with --train" in capsys.readouterr().err
    assert main(args[:2] + ["--activation", "relu", "--out", str(out)]) == 2
    assert main(args[:2] + ["--target", "2", "--out", str(out)]) == 2
