"""NumPy reference kernels: the oracle every other backend is tested against.

Same public functions and signatures as ``kernels.cpu`` and ``kernels.cuda``.
Conventions, shared by all backends:

- float32 or float64, one dtype per call (mixed dtypes raise ``TypeError``);
- arrays must be C-contiguous (non-contiguous ones raise ``ValueError``,
  they are never copied silently);
- ``out=`` (and ``dx=``, ``dw=``, ``db=``, ``grad=``) receive the result in
  place when given and are allocated when ``None``; the result is returned;
- a dense layer computes ``y = act(x @ w + b)`` with ``x`` (N, fan_in),
  ``w`` (fan_in, fan_out), ``b`` (fan_out,) or ``None``;
- activation backward passes take the saved *output* ``y``, not the input.
"""

import numpy as np

from . import checks as chk
from .checks import ACTIVATIONS, KERNEL_API

__all__ = ["ACTIVATIONS", *KERNEL_API]


def _result(out, value):
    if out is None:
        return np.ascontiguousarray(value)
    out[...] = value
    return out


def matmul(a, b, out=None, *, trans_a=False, trans_b=False):
    """Matrix product ``op(a) @ op(b)``.

    ``a`` is (M, K), or (K, M) stored transposed when ``trans_a`` (computes
    ``a.T @ b``); ``b`` is (K, N), or (N, K) when ``trans_b``. Returns ``out``
    (M, N) of the operands' dtype. Raises ``ValueError`` when the inner
    dimensions differ, ``TypeError`` on mixed or non-float dtypes.
    """
    m, _, n = chk.matmul_shapes(a, b, trans_a, trans_b)
    chk.out_array("out", out, (m, n), a.dtype)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if out is None:
        return np.ascontiguousarray(opa @ opb)
    np.matmul(opa, opb, out=out)
    return out


def _sigmoid(x):
    # Stable: exp only ever sees -|x|, so +-1000 gives exactly 0 or 1.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid(x, out=None):
    """Logistic sigmoid, numerically stable for any finite input. Any shape."""
    chk.elementwise_args(x, out)
    return _result(out, _sigmoid(x))


def sigmoid_backward(y, dy, out=None):
    """Gradient through sigmoid from its saved output: ``dy * y * (1 - y)``."""
    chk.backward_args(y, dy, out)
    return _result(out, dy * y * (1 - y))


def tanh(x, out=None):
    """Hyperbolic tangent. Any shape."""
    chk.elementwise_args(x, out)
    return _result(out, np.tanh(x))


def tanh_backward(y, dy, out=None):
    """Gradient through tanh from its saved output: ``dy * (1 - y**2)``."""
    chk.backward_args(y, dy, out)
    return _result(out, dy * (1 - y * y))


def relu(x, out=None):
    """Rectified linear unit ``max(x, 0)``. Any shape."""
    chk.elementwise_args(x, out)
    return _result(out, np.maximum(x, 0))


def relu_backward(y, dy, out=None):
    """Gradient through ReLU from its saved output: ``dy`` where ``y > 0``, else 0."""
    chk.backward_args(y, dy, out)
    return _result(out, np.where(y > 0, dy, 0).astype(y.dtype, copy=False))


_FORWARD = {"linear": lambda z: z, "sigmoid": _sigmoid, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}
_BACKWARD = {
    "linear": lambda y, dy: dy,
    "sigmoid": lambda y, dy: dy * y * (1 - y),
    "tanh": lambda y, dy: dy * (1 - y * y),
    "relu": lambda y, dy: np.where(y > 0, dy, 0).astype(dy.dtype, copy=False),
}


def activation_forward(x, activation, out=None):
    """Apply the named activation (one of ``ACTIVATIONS``). Any shape."""
    chk.elementwise_args(x, out)
    chk.activation_code(activation)
    return _result(out, _FORWARD[activation](x))


def activation_backward(y, dy, activation, out=None):
    """Gradient through the named activation from its saved output ``y``."""
    chk.backward_args(y, dy, out)
    chk.activation_code(activation)
    return _result(out, _BACKWARD[activation](y, dy))


def dense_forward(x, w, b=None, activation="linear", out=None):
    """Fused dense layer ``act(x @ w + b)``.

    ``x`` (N, fan_in), ``w`` (fan_in, fan_out), ``b`` (fan_out,) or ``None``
    (no bias). Returns ``out`` (N, fan_out). Raises ``ValueError`` on shape
    mismatch or an unknown activation, ``TypeError`` on dtype problems.
    """
    chk.dense_forward_args(x, w, b, activation, out)
    z = x @ w
    if b is not None:
        z = z + b
    return _result(out, _FORWARD[activation](z))


def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    """Backward pass of ``y = act(x @ w + b)`` given the upstream gradient ``dy``.

    ``x`` (N, fan_in) and ``y`` (N, fan_out) are the saved input and output.
    Returns ``(dx, dw, db)``: ``dx`` (N, fan_in), or ``None`` when
    ``compute_dx`` is false (first layer); ``dw`` (fan_in, fan_out);
    ``db`` (fan_out,), the column sums of the pre-activation gradient. Outputs
    that overlap an input or each other (``dw=w``) give the same result as
    separate ones (computed through fresh arrays, then copied).
    """
    chk.dense_backward_args(x, w, y, dy, activation, dx, dw, db)
    if chk.outputs_overlap(dict(dx=dx, dw=dw, db=db), (x, w, y, dy)):  # e.g. dw=w: through fresh arrays
        fresh = dense_backward(x, w, y, dy, activation, compute_dx=compute_dx)
        return tuple(None if f is None else _result(o, f) for o, f in zip((dx, dw, db), fresh))
    dz = _BACKWARD[activation](y, dy)
    dw = _result(dw, x.T @ dz)
    db = _result(db, dz.sum(axis=0))
    dx = _result(dx, dz @ w.T) if compute_dx else None
    return dx, dw, db


def softmax_cross_entropy(logits, labels, grad=None):
    """Mean softmax cross-entropy over a batch, and its gradient.

    ``logits`` (N, C) float, ``labels`` (N,) int32/int64 in [0, C). Returns
    ``(loss, grad)``: ``loss`` a Python float, ``grad`` (N, C) =
    ``(softmax(logits) - onehot(labels)) / N``. Stable for any finite logits
    (the row max is subtracted first). Raises ``ValueError`` for labels out of
    range or of the wrong shape.
    """
    n, c = chk.softmax_args(logits, labels, grad)
    chk.label_range(np.asarray(labels), c)
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = float(np.mean(lse[:, 0] - z[rows, labels]))
    g = np.exp(z - lse)
    g[rows, labels] -= 1
    g /= n
    return loss, _result(grad, g.astype(logits.dtype, copy=False))


def mean_squared_error(pred, target, grad=None):
    """Mean squared error over every element, and its gradient.

    ``pred`` and ``target`` (N, D), one float dtype, N and D >= 1. Returns
    ``(loss, grad)``: ``loss = mean((pred - target)**2)`` over all N * D
    elements, a Python float (squares summed in float64); ``grad`` (N, D) =
    ``2 * (pred - target) / (N * D)`` in ``pred``'s dtype (may be ``pred`` or
    ``target`` itself). Raises ``ValueError`` on a shape mismatch or an empty
    array, ``TypeError`` on mixed or non-float dtypes.
    """
    n, d = chk.mse_args(pred, target, grad)
    diff = pred - target
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, _result(grad, diff * diff.dtype.type(2.0 / (n * d)))


def sgd_update(param, grad, lr):
    """In place ``param -= lr * grad``; returns ``param``. Any shape, same dtype."""
    lr = chk.sgd_args(param, grad, lr)
    param -= param.dtype.type(lr) * grad
    return param
