"""Numba CPU kernels (``@njit``, cached on disk), with the same API as ``kernels.reference``.

The shared API (``kernels.checks.KERNEL_API``: ``matmul``, ``dense_forward``,
``softmax_cross_entropy``, ...) validates its arguments in Python with ``kernels.checks``, so
errors are the same ``TypeError``/``ValueError`` as on every other backend, then calls
compiled loops written in ordinary Numba: no BLAS, ``np.dot`` or ``@`` inside. float32 or
float64, one dtype per call; C-contiguous arrays (others are rejected, never copied);
``out=`` arguments are written in place and returned, and allocated when ``None``.

The compiled building blocks are re-exported here for your own ``@njit`` code. They do no
validation. Those marked *serial* in their docstrings never start threads, so they may run
inside your own ``prange`` loop on disjoint rows; the others take a ``threads`` argument (pass
``numba.get_num_threads()``, or 1 inside a ``prange``). It is an argument because compiled
code is cached on disk and shared by every process that reads the cache: a thread count read
while compiling would be frozen into it. They live in one module per idea:

- ``kernels.cpu_products``: ``dot_nt_into``, ``dot_nn_into``, ``transpose_into``,
  ``product_tiles``, ``matmul_into``, ``dense_forward_into``;
- ``kernels.cpu_activations``: the row blocks (``relu_rows_into``, ``activation_rows_into``,
  ``relu_backward_rows_into``, ...) and the vectorisable ``exp``;
- ``kernels.cpu_elementwise``: ``activation_into``, ``activation_backward_into``,
  ``sgd_into``, ``column_sum_into``;
- ``kernels.cpu_losses``: ``softmax_xent_rows``, ``softmax_xent_into``, ``mse_into``;
- ``kernels.jit``: the compile options and the on-disk cache (``CACHE``).

Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 relu (``kernels.checks.ACTIVATION_CODES``).
Under ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) and gives the same
results. See ``docs/kernels.md`` for a worked example.
"""

import numba
import numpy as np

from . import checks as chk
from .checks import ACTIVATIONS, KERNEL_API
from .cpu_activations import (
    activation_backward_rows_into,
    activation_rows_into,
    bias_rows_into,
    relu_backward_rows_into,
    relu_rows_into,
    sigmoid_backward_rows_into,
    sigmoid_rows_into,
    tanh_backward_rows_into,
    tanh_rows_into,
)
from .cpu_elementwise import activation_backward_into, activation_into, column_sum_into, sgd_into
from .cpu_losses import mse_into, softmax_xent_into, softmax_xent_rows
from .cpu_products import dense_forward_into, dot_nn_into, dot_nt_into, matmul_into, product_tiles, transpose_into
from .jit import CACHE

__all__ = [
    "ACTIVATIONS", *KERNEL_API,  # the shared API (see kernels.checks.KERNEL_API)
    # compiled building blocks for other @njit code (see the module docstring):
    "dot_nt_into", "dot_nn_into", "matmul_into", "transpose_into", "activation_rows_into", "dense_forward_into",
    "activation_into", "activation_backward_into", "activation_backward_rows_into",
    "bias_rows_into", "sigmoid_rows_into", "tanh_rows_into", "relu_rows_into",
    "sigmoid_backward_rows_into", "tanh_backward_rows_into", "relu_backward_rows_into",
    "softmax_xent_rows", "softmax_xent_into", "mse_into", "column_sum_into", "sgd_into", "product_tiles", "CACHE",
]


def _threads():
    """Numba's thread count for this call, read at run time (``numba.set_num_threads`` and
    ``NUMBA_NUM_THREADS`` apply): compiled code never reads it, so one cache serves all."""
    return numba.get_num_threads()


def _result(out, value):
    """``value`` itself, or copied into the caller's ``out``."""
    if out is None:
        return value
    out[...] = value
    return out


def _alloc(out, shape, dtype):
    return np.empty(shape, dtype) if out is None else out


def _overlaps(out, *arrays):
    return any(a is not None and np.may_share_memory(out, a) for a in arrays)


def _partly_overlaps(out, a):
    """``out`` shares memory with ``a`` without being exactly ``a``'s elements (same shape,
    both C-contiguous: checked by the caller), e.g. ``out=buf[1:]`` for ``buf[:-1]``."""
    return out is not None and np.shares_memory(out, a) and out.ctypes.data != a.ctypes.data


def matmul(a, b, out=None, *, trans_a=False, trans_b=False):
    """Matrix product ``op(a) @ op(b)``, where ``op`` transposes when asked.

    Parameters
    ----------
    a : ndarray, (M, K), or (K, M) when `trans_a`; float32 or float64, C-contiguous
        Left operand; with `trans_a` it is stored transposed and ``a.T @ b`` is computed.
    b : ndarray, (K, N), or (N, K) when `trans_b`; same dtype as `a`, C-contiguous
        Right operand.
    out : ndarray, (M, N), same dtype, C-contiguous, optional
        Receives the product in place; allocated when None. If it overlaps `a` or `b` the
        product goes through a temporary first.
    trans_a : bool, default False
        Use ``a.T`` as the left operand.
    trans_b : bool, default False
        Use ``b.T`` as the right operand.

    Returns
    -------
    ndarray, (M, N)
        The product, of the operands' dtype (`out` when given).

    Raises
    ------
    ValueError
        If the inner dimensions differ, an operand is not 2-D or not C-contiguous, or `out`
        has the wrong shape or is read-only.
    TypeError
        On mixed or non-float dtypes.
    """
    m, _, n = chk.matmul_shapes(a, b, trans_a, trans_b)
    chk.out_array("out", out, (m, n), a.dtype)
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    if out is not None and _overlaps(out, a, b):
        out[...] = matmul(a, b, trans_a=trans_a, trans_b=trans_b)
        return out
    out = _alloc(out, (m, n), a.dtype)
    matmul_into(a, b, out, trans_a, trans_b, _threads())
    return out


def activation_forward(x, activation, out=None):
    """Apply the named activation elementwise.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
        The input.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The activation's name (one of ``ACTIVATIONS``).
    out : ndarray, same shape and dtype as `x`, optional
        Receives the result in place; may be `x` itself (an in-place update); one that
        overlaps `x` only in part gets the same result through a temporary. Allocated when
        None.

    Returns
    -------
    ndarray
        ``activation(x)``, same shape and dtype as `x` (`out` when given).

    Raises
    ------
    ValueError
        For an unknown activation, a non-contiguous array, or an `out` of another shape or
        read-only.
    TypeError
        If `x` is not a float32/float64 array, or `out` has another dtype.
    """
    chk.elementwise_args(x, out)
    code = chk.activation_code(activation)
    if _partly_overlaps(out, x):  # the kernel works in place on out: go through a copy
        out[...] = activation_forward(x, activation)
        return out
    out = _alloc(out, x.shape, x.dtype)
    activation_into(x, code, out, _threads())
    return out


def activation_backward(y, dy, activation, out=None):
    """Gradient through the named activation from its saved output `y`.

    Parameters
    ----------
    y : ndarray, any shape, float32 or float64, C-contiguous
        The saved output of the forward activation.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient dL/dy.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The activation's name (one of ``ACTIVATIONS``).
    out : ndarray, same shape and dtype as `y`, optional
        Receives the result in place; may be `dy`; one that overlaps `y`, or `dy` only in
        part, gets the same result through a temporary. Allocated when None.

    Returns
    -------
    ndarray
        The gradient dL/dx (`out` when given).

    Raises
    ------
    ValueError
        For an unknown activation, mismatched shapes, a non-contiguous array or a read-only
        `out`.
    TypeError
        On mixed or non-float dtypes.
    """
    chk.backward_args(y, dy, out)
    code = chk.activation_code(activation)
    if out is not None and (np.shares_memory(out, y) or _partly_overlaps(out, dy)):
        out[...] = activation_backward(y, dy, activation)  # through a copy: the kernel reads y
        return out
    out = _alloc(out, y.shape, y.dtype)
    activation_backward_into(y, dy, code, out, _threads())
    return out


def sigmoid(x, out=None):
    """Logistic sigmoid, elementwise; numerically stable for any input (+-1000 give exactly 1 and 0).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
        The input.
    out : ndarray, same shape and dtype as `x`, optional
        Receives the result in place (may be `x`; aliasing as in `activation_forward`);
        allocated when None.

    Returns
    -------
    ndarray
        The result, same shape and dtype as `x` (`out` when given).

    Raises
    ------
    TypeError
        If `x` is not a float32/float64 array, or `out` has another dtype.
    ValueError
        If an array is not C-contiguous, or `out` has another shape or is read-only.
    """
    return activation_forward(x, "sigmoid", out)


def sigmoid_backward(y, dy, out=None):
    """Gradient through sigmoid from its saved output: ``dy * y * (1 - y)``.

    Parameters
    ----------
    y : ndarray, any shape, float32 or float64, C-contiguous
        The saved output of the sigmoid.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient dL/dy.
    out : ndarray, same shape and dtype as `y`, optional
        Receives the result in place (may be `dy`; aliasing as in `activation_backward`);
        allocated when None.

    Returns
    -------
    ndarray
        The gradient dL/dx (`out` when given).

    Raises
    ------
    TypeError
        If an argument is not a float32/float64 array or the dtypes differ.
    ValueError
        If the shapes differ, an array is not C-contiguous or `out` is read-only.
    """
    return activation_backward(y, dy, "sigmoid", out)


def tanh(x, out=None):
    """Hyperbolic tangent, elementwise.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
        The input.
    out : ndarray, same shape and dtype as `x`, optional
        Receives the result in place (may be `x`; aliasing as in `activation_forward`);
        allocated when None.

    Returns
    -------
    ndarray
        The result, same shape and dtype as `x` (`out` when given).

    Raises
    ------
    TypeError
        If `x` is not a float32/float64 array, or `out` has another dtype.
    ValueError
        If an array is not C-contiguous, or `out` has another shape or is read-only.
    """
    return activation_forward(x, "tanh", out)


def tanh_backward(y, dy, out=None):
    """Gradient through tanh from its saved output: ``dy * (1 - y**2)``.

    Parameters
    ----------
    y : ndarray, any shape, float32 or float64, C-contiguous
        The saved output of the tanh.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient dL/dy.
    out : ndarray, same shape and dtype as `y`, optional
        Receives the result in place (may be `dy`; aliasing as in `activation_backward`);
        allocated when None.

    Returns
    -------
    ndarray
        The gradient dL/dx (`out` when given).

    Raises
    ------
    TypeError
        If an argument is not a float32/float64 array or the dtypes differ.
    ValueError
        If the shapes differ, an array is not C-contiguous or `out` is read-only.
    """
    return activation_backward(y, dy, "tanh", out)


def relu(x, out=None):
    """Rectified linear unit ``max(x, 0)``, elementwise (NaN passes through).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
        The input.
    out : ndarray, same shape and dtype as `x`, optional
        Receives the result in place (may be `x`; aliasing as in `activation_forward`);
        allocated when None.

    Returns
    -------
    ndarray
        The result, same shape and dtype as `x` (`out` when given).

    Raises
    ------
    TypeError
        If `x` is not a float32/float64 array, or `out` has another dtype.
    ValueError
        If an array is not C-contiguous, or `out` has another shape or is read-only.
    """
    return activation_forward(x, "relu", out)


def relu_backward(y, dy, out=None):
    """Gradient through ReLU from its saved output: `dy` where ``y > 0``, else 0.

    Parameters
    ----------
    y : ndarray, any shape, float32 or float64, C-contiguous
        The saved output of the ReLU.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient dL/dy.
    out : ndarray, same shape and dtype as `y`, optional
        Receives the result in place (may be `dy`; aliasing as in `activation_backward`);
        allocated when None.

    Returns
    -------
    ndarray
        The gradient dL/dx (`out` when given).

    Raises
    ------
    TypeError
        If an argument is not a float32/float64 array or the dtypes differ.
    ValueError
        If the shapes differ, an array is not C-contiguous or `out` is read-only.
    """
    return activation_backward(y, dy, "relu", out)


def dense_forward(x, w, b=None, activation="linear", out=None):
    """Fused dense layer ``act(x @ w + b)``.

    Parameters
    ----------
    x : ndarray, (N, fan_in), float32 or float64, C-contiguous
        The layer's input batch.
    w : ndarray, (fan_in, fan_out), same dtype, C-contiguous
        Weights.
    b : ndarray, (fan_out,), same dtype, optional
        Bias; None for no bias.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}, default 'linear'
        The activation applied after the bias.
    out : ndarray, (N, fan_out), same dtype, optional
        Receives the result in place; allocated when None. If it overlaps an input the
        result goes through a temporary first.

    Returns
    -------
    ndarray, (N, fan_out)
        The layer's output (`out` when given).

    Raises
    ------
    ValueError
        On a shape mismatch, a non-contiguous array, a read-only `out` or an unknown
        activation.
    TypeError
        On mixed or non-float dtypes.
    """
    _, _, code = chk.dense_forward_args(x, w, b, activation, out)
    if out is not None and _overlaps(out, x, w, b):
        out[...] = dense_forward(x, w, b, activation)
        return out
    out = _alloc(out, (x.shape[0], w.shape[1]), x.dtype)
    wt = np.empty((w.shape[1], w.shape[0]), w.dtype)
    transpose_into(w, wt, 0, w.shape[0])
    dense_forward_into(x, wt, np.zeros(w.shape[1], x.dtype) if b is None else b, code, out, _threads())
    return out


def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    """Backward pass of ``y = act(x @ w + b)`` given the upstream gradient `dy`.

    Outputs given by the caller are written in place; `dy` is not modified. Outputs that
    overlap an input (``dw=w``) give the same result as separate ones: they are computed
    through fresh arrays, then copied.

    Parameters
    ----------
    x : ndarray, (N, fan_in), float32 or float64, C-contiguous
        The saved input of the layer.
    w : ndarray, (fan_in, fan_out), same dtype, C-contiguous
        Weights.
    y : ndarray, (N, fan_out), same dtype, C-contiguous
        The saved output of the layer (after the activation).
    dy : ndarray, (N, fan_out), same dtype, C-contiguous
        The upstream gradient dL/dy.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}, default 'linear'
        The layer's activation.
    dx : ndarray, (N, fan_in), same dtype, optional
        Receives dL/dx in place; allocated when None.
    dw : ndarray, (fan_in, fan_out), same dtype, optional
        Receives dL/dw in place; allocated when None.
    db : ndarray, (fan_out,), same dtype, optional
        Receives dL/db in place; allocated when None.
    compute_dx : bool, default True
        Compute `dx`; false for the first layer, whose input needs no gradient.

    Returns
    -------
    dx : ndarray, (N, fan_in), or None
        dL/dx; None when `compute_dx` is false.
    dw : ndarray, (fan_in, fan_out)
        dL/dw.
    db : ndarray, (fan_out,)
        dL/db, the column sums of the pre-activation gradient.

    Raises
    ------
    ValueError
        On a shape mismatch, a non-contiguous array, a read-only output, an unknown
        activation, or outputs that overlap each other.
    TypeError
        On mixed or non-float dtypes.
    """
    code = chk.dense_backward_args(x, w, y, dy, activation, dx, dw, db)
    if chk.outputs_overlap(dict(dx=dx, dw=dw, db=db), (x, w, y, dy)):  # e.g. dw=w: through fresh arrays
        fresh = dense_backward(x, w, y, dy, activation, compute_dx=compute_dx)
        return tuple(None if f is None else _result(o, f) for o, f in zip((dx, dw, db), fresh))
    dz = np.empty(y.shape, y.dtype)
    activation_backward_into(y, dy, code, dz, _threads())
    dw = _alloc(dw, w.shape, x.dtype)
    db = _alloc(db, (w.shape[1],), x.dtype)
    matmul_into(x, dz, dw, True, False, _threads())
    column_sum_into(dz, db)
    if not compute_dx:
        return None, dw, db
    dx = _alloc(dx, x.shape, x.dtype)
    matmul_into(dz, w, dx, False, True, _threads())
    return dx, dw, db


def softmax_cross_entropy(logits, labels, grad=None):
    """Mean softmax cross-entropy over a batch, and its gradient.

    Stable for any finite logits (the row max is subtracted first).

    Parameters
    ----------
    logits : ndarray, (N, C), float32 or float64, C-contiguous
        Unnormalised class scores, N >= 1.
    labels : ndarray, (N,), int32 or int64, C-contiguous
        Class of each row, in [0, C).
    grad : ndarray, (N, C), same dtype as `logits`, optional
        Receives the gradient in place; may be `logits` itself; one that overlaps `logits`
        only in part gets the same result through a temporary. Allocated when None.

    Returns
    -------
    loss : float
        The mean cross-entropy, a Python float.
    grad : ndarray, (N, C)
        ``(softmax(logits) - onehot(labels)) / N`` in the dtype of `logits`.

    Raises
    ------
    ValueError
        For labels out of range or of the wrong shape, an empty batch, a non-contiguous
        array or a mismatched `grad`.
    TypeError
        For non-float logits or non-integer labels.
    """
    _, c = chk.softmax_args(logits, labels, grad)
    chk.label_range(np.asarray(labels), c)
    if _partly_overlaps(grad, logits):
        loss, fresh = softmax_cross_entropy(logits, labels)
        grad[...] = fresh
        return loss, grad
    grad = _alloc(grad, logits.shape, logits.dtype)
    loss = softmax_xent_into(logits, labels, grad, _threads())
    return float(loss), grad


def mean_squared_error(pred, target, grad=None):
    """Mean squared error over every element, and its gradient.

    Parameters
    ----------
    pred : ndarray, (N, D), float32 or float64, C-contiguous
        Predictions, N and D >= 1.
    target : ndarray, (N, D), same dtype, C-contiguous
        Targets.
    grad : ndarray, (N, D), same dtype, optional
        Receives the gradient in place; may be `pred` or `target` itself; one that overlaps
        them only in part gets the same result through a temporary. Allocated when None.

    Returns
    -------
    loss : float
        ``mean((pred - target)**2)`` over all N * D elements, a Python float (squares summed
        in float64).
    grad : ndarray, (N, D)
        ``2 * (pred - target) / (N * D)`` in the dtype of `pred`.

    Raises
    ------
    ValueError
        On a shape mismatch, an empty array, a non-contiguous array or a read-only `grad`.
    TypeError
        On mixed or non-float dtypes.
    """
    chk.mse_args(pred, target, grad)
    if _partly_overlaps(grad, pred) or _partly_overlaps(grad, target):
        loss, fresh = mean_squared_error(pred, target)
        grad[...] = fresh
        return loss, grad
    grad = _alloc(grad, pred.shape, pred.dtype)
    return float(mse_into(pred, target, grad)), grad


def sgd_update(param, grad, lr):
    """Take an SGD step in place: ``param -= lr * grad``.

    Parameters
    ----------
    param : ndarray, any shape, float32 or float64, C-contiguous, writable
        The parameters; updated in place.
    grad : ndarray, same shape and dtype as `param`, C-contiguous
        The gradient; may be `param` itself; one that overlaps it only in part is read from
        a copy.
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
    if _partly_overlaps(grad, param):
        grad = grad.copy()
    sgd_into(param, grad, lr, _threads())
    return param
