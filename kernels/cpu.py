"""Numba CPU kernels (``@njit``, cached on disk), same API as ``kernels.reference``.

Every public function validates its arguments in Python with
``kernels._checks`` (so errors are the same ``TypeError``/``ValueError`` as
on every other backend), then calls hand-written compiled loops: no BLAS,
``np.dot`` or ``@`` inside. Conventions (see ``kernels.reference``):
float32 or float64, one dtype per call; C-contiguous arrays (non-contiguous
ones are rejected, never copied); ``out=`` style arguments are written in
place and returned, and allocated when ``None``.

Compiled internals, for other ``@njit`` code (the MLP's fused training step
composes them). They do **no** validation: the caller guarantees
C-contiguous arrays of one float dtype and matching shapes. Names and
argument order are stable:

- ``matmul_into(a, b, out, trans_a, trans_b)``: ``out[:] = op(a) @ op(b)``
  (2-D; ``out`` must not overlap ``a`` or ``b``);
- ``bias_activation_into(z, b, has_bias, code)``: in place
  ``z = act(z + b)`` (``b`` is ignored when ``has_bias`` is false; pass any
  1-D array of the dtype, e.g. an empty one);
- ``activation_backward_into(y, dy, code, out)``: ``out = dact`` from the saved
  output ``y`` (``out`` may alias ``dy``; any shape);
- ``column_sum_into(x, out)``: ``out[j] = sum_i x[i, j]``;
- ``softmax_xent_into(logits, labels, grad) -> float``: mean loss, and
  ``grad = (softmax - onehot) / N``;
- ``sgd_into(param, grad, lr)``: in place ``param -= lr * grad`` (any shape).

Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 relu
(``kernels._checks.ACTIVATION_CODES``).

How it is fast:

- ``matmul`` uses the dot-product form ``C[i, j] = sum_p A[i, p] * Bt[j, p]``
  with both operands contiguous along ``p``: a 4x4 register block of dot
  products is one loop of sixteen reductions, which LLVM vectorises (8 or 16
  lanes) with the accumulators in registers, and only eight vector loads per
  sixteen FMAs. ``op(b)`` is packed transposed (and ``op(a)`` when
  ``trans_a``) into a contiguous buffer first; the output is cut into tiles
  that ``prange`` hands to the cores (each tile is written by one thread
  only), the depth into cache-sized blocks. Small products run serially.
- exp, sigmoid and tanh use a vectorisable exp (Cody-Waite range reduction,
  a polynomial, and the power of two built from its exponent bits) in the
  data's own precision, accurate to a few ulp, so elementwise loops run on
  SIMD lanes instead of calling libm once per element.
- Elementwise kernels split large arrays into chunks over both cores.

Under ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) and
gives the same results; the exp falls back to ``numpy.exp``.
"""

import math

import numpy as np
from numba import config, njit, prange, types
from numba.extending import intrinsic, overload

from . import _checks as chk
from ._checks import ACTIVATIONS

__all__ = [
    "ACTIVATIONS",
    "matmul",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "relu",
    "relu_backward",
    "activation_forward",
    "activation_backward",
    "dense_forward",
    "dense_backward",
    "softmax_cross_entropy",
    "sgd_update",
    # compiled internals (no validation)
    "matmul_into",
    "bias_activation_into",
    "activation_backward_into",
    "column_sum_into",
    "softmax_xent_into",
    "sgd_into",
]

_OPTS = dict(cache=True, error_model="numpy")
# Scalar exp/sigmoid/tanh bodies: FMA contraction only (more accurate, faster).
_SCALAR_JIT = dict(error_model="numpy", fastmath={"contract"})
# Reassociation and contraction (FMA) only: no "nnan"/"ninf", so NaN and Inf
# still propagate through the products and sums.
_FAST = {"reassoc", "contract"}

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3

# Work sizes (elements or multiply-adds) above which a kernel uses both cores.
_PAR_ELEMS = 1 << 15
_PAR_FLOPS = 1 << 17
_CHUNK = 1 << 14  # elements per parallel chunk

# ---------------------------------------------------------------- exp(x <= 0)


@intrinsic
def _i32_as_f32(typingctx, v):
    """Reinterpret the bits of an int32 as a float32 (compiled code only)."""
    from llvmlite import ir

    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _i64_as_f64(typingctx, v):
    """Reinterpret the bits of an int64 as a float64 (compiled code only)."""
    from llvmlite import ir

    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def _exp_nonpos(x):
    """exp(x) for x <= 0 (also -inf). Python fallback; compiled code uses the overload."""
    return np.exp(x)


_F32 = np.float32
_E32 = dict(
    lo=_F32(-87.3),  # below: the result is under the smallest normal float32, return 0
    log2e=_F32(1.44269504088896341),
    hi=_F32(0.693359375),
    lo_=_F32(-2.12194440e-4),
    c=[_F32(1.0 / math.factorial(k)) for k in range(8)],
)
_E64 = dict(
    lo=-708.3,
    log2e=1.44269504088896341,
    hi=6.93147180369123816490e-01,
    lo_=1.90821492927058770002e-10,
    c=[1.0 / math.factorial(k) for k in range(14)],
)


@overload(_exp_nonpos, jit_options=_SCALAR_JIT, inline="always")
def _exp_nonpos_impl(x):
    if x == types.float32:
        lo, log2e, hi, lo_ = _E32["lo"], _E32["log2e"], _E32["hi"], _E32["lo_"]
        c2, c3, c4, c5, c6, c7 = _E32["c"][2:]
        half, one = _F32(0.5), _F32(1.0)

        def impl(x):
            n = np.floor(x * log2e + half)
            r = (x - n * hi) - n * lo_
            p = c7
            p = p * r + c6
            p = p * r + c5
            p = p * r + c4
            p = p * r + c3
            p = p * r + c2
            p = p * r + one
            p = p * r + one
            scale = _i32_as_f32(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
            return p * scale if x >= lo else _F32(0.0)

        return impl
    if x == types.float64:
        lo, log2e, hi, lo_ = _E64["lo"], _E64["log2e"], _E64["hi"], _E64["lo_"]
        c = _E64["c"]
        c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = c[2:]

        def impl(x):
            n = np.floor(x * log2e + 0.5)
            r = (x - n * hi) - n * lo_
            p = c13
            p = p * r + c12
            p = p * r + c11
            p = p * r + c10
            p = p * r + c9
            p = p * r + c8
            p = p * r + c7
            p = p * r + c6
            p = p * r + c5
            p = p * r + c4
            p = p * r + c3
            p = p * r + c2
            p = p * r + 1.0
            p = p * r + 1.0
            scale = _i64_as_f64((np.int64(n) + np.int64(1023)) << np.int64(52))
            return p * scale if x >= lo else 0.0

        return impl
    return None


# ------------------------------------------------------- scalar activations
# Python bodies are the NUMBA_DISABLE_JIT fallback; compiled code uses the
# overloads below, specialised per dtype so float32 math stays float32.

_TANH_C = (
    1.0,
    -1.0 / 3.0,
    2.0 / 15.0,
    -17.0 / 315.0,
    62.0 / 2835.0,
    -1382.0 / 155925.0,
    21844.0 / 6081075.0,
    -929569.0 / 638512875.0,
)
_TANH_SMALL = 0.125  # below: odd Taylor series (no cancellation in 1 - exp(-2|v|))


def _sigmoid1(v):
    """Numerically stable logistic of one float (exp only ever sees -|v|)."""
    one = type(v)(1.0)
    e = np.exp(-abs(v))
    return one / (one + e) if v >= 0 else e / (one + e)


def _tanh1(v):
    """tanh of one float."""
    return type(v)(np.tanh(v))


def _scalar_consts(t):
    f = np.float32 if t == types.float32 else np.float64
    # float32 needs the series to x**7 only; float64 to x**15.
    ncoef = 4 if f is np.float32 else 8
    return f, tuple(f(c) for c in _TANH_C[:ncoef])


@overload(_sigmoid1, jit_options=_SCALAR_JIT, inline="always")
def _sigmoid1_impl(v):
    if v not in (types.float32, types.float64):
        return None
    f, _ = _scalar_consts(v)
    one = f(1.0)

    def impl(v):
        e = _exp_nonpos(-abs(v))
        return one / (one + e) if v >= 0 else e / (one + e)

    return impl


@overload(_tanh1, jit_options=_SCALAR_JIT, inline="always")
def _tanh1_impl(v):
    if v not in (types.float32, types.float64):
        return None
    f, c = _scalar_consts(v)
    one, small = f(1.0), f(_TANH_SMALL)
    if len(c) == 4:
        c0, c1, c2, c3 = c

        def series(s):
            return ((c3 * s + c2) * s + c1) * s + c0

    else:
        c0, c1, c2, c3, c4, c5, c6, c7 = c

        def series(s):
            return ((((((c7 * s + c6) * s + c5) * s + c4) * s + c3) * s + c2) * s + c1) * s + c0

    series = njit(inline="always", **_SCALAR_JIT)(series)

    def impl(v):
        # Both branches computed, then selected: keeps the loop vectorisable.
        a = abs(v)
        e = _exp_nonpos(-(a + a))
        t = (one - e) / (one + e)
        t = t if v >= 0 else -t
        return v * series(v * v) if a < small else t

    return impl


# ------------------------------------------------------- elementwise loops
# Each ``_*_range`` works on flat (1-D) views over [lo, hi); the ``_flat``
# drivers run them serially, or in ``prange`` chunks over both cores when the
# array is large. Chunks are disjoint, so there are no races.


@njit(fastmath={"contract"}, **_OPTS)
def _fwd_range(x, out, code, lo, hi):
    # Loops run over slices from 0 so LLVM can prove indices are non-negative
    # (no wraparound selects) and vectorise.
    xs = x[lo:hi]
    os = out[lo:hi]
    if code == SIGMOID:
        for i in range(xs.size):
            os[i] = _sigmoid1(xs[i])
    elif code == TANH:
        for i in range(xs.size):
            os[i] = _tanh1(xs[i])
    elif code == RELU:
        zero = x.dtype.type(0)
        for i in range(xs.size):
            v = xs[i]
            os[i] = zero if v < zero else v  # NaN passes through, like np.maximum
    else:
        for i in range(xs.size):
            os[i] = xs[i]


@njit(**_OPTS)
def _bwd_range(y, dy, code, out, lo, hi):
    one = y.dtype.type(1)
    zero = y.dtype.type(0)
    ys = y[lo:hi]
    ds = dy[lo:hi]
    os = out[lo:hi]
    if code == SIGMOID:
        for i in range(ys.size):
            v = ys[i]
            os[i] = ds[i] * v * (one - v)
    elif code == TANH:
        for i in range(ys.size):
            v = ys[i]
            os[i] = ds[i] * (one - v * v)
    elif code == RELU:
        for i in range(ys.size):
            os[i] = ds[i] if ys[i] > zero else zero
    else:
        for i in range(ys.size):
            os[i] = ds[i]


@njit(parallel=True, **_OPTS)
def _fwd_par(x, out, code):
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        _fwd_range(x, out, code, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@njit(parallel=True, **_OPTS)
def _bwd_par(y, dy, code, out):
    n = y.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        _bwd_range(y, dy, code, out, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@njit(**_OPTS)
def _flat(x):
    return x.reshape(x.size)


@njit(**_OPTS)
def activation_forward_into(x, code, out):
    """``out = act(x)`` for any-shape C-contiguous ``x``/``out`` (may alias)."""
    xf = _flat(x)
    of = _flat(out)
    if xf.size >= _PAR_ELEMS:
        _fwd_par(xf, of, code)
    else:
        _fwd_range(xf, of, code, 0, xf.size)


@njit(**_OPTS)
def activation_backward_into(y, dy, code, out):
    """``out = dy * act'(.)`` from the saved output ``y``; any shape; ``out`` may alias ``dy``."""
    yf = _flat(y)
    df = _flat(dy)
    of = _flat(out)
    if yf.size >= _PAR_ELEMS:
        _bwd_par(yf, df, code, of)
    else:
        _bwd_range(yf, df, code, of, 0, yf.size)


@njit(**_OPTS)
def _bias_act_rows(z, b, has_bias, code, r0, r1):
    f = z.shape[1]
    for r in range(r0, r1):
        row = z[r]
        if has_bias:
            for j in range(f):
                row[j] += b[j]
        _fwd_range(row, row, code, 0, f)


@njit(parallel=True, **_OPTS)
def _bias_act_par(z, b, has_bias, code, rows_per_chunk):
    n = z.shape[0]
    nchunks = (n + rows_per_chunk - 1) // rows_per_chunk
    for c in prange(nchunks):
        _bias_act_rows(z, b, has_bias, code, c * rows_per_chunk, min(n, (c + 1) * rows_per_chunk))


@njit(**_OPTS)
def bias_activation_into(z, b, has_bias, code):
    """In place ``z = act(z + b)`` for 2-D ``z`` (N, F) and ``b`` (F,) (ignored unless ``has_bias``)."""
    n, f = z.shape
    if n * f >= _PAR_ELEMS:
        rows = max(1, _CHUNK // max(f, 1))
        _bias_act_par(z, b, has_bias, code, rows)
    else:
        _bias_act_rows(z, b, has_bias, code, 0, n)


@njit(**_OPTS)
def _colsum_cols(x, out, j0, j1):
    n = x.shape[0]
    o = out[j0:j1]
    o[:] = 0
    for i in range(n):
        row = x[i, j0:j1]
        for j in range(o.size):
            o[j] += row[j]


@njit(parallel=True, **_OPTS)
def _colsum_par(x, out, width):
    f = x.shape[1]
    nchunks = (f + width - 1) // width
    for c in prange(nchunks):
        _colsum_cols(x, out, c * width, min(f, (c + 1) * width))


@njit(**_OPTS)
def column_sum_into(x, out):
    """``out[j] = sum_i x[i, j]`` for 2-D ``x`` (N, F), ``out`` (F,). Each thread owns whole columns."""
    n, f = x.shape
    if n * f >= 4 * _PAR_ELEMS and f >= 64:
        _colsum_par(x, out, ((f + 1) // 2 + 15) // 16 * 16)  # two 16-aligned halves
    else:
        _colsum_cols(x, out, 0, f)


@njit(**_OPTS)
def _sgd_range(p, g, lr, lo, hi):
    ps = p[lo:hi]
    gs = g[lo:hi]
    for i in range(ps.size):
        ps[i] -= lr * gs[i]


@njit(parallel=True, **_OPTS)
def _sgd_par(p, g, lr):
    n = p.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        _sgd_range(p, g, lr, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@njit(**_OPTS)
def sgd_into(param, grad, lr):
    """In place ``param -= lr * grad`` (``lr`` cast to the dtype first), any shape."""
    p = _flat(param)
    g = _flat(grad)
    lr_t = p.dtype.type(lr)
    if p.size >= _PAR_ELEMS:
        _sgd_par(p, g, lr_t)
    else:
        _sgd_range(p, g, lr_t, 0, p.size)


# ------------------------------------------------------- softmax cross-entropy


@njit(fastmath={"contract"}, **_OPTS)
def _softmax_rows(logits, labels, grad, r0, r1):
    """Rows [r0, r1) of the gradient; returns their summed loss (float64)."""
    n, c = logits.shape
    total = 0.0
    inv_n = logits.dtype.type(1.0 / n)
    for r in range(r0, r1):
        z = logits[r]
        g = grad[r]
        m = z[0]
        for j in range(1, c):
            m = max(m, z[j])
        s = z.dtype.type(0)
        for j in range(c):
            e = _exp_nonpos(z[j] - m)
            g[j] = e
            s += e
        inv_s = z.dtype.type(1) / s
        for j in range(c):
            g[j] *= inv_s * inv_n
        lab = labels[r]
        g[lab] -= inv_n
        # loss = log(sum exp(z - m)) - (z[label] - m), accumulated in float64
        total += math.log(float(s)) - (float(z[lab]) - float(m))
    return total


@njit(parallel=True, **_OPTS)
def _softmax_par(logits, labels, grad, rows):
    n = logits.shape[0]
    nchunks = (n + rows - 1) // rows
    partial = np.empty(nchunks, np.float64)  # one slot per chunk: no shared accumulator
    for c in prange(nchunks):
        partial[c] = _softmax_rows(logits, labels, grad, c * rows, min(n, (c + 1) * rows))
    return partial.sum()


@njit(**_OPTS)
def softmax_xent_into(logits, labels, grad):
    """Mean softmax cross-entropy of ``logits`` (N, C) against int ``labels`` (N,) in [0, C).

    Writes ``grad = (softmax(logits) - onehot(labels)) / N`` (N, C) and
    returns the loss as a float. Labels are not range-checked here. Allocates
    nothing unless the batch is large enough to split over the cores.
    """
    n, c = logits.shape
    if n * c >= _PAR_ELEMS:
        total = _softmax_par(logits, labels, grad, max(1, _CHUNK // max(c, 1)))
    else:
        total = _softmax_rows(logits, labels, grad, 0, n)
    return total / n


# ------------------------------------------------------------------ matmul
# C (M, N) = A (M, K) @ Bt (N, K).T, both operands contiguous along K.

_KC = 512  # depth block: 4 rows of A and of Bt (16 KiB float32) stay in L1
_TM = 64  # output tile rows: the tile's rows of A (<= 128 KiB) stay in L2
_TN = 64  # output tile columns
_TB = 32  # transpose block


@njit(fastmath=_FAST, **_OPTS)
def _k44(A, Bt, C, i, j, p0, p1, acc):
    """C[i:i+4, j:j+4] (+)= A[i:i+4, p0:p1] @ Bt[j:j+4, p0:p1].T: 16 dot products in one loop."""
    z = A.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    a0 = A[i, p0:p1]
    a1 = A[i + 1, p0:p1]
    a2 = A[i + 2, p0:p1]
    a3 = A[i + 3, p0:p1]
    b0 = Bt[j, p0:p1]
    b1 = Bt[j + 1, p0:p1]
    b2 = Bt[j + 2, p0:p1]
    b3 = Bt[j + 3, p0:p1]
    for p in range(a0.size):
        x0 = a0[p]
        x1 = a1[p]
        x2 = a2[p]
        x3 = a3[p]
        y0 = b0[p]
        y1 = b1[p]
        y2 = b2[p]
        y3 = b3[p]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    if acc:
        s00 += C[i, j]
        s01 += C[i, j + 1]
        s02 += C[i, j + 2]
        s03 += C[i, j + 3]
        s10 += C[i + 1, j]
        s11 += C[i + 1, j + 1]
        s12 += C[i + 1, j + 2]
        s13 += C[i + 1, j + 3]
        s20 += C[i + 2, j]
        s21 += C[i + 2, j + 1]
        s22 += C[i + 2, j + 2]
        s23 += C[i + 2, j + 3]
        s30 += C[i + 3, j]
        s31 += C[i + 3, j + 1]
        s32 += C[i + 3, j + 2]
        s33 += C[i + 3, j + 3]
    C[i, j] = s00
    C[i, j + 1] = s01
    C[i, j + 2] = s02
    C[i, j + 3] = s03
    C[i + 1, j] = s10
    C[i + 1, j + 1] = s11
    C[i + 1, j + 2] = s12
    C[i + 1, j + 3] = s13
    C[i + 2, j] = s20
    C[i + 2, j + 1] = s21
    C[i + 2, j + 2] = s22
    C[i + 2, j + 3] = s23
    C[i + 3, j] = s30
    C[i + 3, j + 1] = s31
    C[i + 3, j + 2] = s32
    C[i + 3, j + 3] = s33


@njit(fastmath=_FAST, **_OPTS)
def _k14(A, Bt, C, i, j, p0, p1, acc):
    """C[i, j:j+4] (+)= A[i, p0:p1] @ Bt[j:j+4, p0:p1].T (leftover rows)."""
    z = A.dtype.type(0)
    s0 = s1 = s2 = s3 = z
    a = A[i, p0:p1]
    b0 = Bt[j, p0:p1]
    b1 = Bt[j + 1, p0:p1]
    b2 = Bt[j + 2, p0:p1]
    b3 = Bt[j + 3, p0:p1]
    for p in range(a.size):
        x = a[p]
        s0 += x * b0[p]
        s1 += x * b1[p]
        s2 += x * b2[p]
        s3 += x * b3[p]
    if acc:
        s0 += C[i, j]
        s1 += C[i, j + 1]
        s2 += C[i, j + 2]
        s3 += C[i, j + 3]
    C[i, j] = s0
    C[i, j + 1] = s1
    C[i, j + 2] = s2
    C[i, j + 3] = s3


@njit(fastmath=_FAST, **_OPTS)
def _k41(A, Bt, C, i, j, p0, p1, acc):
    """C[i:i+4, j] (+)= A[i:i+4, p0:p1] @ Bt[j, p0:p1] (leftover columns)."""
    z = A.dtype.type(0)
    s0 = s1 = s2 = s3 = z
    b = Bt[j, p0:p1]
    a0 = A[i, p0:p1]
    a1 = A[i + 1, p0:p1]
    a2 = A[i + 2, p0:p1]
    a3 = A[i + 3, p0:p1]
    for p in range(b.size):
        y = b[p]
        s0 += a0[p] * y
        s1 += a1[p] * y
        s2 += a2[p] * y
        s3 += a3[p] * y
    if acc:
        s0 += C[i, j]
        s1 += C[i + 1, j]
        s2 += C[i + 2, j]
        s3 += C[i + 3, j]
    C[i, j] = s0
    C[i + 1, j] = s1
    C[i + 2, j] = s2
    C[i + 3, j] = s3


@njit(fastmath=_FAST, **_OPTS)
def _k11(A, Bt, C, i, j, p0, p1, acc):
    """C[i, j] (+)= A[i, p0:p1] . Bt[j, p0:p1]."""
    s = A.dtype.type(0)
    a = A[i, p0:p1]
    b = Bt[j, p0:p1]
    for p in range(a.size):
        s += a[p] * b[p]
    if acc:
        s += C[i, j]
    C[i, j] = s


@njit(**_OPTS)
def _nt_tile(A, Bt, C, i0, i1, j0, j1):
    """C[i0:i1, j0:j1] = A[i0:i1] @ Bt[j0:j1].T, depth in blocks of _KC."""
    k = A.shape[1]
    for p0 in range(0, k, _KC):
        p1 = min(k, p0 + _KC)
        acc = p0 > 0
        j = j0
        while j + 4 <= j1:
            i = i0
            while i + 4 <= i1:
                _k44(A, Bt, C, i, j, p0, p1, acc)
                i += 4
            while i < i1:
                _k14(A, Bt, C, i, j, p0, p1, acc)
                i += 1
            j += 4
        while j < j1:
            i = i0
            while i + 4 <= i1:
                _k41(A, Bt, C, i, j, p0, p1, acc)
                i += 4
            while i < i1:
                _k11(A, Bt, C, i, j, p0, p1, acc)
                i += 1
            j += 1


@njit(parallel=True, **_OPTS)
def _nt_par(A, Bt, C, tm, tn):
    m, n = C.shape
    ntm = (m + tm - 1) // tm
    ntn = (n + tn - 1) // tn
    for t in prange(ntm * ntn):  # each tile of C belongs to one thread
        bi = t // ntn
        bj = t - bi * ntn
        _nt_tile(A, Bt, C, bi * tm, min(m, (bi + 1) * tm), bj * tn, min(n, (bj + 1) * tn))


@njit(**_OPTS)
def _matmul_nt(A, Bt, C):
    m, n = C.shape
    k = A.shape[1]
    if m * n * k >= _PAR_FLOPS and (m > 4 or n > 4):
        # Tiles of at most _TM x _TN, but at least two along the longer side.
        tm = min(_TM, max(4, (m + 7) // 8 * 4)) if m >= n else _TM
        tn = min(_TN, max(4, (n + 7) // 8 * 4)) if n > m else _TN
        _nt_par(A, Bt, C, tm, tn)
    else:
        _nt_tile(A, Bt, C, 0, m, 0, n)


@njit(**_OPTS)
def _transpose_rows(src, dst, r0, r1):
    """dst[r0:r1, :] = src[:, r0:r1].T in _TB x _TB blocks."""
    m = src.shape[0]
    for c0 in range(0, m, _TB):
        c1 = min(m, c0 + _TB)
        for r in range(r0, r1):
            d = dst[r]
            for c in range(c0, c1):
                d[c] = src[c, r]


@njit(parallel=True, **_OPTS)
def _transpose_par(src, dst):
    n = dst.shape[0]
    nb = (n + _TB - 1) // _TB
    for t in prange(nb):
        _transpose_rows(src, dst, t * _TB, min(n, (t + 1) * _TB))


@njit(**_OPTS)
def _transpose(src):
    """A new C-contiguous array holding ``src.T`` (2-D)."""
    m, n = src.shape
    dst = np.empty((n, m), src.dtype)
    if m * n >= _PAR_ELEMS:
        _transpose_par(src, dst)
    else:
        _transpose_rows(src, dst, 0, n)
    return dst


@njit(**_OPTS)
def matmul_into(a, b, out, trans_a, trans_b):
    """``out[:] = op(a) @ op(b)`` with ``op(x) = x.T`` when its flag is set.

    2-D C-contiguous arrays of one float dtype; ``out`` (M, N) must not overlap
    ``a`` or ``b``. ``op(b)`` (and ``op(a)`` when ``trans_a``) is first packed
    into a transposed copy unless already laid out along the depth.
    """
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        out[:] = 0
        return
    A = _transpose(a) if trans_a else a
    Bt = b if trans_b else _transpose(b)
    _matmul_nt(A, Bt, out)


# ------------------------------------------------------------- public API


def _alloc(out, shape, dtype):
    return np.empty(shape, dtype) if out is None else out


def _overlaps(out, *arrays):
    return any(a is not None and np.may_share_memory(out, a) for a in arrays)


def matmul(a, b, out=None, *, trans_a=False, trans_b=False):
    """Matrix product ``op(a) @ op(b)``.

    ``a`` is (M, K), or (K, M) stored transposed when ``trans_a`` (computes
    ``a.T @ b``); ``b`` is (K, N), or (N, K) when ``trans_b``. Returns ``out``
    (M, N) of the operands' dtype, written in place when given (if it overlaps
    ``a`` or ``b`` the product goes through a temporary first). Raises
    ``ValueError`` when the inner dimensions differ or an array is not
    C-contiguous, ``TypeError`` on mixed or non-float dtypes.
    """
    m, _, n = chk.matmul_shapes(a, b, trans_a, trans_b)
    chk.out_array("out", out, (m, n), a.dtype)
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    if out is not None and _overlaps(out, a, b):
        out[...] = matmul(a, b, trans_a=trans_a, trans_b=trans_b)
        return out
    out = _alloc(out, (m, n), a.dtype)
    matmul_into(a, b, out, trans_a, trans_b)
    return out


def activation_forward(x, activation, out=None):
    """Apply the named activation (one of ``ACTIVATIONS``) elementwise. Any shape.

    Returns ``out`` (same shape and dtype as ``x``; may be ``x`` itself for an
    in-place update). Raises ``ValueError`` for an unknown activation.
    """
    chk.elementwise_args(x, out)
    code = chk.activation_code(activation)
    out = _alloc(out, x.shape, x.dtype)
    activation_forward_into(x, code, out)
    return out


def activation_backward(y, dy, activation, out=None):
    """Gradient through the named activation from its saved output ``y``.

    ``y`` and ``dy`` have one shape and dtype; returns ``out`` (may alias ``dy``).
    """
    chk.backward_args(y, dy, out)
    code = chk.activation_code(activation)
    out = _alloc(out, y.shape, y.dtype)
    activation_backward_into(y, dy, code, out)
    return out


def sigmoid(x, out=None):
    """Logistic sigmoid, numerically stable for any input (+-1000 give exactly 1 and 0). Any shape."""
    return activation_forward(x, "sigmoid", out)


def sigmoid_backward(y, dy, out=None):
    """Gradient through sigmoid from its saved output: ``dy * y * (1 - y)``."""
    return activation_backward(y, dy, "sigmoid", out)


def tanh(x, out=None):
    """Hyperbolic tangent. Any shape."""
    return activation_forward(x, "tanh", out)


def tanh_backward(y, dy, out=None):
    """Gradient through tanh from its saved output: ``dy * (1 - y**2)``."""
    return activation_backward(y, dy, "tanh", out)


def relu(x, out=None):
    """Rectified linear unit ``max(x, 0)``. Any shape."""
    return activation_forward(x, "relu", out)


def relu_backward(y, dy, out=None):
    """Gradient through ReLU from its saved output: ``dy`` where ``y > 0``, else 0."""
    return activation_backward(y, dy, "relu", out)


def _no_bias(dtype):
    return np.empty(0, dtype)


def dense_forward(x, w, b=None, activation="linear", out=None):
    """Fused dense layer ``act(x @ w + b)``.

    ``x`` (N, fan_in), ``w`` (fan_in, fan_out), ``b`` (fan_out,) or ``None``
    (no bias). Returns ``out`` (N, fan_out). Raises ``ValueError`` on shape
    mismatch or an unknown activation, ``TypeError`` on dtype problems.
    """
    _, _, code = chk.dense_forward_args(x, w, b, activation, out)
    if out is not None and _overlaps(out, x, w, b):
        out[...] = dense_forward(x, w, b, activation)
        return out
    out = _alloc(out, (x.shape[0], w.shape[1]), x.dtype)
    matmul_into(x, w, out, False, False)
    bias_activation_into(out, _no_bias(x.dtype) if b is None else b, b is not None, code)
    return out


def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    """Backward pass of ``y = act(x @ w + b)`` given the upstream gradient ``dy``.

    ``x`` (N, fan_in) and ``y`` (N, fan_out) are the saved input and output.
    Returns ``(dx, dw, db)``: ``dx`` (N, fan_in), or ``None`` when
    ``compute_dx`` is false (first layer); ``dw`` (fan_in, fan_out);
    ``db`` (fan_out,), the column sums of the pre-activation gradient.
    Outputs given by the caller are written in place; ``dy`` is not modified.
    """
    code = chk.dense_backward_args(x, w, y, dy, activation, dx, dw, db)
    dz = np.empty(y.shape, y.dtype)
    activation_backward_into(y, dy, code, dz)
    dw = _alloc(dw, w.shape, x.dtype)
    db = _alloc(db, (w.shape[1],), x.dtype)
    matmul_into(x, dz, dw, True, False)
    column_sum_into(dz, db)
    if not compute_dx:
        return None, dw, db
    dx = _alloc(dx, x.shape, x.dtype)
    matmul_into(dz, w, dx, False, True)
    return dx, dw, db


def softmax_cross_entropy(logits, labels, grad=None):
    """Mean softmax cross-entropy over a batch, and its gradient.

    ``logits`` (N, C) float, ``labels`` (N,) int32/int64 in [0, C). Returns
    ``(loss, grad)``: ``loss`` a Python float, ``grad`` (N, C) =
    ``(softmax(logits) - onehot(labels)) / N`` (may be ``logits`` itself).
    Stable for any finite logits (the row max is subtracted first). Raises
    ``ValueError`` for labels out of range or of the wrong shape.
    """
    _, c = chk.softmax_args(logits, labels, grad)
    chk.label_range(np.asarray(labels), c)
    grad = _alloc(grad, logits.shape, logits.dtype)
    loss = softmax_xent_into(logits, labels, grad)
    return float(loss), grad


def sgd_update(param, grad, lr):
    """In place ``param -= lr * grad``; returns ``param``. Any shape, same dtype.

    Raises ``TypeError`` for a non-numeric ``lr``, ``ValueError`` for a
    non-finite one or a shape mismatch.
    """
    lr = chk.sgd_args(param, grad, lr)
    sgd_into(param, grad, lr)
    return param
