"""The MLP on every backend against an independent autograd, finite differences and each other."""

import os
import subprocess
import sys
import textwrap

import autograd as ag
import numpy as np
import pytest
from conftest import KERNEL_BACKENDS, ON_SIMULATOR, make_mlp

import fastinit.backends
from fastinit import MLP
from fastinit.backends import BackendError

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu")


def _batch(rng, n, n_in, n_classes, dtype):
    x = rng.normal(size=(n, n_in)).astype(dtype)
    labels = rng.integers(0, n_classes, size=n).astype(np.int64)
    return x, labels


def _autograd_step(params, x, labels, activation, lr):
    """(loss, [(W', b'), ...], dW norms) of one SGD step computed by tests.autograd."""
    loss, leaves = ag.mlp_loss(x, labels, params, activation)
    loss.backward()
    new = [(w.value - lr * w.grad, b.value - lr * b.grad) for w, b in leaves]
    return float(loss.value), new, np.array([np.linalg.norm(w.grad) for w, _ in leaves])


# --------------------------------------------------------------------------- oracles


@pytest.mark.slow_on_simulator
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_one_step_matches_autograd_in_float64(backend, activation):
    rng = np.random.default_rng(1)
    sizes = (6, 7, 5, 3)
    mlp = make_mlp(backend.name, sizes, activation=activation, init="xavier", dtype="float64", seed=3)
    # Non-zero biases so the bias path is exercised in the forward pass too.
    mlp.load_params([(w, rng.normal(scale=0.1, size=b.shape)) for w, b in mlp.params])
    x, labels = _batch(rng, 9, sizes[0], sizes[-1], np.float64)
    before = mlp.params
    want_loss, want_params, want_norms = _autograd_step(before, x, labels, activation, lr=0.3)

    loss = mlp.train_step(x, labels, 0.3)

    assert isinstance(loss, float)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for (w, b), (ww, wb) in zip(mlp.params, want_params):
        np.testing.assert_allclose(w, ww, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, wb, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mlp.grad_norms(), want_norms, rtol=1e-12)
    # The step really moved every layer (guards against a no-op step passing the test).
    assert all(not np.array_equal(w0, w1) for (w0, _), (w1, _) in zip(before, mlp.params))


@pytest.mark.parametrize("name", [b for b in KERNEL_BACKENDS if b != "cuda"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_gradients_match_finite_differences(name, activation):
    rng = np.random.default_rng(7)
    sizes = (4, 5, 3)
    mlp = MLP(sizes, activation=activation, init="std=0.5", backend=name, dtype="float64", seed=11)
    x, labels = _batch(rng, 6, sizes[0], sizes[-1], np.float64)
    base = mlp.params
    mlp.train_step(x, labels, 1.0)  # lr = 1: gradient = before - after
    grads = [(w0 - w1, b0 - b1) for (w0, b0), (w1, b1) in zip(base, mlp.params)]

    eps = 1e-6
    for layer in range(len(base)):
        for which in (0, 1):
            numeric = np.zeros_like(base[layer][which])
            for idx in np.ndindex(numeric.shape):
                losses = []
                for sign in (1, -1):
                    trial = [(w.copy(), b.copy()) for w, b in base]
                    trial[layer][which][idx] += sign * eps
                    mlp.load_params(trial)
                    losses.append(mlp.loss(x, labels))
                numeric[idx] = (losses[0] - losses[1]) / (2 * eps)
            np.testing.assert_allclose(grads[layer][which], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cpu_edge_blocks_match_autograd(dtype):
    """Widths and a batch that take every edge of the cpu products (``fastinit.kernels.cpu.dot_nt_into``'s
    4 x 3 blocks): row and column counts that are not multiples of 4 or 3, widths that are not
    multiples of the 16-element padding, and a batch of 11 rows."""
    rng = np.random.default_rng(7)
    sizes = (78, 37, 21, 13, 5)
    mlp = MLP(sizes, activation="tanh", init="xavier", backend="cpu", dtype=dtype, seed=1)
    x, labels = _batch(rng, 11, sizes[0], sizes[-1], np.dtype(dtype))
    before = [(w.astype(np.float64), b.astype(np.float64)) for w, b in mlp.params]
    want_loss, want_params, want_norms = _autograd_step(before, x.astype(np.float64), labels, "tanh", lr=0.3)
    loss = mlp.train_step(x, labels, 0.3)
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (1e-4, 1e-6)
    assert loss == pytest.approx(want_loss, rel=rtol)
    for (w, b), (ww, wb) in zip(mlp.params, want_params):
        np.testing.assert_allclose(w, ww, rtol=rtol, atol=atol)
        np.testing.assert_allclose(b, wb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(mlp.grad_norms(), want_norms, rtol=max(rtol, 1e-12) * 10)


def test_backends_agree_in_float32():
    rng = np.random.default_rng(5)
    sizes = (20, 16, 16, 4)
    x, labels = _batch(rng, 12, sizes[0], sizes[-1], np.float32)
    results = {}
    for name in KERNEL_BACKENDS:
        if name == "cuda":
            try:
                mlp = MLP(sizes, activation="tanh", init="lecun", backend=name, seed=2)
            except BackendError:
                continue
        else:
            mlp = MLP(sizes, activation="tanh", init="lecun", backend=name, seed=2)
        losses = [mlp.train_step(x, labels, 0.1) for _ in range(3)]
        results[name] = (losses, mlp.params, mlp.forward(x), mlp.grad_norms())
    ref_losses, ref_params, ref_logits, ref_norms = results.pop("numpy")
    assert results, "no compiled backend to compare"
    for losses, params, logits, norms in results.values():
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for (w, b), (rw, rb) in zip(params, ref_params):
            assert w.dtype == b.dtype == np.float32
            np.testing.assert_allclose(w, rw, rtol=2e-4, atol=2e-6)
            np.testing.assert_allclose(b, rb, rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(logits, ref_logits, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(norms, ref_norms, rtol=1e-4)


@pytest.mark.slow_on_simulator
def test_batch_size_changes_reuse_nothing_stale(fast_backend):
    """The compiled engines reallocate their workspace on a new batch size; results must not depend on it."""
    rng = np.random.default_rng(8)
    sizes = (10, 8, 3)
    ref = MLP(sizes, activation="relu", backend="numpy", dtype="float64", seed=4)
    mlp = make_mlp(fast_backend.name, sizes, activation="relu", dtype="float64", seed=4)
    for n in (8, 5, 8, 1):
        x, labels = _batch(rng, n, sizes[0], sizes[-1], np.float64)
        assert mlp.train_step(x, labels, 0.05) == pytest.approx(ref.train_step(x, labels, 0.05), rel=1e-12)
    for (w, b), (rw, rb) in zip(mlp.params, ref.params):
        np.testing.assert_allclose(w, rw, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, rb, rtol=1e-12, atol=1e-15)


@pytest.mark.slow_on_simulator
def test_steps_on_indices_equal_steps_on_gathered_batches(backend):
    """``set_dataset`` + ``train_step_indices`` is ``train_step(x[idx], labels[idx])``, bit for bit."""
    rng = np.random.default_rng(11)
    sizes = (7, 6, 4)
    x, labels = _batch(rng, 30, sizes[0], sizes[-1], np.float64)
    by_rows = make_mlp(backend.name, sizes, activation="tanh", dtype="float64", seed=2)
    by_idx = make_mlp(backend.name, sizes, activation="tanh", dtype="float64", seed=2)
    by_idx.set_dataset(x, labels.astype(np.int32))
    for idx in (rng.integers(0, 30, 8), np.arange(29, 20, -1), np.array([5], dtype=np.int32)):
        assert by_idx.train_step_indices(idx, 0.1) == by_rows.train_step(x[idx], labels[idx], 0.1)
        np.testing.assert_array_equal(by_idx.grad_norms(), by_rows.grad_norms())
    for (w, b), (rw, rb) in zip(by_idx.params, by_rows.params):
        np.testing.assert_array_equal(w, rw)
        np.testing.assert_array_equal(b, rb)


@pytest.mark.parametrize(
    "idx, match",
    [
        (np.array([0, 6]), r"idx must lie in \[0, 6\)"),
        (np.array([-1]), r"idx must lie in \[0, 6\)"),
        (np.array([], dtype=np.int64), "non-empty 1-D integer"),
        (np.array([0.0]), "non-empty 1-D integer"),
        (np.zeros((2, 1), dtype=np.int64), "non-empty 1-D integer"),
    ],
)
def test_bad_indices_are_rejected(small, idx, match):
    mlp, x, labels = small
    with pytest.raises(RuntimeError, match="set_dataset"):
        mlp.train_step_indices(np.array([0]), 0.1)
    mlp.set_dataset(x, labels)
    with pytest.raises(ValueError, match=match):
        mlp.train_step_indices(idx, 0.1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        mlp.set_dataset(x, labels + 1)


# --------------------------------------------------------------------------- weights and recording


def test_same_seed_gives_identical_weights_on_every_backend(backend):
    ref = MLP((12, 9, 4), init="he", backend="numpy", seed=42)
    mlp = make_mlp(backend.name, (12, 9, 4), init="he", seed=42)
    for (w, b), (rw, rb) in zip(mlp.params, ref.params):
        assert w.shape == rw.shape and w.dtype == np.float32
        np.testing.assert_array_equal(w, rw)
        np.testing.assert_array_equal(b, np.zeros_like(rb))
    # Layer by layer from one generator, in order.
    rng = np.random.default_rng(42)
    np.testing.assert_array_equal(
        ref.params[0][0], rng.normal(0, np.sqrt(2 / 12), size=(12, 9)).astype(np.float32)
    )


def test_different_seeds_give_different_weights():
    a = MLP((12, 9, 4), backend="numpy", seed=0).params
    b = MLP((12, 9, 4), backend="numpy", seed=1).params
    assert not np.array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[1][0], b[1][0])


def test_params_are_copies(backend):
    mlp = make_mlp(backend.name, (5, 4, 3), seed=0)
    p = mlp.params
    p[0][0][...] = 123.0
    assert not np.any(mlp.params[0][0] == 123.0)


@pytest.mark.parametrize("sizes", [(6, 3), (6, 5, 3), (6, 5, 4, 7, 3)])
def test_forward_record_shapes_and_consistency(backend, sizes):
    rng = np.random.default_rng(0)
    mlp = make_mlp(backend.name, sizes, activation="sigmoid", init="xavier", seed=1)
    x, _ = _batch(rng, 7, sizes[0], sizes[-1], np.float32)
    logits, hidden = mlp.forward(x, record=True)
    assert logits.shape == (7, sizes[-1]) and logits.dtype == np.float32
    assert [h.shape for h in hidden] == [(7, s) for s in sizes[1:-1]]
    np.testing.assert_array_equal(logits, mlp.forward(x))
    params = mlp.params
    inp = hidden[-1] if hidden else x
    w, b = params[-1]
    np.testing.assert_allclose(logits, inp @ w + b, rtol=1e-5, atol=1e-5)  # last layer linear
    for h in hidden:
        assert np.all((h > 0) & (h < 1))  # sigmoid outputs
    # Results are fresh arrays: a later call does not overwrite them.
    keep = logits.copy()
    mlp.forward(x[::-1].copy())
    np.testing.assert_array_equal(logits, keep)


@pytest.mark.slow_on_simulator
def test_evaluate_is_the_loss_and_accuracy_whatever_the_chunk(backend):
    rng = np.random.default_rng(2)
    sizes = (6, 9, 4)
    mlp = make_mlp(backend.name, sizes, activation="tanh", init="xavier", dtype="float64", seed=4)
    x, labels = _batch(rng, 25, sizes[0], sizes[-1], np.float64)
    want_acc = np.count_nonzero(mlp.predict(x) == labels) / 25
    for chunk in (1, 7, 25, 1000):
        loss, acc = mlp.evaluate(x, labels, chunk=chunk)
        assert loss == pytest.approx(mlp.loss(x, labels), rel=1e-12) and acc == want_acc


def _stack(x, layers, activation):
    """The pre-activations z_l and outputs h_l of a float64 stack of (W, b) layers, the last linear."""
    from fastinit.kernels import reference

    zs, hs, h = [], [], x
    for i, (w, b) in enumerate(layers):
        z = h @ w + b
        h = reference.activation_forward(z, activation if i < len(layers) - 1 else "linear")
        zs.append(z)
        hs.append(h)
    return zs, hs


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_to_layers_matches_finite_differences(activation):
    """For L = sum(G * z_top), every entry of dL/dz_l is the central difference of L in z_l."""
    from fastinit.kernels import reference
    from fastinit.mlp import backprop_to_layers

    rng = np.random.default_rng(3)
    widths = (4, 5, 6, 3)
    layers = [
        (rng.normal(size=(a, b)), rng.normal(scale=0.3, size=b)) for a, b in zip(widths[:-1], widths[1:])
    ]
    x = rng.normal(size=(7, widths[0]))
    g = rng.normal(size=(7, widths[-1]))
    zs, hs = _stack(x, layers, activation)
    grads = backprop_to_layers(g, [w for w, _ in layers[1:]], hs[:-1], activation)
    assert [d.shape for d in grads] == [z.shape for z in zs[:-1]] and all(
        d.dtype == np.float64 for d in grads
    )

    def loss_from(layer, z):  # L as a function of that layer's pre-activation
        h = reference.activation_forward(z, activation)
        for i in range(layer + 1, len(layers)):
            w, b = layers[i]
            h = reference.activation_forward(h @ w + b, activation if i < len(layers) - 1 else "linear")
        return float(np.sum(g * h))

    eps = 1e-6
    for layer, d in enumerate(grads):
        numeric = np.zeros_like(d)
        for idx in np.ndindex(d.shape):
            up, down = zs[layer].copy(), zs[layer].copy()
            up[idx] += eps
            down[idx] -= eps
            numeric[idx] = (loss_from(layer, up) - loss_from(layer, down)) / (2 * eps)
        np.testing.assert_allclose(d, numeric, rtol=1e-5, atol=1e-7)


def test_backprop_to_layers_marks_overflowed_units_nan():
    from fastinit.mlp import backprop_to_layers

    rng = np.random.default_rng(0)
    hidden = [np.abs(rng.normal(size=(3, 4))), np.abs(rng.normal(size=(3, 5)))]
    hidden[1][1, 2] = np.nan
    grads = backprop_to_layers(
        rng.normal(size=(3, 2)), [rng.normal(size=(4, 5)), rng.normal(size=(5, 2))], hidden, "relu"
    )
    assert np.isnan(grads[1][1, 2]) and np.isfinite(np.delete(grads[1], 1, axis=0)).all()
    assert np.isnan(grads[0][1]).all() and np.isfinite(grads[0][[0, 2]]).all()  # and below it, in that row
    with pytest.raises(ValueError, match="one entry per hidden layer"):
        backprop_to_layers(np.zeros((3, 2)), [np.zeros((4, 2))], hidden, "relu")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_per_sample_gradients_are_each_rows_own_bias_gradient(activation):
    """dloss_i/dz_l[i] = dloss_i/db_l for the row i alone (z_l = h_{l-1} @ W_l + b_l)."""
    rng = np.random.default_rng(5)
    sizes = (4, 5, 3, 3)
    mlp = MLP(sizes, activation=activation, init="xavier", backend="numpy", dtype="float64", seed=2)
    mlp.draw_biases(0.2, rng)
    x, labels = _batch(rng, 4, sizes[0], sizes[-1], np.float64)
    hidden, grads = mlp.per_sample_gradients(x, labels)
    for h, want in zip(hidden, mlp.forward(x, record=True)[1]):
        np.testing.assert_array_equal(h, want)
    base, eps = mlp.params, 1e-6
    for i in range(x.shape[0]):
        for layer in range(len(sizes) - 2):
            for j in range(sizes[layer + 1]):
                losses = []
                for sign in (1, -1):
                    trial = [(w.copy(), b.copy()) for w, b in base]
                    trial[layer][1][j] += sign * eps
                    mlp.load_params(trial)
                    losses.append(mlp.loss(x[i : i + 1], labels[i : i + 1]))
                assert grads[layer][i, j] == pytest.approx(
                    (losses[0] - losses[1]) / (2 * eps), rel=1e-5, abs=1e-8
                )


def test_draw_biases_replaces_the_biases_only(backend):
    mlp = make_mlp(backend.name, (5, 6, 3), init="he", seed=0)
    weights = [w for w, _ in mlp.params]
    mlp.draw_biases(0.5, np.random.default_rng([7, 1]))
    want = np.random.default_rng([7, 1])
    for (w, b), w0 in zip(mlp.params, weights):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, (0.5 * want.standard_normal(b.size)).astype(np.float32))
        assert b.dtype == np.float32 and np.any(b != 0)


@pytest.mark.slow_on_simulator
def test_readonly_inputs_are_accepted(backend):
    rng = np.random.default_rng(3)
    mlp = make_mlp(backend.name, (5, 4, 3), seed=0)
    x, labels = _batch(rng, 6, 5, 3, np.float32)
    labels = labels.astype(np.int32)
    x.setflags(write=False)
    labels.setflags(write=False)
    assert np.isfinite(mlp.train_step(x, labels, 0.1))
    assert mlp.forward(x).shape == (6, 3)


# --------------------------------------------------------------------------- learning


def _blobs(rng, n, n_in, n_classes):
    centres = rng.normal(scale=3.0, size=(n_classes, n_in))
    labels = rng.integers(0, n_classes, size=n)
    x = centres[labels] + rng.normal(scale=0.5, size=(n, n_in))
    return x.astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_training_on_separable_blobs_lowers_the_loss(backend, activation):
    rng = np.random.default_rng(0)
    x, labels = _blobs(rng, 64, 8, 3)
    mlp = make_mlp(backend.name, (8, 16, 3), activation=activation, init="xavier", seed=0)
    if backend.name == "cuda" and ON_SIMULATOR:
        pytest.skip("minutes on the simulator; cuda steps are checked one by one against cpu in test_cuda.py")
    steps = 200
    first = mlp.train_step(x, labels, 0.5)
    for _ in range(steps):
        last = mlp.train_step(x, labels, 0.5)
    assert last < 0.2 * first
    assert np.mean(mlp.predict(x) == labels) > 0.95


def test_zero_init_does_not_learn_hidden_features():
    """A known failure mode the toolkit is about: all-zero weights give zero hidden gradients."""
    rng = np.random.default_rng(1)
    x, labels = _blobs(rng, 32, 4, 3)
    mlp = MLP((4, 6, 6, 3), activation="relu", init="zeros", backend="numpy")
    mlp.train_step(x, labels, 0.5)
    norms = mlp.grad_norms()
    assert norms[0] == 0 and norms[1] == 0 and norms[2] == 0  # relu(0) = 0 everywhere
    assert np.all(mlp.params[0][0] == 0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(sizes=(5,)), ValueError, "sizes"),
        (dict(sizes=(5, 0, 3)), ValueError, "sizes"),
        (dict(sizes=(5, 2.5, 3)), ValueError, "sizes"),
        (dict(sizes=5), ValueError, "sizes"),
        (dict(activation="gelu"), ValueError, "activation"),
        (dict(init="bogus"), ValueError, "init"),
        (dict(backend="tpu"), BackendError, "backend"),
        (dict(dtype="float16"), TypeError, "dtype"),
        (dict(dtype="int32"), TypeError, "dtype"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, exc, match):
    args = dict(sizes=(5, 4, 3), backend="numpy")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        MLP(**args)


def test_cuda_without_a_gpu_raises_backend_error(monkeypatch):
    monkeypatch.setattr(fastinit.backends, "cuda_available", lambda: False)
    with pytest.raises(BackendError, match="CUDA"):
        MLP((5, 4, 3), backend="cuda")


@pytest.fixture(params=[b for b in KERNEL_BACKENDS if b != "cuda"])
def small(request):
    mlp = MLP((5, 4, 3), backend=request.param, seed=0)
    x = np.ones((6, 5), dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    return mlp, x, labels


@pytest.mark.parametrize(
    "make_x, exc, match",
    [
        (lambda x: x.tolist(), TypeError, "x must"),
        (lambda x: x.astype(np.float64), TypeError, "x must have dtype float32"),
        (lambda x: x.astype(np.int32), TypeError, "x must have dtype"),
        (lambda x: x[0], ValueError, "x must be 2-D"),
        (lambda x: x[:, :4].copy(), ValueError, r"x must have shape \(N, 5\)"),
        (
            lambda x: np.asfortranarray(np.ones((6, 5), np.float32))[:, :5:1].T.copy().T,
            ValueError,
            "contiguous",
        ),
        (lambda x: x[:0], ValueError, "N >= 1"),
    ],
)
def test_bad_x_is_rejected_by_forward_and_train_step(small, make_x, exc, match):
    mlp, x, labels = small
    bad = make_x(x)
    with pytest.raises(exc, match=match):
        mlp.forward(bad)
    with pytest.raises(exc, match=match):
        mlp.train_step(bad, labels[: len(bad)] if hasattr(bad, "__len__") else labels, 0.1)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        ([0, 1, 2, 0, 1, 2], TypeError, "labels must be an int"),
        (np.zeros(6, dtype=np.float32), TypeError, "labels must have dtype int"),
        (np.zeros(5, dtype=np.int64), ValueError, r"labels must have shape \(6,\)"),
        (np.zeros((6, 1), dtype=np.int64), ValueError, r"labels must have shape \(6,\)"),
        (np.array([0, 1, 3, 0, 1, 2]), ValueError, r"labels must lie in \[0, 3\)"),
        (np.array([0, -1, 2, 0, 1, 2]), ValueError, r"labels must lie in \[0, 3\)"),
    ],
)
def test_bad_labels_are_rejected(small, bad, exc, match):
    mlp, x, _ = small
    before = mlp.params
    with pytest.raises(exc, match=match):
        mlp.train_step(x, bad, 0.1)
    with pytest.raises(exc, match=match):
        mlp.loss(x, bad)
    np.testing.assert_array_equal(mlp.params[0][0], before[0][0])  # nothing was updated


@pytest.mark.parametrize(
    "lr, exc, match",
    [
        (float("nan"), ValueError, "lr must be finite"),
        (float("inf"), ValueError, "lr must be finite"),
        ("0.1", TypeError, "lr must be a real number"),
        (None, TypeError, "lr must be a real number"),
    ],
)
def test_bad_learning_rate_is_rejected(small, lr, exc, match):
    mlp, x, labels = small
    if isinstance(lr, str):
        lr = [lr]  # a str would parse; a list cannot
    with pytest.raises(exc, match=match):
        mlp.train_step(x, labels, lr)


def test_grad_norms_need_a_step(small):
    mlp, x, labels = small
    with pytest.raises(RuntimeError, match="train_step"):
        mlp.grad_norms()
    mlp.train_step(x, labels, 0.1)
    norms = mlp.grad_norms()
    assert norms.shape == (2,) and norms.dtype == np.float64 and np.all(norms > 0)


def test_load_params_validates(small):
    mlp, _, _ = small
    params = mlp.params
    with pytest.raises(ValueError, match="2 .W, b. pairs"):
        mlp.load_params(params[:1])
    with pytest.raises(ValueError, match=r"params\[1\]\[0\] must have shape \(4, 3\)"):
        mlp.load_params([params[0], (params[1][0].T.copy(), params[1][1])])
    with pytest.raises(TypeError, match=r"params\[0\]\[1\] must have dtype float32"):
        mlp.load_params([(params[0][0], params[0][1].astype(np.float64)), params[1]])
    mlp.load_params([(w * 2, b + 1) for w, b in params])
    np.testing.assert_array_equal(mlp.params[0][0], params[0][0] * 2)


def test_cpu_engine_runs_without_jit():
    """Under NUMBA_DISABLE_JIT=1 the cpu engine runs as plain Python and matches numpy."""
    script = textwrap.dedent(
        """
        import numba
        import numpy as np
        from fastinit import MLP
        assert numba.config.DISABLE_JIT
        rng = np.random.default_rng(0)
        x = rng.normal(size=(10, 40)).astype(np.float64)
        labels = rng.integers(0, 3, size=10)
        cpu, ref = (
            MLP((40, 9, 3), activation="sigmoid", backend=b, dtype="float64", seed=2)
            for b in ("cpu", "numpy")
        )
        for _ in range(2):
            assert abs(cpu.train_step(x, labels, 0.1) - ref.train_step(x, labels, 0.1)) < 1e-12
        np.testing.assert_allclose(cpu.grad_norms(), ref.grad_norms(), rtol=1e-12)
        np.testing.assert_allclose(cpu.forward(x), ref.forward(x), rtol=1e-12, atol=1e-14)
        print("pure-python ok")
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pure-python ok" in proc.stdout


PARALLEL_SCRIPT = textwrap.dedent(
    """
    import numba
    import numpy as np
    import fastinit.kernels.cpu as kc
    from fastinit import MLP
    from fastinit.engines import cpu as engine
    from fastinit.mlp import compile_backend

    assert numba.get_num_threads() >= 2, numba.get_num_threads()
    compile_backend("cpu", "float64", "tanh")  # returns once the parallel step is ready
    rng = np.random.default_rng(3)
    sizes = (37, 29, 23, 10)  # feature counts that split unevenly over the threads
    x = rng.normal(size=(90, sizes[0]))
    labels = rng.integers(0, sizes[-1], 90)
    cpu, ref = (MLP(sizes, activation="tanh", init="xavier", backend=b, dtype="float64", seed=5)
                for b in ("cpu", "numpy"))
    cpu.set_dataset(x, labels)
    ref.set_dataset(x, labels)
    for idx in (np.arange(70), rng.integers(0, 90, 45), np.arange(89, 50, -1)):
        got, want = cpu.train_step_indices(idx, 0.2), ref.train_step_indices(idx, 0.2)
        assert cpu._engine._pieces == min(numba.get_num_threads(), idx.size // 16), "not the parallel step"
        assert abs(got - want) <= 1e-12 * abs(want), (got, want)
        np.testing.assert_allclose(cpu.grad_norms(), ref.grad_norms(), rtol=1e-11)
    for (w, b), (rw, rb) in zip(cpu.params, ref.params):
        np.testing.assert_allclose(w, rw, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(b, rb, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(cpu.forward(x), ref.forward(x), rtol=1e-11, atol=1e-13)
    names = ("dot_nt_into", "dot_nn_into", "tanh_rows_into", "bias_rows_into", "tanh_backward_rows_into",
             "softmax_xent_rows", "transpose_into")
    blocks = {name: getattr(kc, name) for name in names}
    blocks.update(gather=engine._gather, sgd_block=engine._sgd_block, sgd_bias=engine._sgd_bias,
                  update=engine._update_piece_jit)
    # 0 signatures: loaded with a caller
    many = {name: f.signatures for name, f in blocks.items() if len(f.signatures) > 1}
    assert not many, f"compiled more than once: {many}"
    assert len(engine._PARALLEL_STEPS[2].signatures) == 1, engine._PARALLEL_STEPS[2].signatures
    # one activation: nothing of the others is compiled
    others = [kc.sigmoid_rows_into, kc.relu_rows_into, kc.activation_rows_into, kc.sigmoid_backward_rows_into,
              kc.relu_backward_rows_into, kc.activation_backward_rows_into]
    others += [step for code, step in engine._PARALLEL_STEPS.items() if code != 2]
    compiled = [f.py_func.__qualname__ for f in others if f.signatures]
    assert not compiled, f"compiled for an activation the run does not use: {compiled}"
    print("parallel ok")
    """
)


def test_cpu_parallel_step_matches_numpy_and_compiles_each_block_once():
    """The cpu engine's parallel step (rows and features split over the threads) against the
    numpy engine, and every building block it runs compiled for exactly one signature: a
    literal or a differently typed argument anywhere would compile a block again; and nothing
    of the activations the run does not use is compiled. In a fresh process with two threads,
    so nothing else has compiled the blocks."""
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", PARALLEL_SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "parallel ok" in proc.stdout


@pytest.mark.slow  # a fresh process compiles every block it runs, uncached
def test_cpu_backend_runs_uncached_when_no_cache_directory_is_writable(tmpfs):
    """NUMBA_CACHE_DIR on a read-only filesystem (skipped where mounting is not allowed): the
    cpu kernels and a training step run, uncached, with one line on stderr saying so."""
    ro = tmpfs("ro", "ro,size=64k")
    script = (
        "import numpy as np; import fastinit.kernels.cpu as k; from fastinit import MLP; "
        "assert not k.CACHE; print(k.relu(np.array([-1.0, 2.0])).tolist()); "
        "m = MLP((4, 3, 2), backend='cpu', dtype='float64'); "
        "print(m.train_step(np.ones((2, 4)), np.array([0, 1]), 0.1) > 0)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(ro / "cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[0.0, 2.0]", "True"], proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no writable Numba cache" in lines[0], proc.stderr
