"""Numba CPU kernels (``@njit``, cached on disk), same API as ``kernels.reference``.

Every public function validates its arguments in Python with
``kernels._checks`` (so errors are the same ``TypeError``/``ValueError`` as
on every other backend), then calls hand-written compiled loops: no BLAS,
``np.dot`` or ``@`` inside. Conventions (see ``kernels.reference``):
float32 or float64, one dtype per call; C-contiguous arrays (non-contiguous
ones are rejected, never copied); ``out=`` style arguments are written in
place and returned, and allocated when ``None``.

Compiled internals, for your own ``@njit`` code (the MLP's training step
has its own fused kernels: see ``fastinit.mlp``). They do **no**
validation: the caller guarantees C-contiguous arrays of one float dtype
and matching shapes. Names and argument order are stable:

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

- ``matmul`` is GotoBLAS-shaped: the output is cut into tiles that
  ``prange`` hands to the cores (each tile written by one thread only; split
  along the output's longer side), the depth into 4 KiB blocks. Per depth
  block, op(b) is packed one 2-vector-wide column sliver at a time
  (depth-major, it stays in L1) and op(a) into 8-row slivers (or read in
  place when the tile is narrow); a micro-kernel written in LLVM IR keeps an
  8 x (2 x 512-bit) block of C in 16 vector registers across the depth loop:
  per step two vector loads, eight broadcasts and sixteen FMAs. It asks LLVM
  for 512-bit vectors on that one function (Numba's default prefers 256-bit
  on AVX-512 CPUs); CPUs without AVX-512 get the same code split in halves.
  Transposed operands are read in place by the packing, so nothing the size
  of an operand is allocated. Small products run on one thread.
- exp, sigmoid and tanh use a vectorisable exp (Cody-Waite range reduction,
  a polynomial, and the power of two built from its exponent bits) in the
  data's own precision, accurate to a few ulp, so elementwise loops run on
  SIMD lanes instead of calling libm once per element.
- Elementwise kernels split large arrays into chunks over both cores; loops
  run over slices from index 0 so LLVM can prove indices non-negative and
  vectorise (a loop from a runtime start keeps Numba's wraparound selects).

Under ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) and
gives the same results; the exp falls back to ``numpy.exp``.
"""

import math

import numpy as np
from numba import config, njit, prange, types
from numba.extending import intrinsic, overload

from . import _checks as chk
from ._checks import ACTIVATIONS, KERNEL_API

__all__ = [
    "ACTIVATIONS", *KERNEL_API,  # the shared API (see kernels._checks.KERNEL_API)
    # njit/device building blocks for other compiled code:
    "matmul_into", "bias_activation_into", "activation_backward_into", "column_sum_into",
    "softmax_xent_into", "sgd_into",
]

_OPTS = dict(cache=True, error_model="numpy")
# Scalar exp/sigmoid/tanh bodies: FMA contraction only (more accurate, faster).
_SCALAR_JIT = dict(error_model="numpy", fastmath={"contract"})

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3

# Work sizes (elements or multiply-adds) above which a kernel uses both cores.
_PAR_ELEMS = 1 << 17
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


# Reassociation lets the row sum vectorise (a different, equally accurate,
# summation order); no "nnan"/"ninf", so NaN logits still give NaN.
@njit(fastmath={"contract", "reassoc"}, **_OPTS)
def _softmax_rows(logits, labels, grad, r0, r1):
    """Rows [r0, r1) of the gradient; returns their summed loss (float64)."""
    n, c = logits.shape
    total = 0.0
    inv_n = logits.dtype.type(1.0 / n)
    for r in range(r0, r1):
        z = logits[r]
        g = grad[r]
        m = z[0]
        for j in range(c):
            v = z[j]
            m = v if v > m else m
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
# GotoBLAS-style: C (M, N) = op(A) @ op(B). The output is cut into tiles that
# ``prange`` hands to the cores (each tile is written by one thread only).
# Within a tile, for each depth block of KC: op(A)'s rows are packed into
# MR-row slivers (depth-major), then for each NR-column sliver of op(B)
# (packed depth-major, it stays in L1) a register-blocked micro-kernel
# accumulates the MR x NR block of C in vector registers.

_MR = 8  # micro-kernel rows
_KC_BYTES = 4096  # depth block: KC = 4096 / itemsize (1024 float32, 512 float64)
_TM_MAX = 256  # tile rows: a tile's packed A (TM x KC) stays in L2
_DIRECT_COLS = 4  # tiles this many column slivers wide or less read A in place
# Tiles are planned for Numba's thread pool size (a compile-time constant, so
# the kernels stay cacheable; numba.set_num_threads(1) still works).
_NTHREADS = max(1, config.NUMBA_NUM_THREADS)


def _ukernel(ap, off, rs, ps, bp, ct, kc):
    """``ct[r, j] = sum_p ap[off + r*rs + p*ps] * bp[p*NR + j]`` (ct row-major MR x NR).

    ``ap`` is a flat array holding op(A)'s MR rows at stride ``rs`` along the
    rows and ``ps`` along the depth (a packed sliver: rs=1, ps=MR; rows read in
    place: rs=lda, ps=1). Python fallback (NUMBA_DISABLE_JIT); compiled code
    uses the intrinsic below.
    """
    nr = ct.size // _MR
    acc = np.zeros((_MR, nr), ct.dtype)
    rows = off + rs * np.arange(_MR)
    for p in range(kc):
        acc += np.multiply.outer(ap[rows + p * ps], bp[p * nr : (p + 1) * nr])
    ct[:] = acc.reshape(-1)


def _ukernel_codegen(dt, mr, nv):
    """LLVM IR for the micro-kernel (``kernels._tile.emit_tile``): MR x nv vectors of
    accumulators kept in registers across the depth loop; one broadcast per row,
    nv vector loads of the packed B sliver and nv * MR FMAs per step."""
    from llvmlite import ir

    from ._tile import emit_tile

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        nr = ir.Constant(i64, nv * (16 if dt == types.float32 else 8))
        a_, b_, c_ = (context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 4, 5))
        zero = ir.Constant(i64, 0)
        emit_tile(context, builder, dt, mr, nv, a_, args[1], args[2], args[3], b_, zero, nr, c_, zero, nr, args[6])
        return context.get_dummy_value()

    return codegen


@intrinsic
def _ukernel_ir(typingctx, ap, off, rs, ps, bp, ct, kc):
    """The compiled micro-kernel (see ``_ukernel``): 1-D C-contiguous ``ap``,
    ``bp`` (kc * NR), ``ct`` (MR * NR) of one float dtype, NR being 32 for
    float32 and 16 for float64; integer offset and strides."""
    if not (isinstance(ap, types.Array) and ap.dtype in (types.float32, types.float64)):
        return None
    return types.none(ap, types.intp, types.intp, types.intp, bp, ct, types.intp), _ukernel_codegen(ap.dtype, _MR, 2)


@intrinsic
def _ukernel_half_ir(typingctx, ap, off, rs, ps, bp, ct, kc):
    """The micro-kernel for a last, narrow column sliver: NR / 2 columns (one vector)."""
    if not (isinstance(ap, types.Array) and ap.dtype in (types.float32, types.float64)):
        return None
    return types.none(ap, types.intp, types.intp, types.intp, bp, ct, types.intp), _ukernel_codegen(ap.dtype, _MR, 1)


if not config.DISABLE_JIT:

    @overload(_ukernel, inline="never", jit_options=dict(error_model="numpy"))
    def _ukernel_impl(ap, off, rs, ps, bp, ct, kc):
        def impl(ap, off, rs, ps, bp, ct, kc):
            if ct.size == _MR * _nr(ct):
                _ukernel_ir(ap, off, rs, ps, bp, ct, kc)
            else:
                _ukernel_half_ir(ap, off, rs, ps, bp, ct, kc)

        return impl


@njit(**_OPTS)
def _nr(x):
    """Micro-kernel columns: two 512-bit vectors (32 float32, 16 float64)."""
    return 128 // x.itemsize


@njit(**_OPTS)
def _pack_a(a, trans_a, i0, i1, p0, kc, ap):
    """Pack op(a)[i0:i1, p0:p0+kc] into MR-row slivers, depth-major, zero-padded:
    ap[s*kc*MR + p*MR + r] = op(a)[i0 + s*MR + r, p0 + p]."""
    zero = ap.dtype.type(0)
    nsl = (i1 - i0 + _MR - 1) // _MR
    for s in range(nsl):
        dst = ap[s * kc * _MR : (s + 1) * kc * _MR]
        rows = min(_MR, i1 - i0 - s * _MR)
        if trans_a:  # a is (K, M): the MR values of one depth are contiguous
            if rows == _MR:  # constant trip count: one vector move per depth
                for p in range(kc):
                    src = a[p0 + p, i0 + s * _MR : i0 + s * _MR + _MR]
                    d = dst[p * _MR : (p + 1) * _MR]
                    for r in range(_MR):
                        d[r] = src[r]
                continue
            for p in range(kc):
                src = a[p0 + p, i0 + s * _MR : i0 + s * _MR + rows]
                d = dst[p * _MR : (p + 1) * _MR]
                for r in range(rows):
                    d[r] = src[r]
                for r in range(rows, _MR):
                    d[r] = zero
        else:  # a is (M, K): rows are contiguous along the depth
            for r in range(rows):
                src = a[i0 + s * _MR + r, p0 : p0 + kc]
                for p in range(kc):
                    dst[p * _MR + r] = src[p]
            for r in range(rows, _MR):
                for p in range(kc):
                    dst[p * _MR + r] = zero


@njit(**_OPTS)
def _pack_b(b, trans_b, j0, nr, p0, kc, bp, NR):
    """Pack op(b)[p0:p0+kc, j0:j0+NR] depth-major, zero-padded past column j0+nr:
    bp[p*NR + j] = op(b)[p0 + p, j0 + j]."""
    zero = bp.dtype.type(0)
    if trans_b:  # b is (N, K): column j of op(b) is row j of b
        # In depth chunks of 64 so the strided writes stay within L1.
        for q0 in range(0, kc, 64):
            q1 = min(kc, q0 + 64)
            for j in range(nr):
                src = b[j0 + j, p0 + q0 : p0 + q1]
                dst = bp[q0 * NR + j : q1 * NR]
                for p in range(q1 - q0):
                    dst[p * NR] = src[p]
            for j in range(nr, NR):
                for p in range(q0, q1):
                    bp[p * NR + j] = zero
    else:  # b is (K, N): rows are contiguous along the columns
        for p in range(kc):
            src = b[p0 + p, j0 : j0 + nr]
            d = bp[p * NR : (p + 1) * NR]
            for j in range(nr):
                d[j] = src[j]
            for j in range(nr, NR):
                d[j] = zero


@njit(**_OPTS)
def _store_block(ct, c, i, j, rows, cols, acc):
    """c[i:i+rows, j:j+cols] (+)= the top-left of the MR x (ct.size / MR) block ``ct``."""
    NR = ct.size // _MR
    for r in range(rows):
        src = ct[r * NR : r * NR + cols]
        dst = c[i + r, j : j + cols]
        if acc:
            for q in range(cols):
                dst[q] += src[q]
        else:
            for q in range(cols):
                dst[q] = src[q]


@njit(**_OPTS)
def _gemm_tile(a, trans_a, b, trans_b, c, i0, i1, j0, j1):
    """c[i0:i1, j0:j1] = op(a)[i0:i1] @ op(b)[:, j0:j1] (single thread).

    op(a)'s rows are packed into MR-row slivers (zero-padded), except when
    the tile is narrow (few column slivers to amortise the packing over) and
    ``a`` is not transposed: then full slivers are read in place.
    """
    k = a.shape[0] if trans_a else a.shape[1]
    NR = _nr(c)
    kcmax = min(k, _KC_BYTES // c.itemsize)
    nsl = (i1 - i0 + _MR - 1) // _MR
    pack = trans_a or j1 - j0 > _DIRECT_COLS * NR
    full = 0 if pack else (i1 - i0) // _MR
    ap = np.empty((nsl - full) * kcmax * _MR, c.dtype)
    bp = np.empty(kcmax * NR, c.dtype)
    ct_full = np.empty(_MR * NR, c.dtype)
    ct_half = np.empty(_MR * (NR // 2), c.dtype)
    af = a.reshape(a.size)
    lda = a.shape[1]
    for p0 in range(0, k, kcmax):
        kc = min(kcmax, k - p0)
        acc = p0 > 0
        if full < nsl:
            _pack_a(a, trans_a, i0 + full * _MR, i1, p0, kc, ap)
        for j in range(j0, j1, NR):
            cols = min(NR, j1 - j)
            # A last sliver of at most half width runs the one-vector kernel.
            ct = ct_half if cols <= NR // 2 else ct_full
            _pack_b(b, trans_b, j, cols, p0, kc, bp, ct.size // _MR)
            for s in range(nsl):
                if s < full:
                    _ukernel(af, (i0 + s * _MR) * lda + p0, lda, 1, bp, ct, kc)
                else:
                    _ukernel(ap, (s - full) * kc * _MR, 1, _MR, bp, ct, kc)
                _store_block(ct, c, i0 + s * _MR, j, min(_MR, i1 - i0 - s * _MR), cols, acc)


@njit(parallel=True, **_OPTS)
def _gemm_par(a, trans_a, b, trans_b, c, tm, tn):
    m, n = c.shape
    ntm = (m + tm - 1) // tm
    ntn = (n + tn - 1) // tn
    for t in prange(ntm * ntn):  # each tile of c belongs to one thread
        bi = t // ntn
        bj = t - bi * ntn
        _gemm_tile(a, trans_a, b, trans_b, c, bi * tm, min(m, (bi + 1) * tm), bj * tn, min(n, (bj + 1) * tn))


@njit(**_OPTS)
def matmul_into(a, b, out, trans_a, trans_b):
    """``out[:] = op(a) @ op(b)`` with ``op(x) = x.T`` when its flag is set.

    2-D C-contiguous arrays of one float dtype; ``out`` (M, N) must not
    overlap ``a`` or ``b``. The transposes are read in place (packing handles
    the layout); a few small packing buffers are allocated per tile.
    """
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        out[:] = 0
        return
    nthreads = _NTHREADS
    if nthreads < 2 or m * n * k < _PAR_FLOPS:
        _gemm_tile(a, trans_a, b, trans_b, out, 0, m, 0, n)
        return
    NR = _nr(out)
    # Tiles: at most _TM_MAX rows; a multiple of the thread count in number.
    # Split along the longer side of the output (each tile packs its own
    # panels, so this keeps the repeated packing small).
    msl = (m + _MR - 1) // _MR
    nsl = (n + NR - 1) // NR
    ntm = (m + _TM_MAX - 1) // _TM_MAX
    ntn = 1
    if n > m and nsl >= nthreads:
        ntn = min(nsl, nthreads)
    else:
        ntm = min(msl, (ntm + nthreads - 1) // nthreads * nthreads)
        if ntm < nthreads:
            ntn = min(nsl, (nthreads + ntm - 1) // ntm)
    tm = ((m + ntm - 1) // ntm + _MR - 1) // _MR * _MR
    tn = ((n + ntn - 1) // ntn + NR - 1) // NR * NR
    _gemm_par(a, trans_a, b, trans_b, out, tm, tn)


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
