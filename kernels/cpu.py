"""Numba CPU kernels (``@njit``, cached on disk), same API as ``kernels.reference``.

Every public function validates its arguments in Python with
``kernels.checks`` (so errors are the same ``TypeError``/``ValueError`` as on
every other backend), then calls compiled loops written in ordinary Numba: no
BLAS, ``np.dot`` or ``@`` inside. Conventions (see ``kernels.reference``):
float32 or float64, one dtype per call; C-contiguous arrays (others are
rejected, never copied); ``out=`` style arguments are written in place and
returned, and allocated when ``None``.

Building blocks for your own ``@njit`` code
-------------------------------------------
The compiled functions below are public and stable, and release the GIL.
They do **no** validation: the caller passes C-contiguous arrays of one
float dtype with matching shapes. (Tip: Numba compiles a callee once per
argument types, and a literal such as ``0`` or ``False`` in a call is a type
of its own; pass integer and boolean variables to keep one specialisation.) Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 relu
(``kernels.checks.ACTIVATION_CODES``). Functions marked *serial* never start
threads, so they may be called inside your own ``prange`` loop on disjoint
rows; the others use every thread for large inputs.

- ``dot_nt_into(a, b, out, i0, i1, j0, j1, k)`` *serial*:
  ``out[i, j] = sum_{p<k} a[i, p] * b[j, p]`` for rows [i0, i1) and columns
  [j0, j1): the product ``a @ b.T`` with both operands read along contiguous
  rows. This is the register-blocked micro-kernel of most products here.
- ``dot_nn_into(a, b, out, i0, i1, j0, j1, k)`` *serial*: ``out[i, j] =
  sum_{p<k} a[i, p] * b[p, j]`` for rows [i0, i1) and columns [j0, j1): the
  plain product ``a @ b``, in outer-product form. Faster than ``dot_nt_into``
  for a short depth ``k`` or long output rows (a weight gradient ``delta.T @ x``).
- ``matmul_into(a, b, out, trans_a, trans_b, threads)``: ``out[:] = op(a) @ op(b)``
  (``out`` must not overlap ``a`` or ``b``); packs a transposed copy of an
  operand when its layout needs it.
- ``product_tiles(m, n, k, threads)``: the tile ``(rows, cols)`` each thread of
  ``matmul_into`` computes.
- ``transpose_into(a, out, i0, i1)`` *serial*: rows [i0, i1) of ``a`` into
  columns of ``out``; ``transpose_into(a, out, 0, len(a))`` is ``out[:] = a.T``.
- ``activation_rows_into(z, b, code, i0, i1)`` *serial*: in place
  ``z[i, :F] = act(z[i, :F] + b)`` for rows [i0, i1), ``b`` (F,).
- ``dense_forward_into(x, wt, b, code, out, threads)``: ``out = act(x @ wt.T + b)``
  with the weights stored transposed, ``wt`` (fan_out, fan_in), ``b`` (fan_out,).
- ``activation_into(x, code, out, threads)``, ``activation_backward_into(y, dy, code,
  out, threads)``: elementwise, any shape; ``out`` may be ``x``/``dy`` exactly but must
  not overlap them otherwise, nor ``y``.
- ``activation_backward_rows_into(y, d, code, i0, i1)`` *serial*: in place
  ``d *= act'(.)`` from the saved output ``y`` (2-D) for rows [i0, i1).
- One activation at a time (a run-time ``code`` compiles all four):
  ``bias_rows_into(z, b, i0, i1)`` (linear), ``sigmoid_rows_into``,
  ``tanh_rows_into``, ``relu_rows_into`` (same arguments), and
  ``sigmoid_backward_rows_into(y, d, i0, i1)``, ``tanh_backward_rows_into``,
  ``relu_backward_rows_into``, all *serial*.
- ``softmax_xent_rows(logits, labels, grad, i0, i1, n, width)`` *serial*:
  rows [i0, i1) of ``grad = (softmax(logits) - onehot(labels)) / n`` over
  the first ``width`` columns; returns their summed loss (float64). ``softmax_xent_into(logits, labels, grad, threads)``
  returns the mean loss of the whole batch.
- ``mse_into(pred, target, grad)`` *serial*: ``grad = 2 (pred - target) / (N D)``
  for (N, D) arrays (``grad`` may be ``pred`` or ``target``); returns the mean
  squared error (float64).
- ``column_sum_into(x, out)``, ``sgd_into(param, grad, lr, threads)``.

``threads`` is how many pieces a kernel may split its work into (pass
``numba.get_num_threads()``, or 1 inside your own ``prange`` loop). It is an
argument because compiled code is cached on disk and shared by every process
that reads the cache: a thread count read while compiling would be frozen
into it (and ``numba.get_num_threads()`` inside ``@njit`` makes a function
uncacheable).

How it is fast
--------------
Most products are computed as dot products along contiguous rows
(``dot_nt_into``): a block of 4 rows of ``a`` by 3 rows of ``b`` keeps 12
running sums in scalar locals, which LLVM vectorises along the depth and keeps
in registers (12 accumulators plus 3 loaded vectors fit the 16 vector
registers of AVX2; AVX-512 has 32). The depth is cut into blocks that stay in
L1 and the columns into blocks that stay in L2. Each output ends with a
horizontal sum of a vector register, which costs about as much as the
multiply-adds when the depth is short; ``dot_nn_into`` avoids it for short
depths and long output rows (outer products, vectorised along the output
rows, 4 rows of ``b`` per pass). ``matmul_into`` packs an
operand into that layout (one transposed copy) when it is not already, and
cuts the output into one tile per thread. Small products and small
elementwise arrays run on the calling thread: a fork/join costs more than
the work, and much more on a busy machine.

``exp`` (for sigmoid, tanh, softmax) is a polynomial after Cody-Waite range
reduction, with the power of two built by multiplying constant powers of two
selected by the exponent's bits: branch-free arithmetic that LLVM vectorises,
where a call into libm per element would not. NaN propagates through every
activation and the softmax.

Under ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) and
gives the same results.
"""

import math
import os
import sys

import numpy as np
import numba
from numba import njit, prange

from . import checks as chk
from .checks import ACTIVATIONS, KERNEL_API

__all__ = [
    "ACTIVATIONS", *KERNEL_API,  # the shared API (see kernels.checks.KERNEL_API)
    # compiled building blocks for other @njit code (see the module docstring):
    "dot_nt_into", "dot_nn_into", "matmul_into", "transpose_into", "activation_rows_into", "dense_forward_into",
    "activation_into", "activation_backward_into", "activation_backward_rows_into",
    "bias_rows_into", "sigmoid_rows_into", "tanh_rows_into", "relu_rows_into",
    "sigmoid_backward_rows_into", "tanh_backward_rows_into", "relu_backward_rows_into",
    "softmax_xent_rows", "softmax_xent_into", "mse_into", "column_sum_into", "sgd_into", "product_tiles", "CACHE",
]


def _cache_is_writable():
    """Whether Numba can write its on-disk cache beside this module (or in ``NUMBA_CACHE_DIR``)."""
    where = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "__pycache__")
    probe = where
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    if os.access(probe, os.W_OK):
        return True
    # Numba falls back to a user-wide cache directory when the package's is read-only.
    return not os.environ.get("NUMBA_CACHE_DIR") and os.access(os.path.expanduser("~"), os.W_OK)


#: Whether compiled kernels are cached on disk (False when no cache directory is writable).
CACHE = _cache_is_writable()
if not CACHE:
    print("fastinit: no writable Numba cache directory; compiling without an on-disk cache", file=sys.stderr)

# Start Numba's threading layer before any cached function of this module can load.
# A cached serial function that calls a parallel one, compiled in a process where the
# parallel callee came from the cache, does not record that the threading layer must be
# started first, and calls a null pointer in a process that has not started it (numba#8578,
# open upstream). ``numba.get_num_threads()`` starts it (public API; a few milliseconds).
numba.get_num_threads()

_J = dict(cache=CACHE, error_model="numpy", nogil=True)
# Reassociation lets sums vectorise (another, equally accurate order) and
# contraction gives FMAs; no "nnan"/"ninf", so NaN and Inf still propagate.
_FAST = dict(_J, fastmath={"reassoc", "contract"})
_FMA = dict(_J, fastmath={"contract"})  # FMAs, in the order written

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3
# Integer constants for calls between compiled functions: a literal ``0`` in a call is a
# type of its own and would compile the callee once more.
_ZERO, _ONE = np.int64(0), np.int64(1)

# Work above which a kernel splits over the threads: multiply-adds for
# products, elements for elementwise kernels. Below, one thread is faster.
_PAR_FLOPS = 1 << 21
_PAR_ELEMS = 1 << 16
_CHUNK = 1 << 13  # elements per parallel elementwise piece
# Pieces are planned for a ``threads`` argument read at run time by the Python wrappers:
# nothing that varies by process or machine is compiled in as a constant, because one
# cache entry serves every process (and machine) that reads the cache directory.
_KC_BYTES = 4096  # depth block of the products: 4 + 3 rows of it (28 KiB) stay in a 32 KiB L1
_NC_ROWS = 192  # column block: that many rows of b (one depth block each) stay in L2

# ------------------------------------------------------- exp and activations
# Written over 1-D rows (views), so that constants can be made in the data's
# dtype (``x.dtype.type``: a bare Python float would make float32 math float64)
# and every loop is a plain loop LLVM vectorises.


@njit(**_FMA)
def _exp_nonpos(x, t):
    """``exp(x)`` for one value ``x <= 0`` of float type ``t`` (also -inf; NaN stays NaN).

    Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a Taylor polynomial of
    degree 7 (float32) or 13 (float64) in r, times 2**n built as a product of
    the constant powers of two picked by the bits of -n: branch-free
    arithmetic, no bit casts, so a loop over it vectorises. The polynomial
    (Estrin's scheme) and the product are evaluated as trees, not chains: a
    short dependency chain lets the CPU overlap iterations. Below the dtype's
    smallest normal result it returns 0."""
    f64 = t(1e-300) != t(0.0)  # a compile-time constant (float32 rounds 1e-300 to 0), so LLVM
    # keeps one side of each ``if f64``; ``a.itemsize`` is read at run time and is not
    lo = t(-708.39641853) if f64 else t(-87.33654475)
    ln2_hi = t(6.93147180369123816490e-01) if f64 else t(0.693359375)
    ln2_lo = t(1.90821492927058770002e-10) if f64 else t(-2.12194440e-4)
    one, half = t(1.0), t(0.5)
    xc = x if x > lo else lo  # NaN -> lo as well: no undefined float-to-int conversion
    n = np.floor(xc * t(1.4426950408889634) + half)
    r = (xc - n * ln2_hi) - n * ln2_lo
    r2 = r * r
    r4 = r2 * r2
    # sum_k r**k / k!, k <= 7, in pairs, then pairs of pairs (Estrin)
    p03 = (one + r) + (half + t(1 / 6) * r) * r2
    p47 = (t(1 / 24) + t(1 / 120) * r) + (t(1 / 720) + t(1 / 5040) * r) * r2
    if f64:  # k <= 13
        p811 = (t(1 / 40320) + t(1 / 362880) * r) + (t(1 / 3628800) + t(1 / 39916800) * r) * r2
        p1213 = t(1 / 479001600) + t(1 / 6227020800) * r
        p = (p03 + p47 * r4) + (p811 + p1213 * r4) * (r4 * r4)
    else:
        p = p03 + p47 * r4
    m = np.int32(-n)  # 0 <= m < 1023; int32: float -> int64 vectors need AVX-512DQ
    s01 = (t(0.5) if m & 1 else one) * (t(2.0**-2) if m & 2 else one)
    s23 = (t(2.0**-4) if m & 4 else one) * (t(2.0**-8) if m & 8 else one)
    s45 = (t(2.0**-16) if m & 16 else one) * (t(2.0**-32) if m & 32 else one)
    scale = (s01 * s23) * (s45 * (t(2.0**-64) if m & 64 else one))
    if f64:
        s78 = (t(2.0**-128) if m & 128 else one) * (t(2.0**-256) if m & 256 else one)
        scale = scale * (s78 * (t(2.0**-512) if m & 512 else one))
    s = p * scale if x > lo else t(0.0)
    return s if x == x else x + x  # NaN; "else x" would become a masked store, slow on AMD


@njit(**_FMA)
def _exp_nonpos_into(a):
    """In place ``a = exp(a)`` for a 1-D array of values <= 0 (see ``_exp_nonpos``)."""
    t = a.dtype.type
    for i in range(a.size):
        a[i] = _exp_nonpos(a[i], t)


@njit(**_J)
def _copy_rows(x, out, i0, i1, c0, c1):
    """``out[i, c0:c1] = x[i, c0:c1]`` for rows [i0, i1), unless ``out`` is ``x``."""
    if x.ctypes.data != out.ctypes.data:
        for i in range(i0, i1):
            xi = x[i][c0:c1]
            oi = out[i][c0:c1]
            for j in range(oi.size):
                oi[j] = xi[j]


# The activations and their gradients are computed in place on ``out`` (after a copy when
# it is another array): LLVM vectorises a loop over two arrays only after a run-time check
# that they do not overlap, and an exactly aliased ``x``/``out`` fails that check and runs
# the scalar loop, 5-10x slower. Loops index slices from 0: an index that might be
# negative (``range(c0, c1)``) gets a wrap-around check that also stops vectorisation.


@njit(**_FAST)
def _relu_inplace(out, i0, i1, c0, c1):
    """``out[i, c0:c1] = max(out, 0)`` for rows [i0, i1) (NaN passes through)."""
    zero = out.dtype.type(0.0)
    for i in range(i0, i1):
        oi = out[i][c0:c1]
        for j in range(oi.size):
            v = oi[j]
            oi[j] = zero if v < zero else v


@njit(**_FAST)
def _sigmoid_inplace(out, i0, i1, c0, c1, e):
    """``out[i, c0:c1] = sigmoid(out)`` for rows [i0, i1); ``e`` scratch of ``c1 - c0``
    elements. Stable: exp only ever sees -|v|."""
    t = out.dtype.type
    one, zero = t(1.0), t(0.0)
    e = e[: c1 - c0]
    for i in range(i0, i1):
        oi = out[i][c0:c1]
        for j in range(e.size):
            e[j] = -abs(oi[j])
        _exp_nonpos_into(e)
        for j in range(e.size):
            s = one / (one + e[j])
            oi[j] = s if oi[j] >= zero else e[j] * s


@njit(**_FAST)
def _tanh_inplace(out, i0, i1, c0, c1, e):
    """``out[i, c0:c1] = tanh(out)`` for rows [i0, i1); ``e`` scratch of ``c1 - c0``
    elements. From exp(-2|v|); an odd Taylor series below 0.125 (no cancellation)."""
    t = out.dtype.type
    one, zero = t(1.0), t(0.0)
    e = e[: c1 - c0]
    small = t(0.125)
    f64 = t(1e-300) != t(0.0)  # a compile-time constant, as in _exp_nonpos_into
    for i in range(i0, i1):
        oi = out[i][c0:c1]
        for j in range(e.size):
            v = abs(oi[j])
            e[j] = -(v + v)
        _exp_nonpos_into(e)
        for j in range(e.size):
            v = oi[j]
            th = (one - e[j]) / (one + e[j])
            th = th if v >= zero else -th
            q = v * v
            if f64:  # to v**15
                s = t(-929569.0 / 638512875.0) * q + t(21844.0 / 6081075.0)
                s = s * q + t(-1382.0 / 155925.0)
                s = s * q + t(62.0 / 2835.0)
                s = s * q + t(-17.0 / 315.0)
            else:  # to v**7
                s = t(-17.0 / 315.0)
            s = s * q + t(2.0 / 15.0)
            s = s * q + t(-1.0 / 3.0)
            s = s * q + one
            oi[j] = v * s if abs(v) < small else th


@njit(**_FAST)
def _activation_rows(x, out, code, i0, i1, c0, c1, e):
    """``out[i, c0:c1] = act(x[i, c0:c1])`` for rows [i0, i1) of 2-D ``x`` and ``out`` (which
    may be ``x``, but must not overlap it otherwise); ``e`` a scratch array of at least
    ``c1 - c0`` elements (sigmoid, tanh). NaN passes through every activation."""
    _copy_rows(x, out, i0, i1, c0, c1)
    if code == RELU:
        _relu_inplace(out, i0, i1, c0, c1)
    elif code == SIGMOID:
        _sigmoid_inplace(out, i0, i1, c0, c1, e)
    elif code == TANH:
        _tanh_inplace(out, i0, i1, c0, c1, e)


@njit(**_J)
def _relu_backward_inplace(y, out, i0, i1, c0, c1):
    zero = y.dtype.type(0.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] = oi[j] if yi[j] > zero else zero


@njit(**_J)
def _sigmoid_backward_inplace(y, out, i0, i1, c0, c1):
    one = y.dtype.type(1.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] *= yi[j] * (one - yi[j])


@njit(**_J)
def _tanh_backward_inplace(y, out, i0, i1, c0, c1):
    one = y.dtype.type(1.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] *= one - yi[j] * yi[j]


@njit(**_J)
def _activation_backward_rows(y, dy, out, code, i0, i1, c0, c1):
    """``out[i, c0:c1] = dy * act'(.)`` from the saved output ``y`` for rows [i0, i1) (2-D;
    ``out`` may be ``dy`` but must not overlap ``y``)."""
    _copy_rows(dy, out, i0, i1, c0, c1)
    if code == RELU:
        _relu_backward_inplace(y, out, i0, i1, c0, c1)
    elif code == SIGMOID:
        _sigmoid_backward_inplace(y, out, i0, i1, c0, c1)
    elif code == TANH:
        _tanh_backward_inplace(y, out, i0, i1, c0, c1)


# The row blocks, one per activation (compiled only when used), and the generic two that
# choose one at run time.


@njit(**_J)
def bias_rows_into(z, b, i0, i1):
    """*Serial.* In place ``z[i, :F] += b`` for rows [i0, i1) of 2-D ``z`` (N, >= F), ``b`` (F,):
    the linear activation's row block. Columns past F (e.g. padding) are not touched."""
    f = b.size
    for i in range(i0, i1):
        row = z[i]
        for j in range(f):
            row[j] += b[j]


@njit(**_J)
def sigmoid_rows_into(z, b, i0, i1):
    """*Serial.* In place ``z[i, :F] = sigmoid(z[i, :F] + b)`` for rows [i0, i1)."""
    bias_rows_into(z, b, i0, i1)
    _sigmoid_inplace(z, i0, i1, _ZERO, b.size, np.empty(b.size, z.dtype))


@njit(**_J)
def tanh_rows_into(z, b, i0, i1):
    """*Serial.* In place ``z[i, :F] = tanh(z[i, :F] + b)`` for rows [i0, i1)."""
    bias_rows_into(z, b, i0, i1)
    _tanh_inplace(z, i0, i1, _ZERO, b.size, np.empty(b.size, z.dtype))


@njit(**_J)
def relu_rows_into(z, b, i0, i1):
    """*Serial.* In place ``z[i, :F] = relu(z[i, :F] + b)`` for rows [i0, i1)."""
    bias_rows_into(z, b, i0, i1)
    _relu_inplace(z, i0, i1, _ZERO, b.size)


@njit(**_J)
def activation_rows_into(z, b, code, i0, i1):
    """*Serial.* In place ``z[i, :F] = act(z[i, :F] + b)`` for rows [i0, i1) of 2-D ``z``
    (N, >= F), ``b`` (F,); columns past F (e.g. padding) are not touched. The activation is
    chosen at run time (so all four are compiled); the per-activation blocks above compile one."""
    if code == SIGMOID:
        sigmoid_rows_into(z, b, i0, i1)
    elif code == TANH:
        tanh_rows_into(z, b, i0, i1)
    elif code == RELU:
        relu_rows_into(z, b, i0, i1)
    else:
        bias_rows_into(z, b, i0, i1)


@njit(**_J)
def sigmoid_backward_rows_into(y, d, i0, i1):
    """*Serial.* In place ``d[i] *= y (1 - y)`` for rows [i0, i1) (2-D, same width)."""
    _sigmoid_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**_J)
def tanh_backward_rows_into(y, d, i0, i1):
    """*Serial.* In place ``d[i] *= 1 - y**2`` for rows [i0, i1) (2-D, same width)."""
    _tanh_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**_J)
def relu_backward_rows_into(y, d, i0, i1):
    """*Serial.* In place ``d[i] = d[i] if y > 0 else 0`` for rows [i0, i1) (2-D, same width)."""
    _relu_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**_J)
def activation_backward_rows_into(y, d, code, i0, i1):
    """*Serial.* In place ``d[i] *= act'(.)`` from the saved output ``y[i]`` for rows [i0, i1)
    (2-D); the activation chosen at run time, as in ``activation_rows_into``."""
    if code == SIGMOID:
        sigmoid_backward_rows_into(y, d, i0, i1)
    elif code == TANH:
        tanh_backward_rows_into(y, d, i0, i1)
    elif code == RELU:
        relu_backward_rows_into(y, d, i0, i1)


@njit(**_J)
def _sgd_row(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


@njit(parallel=True, **_J)
def _elementwise_par(kind, a, b, code, lr, out):
    """Chunks of an elementwise kernel over the threads, on 1-D arrays: kind 0
    ``out = act(a)``, 1 ``out = b * act'(a)``, 2 ``out -= lr * a``."""
    n = a.size
    a2, b2, o2 = a.reshape(1, n), b.reshape(1, n), out.reshape(1, n)
    for t in prange((n + _CHUNK - 1) // _CHUNK):
        lo = t * _CHUNK
        hi = min(n, lo + _CHUNK)
        if kind == 0:
            _activation_rows(a2, o2, code, _ZERO, _ONE, lo, hi, np.empty(hi - lo, a.dtype))
        elif kind == 1:
            _activation_backward_rows(a2, b2, o2, code, _ZERO, _ONE, lo, hi)
        else:
            _sgd_row(out[lo:hi], a[lo:hi], lr)


@njit(**_J)
def _elementwise_into(kind, a, b, code, out, threads):
    """``_elementwise_par``'s kinds 0 and 1 on any-shape arrays: on the calling thread when small."""
    n = a.size
    af, bf, of = a.reshape(n), b.reshape(n), out.reshape(n)
    if n >= _PAR_ELEMS and threads > 1:
        _elementwise_par(kind, af, bf, code, af.dtype.type(0), of)
    elif kind == 0:
        _activation_rows(af.reshape(1, n), of.reshape(1, n), code, _ZERO, _ONE, _ZERO, n, np.empty(n, a.dtype))
    else:
        _activation_backward_rows(af.reshape(1, n), bf.reshape(1, n), of.reshape(1, n), code, _ZERO, _ONE, _ZERO, n)


@njit(**_J)
def activation_into(x, code, out, threads):
    """``out = act(x)`` elementwise for any-shape C-contiguous ``x``, ``out`` (may be ``x``);
    over the threads when large and ``threads`` > 1."""
    _elementwise_into(0, x, x, code, out, threads)


@njit(**_J)
def activation_backward_into(y, dy, code, out, threads):
    """``out = dy * act'(.)`` from the saved output ``y``; any shape; ``out`` may be ``dy``;
    over the threads when large and ``threads`` > 1."""
    _elementwise_into(1, y, dy, code, out, threads)


@njit(**_J)
def sgd_into(param, grad, lr, threads):
    """In place ``param -= lr * grad`` (``lr`` cast to the dtype first), any shape; over the
    threads when large and ``threads`` > 1."""
    p = param.reshape(param.size)
    g = grad.reshape(grad.size)
    lr_t = p.dtype.type(lr)
    if p.size >= _PAR_ELEMS and threads > 1:
        _elementwise_par(2, g, g, 0, lr_t, p)
    else:
        _sgd_row(p, g, lr_t)


@njit(**_FAST)
def column_sum_into(x, out):
    """``out[j] = sum_i x[i, j]`` for 2-D ``x`` (N, F), ``out`` (F,). Serial (memory-bound)."""
    out[:] = 0
    for i in range(x.shape[0]):
        row = x[i]
        for j in range(out.size):
            out[j] += row[j]


# ------------------------------------------------------- softmax cross-entropy


@njit(**_FAST)
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
    _exp_nonpos_into(e)
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


@njit(parallel=True, **_J)
def _softmax_par(logits, labels, grad, rows):
    n = logits.shape[0]
    pieces = (n + rows - 1) // rows
    partial = np.empty(pieces, np.float64)  # one slot per piece: no shared accumulator
    for t in prange(pieces):
        partial[t] = softmax_xent_rows(logits, labels, grad, t * rows, min(n, (t + 1) * rows), n, logits.shape[1])
    return partial.sum()


@njit(**_J)
def softmax_xent_into(logits, labels, grad, threads):
    """Mean softmax cross-entropy of ``logits`` (N, C) against int ``labels`` (N,) in [0, C).

    Writes ``grad = (softmax(logits) - onehot(labels)) / N`` (N, C; may be
    ``logits``) and returns the loss (float). Labels are not range-checked here. Over the
    threads when large and ``threads`` > 1."""
    n, c = logits.shape
    if n * c >= _PAR_ELEMS and threads > 1:
        total = _softmax_par(logits, labels, grad, max(1, _CHUNK // max(c, 1)))
    else:
        total = softmax_xent_rows(logits, labels, grad, 0, n, n, c)
    return total / n


@njit(**_FAST)
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


# ------------------------------------------------------------------ products


@njit(**_FAST)
def _dot_4x3(a, b, out, i0, i1, i2, i3, j0, j1, j2, p0, p1, acc):
    """``out[i, j] (+)= a[i, p0:p1] . b[j, p0:p1]`` for rows i0..i3 and columns j0..j2.

    Twelve sums in scalar locals: LLVM vectorises them along p and keeps them
    in registers. Indices may repeat (the edges of a matrix): a repeated
    output gets the same value twice, since every sum reads ``out`` before
    any is stored."""
    a0 = a[i0, p0:p1]
    a1 = a[i1, p0:p1]
    a2 = a[i2, p0:p1]
    a3 = a[i3, p0:p1]
    b0 = b[j0, p0:p1]
    b1 = b[j1, p0:p1]
    b2 = b[j2, p0:p1]
    z = out.dtype.type(0)
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = s30 = s31 = s32 = z
    for p in range(a0.size):
        y0 = b0[p]
        y1 = b1[p]
        y2 = b2[p]
        x = a0[p]
        s00 += x * y0
        s01 += x * y1
        s02 += x * y2
        x = a1[p]
        s10 += x * y0
        s11 += x * y1
        s12 += x * y2
        x = a2[p]
        s20 += x * y0
        s21 += x * y1
        s22 += x * y2
        x = a3[p]
        s30 += x * y0
        s31 += x * y1
        s32 += x * y2
    if acc:
        s00 += out[i0, j0]
        s01 += out[i0, j1]
        s02 += out[i0, j2]
        s10 += out[i1, j0]
        s11 += out[i1, j1]
        s12 += out[i1, j2]
        s20 += out[i2, j0]
        s21 += out[i2, j1]
        s22 += out[i2, j2]
        s30 += out[i3, j0]
        s31 += out[i3, j1]
        s32 += out[i3, j2]
    out[i0, j0] = s00
    out[i0, j1] = s01
    out[i0, j2] = s02
    out[i1, j0] = s10
    out[i1, j1] = s11
    out[i1, j2] = s12
    out[i2, j0] = s20
    out[i2, j1] = s21
    out[i2, j2] = s22
    out[i3, j0] = s30
    out[i3, j1] = s31
    out[i3, j2] = s32


@njit(**_J)
def dot_nt_into(a, b, out, i0, i1, j0, j1, k):
    """*Serial.* ``out[i, j] = sum_{p<k} a[i, p] * b[j, p]`` for i in [i0, i1), j in [j0, j1).

    ``a`` (M, >= k), ``b`` (N, >= k), ``out`` (>= M, >= N): 2-D C-contiguous,
    one float dtype; ``out`` must not overlap ``a`` or ``b``. Blocks of 4 x 3
    outputs keep their sums in registers across a depth block (see the module
    docstring); at the edges a block repeats its last row or column."""
    if i1 <= i0 or j1 <= j0:
        return
    if k <= 0:
        zero = out.dtype.type(0)
        for i in range(i0, i1):
            for j in range(j0, j1):
                out[i, j] = zero
        return
    kc = max(1, _KC_BYTES // out.itemsize)
    last_i = i1 - 1
    for p0 in range(0, k, kc):
        p1 = min(k, p0 + kc)
        acc = p0 > 0
        for jb in range(j0, j1, _NC_ROWS):
            je = min(j1, jb + _NC_ROWS)
            last_j = je - 1
            for i in range(i0, i1, 4):
                r1 = min(i + 1, last_i)
                r2 = min(i + 2, last_i)
                r3 = min(i + 3, last_i)
                for j in range(jb, je, 3):
                    _dot_4x3(a, b, out, i, r1, r2, r3, j, min(j + 1, last_j), min(j + 2, last_j), p0, p1, acc)


@njit(**_FAST)
def _nn_4x4(a, b, out, i, p, j0, j1):
    """``out[i + r, j0:j1] += a[i + r, p:p + 4] @ b[p:p + 4, j0:j1]`` for r < 4: sixteen
    coefficients in scalar locals, each row of ``b`` loaded once for four output rows."""
    a00, a01, a02, a03 = a[i, p], a[i, p + 1], a[i, p + 2], a[i, p + 3]
    a10, a11, a12, a13 = a[i + 1, p], a[i + 1, p + 1], a[i + 1, p + 2], a[i + 1, p + 3]
    a20, a21, a22, a23 = a[i + 2, p], a[i + 2, p + 1], a[i + 2, p + 2], a[i + 2, p + 3]
    a30, a31, a32, a33 = a[i + 3, p], a[i + 3, p + 1], a[i + 3, p + 2], a[i + 3, p + 3]
    b0, b1, b2, b3 = b[p][j0:j1], b[p + 1][j0:j1], b[p + 2][j0:j1], b[p + 3][j0:j1]
    o0, o1, o2, o3 = out[i][j0:j1], out[i + 1][j0:j1], out[i + 2][j0:j1], out[i + 3][j0:j1]
    for q in range(o0.size):
        x0, x1, x2, x3 = b0[q], b1[q], b2[q], b3[q]
        o0[q] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
        o1[q] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
        o2[q] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
        o3[q] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(**_FAST)
def _nn_1x1(a, b, out, i, p, j0, j1):
    """``out[i, j0:j1] += a[i, p] * b[p, j0:j1]`` (the edges of ``dot_nn_into``)."""
    c = a[i, p]
    x = b[p][j0:j1]
    o = out[i][j0:j1]
    for q in range(o.size):
        o[q] += c * x[q]


@njit(**_J)
def dot_nn_into(a, b, out, i0, i1, j0, j1, k):
    """*Serial.* ``out[i, j] = sum_{p<k} a[i, p] * b[p, j]`` for i in [i0, i1), j in [j0, j1).

    ``a`` (M, >= k), ``b`` (>= k, N), ``out`` (>= M, N): 2-D C-contiguous,
    one float dtype; ``out`` must not overlap ``a`` or ``b``. The outer-product
    form of the product: blocks of 4 output rows by 4 rows of ``b``, vectorised
    along the output rows, with no horizontal sums. It beats ``dot_nt_into``
    when the depth ``k`` is short (tens) or the output rows are long (hundreds),
    e.g. a weight gradient ``delta.T @ x``; 4 output rows should fit in L1."""
    if i1 <= i0 or j1 <= j0:
        return
    zero = out.dtype.type(0)
    for i in range(i0, i1):
        row = out[i][j0:j1]
        for q in range(row.size):
            row[q] = zero
    k4 = k // 4 * 4
    i4 = i0 + (i1 - i0) // 4 * 4
    for i in range(i0, i4, 4):
        for p in range(0, k4, 4):
            _nn_4x4(a, b, out, i, p, j0, j1)
    for p in range(k4, k):
        for i in range(i0, i4):
            _nn_1x1(a, b, out, i, p, j0, j1)
    for i in range(i4, i1):
        for p in range(k):
            _nn_1x1(a, b, out, i, p, j0, j1)


@njit(**_J)
def transpose_into(a, out, i0, i1):
    """*Serial.* ``out[j, i] = a[i, j]`` for rows i in [i0, i1) of ``a`` and j < ``out.shape[0]``
    (2-D; ``a`` may be wider than ``out`` is tall, e.g. padded). ``transpose_into(a, out, 0,
    a.shape[0])`` is ``out[:] = a.T``. Eight rows at a time, so each write is eight contiguous values."""
    n = out.shape[0]
    m8 = i0 + (i1 - i0) // 8 * 8
    for i in range(i0, m8, 8):
        r0 = a[i]
        r1 = a[i + 1]
        r2 = a[i + 2]
        r3 = a[i + 3]
        r4 = a[i + 4]
        r5 = a[i + 5]
        r6 = a[i + 6]
        r7 = a[i + 7]
        for j in range(n):
            d = out[j, i : i + 8]
            d[0] = r0[j]
            d[1] = r1[j]
            d[2] = r2[j]
            d[3] = r3[j]
            d[4] = r4[j]
            d[5] = r5[j]
            d[6] = r6[j]
            d[7] = r7[j]
    for i in range(m8, i1):
        row = a[i]
        for j in range(n):
            out[j, i] = row[j]


@njit(parallel=True, **_J)
def _dot_nt_par(a, b, out, k, rows, cols):
    """``dot_nt_into`` over the whole of ``out``, one tile of ``rows`` x ``cols`` per piece."""
    m, n = out.shape
    tn = (n + cols - 1) // cols
    for t in prange(((m + rows - 1) // rows) * tn):
        i = t // tn * rows
        j = t % tn * cols
        dot_nt_into(a, b, out, i, min(m, i + rows), j, min(n, j + cols), k)


@njit(**_J)
def product_tiles(m, n, k, threads):
    """The tile ``(rows, cols)`` that ``matmul_into`` cuts an (m, n) output of depth ``k``
    into, one tile for each of ``threads`` threads; ``(m, n)``, one tile on the calling
    thread, when the product is small or ``threads`` < 2."""
    if threads < 2 or m * n * k < _PAR_FLOPS:
        return m, n
    if m >= 4 * threads:  # rows split in multiples of 4
        return ((m + threads - 1) // threads + 3) // 4 * 4, n
    return m, ((n + threads - 1) // threads + 2) // 3 * 3  # few rows: columns in multiples of 3


@njit(**_J)
def _dot_nt_all(a, b, out, k, threads):
    """``out = a[:, :k] @ b[:, :k].T``: on one thread when small, else one tile per thread."""
    m, n = out.shape
    rows, cols = product_tiles(m, n, k, threads)
    if rows == m and cols == n:
        dot_nt_into(a, b, out, 0, m, 0, n, k)
    else:
        _dot_nt_par(a, b, out, k, rows, cols)


@njit(**_J)
def matmul_into(a, b, out, trans_a, trans_b, threads):
    """``out[:] = op(a) @ op(b)`` with ``op(x) = x.T`` when its flag is set.

    2-D C-contiguous arrays of one float dtype; ``out`` (M, N) must not
    overlap ``a`` or ``b``. ``op(a)`` is read along its rows and ``op(b)``
    along its columns: ``a`` with ``trans_a`` and ``b`` without ``trans_b``
    are first packed into a transposed copy (allocated here). One tile per thread for
    ``threads`` threads (see ``product_tiles``)."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if trans_a:
        ap = np.empty((m, k), a.dtype)
        transpose_into(a, ap, 0, k)
    else:
        ap = a
    if trans_b:
        bp = b
    else:
        bp = np.empty((n, k), b.dtype)
        transpose_into(b, bp, 0, k)
    _dot_nt_all(ap, bp, out, k, threads)


@njit(**_J)
def dense_forward_into(x, wt, b, code, out, threads):
    """``out = act(x @ wt.T + b)``: ``x`` (N, K), weights stored transposed ``wt`` (F, K),
    ``b`` (F,), ``out`` (N, F) not overlapping the inputs; the product over ``threads``."""
    _dot_nt_all(x, wt, out, x.shape[1], threads)
    activation_rows_into(out, b, code, 0, out.shape[0])


# ------------------------------------------------------------- public API


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
    matmul_into(a, b, out, trans_a, trans_b, _threads())
    return out


def activation_forward(x, activation, out=None):
    """Apply the named activation (one of ``ACTIVATIONS``) elementwise. Any shape.

    Returns ``out`` (same shape and dtype as ``x``; may be ``x`` itself for an
    in-place update; an ``out`` that partly overlaps ``x`` gets the same result
    through a temporary). Raises ``ValueError`` for an unknown activation.
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
    """Gradient through the named activation from its saved output ``y``.

    ``y`` and ``dy`` have one shape and dtype; returns ``out`` (may be ``dy``; an
    ``out`` that overlaps ``y``, or ``dy`` only in part, gets the same result
    through a temporary).
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
    """Rectified linear unit ``max(x, 0)`` (NaN passes through). Any shape."""
    return activation_forward(x, "relu", out)


def relu_backward(y, dy, out=None):
    """Gradient through ReLU from its saved output: ``dy`` where ``y > 0``, else 0."""
    return activation_backward(y, dy, "relu", out)


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
    wt = np.empty((w.shape[1], w.shape[0]), w.dtype)
    transpose_into(w, wt, 0, w.shape[0])
    dense_forward_into(x, wt, np.zeros(w.shape[1], x.dtype) if b is None else b, code, out, _threads())
    return out


def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    """Backward pass of ``y = act(x @ w + b)`` given the upstream gradient ``dy``.

    ``x`` (N, fan_in) and ``y`` (N, fan_out) are the saved input and output.
    Returns ``(dx, dw, db)``: ``dx`` (N, fan_in), or ``None`` when
    ``compute_dx`` is false (first layer); ``dw`` (fan_in, fan_out);
    ``db`` (fan_out,), the column sums of the pre-activation gradient. Outputs
    that overlap an input or each other (``dw=w``) give the same result as
    separate ones (computed through fresh arrays, then copied).
    Outputs given by the caller are written in place; ``dy`` is not modified.
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

    ``logits`` (N, C) float, ``labels`` (N,) int32/int64 in [0, C). Returns
    ``(loss, grad)``: ``loss`` a Python float, ``grad`` (N, C) =
    ``(softmax(logits) - onehot(labels)) / N`` (may be ``logits`` itself; a
    ``grad`` that overlaps ``logits`` only in part gets the same result through
    a temporary). Stable for any finite logits (the row max is subtracted
    first). Raises ``ValueError`` for labels out of range or of the wrong shape.
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

    ``pred`` and ``target`` (N, D), one float dtype, N and D >= 1. Returns
    ``(loss, grad)``: ``loss = mean((pred - target)**2)`` over all N * D
    elements, a Python float (squares summed in float64); ``grad`` (N, D) =
    ``2 * (pred - target) / (N * D)`` (may be ``pred`` or ``target`` itself;
    one that overlaps them only in part gets the same result through a
    temporary). Raises ``ValueError`` on a shape mismatch or an empty array,
    ``TypeError`` on mixed or non-float dtypes.
    """
    chk.mse_args(pred, target, grad)
    if _partly_overlaps(grad, pred) or _partly_overlaps(grad, target):
        loss, fresh = mean_squared_error(pred, target)
        grad[...] = fresh
        return loss, grad
    grad = _alloc(grad, pred.shape, pred.dtype)
    return float(mse_into(pred, target, grad)), grad


def sgd_update(param, grad, lr):
    """In place ``param -= lr * grad``; returns ``param``. Any shape, same dtype.

    ``grad`` may be ``param`` itself; one that overlaps it only in part is read
    from a copy. Raises ``TypeError`` for a non-numeric ``lr``, ``ValueError``
    for a non-finite one or a shape mismatch.
    """
    lr = chk.sgd_args(param, grad, lr)
    if _partly_overlaps(grad, param):
        grad = grad.copy()
    sgd_into(param, grad, lr, _threads())
    return param
