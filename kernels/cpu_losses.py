"""Compiled losses: softmax cross-entropy (stable: the row max is subtracted first) and the
mean squared error, each returning the loss and writing its gradient."""

import math

import numpy as np
from numba import njit, prange

from .cpu_activations import exp_nonpos_into
from .cpu_elementwise import CHUNK, PAR_ELEMS
from .jit import FAST, JIT

__all__ = ["softmax_xent_rows", "softmax_xent_into", "mse_into"]


@njit(**FAST)
def softmax_xent_rows(logits, labels, grad, i0, i1, n, width):
    """*Serial.* Rows [i0, i1) of ``grad = (softmax(logits) - onehot(labels)) / n``, and their loss.

    Stable for any finite logits (the row max is subtracted first); a NaN in a row makes
    that row's gradient and the loss NaN. The exponentials of all the rows are taken in one
    pass over a scratch array: one row (10 classes) is shorter than a vector loop's step,
    and would run scalar. Labels are not range-checked.

    Parameters
    ----------
    logits : ndarray, (N, >= width), float32 or float64, C-contiguous
        Unnormalised class scores.
    labels : ndarray, (N,), int32 or int64
        Class of each row, in [0, width).
    grad : ndarray, (N, >= width), same dtype as `logits`
        Receives the gradient of the rows in place; may be `logits`.
    i0, i1 : int
        The rows, [i0, i1).
    n : int
        The batch size the gradient is divided by (all rows, not only these).
    width : int
        The number of classes: the first `width` columns of `logits` and `grad`.

    Returns
    -------
    float
        The rows' summed loss, accumulated in float64.
    """
    rows = max(0, i1 - i0)
    inv_n = logits.dtype.type(1.0 / n)
    e = np.empty(rows * width, logits.dtype)
    top = np.empty(rows, logits.dtype)
    for r in range(rows):
        z = logits[i0 + r][:width]
        m = z[0]
        for j in range(1, width):
            v = z[j]
            m = v if (v > m or v != v) else m  # a NaN sticks
        top[r] = m
        er = e[r * width : (r + 1) * width]
        for j in range(width):
            er[j] = z[j] - m
    exp_nonpos_into(e)
    total = 0.0
    for r in range(rows):
        i = i0 + r
        z = logits[i][:width]
        g = grad[i][:width]
        lab = labels[i]
        er = e[r * width : (r + 1) * width]
        s = er.sum()
        # loss = log(sum exp(z - m)) - (z[label] - m), accumulated in float64
        total += math.log(np.float64(s)) - (np.float64(z[lab]) - np.float64(top[r]))  # float() stays float32
        scale = inv_n / s
        for j in range(width):
            g[j] = er[j] * scale
        g[lab] -= inv_n
    return total


@njit(parallel=True, **JIT)
def _softmax_par(logits, labels, grad, rows):
    n = logits.shape[0]
    pieces = (n + rows - 1) // rows
    partial = np.empty(pieces, np.float64)  # one slot per piece: no shared accumulator
    for t in prange(pieces):
        partial[t] = softmax_xent_rows(
            logits, labels, grad, t * rows, min(n, (t + 1) * rows), n, logits.shape[1]
        )
    return partial.sum()


@njit(**JIT)
def softmax_xent_into(logits, labels, grad, threads):
    """Mean softmax cross-entropy of `logits` against `labels`; writes its gradient.

    Over the threads when large and `threads` > 1. Labels are not range-checked here.

    Parameters
    ----------
    logits : ndarray, (N, C), float32 or float64, C-contiguous
        Unnormalised class scores.
    labels : ndarray, (N,), int32 or int64
        Class of each row, in [0, C).
    grad : ndarray, (N, C), same dtype as `logits`, C-contiguous
        Receives ``(softmax(logits) - onehot(labels)) / N`` in place; may be `logits`.
    threads : int
        Threads to split over: ``numba.get_num_threads()``, or 1 inside a ``prange``.

    Returns
    -------
    float
        The mean loss.
    """
    n, c = logits.shape
    if n * c >= PAR_ELEMS and threads > 1:
        total = _softmax_par(logits, labels, grad, max(1, CHUNK // max(c, 1)))
    else:
        total = softmax_xent_rows(logits, labels, grad, 0, n, n, c)
    return total / n


@njit(**FAST)
def mse_into(pred, target, grad):
    """*Serial* (memory-bound). ``grad = 2 * (pred - target) / (N * D)``; returns the mean squared error.

    NaN propagates.

    Parameters
    ----------
    pred : ndarray, (N, D), float32 or float64, C-contiguous
        Predictions.
    target : ndarray, (N, D), same dtype, C-contiguous
        Targets.
    grad : ndarray, (N, D), same dtype, C-contiguous
        Receives the gradient in place; may be `pred` or `target`.

    Returns
    -------
    float
        ``mean((pred - target)**2)``, the squares summed in float64.
    """
    scale = pred.dtype.type(2.0 / pred.size)
    total = 0.0
    for i in range(pred.shape[0]):
        p = pred[i]
        t = target[i]
        g = grad[i]
        for j in range(p.size):
            d = p[j] - t[j]
            d64 = np.float64(d)  # float(d) would stay float32 in Numba
            total += d64 * d64
            g[j] = d * scale
    return total / pred.size
