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
    """*Serial.* Rows [i0, i1) of ``grad = (softmax(logits) - onehot(labels)) / n`` over the
    first ``width`` columns of ``logits`` and ``grad`` (which may be ``logits``); returns
    their summed loss (float64).

    Stable for any finite logits (the row max is subtracted first); a NaN in a
    row makes that row's gradient and the loss NaN. The exponentials of all the
    rows are taken in one pass over a scratch array: one row (10 classes) is
    shorter than a vector loop's step, and would run scalar."""
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
        partial[t] = softmax_xent_rows(logits, labels, grad, t * rows, min(n, (t + 1) * rows), n, logits.shape[1])
    return partial.sum()


@njit(**JIT)
def softmax_xent_into(logits, labels, grad, threads):
    """Mean softmax cross-entropy of ``logits`` (N, C) against int ``labels`` (N,) in [0, C).

    Writes ``grad = (softmax(logits) - onehot(labels)) / N`` (N, C; may be
    ``logits``) and returns the loss (float). Labels are not range-checked here. Over the
    threads when large and ``threads`` > 1."""
    n, c = logits.shape
    if n * c >= PAR_ELEMS and threads > 1:
        total = _softmax_par(logits, labels, grad, max(1, CHUNK // max(c, 1)))
    else:
        total = softmax_xent_rows(logits, labels, grad, 0, n, n, c)
    return total / n


@njit(**FAST)
def mse_into(pred, target, grad):
    """*Serial* (memory-bound). ``grad = 2 * (pred - target) / (N * D)`` for (N, D) arrays of one
    dtype (``grad`` may be ``pred`` or ``target``); returns ``mean((pred - target)**2)``,
    the squares summed in float64. NaN propagates."""
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
