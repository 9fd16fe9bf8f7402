"""NumPy reference kernels: the oracle every other backend is tested against.

Same public functions and signatures as ``fastinit.kernels.cpu`` and ``fastinit.kernels.cuda``.
Conventions, shared by all backends:

- float32 or float64, one dtype per call (mixed dtypes raise ``TypeError``);
- arrays must be C-contiguous (non-contiguous ones raise ``ValueError``,
  they are never copied silently);
- ``out=`` (and ``dx=``, ``dw=``, ``db=``, ``grad=``) receive the result in
  place when given and are allocated when ``None``; the result is returned;
- a dense layer computes ``y = act(x @ w + b)`` with ``x`` (N, fan_in),
  ``w`` (fan_in, fan_out), ``b`` (fan_out,) or ``None``;
- activation backward passes take the saved *output* ``y``, not the input.

The docstrings here are the full text of the shared API (``fastinit.kernels.checks.KERNEL_API``):
``fastinit.kernels.cpu`` and ``fastinit.kernels.cuda`` take them at import
(``fastinit.kernels.checks.shared_doc``)
and add a Notes section on what differs.
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
    """Matrix product ``op(a) @ op(b)``, where ``op`` transposes when asked.

    Parameters
    ----------
    a : ndarray, shape (M, K), or (K, M) when `trans_a`; float32 or float64
        Left operand, C-contiguous; with `trans_a` it is stored transposed and
        ``a.T @ b`` is computed without a copy.
    b : ndarray, shape (K, N), or (N, K) when `trans_b`; same dtype as `a`
        Right operand, C-contiguous.
    out : ndarray, shape (M, N), same dtype, optional
        Receives the product in place; allocated when None. It may overlap `a` or `b`
        (the product then goes through a temporary).
    trans_a : bool, default False
        Use ``a.T`` as the left operand.
    trans_b : bool, default False
        Use ``b.T`` as the right operand.

    Returns
    -------
    ndarray, shape (M, N)
        The product, of the operands' dtype (`out` when given).

    Raises
    ------
    ValueError
        If the inner dimensions differ, an operand is not 2-D or not C-contiguous,
        or `out` has the wrong shape or is read-only.
    TypeError
        On mixed or non-float dtypes.
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


# The activations' docstrings: one template for the forward functions (sigmoid, tanh, relu,
# activation_forward), one for the backward ones; filled by _activation_doc.
_FORWARD_DOC = """{summary}

Parameters
----------
x : ndarray, float32 or float64, C-contiguous
    Input of any shape.
{activation}out : ndarray, same shape and dtype as `x`, optional
    Receives the result in place; it may be `x` itself (an in-place update) or overlap it
    in part (the result is the same). Allocated when None.

Returns
-------
ndarray
    {result}, same shape and dtype as `x` (`out` when given).

Raises
------
TypeError
    If `x` is not a float32/float64 array, or `out` has another dtype.
ValueError
    If an array is not C-contiguous, or `out` has another shape or is read-only.{unknown}
"""

_BACKWARD_DOC = """{summary}

Parameters
----------
y : ndarray, float32 or float64, C-contiguous
    The saved output of the {name}, any shape.
dy : ndarray, same shape and dtype as `y`
    The upstream gradient dL/dy.
{activation}out : ndarray, same shape and dtype as `y`, optional
    Receives the result in place; it may be `dy` itself, or overlap `y` or `dy` (the
    result is the same). Allocated when None.

Returns
-------
ndarray
    The gradient dL/dx (`out` when given).

Raises
------
TypeError
    If an argument is not a float32/float64 array or the dtypes differ.
ValueError
    If the shapes differ, an array is not C-contiguous, or `out` is read-only.{unknown}
"""

_ACTIVATION_PARAMETER = """activation : {'linear', 'sigmoid', 'tanh', 'relu'}
    The activation's name (one of ``ACTIVATIONS``).
"""


def _activation_doc(template, summary, named=False, name="forward activation", result="The result"):
    """Fill `template`; `named` adds the ``activation`` parameter (and its ValueError)."""
    return template.format(
        summary=summary,
        name=name,
        result=result,
        activation=_ACTIVATION_PARAMETER if named else "",
        unknown="\n    Also for an unknown activation." if named else "",
    )


@chk.with_doc(
    _activation_doc(
        _FORWARD_DOC, "Logistic sigmoid, elementwise; numerically stable (+-1000 give exactly 1 and 0)."
    )
)
def sigmoid(x, out=None):
    chk.elementwise_args(x, out)
    return _result(out, _sigmoid(x))


@chk.with_doc(
    _activation_doc(
        _BACKWARD_DOC, "Gradient through sigmoid from its saved output: ``dy * y * (1 - y)``.", name="sigmoid"
    )
)
def sigmoid_backward(y, dy, out=None):
    chk.backward_args(y, dy, out)
    return _result(out, dy * y * (1 - y))


@chk.with_doc(_activation_doc(_FORWARD_DOC, "Hyperbolic tangent, elementwise."))
def tanh(x, out=None):
    chk.elementwise_args(x, out)
    return _result(out, np.tanh(x))


@chk.with_doc(
    _activation_doc(
        _BACKWARD_DOC, "Gradient through tanh from its saved output: ``dy * (1 - y**2)``.", name="tanh"
    )
)
def tanh_backward(y, dy, out=None):
    chk.backward_args(y, dy, out)
    return _result(out, dy * (1 - y * y))


@chk.with_doc(
    _activation_doc(_FORWARD_DOC, "Rectified linear unit ``max(x, 0)``, elementwise (NaN passes through).")
)
def relu(x, out=None):
    chk.elementwise_args(x, out)
    return _result(out, np.maximum(x, 0))


@chk.with_doc(
    _activation_doc(
        _BACKWARD_DOC,
        "Gradient through ReLU from its saved output: ``dy`` where ``y > 0``, else 0.",
        name="ReLU",
    )
)
def relu_backward(y, dy, out=None):
    chk.backward_args(y, dy, out)
    return _result(out, np.where(y > 0, dy, 0).astype(y.dtype, copy=False))


_FORWARD = {"linear": lambda z: z, "sigmoid": _sigmoid, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}
_BACKWARD = {
    "linear": lambda y, dy: dy,
    "sigmoid": lambda y, dy: dy * y * (1 - y),
    "tanh": lambda y, dy: dy * (1 - y * y),
    "relu": lambda y, dy: np.where(y > 0, dy, 0).astype(dy.dtype, copy=False),
}


@chk.with_doc(
    _activation_doc(
        _FORWARD_DOC, "Apply the named activation elementwise.", named=True, result="``activation(x)``"
    )
)
def activation_forward(x, activation, out=None):
    chk.elementwise_args(x, out)
    chk.activation_code(activation)
    return _result(out, _FORWARD[activation](x))


@chk.with_doc(
    _activation_doc(
        _BACKWARD_DOC, "Gradient through the named activation from its saved output `y`.", named=True
    )
)
def activation_backward(y, dy, activation, out=None):
    chk.backward_args(y, dy, out)
    chk.activation_code(activation)
    return _result(out, _BACKWARD[activation](y, dy))


def dense_forward(x, w, b=None, activation="linear", out=None):
    """Fused dense layer ``act(x @ w + b)``.

    Parameters
    ----------
    x : ndarray, shape (N, fan_in), float32 or float64
        The layer's input batch, C-contiguous.
    w : ndarray, shape (fan_in, fan_out), same dtype
        Weights.
    b : ndarray, shape (fan_out,), same dtype, optional
        Bias; None for no bias.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}, default 'linear'
        The activation applied after the bias.
    out : ndarray, shape (N, fan_out), same dtype, optional
        Receives the result in place; allocated when None. It may overlap an input (the
        result then goes through a temporary).

    Returns
    -------
    ndarray, shape (N, fan_out)
        The layer's output (`out` when given).

    Raises
    ------
    ValueError
        On a shape mismatch, a non-contiguous array, a read-only `out` or an unknown
        activation.
    TypeError
        On mixed or non-float dtypes.
    """
    chk.dense_forward_args(x, w, b, activation, out)
    z = x @ w
    if b is not None:
        z = z + b
    return _result(out, _FORWARD[activation](z))


def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    """Backward pass of ``y = act(x @ w + b)`` given the upstream gradient `dy`.

    Outputs given by the caller are written in place; `dy` is not modified. Outputs
    that overlap an input (``dw=w``) give the same result as separate ones: they are
    computed through fresh arrays, then copied.

    Parameters
    ----------
    x : ndarray, shape (N, fan_in), float32 or float64
        The saved input of the layer.
    w : ndarray, shape (fan_in, fan_out), same dtype
        Weights.
    y : ndarray, shape (N, fan_out), same dtype
        The saved output of the layer (after the activation).
    dy : ndarray, shape (N, fan_out), same dtype
        The upstream gradient dL/dy.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}, default 'linear'
        The layer's activation.
    dx : ndarray, shape (N, fan_in), same dtype, optional
        Receives dL/dx in place; allocated when None.
    dw : ndarray, shape (fan_in, fan_out), same dtype, optional
        Receives dL/dw in place; allocated when None.
    db : ndarray, shape (fan_out,), same dtype, optional
        Receives dL/db in place; allocated when None.
    compute_dx : bool, default True
        Compute `dx`; false for the first layer, whose input needs no gradient.

    Returns
    -------
    dx : ndarray, shape (N, fan_in), or None
        dL/dx, None when `compute_dx` is false.
    dw : ndarray, shape (fan_in, fan_out)
        dL/dw.
    db : ndarray, shape (fan_out,)
        dL/db, the column sums of the pre-activation gradient.

    Raises
    ------
    ValueError
        On a shape mismatch, a non-contiguous array, a read-only output, an unknown
        activation, or outputs that overlap each other.
    TypeError
        On mixed or non-float dtypes.
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

    Stable for any finite logits (the row max is subtracted first).

    Parameters
    ----------
    logits : ndarray, shape (N, C), float32 or float64
        Unnormalised class scores, N and C >= 1.
    labels : ndarray, shape (N,), int32 or int64
        Class of each row, in [0, C).
    grad : ndarray, shape (N, C), same dtype as `logits`, optional
        Receives the gradient in place; it may be `logits` itself or overlap it (the
        result is the same). Allocated when None.

    Returns
    -------
    loss : float
        The mean cross-entropy, a Python float.
    grad : ndarray, shape (N, C)
        ``(softmax(logits) - onehot(labels)) / N`` in the dtype of `logits`.

    Raises
    ------
    ValueError
        For labels out of range or of the wrong shape, an empty batch, a non-contiguous
        array or a mismatched `grad`.
    TypeError
        For non-float logits or non-integer labels.
    """
    n, c = chk.softmax_args(logits, labels, grad)
    chk.label_range(np.asarray(labels), c)
    top = logits.max(axis=1, keepdims=True)
    z = logits - top
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    # log-sum-exp minus the label's logit, in float64: with float32 logits near the limits
    # z[label] overflows while the loss itself is finite (e.g. 6.8e38 for logits -3.4e38, 3.4e38)
    f64 = np.float64
    loss = float(np.mean(lse[:, 0].astype(f64) - (logits[rows, labels].astype(f64) - top[:, 0].astype(f64))))
    g = np.exp(z - lse)
    g[rows, labels] -= 1
    g /= n
    return loss, _result(grad, g.astype(logits.dtype, copy=False))


def mean_squared_error(pred, target, grad=None):
    """Mean squared error over every element, and its gradient.

    Parameters
    ----------
    pred : ndarray, shape (N, D), float32 or float64
        Predictions, N and D >= 1.
    target : ndarray, shape (N, D), same dtype
        Targets.
    grad : ndarray, shape (N, D), same dtype, optional
        Receives the gradient in place; it may be `pred` or `target` itself or overlap
        them (the result is the same). Allocated when None.

    Returns
    -------
    loss : float
        ``mean((pred - target)**2)`` over all N * D elements, a Python float
        (squares summed in float64).
    grad : ndarray, shape (N, D)
        ``2 * (pred - target) / (N * D)`` in the dtype of `pred`.

    Raises
    ------
    ValueError
        On a shape mismatch, an empty array, a non-contiguous array or a read-only `grad`.
    TypeError
        On mixed or non-float dtypes.
    """
    n, d = chk.mse_args(pred, target, grad)
    diff = pred - target
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, _result(grad, diff * diff.dtype.type(2.0 / (n * d)))


def sgd_update(param, grad, lr):
    """Take an SGD step in place: ``param -= lr * grad``.

    Parameters
    ----------
    param : ndarray, float32 or float64, C-contiguous, writable
        The parameters, any shape; updated in place.
    grad : ndarray, same shape and dtype as `param`
        The gradient; it may be `param` itself or overlap it.
    lr : float
        Learning rate, finite; cast to the arrays' dtype.

    Returns
    -------
    ndarray
        `param`, updated.

    Raises
    ------
    TypeError
        On mixed or non-float dtypes, or an `lr` that is not a real number.
    ValueError
        On a shape mismatch, a non-contiguous or read-only `param`, or a non-finite `lr`.
    """
    lr = chk.sgd_args(param, grad, lr)
    param -= param.dtype.type(lr) * grad
    return param
