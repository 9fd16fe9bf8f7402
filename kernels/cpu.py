"""Numba CPU kernels (``@njit``, cached on disk), with the same API as ``fastinit.kernels.reference``.

The shared API (``fastinit.kernels.checks.KERNEL_API``: ``matmul``, ``dense_forward``,
``softmax_cross_entropy``, ...) validates its arguments in Python with ``fastinit.kernels.checks``, so
errors are the same ``TypeError``/``ValueError`` as on every other backend, then calls
compiled loops written in ordinary Numba: no BLAS, ``np.dot`` or ``@`` inside. float32 or
float64, one dtype per call; C-contiguous arrays (others are rejected, never copied);
``out=`` arguments are written in place and returned, and allocated when ``None``.

The compiled building blocks are re-exported here for your own ``@njit`` code. They do no
validation. Those marked *serial* in their docstrings never start threads, so they may run
inside your own ``prange`` loop on disjoint rows; the others take a ``threads`` argument (pass
``numba.get_num_threads()``, or 1 inside a ``prange``). The products built on ``dot_nt_into``
take its block sizes, ``blocks`` (pass ``machine_blocks(dtype)``, planned from this machine's
cache sizes). They are arguments because compiled code is cached on disk and shared by every
process, and every machine, that reads the cache: a thread count or a cache size read while
compiling would be frozen into it. They live in one module per idea:

- ``fastinit.kernels.cpu_products``: ``dot_nt_into``, ``dot_nn_into``, ``transpose_into``,
  ``product_blocks``, ``machine_blocks``, ``product_tiles``, ``matmul_into``,
  ``dense_forward_into``;
- ``fastinit.kernels.cpu_caches``: ``cache_sizes``, the L1d and L2 sizes the blocks are
  planned from;
- ``fastinit.kernels.cpu_activations``: the row blocks (``relu_rows_into``, ``activation_rows_into``,
  ``relu_backward_rows_into``, ...) and the vectorisable ``exp``;
- ``fastinit.kernels.cpu_elementwise``: ``activation_into``, ``activation_backward_into``,
  ``sgd_into``, ``column_sum_into``;
- ``fastinit.kernels.cpu_losses``: ``softmax_xent_rows``, ``softmax_xent_into``, ``mse_into``;
- ``fastinit.kernels.jit``: the compile options and the on-disk cache (``CACHE``).

Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 relu (``fastinit.kernels.checks.ACTIVATION_CODES``).
Under ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) and gives the same
results. See ``docs/kernels.md`` for a worked example.
"""

import numba
import numpy as np

from . import checks as chk
from . import reference
from .checks import ACTIVATIONS, KERNEL_API, shared_doc, with_doc
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
from .cpu_products import (
    dense_forward_into,
    dot_nn_into,
    dot_nt_into,
    machine_blocks,
    matmul_into,
    product_blocks,
    product_tiles,
    transpose_into,
)
from .jit import CACHE

__all__ = [
    "ACTIVATIONS",
    *KERNEL_API,  # the shared API (see fastinit.kernels.checks.KERNEL_API)
    # compiled building blocks for other @njit code (see the module docstring):
    "dot_nt_into",
    "dot_nn_into",
    "matmul_into",
    "transpose_into",
    "activation_rows_into",
    "dense_forward_into",
    "activation_into",
    "activation_backward_into",
    "activation_backward_rows_into",
    "bias_rows_into",
    "sigmoid_rows_into",
    "tanh_rows_into",
    "relu_rows_into",
    "sigmoid_backward_rows_into",
    "tanh_backward_rows_into",
    "relu_backward_rows_into",
    "softmax_xent_rows",
    "softmax_xent_into",
    "mse_into",
    "column_sum_into",
    "sgd_into",
    "product_tiles",
    "product_blocks",
    "machine_blocks",
    "CACHE",
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


# The shared API: the full docstrings live in fastinit.kernels.reference; each function below takes its
# reference docstring (fastinit.kernels.checks.shared_doc) with these Notes added.
_NOTES = """
    Compiled: the arguments are checked in Python, then compiled Numba loops (no BLAS) run on
    ``numba.get_num_threads()`` threads. An output that overlaps an input gets the same result
    as a separate one: an exact alias (``out=x``, ``out=dy``, ``grad=logits``, ``grad=pred``,
    ``grad=param``) is updated in place, any other overlap goes through a temporary.
"""


@with_doc(shared_doc(reference.matmul, _NOTES))
def matmul(a, b, out=None, *, trans_a=False, trans_b=False):
    m, _, n = chk.matmul_shapes(a, b, trans_a, trans_b)
    chk.out_array("out", out, (m, n), a.dtype)
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    if out is not None and _overlaps(out, a, b):
        out[...] = matmul(a, b, trans_a=trans_a, trans_b=trans_b)
        return out
    out = _alloc(out, (m, n), a.dtype)
    matmul_into(a, b, out, trans_a, trans_b, _threads(), machine_blocks(a.dtype))
    return out


@with_doc(shared_doc(reference.activation_forward, _NOTES))
def activation_forward(x, activation, out=None):
    chk.elementwise_args(x, out)
    code = chk.activation_code(activation)
    if _partly_overlaps(out, x):  # the kernel works in place on out: go through a copy
        out[...] = activation_forward(x, activation)
        return out
    out = _alloc(out, x.shape, x.dtype)
    activation_into(x, code, out, _threads())
    return out


@with_doc(shared_doc(reference.activation_backward, _NOTES))
def activation_backward(y, dy, activation, out=None):
    chk.backward_args(y, dy, out)
    code = chk.activation_code(activation)
    if out is not None and (np.shares_memory(out, y) or _partly_overlaps(out, dy)):
        out[...] = activation_backward(y, dy, activation)  # through a copy: the kernel reads y
        return out
    out = _alloc(out, y.shape, y.dtype)
    activation_backward_into(y, dy, code, out, _threads())
    return out


@with_doc(shared_doc(reference.sigmoid, _NOTES))
def sigmoid(x, out=None):
    return activation_forward(x, "sigmoid", out)


@with_doc(shared_doc(reference.sigmoid_backward, _NOTES))
def sigmoid_backward(y, dy, out=None):
    return activation_backward(y, dy, "sigmoid", out)


@with_doc(shared_doc(reference.tanh, _NOTES))
def tanh(x, out=None):
    return activation_forward(x, "tanh", out)


@with_doc(shared_doc(reference.tanh_backward, _NOTES))
def tanh_backward(y, dy, out=None):
    return activation_backward(y, dy, "tanh", out)


@with_doc(shared_doc(reference.relu, _NOTES))
def relu(x, out=None):
    return activation_forward(x, "relu", out)


@with_doc(shared_doc(reference.relu_backward, _NOTES))
def relu_backward(y, dy, out=None):
    return activation_backward(y, dy, "relu", out)


@with_doc(shared_doc(reference.dense_forward, _NOTES))
def dense_forward(x, w, b=None, activation="linear", out=None):
    _, _, code = chk.dense_forward_args(x, w, b, activation, out)
    if out is not None and _overlaps(out, x, w, b):
        out[...] = dense_forward(x, w, b, activation)
        return out
    out = _alloc(out, (x.shape[0], w.shape[1]), x.dtype)
    wt = np.empty((w.shape[1], w.shape[0]), w.dtype)
    transpose_into(w, wt, 0, w.shape[0])
    bias = np.zeros(w.shape[1], x.dtype) if b is None else b
    dense_forward_into(x, wt, bias, code, out, _threads(), machine_blocks(x.dtype))
    return out


@with_doc(shared_doc(reference.dense_backward, _NOTES))
def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    code = chk.dense_backward_args(x, w, y, dy, activation, dx, dw, db)
    if chk.outputs_overlap(dict(dx=dx, dw=dw, db=db), (x, w, y, dy)):  # e.g. dw=w: through fresh arrays
        fresh = dense_backward(x, w, y, dy, activation, compute_dx=compute_dx)
        return tuple(None if f is None else _result(o, f) for o, f in zip((dx, dw, db), fresh))
    dz = np.empty(y.shape, y.dtype)
    activation_backward_into(y, dy, code, dz, _threads())
    dw = _alloc(dw, w.shape, x.dtype)
    db = _alloc(db, (w.shape[1],), x.dtype)
    blocks = machine_blocks(x.dtype)
    matmul_into(x, dz, dw, True, False, _threads(), blocks)
    column_sum_into(dz, db)
    if not compute_dx:
        return None, dw, db
    dx = _alloc(dx, x.shape, x.dtype)
    matmul_into(dz, w, dx, False, True, _threads(), blocks)
    return dx, dw, db


@with_doc(shared_doc(reference.softmax_cross_entropy, _NOTES))
def softmax_cross_entropy(logits, labels, grad=None):
    _, c = chk.softmax_args(logits, labels, grad)
    chk.label_range(np.asarray(labels), c)
    if _partly_overlaps(grad, logits):
        loss, fresh = softmax_cross_entropy(logits, labels)
        grad[...] = fresh
        return loss, grad
    grad = _alloc(grad, logits.shape, logits.dtype)
    loss = softmax_xent_into(logits, labels, grad, _threads())
    return float(loss), grad


@with_doc(shared_doc(reference.mean_squared_error, _NOTES))
def mean_squared_error(pred, target, grad=None):
    chk.mse_args(pred, target, grad)
    if _partly_overlaps(grad, pred) or _partly_overlaps(grad, target):
        loss, fresh = mean_squared_error(pred, target)
        grad[...] = fresh
        return loss, grad
    grad = _alloc(grad, pred.shape, pred.dtype)
    return float(mse_into(pred, target, grad)), grad


@with_doc(shared_doc(reference.sgd_update, _NOTES))
def sgd_update(param, grad, lr):
    lr = chk.sgd_args(param, grad, lr)
    if _partly_overlaps(grad, param):
        grad = grad.copy()
    sgd_into(param, grad, lr, _threads())
    return param
