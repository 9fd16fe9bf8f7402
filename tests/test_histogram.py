"""The activation-histogram experiment: known findings, backends agree, seeds, HDF5, figure."""

import importlib.util

import h5py
import numpy as np
import pytest

from fastinit.backends import BackendError
from fastinit.experiments import histogram
from fastinit.experiments.histogram import ACTIVATIONS, HistogramConfig, saturated_fraction, theory_std
from fastinit.plots import PlotError, histogram_figure, plot_histogram
from fastinit.store import open_read, open_results

HAVE_CPU = importlib.util.find_spec("fastinit.kernels.cpu") is not None
HAVE_CUDA = importlib.util.find_spec("fastinit.kernels.cuda") is not None
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason="fastinit.kernels.cpu not available")

SMALL = dict(layers=3, units=16, samples=32)


def _run(*args, **fields):
    """``histogram.run`` of ``HistogramConfig(*args, **fields)``, on numpy unless ``backend`` is
    given, with no progress."""
    return histogram.run(HistogramConfig(*args, **dict(dict(backend="numpy"), **fields)), progress=False)


def _defaults(activation, backend):
    return _run(activation, backend=backend)


@pytest.fixture(scope="module", params=["numpy", pytest.param("cpu", marks=needs_cpu)])
def sigmoid_defaults(request):
    return _defaults("sigmoid", request.param)


def test_sigmoid_std1_saturates(sigmoid_defaults):
    run = sigmoid_defaults.runs["std=1"]
    assert np.all(run.saturated > 0.40), run.saturated


def test_sigmoid_small_std_collapses_to_half(sigmoid_defaults):
    run = sigmoid_defaults.runs["std=0.01"]
    assert np.all(run.std < 0.03), run.std
    np.testing.assert_allclose(run.mean, 0.5, atol=0.01)
    zero = sigmoid_defaults.runs["std=0"]
    assert np.all(zero.activations == 0.5) and np.all(zero.std == 0)


def test_sigmoid_xavier_keeps_spread(sigmoid_defaults):
    run = sigmoid_defaults.runs["xavier"]
    assert np.all((run.std >= 0.08) & (run.std <= 0.3)), run.std
    # "Nothing saturated": layer 1 sees N(0, 1) pre-activations, so |z| > 4.6 (sigmoid < 0.01)
    # happens about 4 times in a million; with the default seed 1 value in 100,000 does.
    assert np.all(run.saturated < 1e-4), run.saturated
    assert np.all(run.saturated[1:] == 0), run.saturated


def test_default_shapes_and_attrs(sigmoid_defaults):
    res = sigmoid_defaults
    assert res.inits == ["std=10", "std=1", "std=0.01", "std=0", "xavier", "he"]
    assert (res.layers, res.units, res.samples, res.seed, res.dtype) == (5, 100, 1000, 0, "float32")
    for run in res.runs.values():
        assert run.activations.shape == (5, 1000, 100) and run.activations.dtype == np.float32
        for name in ("mean", "std", "saturated", "weight_std", "weight_std_measured", "theory_std"):
            assert getattr(run, name).shape == (5,)
    np.testing.assert_allclose(res.runs["xavier"].weight_std, 0.1)
    np.testing.assert_allclose(res.runs["xavier"].weight_std_measured, 0.1, rtol=0.03)


def test_stats_match_activations(sigmoid_defaults):
    run = sigmoid_defaults.runs["he"]
    layer = run.activations[2].astype(np.float64)
    assert run.mean[2] == pytest.approx(layer.mean())
    assert run.std[2] == pytest.approx(layer.std())
    assert run.saturated[2] == pytest.approx(np.mean((layer < 0.01) | (layer > 0.99)))


def test_relu_xavier_shrinks_he_keeps():
    res = _run("relu", inits=("xavier", "he"))
    xavier, he = res.runs["xavier"], res.runs["he"]
    assert xavier.std[-1] < 0.5 * xavier.std[0]
    assert 0.7 < he.std[-1] / he.std[0] < 1.5
    # Variance recursion: Xavier halves the ReLU variance per layer, He keeps it.
    np.testing.assert_allclose(xavier.theory_std[1:] / xavier.theory_std[:-1], np.sqrt(0.5))
    np.testing.assert_allclose(he.theory_std, he.theory_std[0])
    assert he.theory_std[0] == pytest.approx(np.sqrt(2 * (0.5 - 0.5 / np.pi)))
    assert np.all(np.abs(he.saturated - 0.5) < 0.06)  # about half the units dead


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_theory_tracks_measurement(activation):
    res = _run(activation, inits=("xavier", "he", "std=0.01"))
    for run in res.runs.values():
        # 100 units: finite-width fluctuations of a few percent per layer, compounding.
        np.testing.assert_allclose(run.std, run.theory_std, rtol=0.15, err_msg=run.init)


def test_theory_std_simple_cases():
    np.testing.assert_allclose(theory_std("relu", [0.0, 1.0], 10), [0.0, 0.0])
    # One sigmoid layer with zero weights outputs 0.5 exactly: std 0.
    assert theory_std("sigmoid", [0.0], 100)[0] == 0.0
    # A tiny tanh layer is nearly linear: std ~ sqrt(units) * s.
    assert theory_std("tanh", [1e-4], 100)[0] == pytest.approx(1e-3, rel=1e-4)


def test_theory_std_at_large_variance():
    """std=10 with 100 units: q = 1e4 at layer 1. The mean-field values against adaptive quadrature; a
    fixed 101-node Gauss-Hermite rule (a node at 0) once printed 0.4679 and 0.9357 here."""
    integrate = pytest.importorskip("scipy.integrate")

    def std_ref(q, f):
        def moment(k):
            g = lambda u: f(u) ** k * np.exp(-0.5 * u * u / q) / np.sqrt(2 * np.pi * q)  # noqa: E731
            return integrate.quad(
                g, -9 * np.sqrt(q), 9 * np.sqrt(q), points=[-3, 0, 3], epsabs=1e-15, epsrel=1e-12, limit=500
            )[0]

        return np.sqrt(moment(2) - moment(1) ** 2)

    sig = theory_std("sigmoid", [10.0] * 3, 100)
    tanh = theory_std("tanh", [10.0] * 3, 100)
    assert sig[0] == pytest.approx(std_ref(1e4, lambda u: 0.5 * (1 + np.tanh(0.5 * u))), rel=1e-7)
    assert tanh[0] == pytest.approx(std_ref(1e4, np.tanh), rel=1e-7)
    q2 = 1e4 * (sig[0] ** 2 + 0.25)  # layer 2: 100 units x 10^2 x E[sigmoid^2]
    assert sig[1] == pytest.approx(std_ref(q2, lambda u: 0.5 * (1 + np.tanh(0.5 * u))), rel=1e-7)
    np.testing.assert_allclose(sig, [0.4960, 0.4943, 0.4943], atol=1e-4)
    np.testing.assert_allclose(tanh, 0.9960, atol=1e-4)


def test_saturated_fraction_rules():
    y = np.array([0.0, 0.005, 0.5, 0.995, 1.0, -0.995])
    assert saturated_fraction(y, "sigmoid") == pytest.approx(5 / 6)  # -0.995 < 0.01 too
    assert saturated_fraction(y, "tanh") == pytest.approx(3 / 6)
    assert saturated_fraction(y, "relu") == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="activation"):
        saturated_fraction(y, "softmax")


def test_seed_reproducible_and_independent_of_other_inits():
    a = _run("tanh", inits=("std=1", "xavier"), **SMALL)
    b = _run("tanh", inits=("xavier",), **SMALL)
    c = _run("tanh", inits=("xavier",), seed=1, **SMALL)
    np.testing.assert_array_equal(a.runs["xavier"].activations, b.runs["xavier"].activations)
    assert not np.allclose(b.runs["xavier"].activations, c.runs["xavier"].activations)


def test_overflow_is_counted_and_reported():
    from fastinit.experiments.histogram import format_table

    res = _run("relu", inits=("std=10", "he"), layers=40, units=16, samples=8)
    blown, fine = res.runs["std=10"], res.runs["he"]
    first = blown.overflow_layer()
    assert first is not None and 10 < first <= 40
    assert blown.nonfinite[first - 1] > 0 and np.all(blown.nonfinite[: first - 1] == 0)
    assert np.isfinite(blown.std[first - 2])
    assert fine.overflow_layer() is None and np.all(fine.nonfinite == 0)
    assert f"std=10: activations overflowed float32 from layer {first}" in format_table(res)
    histogram_figure(res)  # NaN/Inf values are left out of the bars, no error
    from fastinit.plots import gradient_histogram_figure

    assert blown.gradients is not None and not np.isfinite(blown.gradients[0]).all()
    texts = [t.get_text() for ax in gradient_histogram_figure(res).get_axes() for t in ax.texts]
    assert any("NaN/Inf" in t for t in texts)


def test_float64():
    res = _run("sigmoid", inits=("xavier",), dtype="float64", **SMALL)
    assert res.runs["xavier"].activations.dtype == np.float64


def _agree(activation, backend, **sizes):
    inits = ("std=1", "xavier", "he", "std=0.01")
    ref = _run(activation, inits=inits, **sizes)
    got = _run(activation, inits=inits, backend=backend, **sizes)
    for spec in inits:
        r, g = ref.runs[spec], got.runs[spec]
        scale = float(np.abs(r.activations).max()) or 1.0
        np.testing.assert_allclose(g.activations, r.activations, rtol=2e-4, atol=2e-5 * scale, err_msg=spec)
        np.testing.assert_allclose(g.std, r.std, rtol=1e-3, atol=1e-6, err_msg=spec)
        np.testing.assert_array_equal(g.weight_std_measured, r.weight_std_measured)


@needs_cpu
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cpu_agrees_with_numpy(activation):
    _agree(activation, "cpu", layers=4, units=50, samples=100)


@pytest.mark.slow_on_simulator
@pytest.mark.skipif(not HAVE_CUDA, reason="fastinit.kernels.cuda not available")
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cuda_agrees_with_numpy(activation):
    from fastinit.backends import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA device or simulator")
    _agree(activation, "cuda", layers=2, units=16, samples=24)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(activation="softmax"), ValueError, "activation must be one of"),
        (dict(inits=("bogus",)), ValueError, "Valid names"),
        (dict(inits=()), ValueError, "at least one"),
        (dict(inits=("xavier", "xavier")), ValueError, "twice"),
        (dict(layers=0), ValueError, "layers must be >= 1"),
        (dict(units=2.5), TypeError, "units must be an integer"),
        (dict(samples=True), TypeError, "samples must be an integer"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(dtype="int32"), ValueError, "dtype must be float32 or float64"),
        (dict(dtype="nonsense"), ValueError, "dtype must be float32 or float64"),
        (dict(backend="tpu"), BackendError, "unknown backend"),
        (dict(bias_std=-1.0), ValueError, "bias_std must be a finite number >= 0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = dict(SMALL, backend="numpy")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        histogram.run(HistogramConfig(**args), progress=False)


def test_config_validate_normalises_the_fields():
    c = HistogramConfig("tanh", "xavier", layers=np.int64(2), dtype=np.float64, bias_std=1).validate()
    assert c.inits == ("xavier",) and type(c.layers) is int and c.dtype == "float64"
    assert c.bias_std == 1.0 and type(c.bias_std) is float
    assert c.validate() == c


def test_hdf5_round_trip_and_layout(tmp_path):
    path = tmp_path / "r.h5"
    res = _run("sigmoid", inits=("std=1", "xavier"), bias_std=0.25, **SMALL)
    with open_results(path, command_line="test") as f:
        written = histogram.write(f, res)
    assert written == ["/histogram/sigmoid/std=1", "/histogram/sigmoid/xavier"]
    back = histogram.read(path, "sigmoid")
    assert back.inits == ["std=1", "xavier"]
    assert (back.layers, back.units, back.samples, back.seed, back.backend, back.dtype, back.bias_std) == (
        3,
        16,
        32,
        0,
        "numpy",
        "float32",
        0.25,
    )
    for spec, run in res.runs.items():
        other = back.runs[spec]
        np.testing.assert_array_equal(other.activations, run.activations)
        for name in (
            "mean",
            "std",
            "saturated",
            "weight_std",
            "weight_std_measured",
            "theory_std",
            "nonfinite",
        ):
            np.testing.assert_array_equal(getattr(other, name), getattr(run, name))
    with open_read(path) as f:
        ds = f["/histogram/sigmoid/xavier/activations"]
        assert ds.shape == (3, 32, 16) and ds.dtype == np.float32
        assert ds.chunks is not None and ds.compression == "gzip"
        g = f["/histogram/sigmoid/xavier"]
        for key in ("init", "activation", "seed", "backend", "dtype", "weight_std"):
            assert key in g.attrs and key in ds.attrs
        assert g.attrs["init"] == "xavier" and g.attrs["status"] == "complete"
        np.testing.assert_allclose(g.attrs["weight_std"], 16**-0.5)


def test_rerun_replaces_only_its_groups(tmp_path):
    path = tmp_path / "r.h5"
    first = _run("sigmoid", inits=("std=1", "xavier"), **SMALL)
    second = _run("sigmoid", inits=("xavier",), seed=5, **SMALL)
    relu = _run("relu", inits=("he",), **SMALL)
    with open_results(path) as f:
        histogram.write(f, first)
    with open_results(path) as f:
        histogram.write(f, second)
        histogram.write(f, relu)
    back = histogram.read(path, "sigmoid")
    np.testing.assert_array_equal(back.runs["std=1"].activations, first.runs["std=1"].activations)
    np.testing.assert_array_equal(back.runs["xavier"].activations, second.runs["xavier"].activations)
    assert histogram.read(path, "relu").inits == ["he"]
    with pytest.raises(KeyError, match="no histogram for 'tanh'"):
        histogram.read(path, "tanh")
    with pytest.raises(KeyError, match="'lecun'"):
        histogram.read(path, "sigmoid", inits=["lecun"])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_figure_has_a_panel_per_init_and_layer(tmp_path, activation):
    res = _run(activation, inits=("std=1", "xavier", "std=0"), **SMALL)
    fig = histogram_figure(res)
    axes = fig.get_axes()
    assert len(axes) == 3 * 3
    assert axes[0].get_title() == "layer 1"
    assert "std=1" in axes[0].get_ylabel() and "std=0" in axes[6].get_ylabel()
    lo, hi = axes[0].get_xlim()
    expected = {"sigmoid": (0, 1), "tanh": (-1, 1)}.get(activation)
    if expected:
        assert (lo, hi) == expected
    else:  # ReLU: one log10 x-axis for every panel, whole decades; the all-zero row says so
        assert lo == int(lo) and hi == int(hi) and lo < hi
        assert all(ax.get_xlim() == (lo, hi) for ax in axes)
        assert any("exactly 0" in t.get_text() for t in axes[6].texts)
        assert "exploding" in axes[0].get_ylabel()  # std=1 through ReLU grows every layer
    if activation == "relu":  # rendering is slow on 2 cores: write one of them
        path = tmp_path / f"{activation}.png"
        plot_histogram(res, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_bad_paths(tmp_path):
    res = _run("sigmoid", inits=("xavier",), layers=1, units=4, samples=4)
    with pytest.raises(PlotError, match="must end in"):
        plot_histogram(res, tmp_path / "fig.gif")
    with pytest.raises(PlotError, match="does not exist"):
        plot_histogram(res, tmp_path / "missing" / "fig.png")
    assert list(tmp_path.iterdir()) == []


def test_the_cuda_backend_names_its_gpu_in_the_file(tmp_path, capsys):
    from conftest import KERNEL_BACKENDS

    from fastinit.cli import main

    if "cuda" not in KERNEL_BACKENDS:
        pytest.skip("no CUDA (not even the simulator)")
    out = tmp_path / "g.h5"
    assert (
        main(
            [
                "histogram",
                "--backend",
                "cuda",
                "--units",
                "8",
                "--samples",
                "8",
                "--layers",
                "2",
                "--init",
                "he",
                "--no-plot",
                "-q",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with h5py.File(out, "r") as f:
        assert f.attrs["gpu"]  # the device's name, or SIMULATOR


def test_deep_nets_get_a_depth_figure_and_at_most_ten_histogram_columns(tmp_path, capsys):
    from fastinit.cli import main
    from fastinit.plots import depth_figure

    res = _run(
        "relu",
        inits=("he", "xavier", "std=0"),
        layers=30,
        units=32,
        samples=64,
    )
    fig = histogram_figure(res)
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_title()]
    assert len(titles) == 10 and titles[0] == "layer 1" and titles[-1] == "layer 30"
    ax = depth_figure(res).get_axes()[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "he (measured)" in labels and "std=0: all activations are exactly 0" in labels
    assert ax.get_yscale() == "log"
    he = next(line for line in ax.get_lines() if line.get_label() == "he (measured)")
    np.testing.assert_allclose(he.get_ydata(), res.runs["he"].std)  # every layer's measured std
    out = tmp_path / "d.h5"
    assert (
        main(
            [
                "histogram",
                "--activation",
                "relu",
                "--layers",
                "12",
                "--units",
                "16",
                "--samples",
                "32",
                "--init",
                "he",
                "-q",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (tmp_path / "d-histogram-relu-depth.png").exists()


def test_bias_std_draws_biases_and_the_theory_follows():
    """On a wide net the measured std tracks the theory with sb2 = bias_std^2 (here the biases
    dominate: sw2 = 400 * 0.03^2 = 0.36, sb2 = 0.25); bias_std=0 is the bias-free experiment, bit for bit."""
    small = dict(layers=4, units=64, samples=64)
    plain, zero = _run("tanh", ("xavier",), **small), _run("tanh", ("xavier",), bias_std=0.0, **small)
    np.testing.assert_array_equal(plain.runs["xavier"].activations, zero.runs["xavier"].activations)
    wide = dict(layers=6, units=400, dtype="float64")
    run = _run("tanh", ("std=0.03",), samples=1000, bias_std=0.5, **wide).runs["std=0.03"]
    np.testing.assert_allclose(run.std, run.theory_std, rtol=0.05)
    no_bias_theory = _run("tanh", ("std=0.03",), samples=10, **wide).runs["std=0.03"].theory_std
    assert np.all(run.theory_std[1:] > 1.5 * no_bias_theory[1:])  # the bias variance keeps deep layers alive


def test_backpropagated_gradients_follow_the_mean_field_theory(tmp_path):
    """At init, the RMS of a gradient sent down from the last layer matches the product of
    sqrt(chi) per layer: vanishing for std=0.01 and sigmoid + Xavier, about constant for He + ReLU."""
    from fastinit.plots import gradient_figure

    tanh = _run(
        "tanh",
        inits=("xavier", "std=0.01"),
        layers=8,
        units=200,
        samples=400,
        dtype="float64",
    )
    for run in tanh.runs.values():
        assert run.grad_rms[-1] == run.grad_theory[-1] == 1.0
        np.testing.assert_allclose(run.grad_rms, run.grad_theory, rtol=0.12)
    assert tanh.runs["std=0.01"].grad_rms[0] < 1e-4  # vanished: about 0.14 per layer
    relu = _run("relu", inits=("he",), layers=8, units=200, samples=400)
    np.testing.assert_allclose(relu.runs["he"].grad_rms, 1.0, rtol=0.2)  # He: chi1 = 1
    np.testing.assert_allclose(relu.runs["he"].grad_theory, 1.0, rtol=1e-6)
    ax = gradient_figure(tanh).get_axes()[0]
    assert ax.get_yscale() == "log" and "xavier (measured)" in [
        t.get_text() for t in ax.get_legend().get_texts()
    ]


def _loss_at(z, layer, weights, g, phi):
    """The histogram's random loss sum(G * z_last) with layer ``layer``'s pre-activation set to ``z``."""
    for w in weights[layer + 1 :]:
        z = phi(z) @ w
    return float(np.sum(g * z))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_stored_gradients_are_the_finite_differences_of_the_loss(activation):
    """Every stored gradient entry is the central difference of L = sum(G * z_last) with respect to
    that layer's pre-activation, computed here from scratch in float64."""
    from fastinit.init import parse_init

    phi = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}[activation]
    layers, units, samples, seed = 3, 4, 3, 7
    res = _run(
        activation,
        inits=("std=1",),
        layers=layers,
        units=units,
        samples=samples,
        seed=seed,
        dtype="float64",
    )
    grads = res.runs["std=1"].gradients
    assert grads.shape == (layers, samples, units) and grads.dtype == np.float64
    weights = [
        parse_init("std=1").sample(units, units, np.random.default_rng([seed, i + 1]), "float64")
        for i in range(layers)
    ]
    g = np.random.default_rng([seed, 0, 2]).standard_normal((samples, units))
    z = [np.random.default_rng(seed).standard_normal((samples, units)) @ weights[0]]
    for w in weights[1:]:
        z.append(phi(z[-1]) @ w)
    eps = 1e-6
    for layer in range(layers):
        numeric = np.empty((samples, units))
        for idx in np.ndindex(samples, units):
            step = np.zeros((samples, units))
            step[idx] = eps
            numeric[idx] = (
                _loss_at(z[layer] + step, layer, weights, g, phi)
                - _loss_at(z[layer] - step, layer, weights, g, phi)
            ) / (2 * eps)
        np.testing.assert_allclose(grads[layer], numeric, rtol=1e-6, atol=1e-8, err_msg=f"layer {layer + 1}")
    np.testing.assert_allclose(
        res.runs["std=1"].grad_rms[:-1], np.sqrt(np.mean(grads[:-1] ** 2, axis=(1, 2)))
    )


def test_gradients_in_hdf5_and_only_when_asked(tmp_path):
    path = tmp_path / "r.h5"
    res = _run("relu", inits=("he",), **SMALL)
    plain = _run("relu", inits=("xavier",), gradients=False, **SMALL)
    assert plain.runs["xavier"].gradients is None and np.isfinite(plain.runs["xavier"].grad_rms).all()
    with open_results(path) as f:
        histogram.write(f, res)
        histogram.write(f, plain)
    with open_read(path) as f:
        ds = f["/histogram/relu/he/gradients"]
        assert ds.shape == (3, 32, 16) and ds.dtype == np.float32 and ds.compression == "gzip"
        assert ds.attrs["units"] and "pre-activation" in ds.attrs["description"] and ds.attrs["init"] == "he"
        assert "gradients" not in f["/histogram/relu/xavier"]
    back = histogram.read(path, "relu")
    np.testing.assert_array_equal(back.runs["he"].gradients, res.runs["he"].gradients)
    np.testing.assert_array_equal(back.runs["he"].grad_theory, res.runs["he"].grad_theory)
    assert back.runs["xavier"].gradients is None


def test_gradient_histogram_figure(tmp_path):
    from fastinit.plots import gradient_histogram_figure, plot_gradient_histogram

    res = _run("sigmoid", inits=("std=0.01", "xavier", "std=0"), **SMALL)
    axes = gradient_histogram_figure(res).get_axes()
    assert len(axes) == 3 * 3 and axes[0].get_title() == "layer 1"
    lo, hi = axes[0].get_xlim()
    assert lo == int(lo) and hi == int(hi) and all(ax.get_xlim() == (lo, hi) for ax in axes)  # one log10 axis
    assert "vanishing" in axes[0].get_ylabel()  # std=0.01: sigmoid's slope 1/4 times tiny weights
    assert any("exactly 0" in t.get_text() for t in axes[6].texts)  # std=0: nothing flows below the top
    assert any("zero 100%" in t.get_text() for t in axes[6].texts)
    path = tmp_path / "g.png"
    plot_gradient_histogram(res, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no gradients"):
        gradient_histogram_figure(_run("sigmoid", inits=("xavier",), gradients=False, **SMALL))


def test_data_driven_inits_calibrate_on_the_samples():
    """lsuv computes its weights from the histogram's own Gaussian samples: every layer's
    pre-activation (arctanh of the stored tanh output) has variance 1 within lsuv's tol."""
    res = _run(
        "tanh",
        ("lsuv,tol=0.05", "pretrain,steps=20"),
        layers=3,
        units=16,
        samples=400,
        dtype="float64",
    )
    z = np.arctanh(res.runs["lsuv,tol=0.05"].activations)
    assert np.all(np.abs(z.var(axis=(1, 2)) - 1) <= 0.05)
    pre = res.runs["pretrain,steps=20"]
    assert np.all(np.isfinite(pre.grad_rms)) and pre.activations.shape == (3, 400, 16)


@pytest.mark.parametrize("layers", [1, 3, 5])
def test_titles_and_notes_fit_the_figure(layers):
    """A grid of few layer columns is narrow: its title and its note are wrapped so that no
    line runs past the figure's edges (they were cut off at 3 columns)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from fastinit.plots import gradient_histogram_figure

    res = _run("relu", inits=("std=0.01", "he"), layers=layers, units=8, samples=20)
    for fig in (histogram_figure(res), gradient_histogram_figure(res)):
        renderer = FigureCanvasAgg(fig).get_renderer()
        assert len(fig.texts) == 2  # the title and the note
        for text in fig.texts:
            assert len(text.get_text()) > 60
            assert text.get_window_extent(renderer).width <= fig.bbox.width, (layers, text.get_text())
