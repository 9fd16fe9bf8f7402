"""Data-driven inits (fastinit.datainit): LSUV's unit variance, pre-training against a
hand-written NumPy autoencoder, determinism, backends against each other, the spec
grammar and the errors. Tiny networks: the whole file runs in seconds."""

import warnings

import numpy as np
import pytest
from conftest import DTYPES, KERNEL_BACKENDS, make_mlp

from fastinit import MLP, datainit
from fastinit.init import INIT_NAMES, init_weights, parse_init
from fastinit.training import sgd

SIZES = (12, 10, 8, 6, 4)  # input, three hidden layers, output


def _data(n=48, width=SIZES[0], seed=3):
    # Not centred and not unit-variance, so LSUV has something to correct.
    return 0.5 + 2.0 * np.random.default_rng(seed).standard_normal((n, width))


def _act(z, activation):
    return {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[
        activation
    ](z)


# --------------------------------------------------------------------------- lsuv


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lsuv_gives_every_layer_unit_preactivation_variance(activation, dtype):
    x = _data().astype(dtype)  # 48 rows <= batch: the whole of x is the calibration batch
    tol = 0.01
    mlp = MLP(SIZES, activation, f"lsuv,tol={tol},batch=64", backend="numpy", dtype=dtype, seed=1, data=x)
    orth = MLP(SIZES, activation, "orthogonal", backend="numpy", dtype=dtype, seed=1).params
    h = x.astype(np.float64)
    for i, ((w, b), (wo, _)) in enumerate(zip(mlp.params, orth)):
        z = h @ w + b  # the pre-activation, recomputed here in float64
        assert abs(z.var() - 1) < tol, (i, z.var())
        # Orthogonal first, then only rescaled: w is a multiple of the orthogonal draw.
        scale = np.linalg.norm(w) / np.linalg.norm(wo)
        np.testing.assert_allclose(w, scale * wo, rtol=1e-5, atol=1e-6)
        h = _act(z, activation)
    assert not any(b.any() for _, b in mlp.params)  # biases stay zero
    info = mlp.init_info
    assert info["converged"] == [True] * len(SIZES[1:])  # the output layer is rescaled too
    assert all(it >= 1 for it in info["iterations"])  # the orthogonal draw alone is not unit-variance
    assert all(abs(v - 1) < tol for v in info["variance"])
    assert all(abs(v - 1) > tol for v in info["variance_before"])


def test_lsuv_calibrates_on_a_random_batch_of_the_data():
    x = _data(n=300)
    mlp = MLP(SIZES, "tanh", "lsuv,tol=0.02,batch=100", backend="numpy", dtype="float64", seed=2, data=x)
    assert mlp.init_info["converged"] == [True] * 4
    z = x @ mlp.params[0][0]
    assert abs(z.var() - 1) < 0.3  # 100 of the 300 rows: close, not exact, on the rest


def test_lsuv_warns_and_records_a_layer_it_cannot_rescale():
    x = np.zeros((16, SIZES[0]))  # every pre-activation is 0: nothing to divide by
    with pytest.warns(RuntimeWarning, match=r"lsuv: layer \d .* cannot be rescaled") as record:
        mlp = MLP(SIZES, "tanh", "lsuv", backend="numpy", dtype="float64", seed=0, data=x)
    assert len(record) == 4  # one warning per layer
    assert str(record[0].message).startswith(
        "lsuv: layer 0 (12 -> 10) has pre-activation variance 0, not 1 +- 0.1"
    )
    assert mlp.init_info["converged"] == [False] * 4 and mlp.init_info["variance"] == [0.0] * 4
    # The layer keeps its orthogonal weights.
    np.testing.assert_array_equal(
        mlp.params[0][0],
        MLP(SIZES, "tanh", "orthogonal", backend="numpy", dtype="float64", seed=0).params[0][0],
    )


def test_lsuv_warns_when_max_iter_is_hit():
    # One rescaling lands within float32 rounding of 1 (~1e-7), not within 1e-12.
    with pytest.warns(RuntimeWarning, match=r"not 1 \+- 1e-12, after max_iter=1 rescalings") as record:
        mlp = MLP(SIZES, "relu", "lsuv,tol=1e-12,max_iter=1", backend="numpy", seed=0, data=_data())
    assert len(record) == 4
    assert mlp.init_info["iterations"] == [1] * 4 and mlp.init_info["converged"] == [False] * 4
    assert all(abs(v - 1) < 1e-5 for v in mlp.init_info["variance"])  # still as close as float32 gets


# --------------------------------------------------------------------------- pretrain


def _epoch_batches(n, batch, steps, seed):
    """(steps, batch) row numbers: seeded permutations of range(n), one after the other, cut
    into consecutive mini-batches (sampling without replacement within an epoch)."""
    order = np.random.default_rng(seed)
    rows = np.concatenate([order.permutation(n) for _ in range(-(-steps * batch // n))])
    return rows[: steps * batch].reshape(steps, batch)


def _numpy_pretrain(sizes, activation, x, seed, steps, lr, batch):
    """The documented algorithm, written out in float64 NumPy: the same draws from one
    generator in the same order, untied weights, linear decoder, MSE over every entry."""
    rng = np.random.default_rng(seed)
    base = "he" if activation == "relu" else "xavier"
    eval_rows = rng.choice(len(x), size=min(len(x), 1024), replace=False)
    params, losses = [], []
    for fi, fo in zip(sizes[:-2], sizes[1:-1]):
        w, b = init_weights(base, fi, fo, rng, np.float64), np.zeros(fo)
        v, c = init_weights("xavier", fo, fi, rng, np.float64), np.zeros(fi)

        def loss():
            xe = x[eval_rows]
            return np.mean((_act(xe @ w + b, activation) @ v + c - xe) ** 2)

        before = loss()
        for rows in _epoch_batches(len(x), min(batch, len(x)), steps, int(rng.integers(2**63))):
            xb = x[rows]
            h = _act(xb @ w + b, activation)
            g = 2 * (h @ v + c - xb) / xb.size
            dz = (g @ v.T) * {"tanh": 1 - h * h, "sigmoid": h * (1 - h), "relu": h > 0}[activation]
            w, b, v, c = w - lr * xb.T @ dz, b - lr * dz.sum(0), v - lr * h.T @ g, c - lr * g.sum(0)
        losses.append((before, loss()))
        params.append((w, b))
        x = _act(x @ w + b, activation)
    params.append((init_weights(base, sizes[-2], sizes[-1], rng, np.float64), np.zeros(sizes[-1])))
    return params, losses


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_pretrain_matches_a_numpy_autoencoder_and_lowers_each_reconstruction_error(activation):
    x, spec = _data(), "pretrain,steps=30,lr=0.5,batch=8"
    mlp = MLP(SIZES, activation, spec, backend="numpy", dtype="float64", seed=5, data=x)
    want, losses = _numpy_pretrain(SIZES, activation, x, 5, steps=30, lr=0.5, batch=8)
    for (w, b), (ww, wb) in zip(mlp.params, want):
        np.testing.assert_allclose(w, ww, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, wb, rtol=1e-10, atol=1e-12)
    info = mlp.init_info
    np.testing.assert_allclose(list(zip(info["loss_before"], info["loss_after"])), losses, rtol=1e-10)
    assert len(info["loss_after"]) == len(SIZES) - 2  # one autoencoder per hidden layer
    for before, after in losses:
        assert after < 0.9 * before, losses
    assert any(b.any() for _, b in mlp.params[:-1]) and not mlp.params[-1][1].any()


def test_pretrain_without_hidden_layers_is_the_base_init():
    mlp = MLP((12, 4), "relu", "pretrain", backend="numpy", seed=0, data=_data())
    np.testing.assert_array_equal(
        mlp.params[0][0], init_weights("he", 12, 4, _rng_after_eval_draw(0, 48), np.float32)
    )
    assert mlp.init_info == {"loss_before": [], "loss_after": [], "steps_done": [], "diverged": []}


def test_pretrain_trains_each_layer_through_the_sgd_loop(monkeypatch):
    calls = []

    def spy(model, x, labels, **kwargs):
        batches = []
        original_step = model.train_step_indices
        monkeypatch.setattr(
            model, "train_step_indices", lambda idx, lr: batches.append(idx) or original_step(idx, lr)
        )
        calls.append((x.shape, labels, kwargs, batches))
        return sgd(model, x, labels, **kwargs)

    monkeypatch.setattr(datainit, "sgd", spy)
    x = _data()  # 48 rows: batch 16 makes three mini-batches an epoch
    mlp = MLP(SIZES, "tanh", "pretrain,steps=7,lr=0.5,batch=16", backend="numpy", seed=2, data=x)
    assert [shape for shape, *_ in calls] == [
        (48, w) for w in SIZES[:-2]
    ]  # the data, then each layer's codes
    seeds = set()
    for _, labels, kwargs, batches in calls:
        assert (
            labels is None and kwargs["stops"] == [7] and kwargs["batch_size"] == 16 and kwargs["lr"] == 0.5
        )
        seeds.add(kwargs["seed"])
        assert len(batches) == 7  # steps mini-batches per layer
        for epoch in (batches[0:3], batches[3:6]):  # each epoch a permutation of the rows
            np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(48))
    assert len(seeds) == 3  # a fresh order per layer
    assert mlp.init_info["steps_done"] == [7, 7, 7] and mlp.init_info["diverged"] == [False] * 3


def test_pretrain_uses_every_row_when_the_batch_is_larger_than_the_data():
    x = _data(n=10)
    mlp = MLP(
        SIZES, "tanh", "pretrain,steps=4,lr=0.5,batch=128", backend="numpy", dtype="float64", seed=1, data=x
    )
    want, _ = _numpy_pretrain(SIZES, "tanh", x, 1, steps=4, lr=0.5, batch=128)
    for (w, _), (ww, _) in zip(mlp.params, want):
        np.testing.assert_allclose(w, ww, rtol=1e-10, atol=1e-12)


def test_a_diverging_autoencoder_stops_its_layer_and_is_recorded():
    with pytest.warns(RuntimeWarning) as record:  # no exception: the init goes on
        mlp = MLP(SIZES, "relu", "pretrain,steps=50,lr=1e4,batch=8", backend="numpy", seed=0, data=_data())
    info = mlp.init_info
    assert info["diverged"][0] and 1 <= info["steps_done"][0] < 50  # it stopped early
    assert str(record[0].message).startswith(
        f"pretrain: the autoencoder of layer 0 (12 -> 10) diverged at step {info['steps_done'][0]} of 50"
    )
    # The layers above train on the diverged codes: they stop at their first step.
    assert info["diverged"] == [True] * 3 and info["steps_done"][1:] == [1, 1] and len(record) == 3
    assert np.isfinite(info["loss_before"][0]) and not np.isfinite(info["loss_after"][0])
    assert len(info["loss_after"]) == len(SIZES) - 2


def _rng_after_eval_draw(seed, n):
    rng = np.random.default_rng(seed)
    rng.choice(n, size=min(n, 1024), replace=False)
    return rng


# --------------------------------------------------------------------------- every scheme, every backend

SPECS = ["lsuv,batch=16", "pretrain,steps=3,lr=0.5,batch=4"]


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("spec", SPECS)
def test_a_seed_gives_bit_identical_weights(backend, spec):
    x = _data().astype(np.float32)
    runs = [MLP(SIZES, "tanh", spec, backend=backend, seed=seed, data=x).params for seed in (7, 7, 8)]
    for (w, b), (w2, b2), (w3, _) in zip(*runs):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
        assert not np.array_equal(w, w3)


@pytest.mark.slow_on_simulator
@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if b != "numpy"])
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_backends_agree_with_numpy(backend, spec, dtype):
    if backend == "cuda":  # the CUDA simulator is slow: one hidden layer, one step
        sizes, spec = (6, 5, 3), spec.replace("steps=3", "steps=1")
    else:
        sizes = SIZES
    x = _data(n=20, width=sizes[0]).astype(dtype)
    want = MLP(sizes, "tanh", spec, backend="numpy", dtype=dtype, seed=4, data=x)
    got = make_mlp(backend, sizes, "tanh", spec, dtype=dtype, seed=4, data=x)
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)
    for (w, b), (ww, wb) in zip(got.params, want.params):
        np.testing.assert_allclose(w, ww, rtol=rtol, atol=atol)
        np.testing.assert_allclose(b, wb, rtol=rtol, atol=atol)
    for key, values in want.init_info.items():
        np.testing.assert_allclose(
            np.asarray(got.init_info[key], float), np.asarray(values, float), rtol=rtol
        )


def test_init_seconds_is_recorded():
    x = _data()
    for init, data in (("he", None), ("lsuv", x), ("pretrain,steps=2", x)):
        mlp = MLP(SIZES, "relu", init, backend="numpy", data=data)
        assert isinstance(mlp.init_seconds, float) and 0 <= mlp.init_seconds < 60
    assert MLP(SIZES, backend="numpy").init_info == {}


# --------------------------------------------------------------------------- grammar and errors


def test_specs_parse_with_defaults_and_round_trip():
    assert {"lsuv", "pretrain"} <= set(INIT_NAMES)
    assert parse_init("lsuv").options == (("tol", 0.1), ("batch", 512), ("max_iter", 10))
    assert parse_init("pretrain").options == (("steps", 500), ("lr", 1.0), ("batch", 128))
    for spec in (
        "lsuv,tol=0.05",
        " LSUV , max_iter=3 ,batch=64",
        "pretrain,batch=32,lr=0.25",
        "pretrain,steps=7",
    ):
        scheme = parse_init(spec)
        assert scheme.data_driven and not parse_init("he").data_driven
        canonical = ",".join([scheme.kind] + [f"{k}={v}" for k, v in scheme.options])
        again = parse_init(canonical)
        assert (again.kind, again.options) == (scheme.kind, scheme.options)
    assert dict(parse_init(" LSUV , max_iter=3 ,batch=64").options) == {
        "tol": 0.1,
        "batch": 64,
        "max_iter": 3,
    }


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lsuv,tol=0", r"tol must be a number in \(0, 1\)"),
        ("lsuv,tol=1.5", r"tol must be a number in \(0, 1\)"),
        ("lsuv,tol=abc", "tol must be a number"),
        ("lsuv,batch=1", "batch must be an integer >= 2"),
        ("lsuv,max_iter=2.5", "max_iter must be an integer >= 1"),
        ("lsuv,tol", "tol needs a value"),
        ("lsuv,tol=0.1,tol=0.2", "option tol given twice"),
        ("lsuv,gain=2", "unknown option 'gain=2'; lsuv takes tol="),
        ("lsuv=3", "lsuv takes no '=<value>'"),
        ("pretrain,steps=0", "steps must be an integer >= 1"),
        ("pretrain,lr=-0.1", "lr must be a number > 0"),
        ("pretrain,lr=inf", "lr must be finite"),
        ("pretrain,batch=0", "batch must be an integer >= 1"),
        ("pretrain,max_iter=3", "unknown option 'max_iter=3'; pretrain takes steps="),
    ],
)
def test_bad_options_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_init(spec)
    assert "Valid names:" in str(info.value)
    with pytest.raises(ValueError, match=message):
        MLP(SIZES, init=spec, backend="numpy", data=_data())


@pytest.mark.parametrize("spec", ["lsuv", "pretrain,steps=3"])
def test_data_driven_schemes_need_data(spec):
    with pytest.raises(ValueError, match=r"is data-driven: pass data=x, a float array of shape \(N, 12\)"):
        MLP(SIZES, init=spec, backend="numpy")
    with pytest.raises(ValueError, match=r"data must have shape \(N, 12\)"):
        MLP(SIZES, init=spec, backend="numpy", data=np.zeros((5, 11)))
    with pytest.raises(ValueError, match=r"data must have shape"):
        MLP(SIZES, init=spec, backend="numpy", data=np.zeros(12))
    with pytest.raises(ValueError, match="data must be finite"):
        MLP(SIZES, init=spec, backend="numpy", data=np.full((5, 12), np.nan))
    with pytest.raises(TypeError, match="data must be a numeric array"):
        MLP(SIZES, init=spec, backend="numpy", data=np.full((5, 12), "a"))
    # Outside an MLP there are no data to use.
    with pytest.raises(ValueError, match="data-driven.*MLP\\(sizes, init="):
        init_weights(spec, 4, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="data-driven"):
        parse_init(spec).std(4, 3)


def test_other_schemes_ignore_data():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = MLP(SIZES, init="xavier", backend="numpy", seed=3, data=np.zeros((2, 99)))
    b = MLP(SIZES, init="xavier", backend="numpy", seed=3)
    for (w, _), (w2, _) in zip(a.params, b.params):
        np.testing.assert_array_equal(w, w2)


def test_data_is_cast_not_modified():
    x = _data()  # float64 into a float32 MLP
    copy = x.copy()
    mlp = MLP(SIZES, "tanh", "pretrain,steps=2", backend="numpy", data=x)
    np.testing.assert_array_equal(x, copy)
    assert all(w.dtype == np.float32 for w, _ in mlp.params)
