"""Kernel conformance: every public kernel, on every backend, against fastinit.kernels.reference.

Comparisons with the reference run on ``fast_backend``: cpu, and cuda (on
Numba's simulator unless FASTINIT_TEST_GPU=1). Properties that hold for any
correct kernel (finite differences, in-place outputs, exact extremes, clear
errors) run on ``backend``, the reference included. The simulator is slow, so
cuda cases are capped at 64 along every axis.
"""

import math
import os
import textwrap
import zlib

import numpy as np
import pytest
from commands import run_python
from conftest import DTYPES, ON_SIMULATOR, tolerances
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastinit.kernels.reference as ref

ACTS = ("linear", "sigmoid", "tanh", "relu")
FORWARD = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}
BACKWARD = {"sigmoid": "sigmoid_backward", "tanh": "tanh_backward", "relu": "relu_backward"}
CUDA_MAX = 64  # largest extent of any cuda test array (the simulator is slow)
CUDA_ELEMS = 1024  # largest elementwise/softmax array on the simulator

HYP = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _rng(*key):
    """A generator seeded from the test's parameters (stable across processes)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _fits(backend, *shapes, elems=None):
    """False when a cuda case is too big for the simulator: an axis over
    CUDA_MAX, or more than ``elems`` elements in one array."""
    if backend.name != "cuda" or not ON_SIMULATOR:
        return True
    if elems is not None and any(int(np.prod(s)) > elems for s in shapes):
        return False
    return all(max(s, default=0) <= CUDA_MAX for s in shapes)


def _skip_big(backend, *shapes, elems=None):
    if not _fits(backend, *shapes, elems=elems):
        pytest.skip("shape too large for the CUDA simulator")


def _trim_on_simulator(backend, condition):
    """Skip a redundant variant on the (slow) CUDA simulator: the cases kept
    there still cover every code path."""
    if backend.name == "cuda" and ON_SIMULATOR and condition:
        pytest.skip("variant trimmed on the CUDA simulator")


def _host(backend, x):
    return None if x is None else np.asarray(backend.to_host(x))


def _close(got, want, dtype, scale=1.0):
    rtol, atol = tolerances(dtype, scale)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _empty_on(backend, shape, dtype):
    return backend.to_device(np.full(shape, np.nan, dtype))


# ------------------------------------------------------------------ matmul

MATMUL_SHAPES = [
    (1, 1, 1),
    (1, 7, 1),
    (2, 3, 5),
    (4, 4, 4),
    (5, 1, 9),
    (7, 13, 3),
    (17, 33, 31),
    (33, 17, 29),  # no side a multiple of a cuda tile
    (64, 3, 2),  # tall and skinny
    (2, 40, 64),  # wide
    (64, 64, 64),
    (128, 100, 10),
    (128, 784, 100),
    (301, 257, 65),
    (97, 1030, 45),  # depth over one cache block
]


def _matmul_operands(rng, m, k, n, dtype, trans_a, trans_b):
    a = _rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = _rand(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mkn", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_matches_reference(fast_backend, mkn, dtype, trans_a, trans_b):
    backend = fast_backend  # the numpy backend would be the reference against itself
    m, k, n = mkn
    _skip_big(backend, mkn)
    _trim_on_simulator(backend, max(mkn) > 32 and (np.dtype(dtype) == np.float64 or trans_a != trans_b))
    a, b = _matmul_operands(_rng("mm", mkn, trans_a, trans_b), m, k, n, dtype, trans_a, trans_b)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    got = backend.k.matmul(backend.to_device(a), backend.to_device(b), trans_a=trans_a, trans_b=trans_b)
    got = _host(backend, got)
    assert got.shape == (m, n) and got.dtype == np.dtype(dtype)
    _close(got, want, dtype, scale=k)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matmul_out_is_written_in_place(backend, dtype, trans_a, trans_b):
    m, k, n = 9, 21, 14
    a, b = _matmul_operands(_rng("mmout", trans_a, trans_b), m, k, n, dtype, trans_a, trans_b)
    out = _empty_on(backend, (m, n), dtype)
    got = backend.k.matmul(backend.to_device(a), backend.to_device(b), out, trans_a=trans_a, trans_b=trans_b)
    assert got is out
    a64, b64 = a.astype(np.float64), b.astype(np.float64)  # an oracle independent of the reference
    want = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)
    _close(_host(backend, out), want, dtype, scale=k)


@pytest.mark.slow_on_simulator
@HYP
@given(
    m=st.integers(1, 200),
    k=st.integers(1, 200),
    n=st.integers(1, 200),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    f64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matmul_random_shapes(fast_backend, m, k, n, trans_a, trans_b, f64, seed):
    backend = fast_backend  # the numpy backend would be the reference against itself
    if not _fits(backend, (m, k, n)):
        m, k, n = (min(v, 16) for v in (m, k, n))
    dtype = np.float64 if f64 else np.float32
    a, b = _matmul_operands(np.random.default_rng(seed), m, k, n, dtype, trans_a, trans_b)
    got = _host(
        backend,
        backend.k.matmul(backend.to_device(a), backend.to_device(b), trans_a=trans_a, trans_b=trans_b),
    )
    _close(got, ref.matmul(a, b, trans_a=trans_a, trans_b=trans_b), dtype, scale=k)


@settings(HYP, max_examples=40)
@given(
    m=st.integers(1, 40),
    k=st.integers(0, 70),
    n=st.integers(1, 70),
    rows=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    cols=st.tuples(st.integers(0, 70), st.integers(0, 70)),
    nn=st.booleans(),
    f64=st.booleans(),
    seed=st.integers(0, 2**16),
    blocks=st.none() | st.tuples(st.integers(1, 20), st.integers(1, 8)),
)
def test_serial_products_match_the_reference_on_their_block(m, k, n, rows, cols, nn, f64, seed, blocks):
    """``fastinit.kernels.cpu.dot_nt_into`` / ``dot_nn_into`` on a block of output rows and columns,
    every block edge (rows, columns and depths that are not multiples of the 4 x 3 and 4 x 4
    blocks, depth and column blocks of ``dot_nt_into`` from the machine's or small ones), with
    a left operand wider than the depth: the block matches the reference, nothing else is
    written."""
    import fastinit.kernels.cpu as kc

    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    i0, i1 = sorted(min(r, m) for r in rows)
    j0, j1 = sorted(min(c, n) for c in cols)
    a = _rand(rng, (m, k + 3), dtype)
    b = _rand(rng, (k, n), dtype)
    out = np.full((m + 1, n), 7.0, dtype)
    args = (np.int64(i0), np.int64(i1), np.int64(j0), np.int64(j1), np.int64(k))
    if nn:
        kc.dot_nn_into(a, b, out, *args)
    else:
        blocks = kc.machine_blocks(dtype) if blocks is None else blocks
        kc.dot_nt_into(a, np.ascontiguousarray(b.T), out, *args, blocks)
    want = np.full_like(out, 7.0)
    want[i0:i1, j0:j1] = np.asarray(a[i0:i1, :k], np.float64) @ b[:, j0:j1]
    _close(out, want, dtype, scale=k)


def test_dot_nn_into_propagates_nan_and_inf():
    """The outer-product form multiplies every coefficient: a NaN or an Inf times 0 in
    ``b`` gives NaN in its column, as the reference does."""
    import fastinit.kernels.cpu as kc

    a = np.ones((5, 6), np.float32)
    a[:, 2] = 0.0
    b = np.ones((6, 9), np.float32)
    b[2, 3] = np.inf  # times a 0 coefficient
    b[4, 7] = np.nan
    out = np.empty((5, 9), np.float32)
    kc.dot_nn_into(a, b, out, np.int64(0), np.int64(5), np.int64(0), np.int64(9), np.int64(6))
    with np.errstate(invalid="ignore"):
        want = a @ b
    np.testing.assert_array_equal(out, want)
    assert np.isnan(out[:, [3, 7]]).all() and np.isfinite(np.delete(out, [3, 7], axis=1)).all()


def test_matmul_empty_depth_gives_zeros(backend):
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    got = _host(backend, backend.k.matmul(backend.to_device(a), backend.to_device(b)))
    np.testing.assert_array_equal(got, np.zeros((3, 4), np.float32))


def test_matmul_out_overlapping_input_cpu():
    # A square product written over its own left operand still gives a @ b.
    import fastinit.kernels.cpu as cpu

    rng = _rng("alias")
    a = _rand(rng, (8, 8), np.float32)
    b = _rand(rng, (8, 8), np.float32)
    want = a @ b
    got = cpu.matmul(a, b, out=a)
    assert got is a
    _close(a, want, np.float32, scale=8)


# ------------------------------------------------------- elementwise kernels

ELEM_SHAPES = [(1,), (7,), (3, 5), (64, 33), (2, 3, 4), (1000,), (40000,), (300, 301)]


def _elem_input(rng, shape, dtype, act):
    x = _rand(rng, shape, dtype, scale=4.0)
    if act != "linear" and x.size >= 4:
        flat = x.reshape(-1)
        flat[:4] = [0.0, -0.0, 1e-7, -1e-7]  # exercise the branch points
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_activation_forward_and_backward(fast_backend, act, shape, dtype):
    backend = fast_backend  # the numpy backend would be the reference against itself
    _skip_big(backend, shape, elems=CUDA_ELEMS)
    rng = _rng("elem", act, shape)
    x = _elem_input(rng, shape, dtype, act)
    dy = _rand(rng, shape, dtype)
    y_ref = ref.activation_forward(x, act)
    y = _host(backend, backend.k.activation_forward(backend.to_device(x), act))
    assert y.shape == x.shape and y.dtype == np.dtype(dtype)
    _close(y, y_ref, dtype)
    dx = _host(backend, backend.k.activation_backward(backend.to_device(y_ref), backend.to_device(dy), act))
    _close(dx, ref.activation_backward(y_ref, dy, act), dtype)
    if act in FORWARD:  # the named functions agree with the generic ones
        y2 = _host(backend, getattr(backend.k, FORWARD[act])(backend.to_device(x)))
        _close(y2, y_ref, dtype)
        dx2 = getattr(backend.k, BACKWARD[act])(backend.to_device(y_ref), backend.to_device(dy))
        _close(_host(backend, dx2), ref.activation_backward(y_ref, dy, act), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ("sigmoid", "tanh", "relu"))
def test_activation_out_given(backend, act, dtype):
    rng = _rng("elemout", act)
    x = _rand(rng, (13, 7), dtype, scale=3.0)
    dy = _rand(rng, (13, 7), dtype)
    out = _empty_on(backend, x.shape, dtype)
    got = getattr(backend.k, FORWARD[act])(backend.to_device(x), out)
    assert got is out
    x64 = x.astype(np.float64)  # closed forms in float64: an oracle independent of the reference
    y64 = {"sigmoid": 1 / (1 + np.exp(-x64)), "tanh": np.tanh(x64), "relu": np.maximum(x64, 0)}[act]
    _close(_host(backend, out), y64, dtype)
    y = y64.astype(dtype)
    slope = {"sigmoid": y64 * (1 - y64), "tanh": 1 - y64**2, "relu": (y64 > 0) * 1.0}[act]
    out2 = _empty_on(backend, x.shape, dtype)
    got2 = backend.k.activation_backward(backend.to_device(y), backend.to_device(dy), act, out2)
    assert got2 is out2
    _close(_host(backend, out2), dy * slope, dtype)


@pytest.mark.parametrize("act", ("sigmoid", "tanh", "relu", "linear"))
def test_activation_in_place(act):
    import fastinit.kernels.cpu as cpu

    rng = _rng("inplace", act)
    x = _rand(rng, (50, 9), np.float32, scale=3.0)
    want = ref.activation_forward(x, act)
    assert cpu.activation_forward(x, act, out=x) is x
    _close(x, want, np.float32)
    y = ref.activation_forward(_rand(rng, (50, 9), np.float32), act)
    dy = _rand(rng, (50, 9), np.float32)
    want = ref.activation_backward(y, dy, act)
    assert cpu.activation_backward(y, dy, act, out=dy) is dy  # out may alias dy
    _close(dy, want, np.float32)


@pytest.mark.slow_on_simulator
@HYP
@given(n=st.integers(1, 5000), act=st.sampled_from(ACTS), f64=st.booleans(), seed=st.integers(0, 2**16))
def test_activation_random_sizes(fast_backend, n, act, f64, seed):
    backend = fast_backend  # the numpy backend would be the reference against itself
    if not _fits(backend, (n,), elems=CUDA_ELEMS):
        n = n % CUDA_ELEMS + 1
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n,), dtype, scale=10.0)
    _close(
        _host(backend, backend.k.activation_forward(backend.to_device(x), act)),
        ref.activation_forward(x, act),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sigmoid_tanh_extremes_are_finite_and_exact(backend, dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype)
    s = _host(backend, backend.k.sigmoid(backend.to_device(x)))
    t = _host(backend, backend.k.tanh(backend.to_device(x)))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert t[0] == -1.0 and t[-1] == 1.0 and t[3] == 0.0
    _close(s, ref.sigmoid(x), dtype)
    _close(t, ref.tanh(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sigmoid_tanh_accurate_to_a_few_ulp(dtype):
    # Tighter than the cross-backend tolerance: the cpu's own exp must be good.
    import fastinit.kernels.cpu as cpu

    x = np.concatenate([np.linspace(-40, 40, 20001), np.geomspace(1e-8, 1.0, 2001)]).astype(dtype)
    eps = np.finfo(dtype).eps
    for fn, want in ((cpu.sigmoid, ref.sigmoid(x)), (cpu.tanh, np.tanh(x))):
        got = fn(x)
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        assert np.all(err <= 8 * eps * np.abs(want.astype(np.float64)) + np.finfo(dtype).tiny)


@pytest.mark.parametrize("act", ("sigmoid", "tanh", "relu", "linear"))
def test_activation_backward_matches_finite_differences(backend, act):
    """d/dx of sum(w * act(x)) from the backward pass (saved output) vs central differences, float64."""
    rng = _rng("fd", act)
    x = rng.uniform(-3, 3, size=(6, 5))
    if act == "relu":
        x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    w = rng.standard_normal(x.shape)
    y = _host(backend, backend.k.activation_forward(backend.to_device(x), act))
    grad = _host(backend, backend.k.activation_backward(backend.to_device(y), backend.to_device(w), act))
    h = 1e-6
    fwd = lambda v: ref.activation_forward(v, act)  # noqa: E731
    numeric = w * (fwd(x + h) - fwd(x - h)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------- dense layers


DENSE_SHAPES = [(1, 1, 1), (3, 5, 2), (16, 33, 17), (128, 784, 100), (200, 100, 10)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_forward_backward(fast_backend, shape, act, dtype, bias):
    backend = fast_backend  # the numpy backend would be the reference against itself
    n, fan_in, fan_out = shape
    _skip_big(backend, shape)
    _trim_on_simulator(
        backend, (np.dtype(dtype) == np.float64) != bias or (n > 8 and act in ("linear", "sigmoid"))
    )
    rng = _rng("dense", shape, act, bias)
    x = _rand(rng, (n, fan_in), dtype)
    w = _rand(rng, (fan_in, fan_out), dtype, scale=1 / np.sqrt(fan_in))
    b = _rand(rng, (fan_out,), dtype) if bias else None
    dy = _rand(rng, (n, fan_out), dtype)
    dev = backend.to_device
    y_ref = ref.dense_forward(x, w, b, act)
    y = _host(backend, backend.k.dense_forward(dev(x), dev(w), None if b is None else dev(b), act))
    _close(y, y_ref, dtype, scale=fan_in)
    want = ref.dense_backward(x, w, y_ref, dy, act)
    got = backend.k.dense_backward(dev(x), dev(w), dev(y_ref), dev(dy), act)
    for name, g, r, s in zip(("dx", "dw", "db"), got, want, (fan_out, n, n)):
        g = _host(backend, g)
        assert g.shape == r.shape, name
        _close(g, r, dtype, scale=s)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dense_outputs_given_and_compute_dx_false(backend, dtype):
    rng = _rng("denseout")
    x, w, b = _rand(rng, (11, 6), dtype), _rand(rng, (6, 4), dtype), _rand(rng, (4,), dtype)
    dy = _rand(rng, (11, 4), dtype)
    dev = backend.to_device
    out = _empty_on(backend, (11, 4), dtype)
    assert backend.k.dense_forward(dev(x), dev(w), dev(b), "tanh", out) is out
    y = ref.dense_forward(x, w, b, "tanh")
    _close(_host(backend, out), y, dtype, scale=6)
    dx, dw, db = (_empty_on(backend, s, dtype) for s in ((11, 6), (6, 4), (4,)))
    res = backend.k.dense_backward(dev(x), dev(w), dev(y), dev(dy), "tanh", dx, dw, db)
    assert res[0] is dx and res[1] is dw and res[2] is db
    for g, r in zip(res, ref.dense_backward(x, w, y, dy, "tanh")):
        _close(_host(backend, g), r, dtype, scale=11)
    dx2, dw2, db2 = backend.k.dense_backward(dev(x), dev(w), dev(y), dev(dy), "tanh", compute_dx=False)
    assert dx2 is None
    _close(_host(backend, dw2), ref.dense_backward(x, w, y, dy, "tanh")[1], dtype, scale=11)


# ------------------------------------------------ softmax cross-entropy, sgd

SOFTMAX_SHAPES = [(1, 1), (1, 10), (7, 3), (16, 10), (128, 10), (300, 257)]


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax_cross_entropy(fast_backend, shape, dtype, label_dtype):
    backend = fast_backend  # the numpy backend would be the reference against itself
    _skip_big(backend, shape, elems=CUDA_ELEMS)
    _trim_on_simulator(backend, (label_dtype == np.int32) != (np.dtype(dtype) == np.float32))
    n, c = shape
    rng = _rng("sm", shape)
    logits = _rand(rng, shape, dtype, scale=5.0)
    labels = rng.integers(0, c, size=n).astype(label_dtype)
    loss_ref, grad_ref = ref.softmax_cross_entropy(logits, labels)
    loss, grad = backend.k.softmax_cross_entropy(backend.to_device(logits), backend.to_device(labels))
    assert isinstance(loss, float)
    rtol, atol = tolerances(dtype, abs(loss_ref))
    assert loss == pytest.approx(loss_ref, rel=rtol, abs=atol)
    _close(_host(backend, grad), grad_ref, dtype)
    out = _empty_on(backend, shape, dtype)
    loss2, grad2 = backend.k.softmax_cross_entropy(backend.to_device(logits), backend.to_device(labels), out)
    assert grad2 is out and loss2 == pytest.approx(loss_ref, rel=rtol, abs=atol)
    _close(_host(backend, out), grad_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_extreme_logits_finite_and_exact(backend, dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [0.0, 0.0, 1000.0]], dtype)
    labels = np.array([0, 2, 1], np.int64)
    loss, grad = backend.k.softmax_cross_entropy(backend.to_device(logits), backend.to_device(labels))
    grad = _host(backend, grad)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # Row 0 is certain and right (loss 0), row 1 uniform (log 3), row 2 certain and wrong (1000).
    assert loss == pytest.approx((0.0 + np.log(3.0) + 1000.0) / 3, rel=1e-6)
    want = np.array([[0, 0, 0], [1 / 3, 1 / 3, -2 / 3], [0, -1, 1]]) / 3
    np.testing.assert_allclose(grad, want, atol=np.finfo(dtype).eps)


# ------------------------------------------------------------ mean squared error

MSE_SHAPES = [(1, 1), (1, 7), (5, 3), (16, 10), (33, 31), (128, 784), (300, 257)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", MSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mean_squared_error(backend, shape, dtype):
    _skip_big(backend, shape, elems=CUDA_ELEMS)
    rng = _rng("mse", shape)
    pred, target = _rand(rng, shape, dtype, scale=3.0), _rand(rng, shape, dtype)
    diff = pred - target  # rounded to the dtype, as the kernels do
    want_loss = float(np.mean(diff.astype(np.float64) ** 2))
    want_grad = diff * diff.dtype.type(2.0 / diff.size)
    loss, grad = backend.k.mean_squared_error(backend.to_device(pred), backend.to_device(target))
    assert isinstance(loss, float)
    rtol, atol = tolerances(dtype, want_loss)
    assert loss == pytest.approx(want_loss, rel=rtol, abs=atol)
    _close(_host(backend, grad), want_grad, dtype)
    for in_place in ("pred", "target"):  # grad may be either input itself
        p, t = backend.to_device(pred.copy()), backend.to_device(target.copy())
        out = p if in_place == "pred" else t
        loss2, grad2 = backend.k.mean_squared_error(p, t, out)
        assert grad2 is out and loss2 == pytest.approx(want_loss, rel=rtol, abs=atol)
        _close(_host(backend, out), want_grad, dtype)


def test_mean_squared_error_gradient_matches_finite_differences(backend):
    rng = _rng("mse-fd")
    pred, target = _rand(rng, (3, 4), np.float64), _rand(rng, (3, 4), np.float64)
    loss = lambda p: backend.k.mean_squared_error(backend.to_device(p), backend.to_device(target))[0]  # noqa: E731
    _, grad = backend.k.mean_squared_error(backend.to_device(pred), backend.to_device(target))
    eps = 1e-6
    numeric = np.zeros_like(pred)
    for i, j in np.ndindex(pred.shape):
        step = np.zeros_like(pred)
        step[i, j] = eps
        numeric[i, j] = (loss(pred + step) - loss(pred - step)) / (2 * eps)
    np.testing.assert_allclose(_host(backend, grad), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1,), (5, 3), (100, 10), (784, 100), (2, 3, 4)], ids=str)
def test_sgd_update(fast_backend, shape, dtype):
    backend = fast_backend  # the numpy backend would be the reference against itself
    _skip_big(backend, shape)
    rng = _rng("sgd", shape)
    p = _rand(rng, shape, dtype)
    g = _rand(rng, shape, dtype)
    want = ref.sgd_update(p.copy(), g, 0.05)
    dev_p = backend.to_device(p)
    got = backend.k.sgd_update(dev_p, backend.to_device(g), 0.05)
    assert got is dev_p  # in place
    _close(_host(backend, got), want, dtype)


# ----------------------------------------------------------- bad inputs


def _bad_cases():
    """(id, call(k), error type, message fragment): one per bad-input path."""
    f32 = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    f64 = lambda *s: np.zeros(s, np.float64)  # noqa: E731
    noncontig = np.zeros((4, 6), np.float32)[:, ::2]
    labels = np.zeros(4, np.int64)
    return [
        ("matmul-1d", lambda k: k.matmul(f32(3), f32(3, 2)), ValueError, "a must be 2-D"),
        ("matmul-3d-b", lambda k: k.matmul(f32(2, 3), f32(3, 2, 1)), ValueError, "b must be 2-D"),
        ("matmul-inner", lambda k: k.matmul(f32(2, 3), f32(4, 2)), ValueError, "inner dimensions"),
        ("matmul-inner-T", lambda k: k.matmul(f32(2, 3), f32(3, 2), trans_a=True), ValueError, "a.T"),
        ("matmul-mixed", lambda k: k.matmul(f32(2, 3), f64(3, 2)), TypeError, "mixed dtypes"),
        (
            "matmul-int",
            lambda k: k.matmul(np.zeros((2, 3), np.int64), f32(3, 2)),
            TypeError,
            "float32 or float64",
        ),
        ("matmul-list", lambda k: k.matmul([[1.0]], f32(1, 1)), TypeError, "a must be"),
        ("matmul-noncontig", lambda k: k.matmul(noncontig, f32(3, 2)), ValueError, "C-contiguous"),
        (
            "matmul-out-shape",
            lambda k: k.matmul(f32(2, 3), f32(3, 2), f32(3, 3)),
            ValueError,
            "out must have shape",
        ),
        (
            "matmul-out-dtype",
            lambda k: k.matmul(f32(2, 3), f32(3, 2), f64(2, 2)),
            TypeError,
            "out must have dtype",
        ),
        ("sigmoid-int", lambda k: k.sigmoid(np.zeros(3, np.int32)), TypeError, "x must have dtype"),
        ("tanh-noncontig", lambda k: k.tanh(noncontig), ValueError, "C-contiguous"),
        ("relu-out-shape", lambda k: k.relu(f32(3), f32(4)), ValueError, "out must have shape"),
        ("relu-out-dtype", lambda k: k.relu(f32(3), f64(3)), TypeError, "out must have dtype"),
        ("act-unknown", lambda k: k.activation_forward(f32(3), "softplus"), ValueError, "unknown activation"),
        (
            "actb-unknown",
            lambda k: k.activation_backward(f32(3), f32(3), "gelu"),
            ValueError,
            "unknown activation",
        ),
        (
            "bwd-shape",
            lambda k: k.sigmoid_backward(f32(3), f32(4)),
            ValueError,
            "dy must have the same shape",
        ),
        ("bwd-mixed", lambda k: k.tanh_backward(f32(3), f64(3)), TypeError, "mixed dtypes"),
        (
            "bwd-noncontig",
            lambda k: k.relu_backward(noncontig, f32(4, 3)),
            ValueError,
            "y must be C-contiguous",
        ),
        ("dense-ndim", lambda k: k.dense_forward(f32(4), f32(4, 2)), ValueError, "x must be 2-D"),
        ("dense-inner", lambda k: k.dense_forward(f32(4, 3), f32(2, 2)), ValueError, "features"),
        (
            "dense-bias",
            lambda k: k.dense_forward(f32(4, 3), f32(3, 2), f32(3)),
            ValueError,
            "b must have shape",
        ),
        ("dense-mixed", lambda k: k.dense_forward(f32(4, 3), f64(3, 2)), TypeError, "mixed dtypes"),
        (
            "dense-act",
            lambda k: k.dense_forward(f32(4, 3), f32(3, 2), None, "swish"),
            ValueError,
            "unknown activation",
        ),
        (
            "dense-out",
            lambda k: k.dense_forward(f32(4, 3), f32(3, 2), out=f32(2, 4)),
            ValueError,
            "out must have shape",
        ),
        (
            "dense-bwd-y",
            lambda k: k.dense_backward(f32(4, 3), f32(3, 2), f32(4, 3), f32(4, 2)),
            ValueError,
            "y must have shape",
        ),
        (
            "dense-bwd-dy",
            lambda k: k.dense_backward(f32(4, 3), f32(3, 2), f32(4, 2), f32(4, 3)),
            ValueError,
            "dy must have the same shape",
        ),
        (
            "dense-bwd-dw",
            lambda k: k.dense_backward(f32(4, 3), f32(3, 2), f32(4, 2), f32(4, 2), dw=f32(2, 3)),
            ValueError,
            "dw must have shape",
        ),
        (
            "sm-label-range",
            lambda k: k.softmax_cross_entropy(f32(4, 3), np.array([0, 1, 3, 0])),
            ValueError,
            "[0, 3)",
        ),
        (
            "sm-label-neg",
            lambda k: k.softmax_cross_entropy(f32(4, 3), np.array([0, -1, 2, 0])),
            ValueError,
            "[0, 3)",
        ),
        (
            "sm-label-dtype",
            lambda k: k.softmax_cross_entropy(f32(4, 3), np.zeros(4, np.float32)),
            TypeError,
            "labels must have dtype",
        ),
        (
            "sm-label-shape",
            lambda k: k.softmax_cross_entropy(f32(4, 3), labels[:3]),
            ValueError,
            "labels must have shape",
        ),
        (
            "sm-label-2d",
            lambda k: k.softmax_cross_entropy(f32(4, 3), labels.reshape(4, 1)),
            ValueError,
            "labels must have shape",
        ),
        ("sm-logits-1d", lambda k: k.softmax_cross_entropy(f32(4), labels), ValueError, "logits must be 2-D"),
        (
            "sm-logits-int",
            lambda k: k.softmax_cross_entropy(labels.reshape(2, 2), labels[:2]),
            TypeError,
            "logits must",
        ),
        (
            "sm-grad",
            lambda k: k.softmax_cross_entropy(f32(4, 3), labels, f32(3, 4)),
            ValueError,
            "grad must have shape",
        ),
        (
            "mse-shape",
            lambda k: k.mean_squared_error(f32(4, 3), f32(4, 2)),
            ValueError,
            "target must have the same shape",
        ),
        ("mse-mixed", lambda k: k.mean_squared_error(f32(4, 3), f64(4, 3)), TypeError, "mixed dtypes"),
        ("mse-1d", lambda k: k.mean_squared_error(f32(4), f32(4)), ValueError, "pred must be 2-D"),
        ("mse-empty", lambda k: k.mean_squared_error(f32(0, 3), f32(0, 3)), ValueError, "at least one row"),
        (
            "mse-int",
            lambda k: k.mean_squared_error(f32(2, 2), labels.reshape(2, 2)),
            TypeError,
            "target must",
        ),
        (
            "mse-grad",
            lambda k: k.mean_squared_error(f32(4, 3), f32(4, 3), f32(3, 4)),
            ValueError,
            "grad must have shape",
        ),
        (
            "sgd-shape",
            lambda k: k.sgd_update(f32(4), f32(5), 0.1),
            ValueError,
            "grad must have the same shape",
        ),
        ("sgd-mixed", lambda k: k.sgd_update(f32(4), f64(4), 0.1), TypeError, "mixed dtypes"),
        (
            "sgd-lr-type",
            lambda k: k.sgd_update(f32(4), f32(4), "fast"),
            TypeError,
            "lr must be a real number",
        ),
        ("sgd-lr-nan", lambda k: k.sgd_update(f32(4), f32(4), float("nan")), ValueError, "lr must be finite"),
        (
            "sgd-noncontig",
            lambda k: k.sgd_update(noncontig, f32(4, 3), 0.1),
            ValueError,
            "param must be C-contiguous",
        ),
        ("scalar-x", lambda k: k.sigmoid(np.float32(1.0)), TypeError, "NumPy scalar"),
        ("readonly-out", lambda k: k.sigmoid(f32(4), out=_read_only(f32(4))), ValueError, "out is read-only"),
        (
            "readonly-param",
            lambda k: k.sgd_update(_read_only(f32(4)), f32(4), 0.1),
            ValueError,
            "param is read-only",
        ),
        (
            "readonly-dw",
            lambda k: k.dense_backward(f32(4, 3), f32(3, 2), f32(4, 2), f32(4, 2), dw=_read_only(f32(3, 2))),
            ValueError,
            "dw is read-only",
        ),
    ]


def _read_only(a):
    a.flags.writeable = False
    return a


BAD = _bad_cases()


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_clear_error(backend, case):
    _, call, exc, fragment = case
    with pytest.raises(exc) as info:
        call(backend.k)
    assert fragment in str(info.value)


# ------------------------------------------------- NUMBA_DISABLE_JIT path

PURE_PYTHON_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import numba
    assert numba.config.DISABLE_JIT
    import fastinit.kernels.cpu as cpu
    import fastinit.kernels.reference as ref

    for dt in (np.float32, np.float64):
        x = np.array([-1000.0, -3.0, 0.0, 0.05, 2.0, 1000.0], dt)
        s = cpu.sigmoid(x)
        assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1 and s[2] == 0.5, s
        np.testing.assert_allclose(s, ref.sigmoid(x), rtol=1e-6)
        t = cpu.tanh(x)
        assert t[0] == -1 and t[-1] == 1, t
        np.testing.assert_allclose(t, np.tanh(x), rtol=1e-6)
        rng = np.random.default_rng(0)
        a = rng.standard_normal((5, 7)).astype(dt)
        b = rng.standard_normal((7, 6)).astype(dt)
        for ta, tb in ((False, False), (True, False), (False, True)):
            aa = np.ascontiguousarray(a.T) if ta else a
            bb = np.ascontiguousarray(b.T) if tb else b
            got = cpu.matmul(aa, bb, trans_a=ta, trans_b=tb)
            np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
        logits = np.array([[1000.0, -1000.0, 0.0], [0.5, 0.1, -0.2]], dt)
        labels = np.array([2, 0])
        loss, grad = cpu.softmax_cross_entropy(logits, labels)
        loss_r, grad_r = ref.softmax_cross_entropy(logits, labels)
        assert np.isfinite(loss) and abs(loss - loss_r) < 1e-4 * abs(loss_r), (loss, loss_r)
        np.testing.assert_allclose(grad, grad_r, atol=1e-6)
        loss, grad = cpu.mean_squared_error(a, a[::-1].copy())
        loss_r, grad_r = ref.mean_squared_error(a, a[::-1].copy())
        assert abs(loss - loss_r) < 1e-6 * loss_r, (loss, loss_r)
        np.testing.assert_array_equal(grad, grad_r)
    print("pure-python ok")
    """
)


def test_cpu_kernels_run_without_jit():
    """The cpu module also works as plain Python (NUMBA_DISABLE_JIT=1): same stable results."""
    proc = run_python(PURE_PYTHON_SCRIPT, env=dict(os.environ, NUMBA_DISABLE_JIT="1"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pure-python ok" in proc.stdout


def test_every_backend_defines_the_shared_api_with_the_reference_signatures(fast_backend, reference):
    import inspect

    from fastinit.kernels.checks import KERNEL_API

    backend = fast_backend  # the reference compared with itself could not fail
    assert set(KERNEL_API) <= set(reference.__all__)
    for name in KERNEL_API:
        assert name in backend.k.__all__, f"{backend.name} does not export {name}"
        want = inspect.signature(getattr(reference, name))
        got = inspect.signature(getattr(backend.k, name))
        assert got == want, f"{backend.name}.{name}{got} differs from reference.{name}{want}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_building_blocks_compose_in_user_njit_code(dtype):
    """The public ``fastinit.kernels.cpu`` blocks called from a user's own ``@njit`` function (one
    hidden layer, softmax cross-entropy, its backward pass and an SGD step, rows split into
    two serial pieces) give the reference's numbers."""
    from numba import njit

    import fastinit.kernels.cpu as kc

    @njit
    def user_step(x, wt, b, w2t, labels, lr, code, threads, blocks):
        n, f = x.shape[0], wt.shape[0]
        h = np.empty((n, f), x.dtype)
        kc.dense_forward_into(x, wt, b, code, h, threads, blocks)  # h = act(x @ wt.T + b)
        logits = np.empty((n, w2t.shape[0]), x.dtype)
        half = n // 2
        zero, c = 0, w2t.shape[0]
        for i0, i1 in ((zero, half), (half, n)):  # the serial blocks, on pieces of the rows
            kc.dot_nt_into(h, w2t, logits, i0, i1, zero, c, f, blocks)
        grad = np.empty_like(logits)
        loss = kc.softmax_xent_into(logits, labels, grad, threads)
        dh = np.empty_like(h)
        kc.matmul_into(grad, w2t, dh, False, False, threads, blocks)  # dh = grad @ W2
        kc.activation_backward_into(h, dh, code, dh, threads)
        dwt = np.empty_like(wt)
        kc.matmul_into(dh, x, dwt, True, False, threads, blocks)  # dW1.T = dh.T @ x
        kc.sgd_into(wt, dwt, lr, threads)
        return loss, h

    rng = _rng("user-njit", dtype)
    n, k, f, c = 13, 19, 11, 5
    x, wt, w2t = (_rand(rng, s, dtype) for s in ((n, k), (f, k), (c, f)))
    b = _rand(rng, f, dtype)
    labels = rng.integers(0, c, n)
    want_wt = wt.copy()
    blocks = kc.machine_blocks(dtype)
    loss, h = user_step(x, wt, b, w2t, labels, dtype(0.1), 2, 2, blocks)  # 2: tanh, 2 threads

    want_h = ref.dense_forward(x, want_wt.T.copy(), b, "tanh")
    want_loss, want_grad = ref.softmax_cross_entropy(ref.matmul(want_h, w2t, trans_b=True), labels)
    dh = ref.tanh_backward(want_h, ref.matmul(want_grad, w2t))
    ref.sgd_update(want_wt, ref.matmul(dh, x, trans_a=True), 0.1)
    rtol, atol = tolerances(dtype)
    np.testing.assert_allclose(h, want_h, rtol=rtol, atol=atol)
    assert loss == pytest.approx(want_loss, rel=rtol)
    np.testing.assert_allclose(wt, want_wt, rtol=rtol, atol=atol)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_activation_out_overlapping_inputs_gives_the_unaliased_result(backend, act):
    """An ``out`` that overlaps the input in part (forward), or overlaps ``y`` (backward),
    gives the same numbers as a separate ``out``."""
    if backend.name == "cuda":
        pytest.skip("device arrays: aliasing is checked on the host backends")
    k = backend.k
    buf = np.linspace(-3, 3, 12).astype(np.float32)
    want = ref.activation_forward(buf[:-1].copy(), act)
    k.activation_forward(buf[:-1], act, out=buf[1:])
    np.testing.assert_allclose(buf[1:], want, rtol=1e-6, atol=1e-7)
    rng = _rng("overlap", act)
    y = ref.activation_forward(_rand(rng, 9, np.float32), act)
    dy = _rand(rng, 9, np.float32)
    want = ref.activation_backward(y.copy(), dy, act)
    got = k.activation_backward(y, dy, act, out=y)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


_SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-38, -0.0, 0.0, 88.0, -88.0, 1e4, -1e4])
_VALUES = st.one_of(_SPECIAL, st.floats(-50, 50, width=32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_loss_is_taken_in_float64_near_the_float32_limits(fast_backend, dtype):
    """The loss of logits (-3e38, 3e38) with label 0 is 6e38: finite in float64 although the
    label's logit minus the row max overflows float32; every backend and the reference agree."""
    logits = np.array([[-3e38, 3e38], [1.0, 2.0]], dtype)
    labels = np.array([0, 1], np.int64)
    want = (6e38 + math.log1p(math.exp(-1.0))) / 2
    with np.errstate(all="ignore"):
        assert ref.softmax_cross_entropy(logits, labels)[0] == pytest.approx(want, rel=1e-6)
        b = fast_backend
        loss, _ = b.k.softmax_cross_entropy(b.to_device(logits), b.to_device(labels))
    assert loss == pytest.approx(want, rel=1e-6)


@pytest.mark.slow_on_simulator
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's scalar math overflows, as expected
@HYP
@given(values=st.lists(_VALUES, min_size=1, max_size=40), act=st.sampled_from(ACTS))
def test_non_finite_and_huge_values_propagate_like_the_reference(fast_backend, values, act):
    """NaN stays NaN, +-Inf and values near the float32 limits give the reference's result,
    through every activation, its gradient and the softmax cross-entropy."""
    backend = fast_backend
    x = np.array(values, np.float32)
    with np.errstate(all="ignore"):
        want = ref.activation_forward(x, act)
        got = _host(backend, backend.k.activation_forward(backend.to_device(x), act))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        y = np.clip(np.nan_to_num(want, nan=0.5), -1, 1).astype(np.float32)
        want_d = ref.activation_backward(y, x, act)
        got_d = _host(backend, backend.k.activation_backward(backend.to_device(y), backend.to_device(x), act))
        np.testing.assert_allclose(got_d, want_d, rtol=2e-6, atol=1e-30)
        logits = x.reshape(1, -1)
        labels = np.zeros(1, np.int64)
        want_loss, want_grad = ref.softmax_cross_entropy(logits, labels)
        loss, grad = backend.k.softmax_cross_entropy(backend.to_device(logits), backend.to_device(labels))
    if np.isfinite(want_loss):
        assert loss == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(_host(backend, grad), want_grad, rtol=1e-5, atol=1e-6)
    else:
        assert not np.isfinite(loss), (loss, want_loss)


@pytest.mark.parametrize("alias", ["dw=w", "dx=x", "dx=dy"])
def test_dense_backward_outputs_aliasing_inputs_give_the_unaliased_result(backend, alias):
    """Outputs that overlap an input or each other give the same numbers as separate ones."""
    if backend.name == "cuda":
        pytest.skip("device arrays: aliasing is checked on the host backends")
    rng = _rng("dense-alias", alias)
    n = 6
    x, w = _rand(rng, (n, n), np.float32), _rand(rng, (n, n), np.float32)
    y = ref.dense_forward(x, w, None, "tanh")
    dy = _rand(rng, (n, n), np.float32)
    want = ref.dense_backward(x.copy(), w.copy(), y.copy(), dy.copy(), "tanh")
    x2, w2, y2, dy2 = x.copy(), w.copy(), y.copy(), dy.copy()
    scratch = np.zeros((n, n), np.float32)
    outs = {"dw=w": dict(dw=w2), "dx=x": dict(dx=x2), "dx=dy": dict(dx=dy2)}[alias]
    got = backend.k.dense_backward(x2, w2, y2, dy2, "tanh", **outs)
    for g, wt in zip(got, want):
        np.testing.assert_allclose(g, wt, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dw and db overlap"):
        backend.k.dense_backward(x, w, y, dy, "tanh", dw=scratch, db=scratch[0])


def test_softmax_mse_and_sgd_with_partly_overlapping_arguments_give_the_unaliased_result(backend):
    if backend.name == "cuda":
        pytest.skip("device arrays: aliasing is checked on the host backends")
    k = backend.k
    rng = _rng("sm-sgd-overlap")
    labels = np.array([0, 1, 2, 3])
    buf = np.zeros((5, 6), np.float32)
    buf[:4] = _rand(rng, (4, 6), np.float32)
    want_loss, want_grad = ref.softmax_cross_entropy(buf[:4].copy(), labels)
    loss, grad = k.softmax_cross_entropy(buf[:4], labels, grad=buf[1:])
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    buf[:4] = _rand(rng, (4, 6), np.float32)
    target = _rand(rng, (4, 6), np.float32)
    want_loss, want_grad = ref.mean_squared_error(buf[:4].copy(), target)
    loss, grad = k.mean_squared_error(buf[:4], target, grad=buf[1:])
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6)
    for param_slice, grad_slice in ((slice(0, 9), slice(1, 10)), (slice(1, 10), slice(0, 9))):
        p = np.arange(10, dtype=np.float32)
        want = p[param_slice] - np.float32(0.5) * p[grad_slice]
        k.sgd_update(p[param_slice], p[grad_slice], 0.5)
        np.testing.assert_allclose(p[param_slice], want)
