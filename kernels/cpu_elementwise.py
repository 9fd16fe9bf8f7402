"""Compiled elementwise kernels on arrays of any shape: activations, their gradients, the SGD
update, and a column sum; split over the threads when large."""

import numpy as np
from numba import njit, prange

from .cpu_activations import activation_backward_block_into, activation_block_into
from .jit import FAST, JIT

__all__ = ["activation_into", "activation_backward_into", "sgd_into", "column_sum_into", "PAR_ELEMS", "CHUNK"]

#: Elements above which an elementwise kernel splits over the threads (below, one is faster).
PAR_ELEMS = 1 << 16
#: Elements per parallel piece.
CHUNK = 1 << 13
_ZERO, _ONE = np.int64(0), np.int64(1)


@njit(**JIT)
def _sgd_row(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


@njit(parallel=True, **JIT)
def _elementwise_par(kind, a, b, code, lr, out):
    """Chunks of an elementwise kernel over the threads, on 1-D arrays: kind 0
    ``out = act(a)``, 1 ``out = b * act'(a)``, 2 ``out -= lr * a``."""
    n = a.size
    a2, b2, o2 = a.reshape(1, n), b.reshape(1, n), out.reshape(1, n)
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo = t * CHUNK
        hi = min(n, lo + CHUNK)
        if kind == 0:
            activation_block_into(a2, o2, code, _ZERO, _ONE, lo, hi, np.empty(hi - lo, a.dtype))
        elif kind == 1:
            activation_backward_block_into(a2, b2, o2, code, _ZERO, _ONE, lo, hi)
        else:
            _sgd_row(out[lo:hi], a[lo:hi], lr)


@njit(**JIT)
def _elementwise_into(kind, a, b, code, out, threads):
    """``_elementwise_par``'s kinds 0 and 1 on any-shape arrays: on the calling thread when small."""
    n = a.size
    af, bf, of = a.reshape(n), b.reshape(n), out.reshape(n)
    if n >= PAR_ELEMS and threads > 1:
        _elementwise_par(kind, af, bf, code, af.dtype.type(0), of)
    elif kind == 0:
        activation_block_into(
            af.reshape(1, n), of.reshape(1, n), code, _ZERO, _ONE, _ZERO, n, np.empty(n, a.dtype)
        )
    else:
        activation_backward_block_into(
            af.reshape(1, n), bf.reshape(1, n), of.reshape(1, n), code, _ZERO, _ONE, _ZERO, n
        )


@njit(**JIT)
def activation_into(x, code, out, threads):
    """``out = act(x)`` elementwise; over the threads when large and `threads` > 1.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
        The input.
    code : int
        The activation code: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
    out : ndarray, same shape and dtype as `x`, C-contiguous
        Receives the result in place; may be `x`.
    threads : int
        Threads to split over (from ``PAR_ELEMS`` elements, in pieces of ``CHUNK``):
        ``numba.get_num_threads()``, or 1 inside a ``prange``.
    """
    _elementwise_into(0, x, x, code, out, threads)


@njit(**JIT)
def activation_backward_into(y, dy, code, out, threads):
    """``out = dy * act'(.)`` from the saved output `y`; over the threads when large and `threads` > 1.

    Parameters
    ----------
    y : ndarray, any shape, float32 or float64, C-contiguous
        The saved output of the forward activation.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient.
    code : int
        The activation code: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
    out : ndarray, same shape and dtype as `y`, C-contiguous
        Receives the gradient in place; may be `dy`.
    threads : int
        Threads to split over (from ``PAR_ELEMS`` elements, in pieces of ``CHUNK``):
        ``numba.get_num_threads()``, or 1 inside a ``prange``.
    """
    _elementwise_into(1, y, dy, code, out, threads)


@njit(**JIT)
def sgd_into(param, grad, lr, threads):
    """In place ``param -= lr * grad``; over the threads when large and `threads` > 1.

    Parameters
    ----------
    param : ndarray, any shape, float32 or float64, C-contiguous
        The parameters, updated in place.
    grad : ndarray, same size and dtype as `param`, C-contiguous
        The gradient.
    lr : float
        The learning rate, cast to the dtype first.
    threads : int
        Threads to split over (from ``PAR_ELEMS`` elements, in pieces of ``CHUNK``):
        ``numba.get_num_threads()``, or 1 inside a ``prange``.
    """
    p = param.reshape(param.size)
    g = grad.reshape(grad.size)
    lr_t = p.dtype.type(lr)
    if p.size >= PAR_ELEMS and threads > 1:
        _elementwise_par(2, g, g, 0, lr_t, p)
    else:
        _sgd_row(p, g, lr_t)


@njit(**FAST)
def column_sum_into(x, out):
    """*Serial* (memory-bound). ``out[j] = sum_i x[i, j]``.

    Parameters
    ----------
    x : ndarray, (N, F), float32 or float64, C-contiguous
        The rows to sum.
    out : ndarray, (F,), same dtype
        Receives the column sums in place.
    """
    out[:] = 0
    for i in range(x.shape[0]):
        row = x[i]
        for j in range(out.size):
            out[j] += row[j]
