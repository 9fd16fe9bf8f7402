"""Compiled activations and their gradients on blocks of rows, and the vectorisable ``exp``.

Written over 1-D rows (views), so that constants can be made in the data's dtype
(``x.dtype.type``: a bare Python float would make float32 math float64) and every loop is a
plain loop LLVM vectorises. The activations and their gradients are computed in place on
``out`` (after a copy when it is another array): LLVM vectorises a loop over two arrays only
after a run-time check that they do not overlap, and an exactly aliased ``x``/``out`` fails
that check and runs the scalar loop, 5-10x slower. Loops index slices from 0: an index that
might be negative (``range(c0, c1)``) gets a wrap-around check that also stops
vectorisation.

``exp`` is a polynomial after Cody-Waite range reduction, with the power of two built by
multiplying constant powers of two selected by the exponent's bits: branch-free arithmetic
that LLVM vectorises, where a call into libm per element would not. NaN propagates through
every activation.
"""

import numpy as np
from numba import njit

from .checks import with_doc
from .jit import FAST, FMA, JIT

__all__ = [
    "exp_nonpos",
    "exp_nonpos_into",
    "activation_block_into",
    "activation_backward_block_into",
    "bias_rows_into",
    "sigmoid_rows_into",
    "tanh_rows_into",
    "relu_rows_into",
    "activation_rows_into",
    "sigmoid_backward_rows_into",
    "tanh_backward_rows_into",
    "relu_backward_rows_into",
    "activation_backward_rows_into",
]

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3  # fastinit.kernels.checks.ACTIVATION_CODES
# Integer constants for calls between compiled functions: a literal ``0`` in a call is a
# type of its own and would compile the callee once more.
_ZERO, _ONE = np.int64(0), np.int64(1)


@njit(**FMA)
def exp_nonpos(x, t):
    """``exp(x)`` for one value ``x <= 0`` of float type `t` (also -inf; NaN stays NaN).

    Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a Taylor polynomial of degree 7
    (float32) or 13 (float64) in r, times 2**n built as a product of the constant powers of
    two picked by the bits of -n: branch-free arithmetic, no bit casts, so a loop over it
    vectorises. The polynomial (Estrin's scheme) and the product are evaluated as trees, not
    chains: a short dependency chain lets the CPU overlap iterations.

    Parameters
    ----------
    x : float32 or float64
        The exponent, <= 0, -inf or NaN.
    t : type, numpy.float32 or numpy.float64
        The float type of `x` (``a.dtype.type``); all constants are made in it.

    Returns
    -------
    float of type `t`
        ``exp(x)``; 0 below the dtype's smallest normal result; NaN for NaN.
    """
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


@njit(**FMA)
def exp_nonpos_into(a):
    """*Serial.* In place ``a = exp(a)`` for a 1-D array of values <= 0 (see `exp_nonpos`).

    Parameters
    ----------
    a : ndarray, (n,), float32 or float64
        The exponents, overwritten with their exponentials.
    """
    t = a.dtype.type
    for i in range(a.size):
        a[i] = exp_nonpos(a[i], t)


@njit(**JIT)
def _copy_rows(x, out, i0, i1, c0, c1):
    """``out[i, c0:c1] = x[i, c0:c1]`` for rows [i0, i1), unless ``out`` is ``x``."""
    if x.ctypes.data != out.ctypes.data:
        for i in range(i0, i1):
            xi = x[i][c0:c1]
            oi = out[i][c0:c1]
            for j in range(oi.size):
                oi[j] = xi[j]


@njit(**FAST)
def _relu_inplace(out, i0, i1, c0, c1):
    """``out[i, c0:c1] = max(out, 0)`` for rows [i0, i1) (NaN passes through)."""
    zero = out.dtype.type(0.0)
    for i in range(i0, i1):
        oi = out[i][c0:c1]
        for j in range(oi.size):
            v = oi[j]
            oi[j] = zero if v < zero else v


@njit(**FAST)
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
        exp_nonpos_into(e)
        for j in range(e.size):
            s = one / (one + e[j])
            oi[j] = s if oi[j] >= zero else e[j] * s


@njit(**FAST)
def _tanh_inplace(out, i0, i1, c0, c1, e):
    """``out[i, c0:c1] = tanh(out)`` for rows [i0, i1); ``e`` scratch of ``c1 - c0``
    elements. From exp(-2|v|); an odd Taylor series below 0.125 (no cancellation)."""
    t = out.dtype.type
    one, zero = t(1.0), t(0.0)
    e = e[: c1 - c0]
    small = t(0.125)
    f64 = t(1e-300) != t(0.0)  # a compile-time constant, as in exp_nonpos_into
    for i in range(i0, i1):
        oi = out[i][c0:c1]
        for j in range(e.size):
            v = abs(oi[j])
            e[j] = -(v + v)
        exp_nonpos_into(e)
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


@njit(**FAST)
def activation_block_into(x, out, code, i0, i1, c0, c1, e):
    """*Serial.* ``out[i, c0:c1] = act(x[i, c0:c1])`` for rows [i0, i1).

    NaN passes through every activation.

    Parameters
    ----------
    x : ndarray, 2-D, float32 or float64, C-contiguous
        The input.
    out : ndarray, same shape and dtype as `x`, C-contiguous
        Receives the result in place; it may be `x`, but must not overlap it otherwise.
    code : int
        The activation code: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
    i0, i1 : int
        The rows, [i0, i1).
    c0, c1 : int
        The columns, [c0, c1).
    e : ndarray, (>= c1 - c0,), same dtype
        Scratch space (used by sigmoid and tanh).
    """
    _copy_rows(x, out, i0, i1, c0, c1)
    if code == RELU:
        _relu_inplace(out, i0, i1, c0, c1)
    elif code == SIGMOID:
        _sigmoid_inplace(out, i0, i1, c0, c1, e)
    elif code == TANH:
        _tanh_inplace(out, i0, i1, c0, c1, e)


@njit(**JIT)
def _relu_backward_inplace(y, out, i0, i1, c0, c1):
    zero = y.dtype.type(0.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] = oi[j] if yi[j] > zero else zero


@njit(**JIT)
def _sigmoid_backward_inplace(y, out, i0, i1, c0, c1):
    one = y.dtype.type(1.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] *= yi[j] * (one - yi[j])


@njit(**JIT)
def _tanh_backward_inplace(y, out, i0, i1, c0, c1):
    one = y.dtype.type(1.0)
    for i in range(i0, i1):
        yi = y[i][c0:c1]
        oi = out[i][c0:c1]
        for j in range(oi.size):
            oi[j] *= one - yi[j] * yi[j]


@njit(**JIT)
def activation_backward_block_into(y, dy, out, code, i0, i1, c0, c1):
    """*Serial.* ``out[i, c0:c1] = dy * act'(.)`` from the saved output `y`, for rows [i0, i1).

    Parameters
    ----------
    y : ndarray, 2-D, float32 or float64, C-contiguous
        The saved output of the forward activation.
    dy : ndarray, same shape and dtype as `y`, C-contiguous
        The upstream gradient.
    out : ndarray, same shape and dtype as `y`, C-contiguous
        Receives the gradient in place; it may be `dy`, but must not overlap `y`.
    code : int
        The activation code: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
    i0, i1 : int
        The rows, [i0, i1).
    c0, c1 : int
        The columns, [c0, c1).
    """
    _copy_rows(dy, out, i0, i1, c0, c1)
    if code == RELU:
        _relu_backward_inplace(y, out, i0, i1, c0, c1)
    elif code == SIGMOID:
        _sigmoid_backward_inplace(y, out, i0, i1, c0, c1)
    elif code == TANH:
        _tanh_backward_inplace(y, out, i0, i1, c0, c1)


# The row blocks' docstrings: one template for the forward blocks, one for the backward ones.
_ROWS_DOC = """*Serial.* {summary}
{extended}
Parameters
----------
z : ndarray, (N, >= F), float32 or float64
    The pre-activations, updated in place; columns past F (e.g. padding) are not touched.
b : ndarray, (F,), same dtype
    The bias.
{code}i0, i1 : int
    The rows, [i0, i1).
"""

_BACKWARD_ROWS_DOC = """*Serial.* {summary}
{extended}
Parameters
----------
y : ndarray, 2-D, float32 or float64
    The saved output of the {name}.
d : ndarray, 2-D, same width and dtype as `y`
    The upstream gradient, turned into the pre-activation gradient in place.
{code}i0, i1 : int
    The rows, [i0, i1).
"""

_CODE_PARAMETER = """code : int
    The activation code: 0 linear{linear}, 1 sigmoid, 2 tanh, 3 relu.
"""


def _rows_doc(template, summary, name="", code=None, extended=""):
    """Fill `template`; `code` (what linear does, or None for no ``code`` parameter) adds one."""
    code = "" if code is None else _CODE_PARAMETER.format(linear=code)
    return template.format(summary=summary, name=name, code=code, extended=extended and f"\n{extended}\n")


@njit(**JIT)
@with_doc(
    _rows_doc(_ROWS_DOC, "In place ``z[i, :F] += b`` for rows [i0, i1): the linear activation's row block.")
)
def bias_rows_into(z, b, i0, i1):
    f = b.size
    for i in range(i0, i1):
        row = z[i]
        for j in range(f):
            row[j] += b[j]


@njit(**JIT)
@with_doc(_rows_doc(_ROWS_DOC, "In place ``z[i, :F] = sigmoid(z[i, :F] + b)`` for rows [i0, i1)."))
def sigmoid_rows_into(z, b, i0, i1):
    bias_rows_into(z, b, i0, i1)
    _sigmoid_inplace(z, i0, i1, _ZERO, b.size, np.empty(b.size, z.dtype))


@njit(**JIT)
@with_doc(_rows_doc(_ROWS_DOC, "In place ``z[i, :F] = tanh(z[i, :F] + b)`` for rows [i0, i1)."))
def tanh_rows_into(z, b, i0, i1):
    bias_rows_into(z, b, i0, i1)
    _tanh_inplace(z, i0, i1, _ZERO, b.size, np.empty(b.size, z.dtype))


@njit(**JIT)
@with_doc(_rows_doc(_ROWS_DOC, "In place ``z[i, :F] = relu(z[i, :F] + b)`` for rows [i0, i1)."))
def relu_rows_into(z, b, i0, i1):
    bias_rows_into(z, b, i0, i1)
    _relu_inplace(z, i0, i1, _ZERO, b.size)


@njit(**JIT)
@with_doc(
    _rows_doc(
        _ROWS_DOC,
        "In place ``z[i, :F] = act(z[i, :F] + b)`` for rows [i0, i1).",
        code="",
        extended="The activation is chosen at run time (so all four are compiled); the per-activation\n"
        "blocks (`sigmoid_rows_into`, ...) compile one.",
    )
)
def activation_rows_into(z, b, code, i0, i1):
    if code == SIGMOID:
        sigmoid_rows_into(z, b, i0, i1)
    elif code == TANH:
        tanh_rows_into(z, b, i0, i1)
    elif code == RELU:
        relu_rows_into(z, b, i0, i1)
    else:
        bias_rows_into(z, b, i0, i1)


@njit(**JIT)
@with_doc(_rows_doc(_BACKWARD_ROWS_DOC, "In place ``d[i] *= y (1 - y)`` for rows [i0, i1).", name="sigmoid"))
def sigmoid_backward_rows_into(y, d, i0, i1):
    _sigmoid_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**JIT)
@with_doc(_rows_doc(_BACKWARD_ROWS_DOC, "In place ``d[i] *= 1 - y**2`` for rows [i0, i1).", name="tanh"))
def tanh_backward_rows_into(y, d, i0, i1):
    _tanh_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**JIT)
@with_doc(
    _rows_doc(_BACKWARD_ROWS_DOC, "In place ``d[i] = d[i] if y > 0 else 0`` for rows [i0, i1).", name="ReLU")
)
def relu_backward_rows_into(y, d, i0, i1):
    _relu_backward_inplace(y, d, i0, i1, _ZERO, y.shape[1])


@njit(**JIT)
@with_doc(
    _rows_doc(
        _BACKWARD_ROWS_DOC,
        "In place ``d[i] *= act'(.)`` from the saved output ``y[i]`` for rows [i0, i1).",
        name="forward activation",
        code=" (`d` unchanged)",
        extended="The activation is chosen at run time, as in `activation_rows_into`.",
    )
)
def activation_backward_rows_into(y, d, code, i0, i1):
    if code == SIGMOID:
        sigmoid_backward_rows_into(y, d, i0, i1)
    elif code == TANH:
        tanh_backward_rows_into(y, d, i0, i1)
    elif code == RELU:
        relu_backward_rows_into(y, d, i0, i1)
