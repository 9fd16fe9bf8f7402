"""Compiled matrix products: register-blocked micro-kernels and the threaded product.

Most products are computed as dot products along contiguous rows (``dot_nt_into``): a block
of 4 rows of ``a`` by 3 rows of ``b`` keeps 12 running sums in scalar locals, which LLVM
vectorises along the depth and keeps in registers (12 accumulators plus 3 loaded vectors fit
the 16 vector registers of AVX2; AVX-512 has 32). The depth is cut into blocks that stay in
L1 and the columns into blocks that stay in L2. Each output ends with a horizontal sum of a
vector register, which costs about as much as the multiply-adds when the depth is short;
``dot_nn_into`` avoids it for short depths and long output rows (outer products, vectorised
along the output rows, 4 rows of ``b`` per pass). ``matmul_into`` packs an operand into that
layout (one transposed copy) when it is not already, computes ``a.T @ b`` with short output
rows and long columns as its transpose in that form, and cuts the output into one tile per
thread. Small products run on the calling thread: a fork/join costs more than the work, and
much more on a busy machine.

The block sizes are arguments, ``blocks = (kc, nc)``, planned in Python from the machine's
cache sizes (`product_blocks`, `machine_blocks`), like the thread count: compiled code is
cached on disk and shared by every machine that reads the cache, so a size read while
compiling would be frozen into code that runs on other machines.
"""

import functools
import os

import numpy as np
from numba import njit, prange

from .cpu_activations import activation_rows_into
from .cpu_caches import cache_sizes
from .jit import FAST, JIT

__all__ = [
    "BLOCKS_ENV",
    "dot_nt_into",
    "dot_nn_into",
    "transpose_into",
    "product_blocks",
    "machine_blocks",
    "product_tiles",
    "outer_form",
    "matmul_into",
    "dense_forward_into",
]

#: The environment variable that sets the products' block sizes, ``"KC,NC"`` (two positive
#: integers, see `product_blocks`), in place of those planned from the machine's caches.
BLOCKS_ENV = "FASTINIT_PRODUCT_BLOCKS"

# Multiply-adds above which a product splits over the threads (below, one thread is faster).
# The MLP's hidden products (128x100x100, 1.3M) split: on 2 threads of an Intel Xeon, nt
# 55 -> 33 us, nn 54 -> 42 us; 64^3 to 96^3 (0.26M-0.88M) gain nothing from a second thread.
_PAR_FLOPS = 1 << 20
_OUTER_MIN_COLS = 16  # outer products (dot_nn_into) need output rows of at least this many
_OUTER_DEPTH = 64  # and a depth below this, or below the output rows (see outer_form)
_LINE = 64  # bytes of a cache line


@njit(**FAST)
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


@njit(**JIT)
def dot_nt_into(a, b, out, i0, i1, j0, j1, k, blocks):
    """*Serial.* ``out[i, j] = sum_{p<k} a[i, p] * b[j, p]`` for i in [i0, i1), j in [j0, j1).

    Blocks of 4 x 3 outputs keep their sums in registers across a depth block of `blocks`
    (see the module docstring); at the edges a block repeats its last row or column.

    Parameters
    ----------
    a : ndarray, (M, >= k), float32 or float64, C-contiguous
        Left operand, read along its rows.
    b : ndarray, (N, >= k), same dtype, C-contiguous
        Right operand stored transposed, read along its rows.
    out : ndarray, (>= M, >= N), same dtype, C-contiguous
        Receives the block in place; must not overlap `a` or `b`.
    i0, i1 : int
        The rows of `out` to compute, [i0, i1); none when ``i1 <= i0``.
    j0, j1 : int
        The columns of `out` to compute, [j0, j1); none when ``j1 <= j0``.
    k : int
        The depth: the first `k` columns of `a` and `b`; ``k <= 0`` writes zeros.
    blocks : tuple of (int, int)
        ``(kc, nc)``: the depth block (elements) and the column block (rows of `b`), both
        >= 1; see `product_blocks` and `machine_blocks`.
    """
    if i1 <= i0 or j1 <= j0:
        return
    if k <= 0:
        zero = out.dtype.type(0)
        for i in range(i0, i1):
            for j in range(j0, j1):
                out[i, j] = zero
        return
    kc, nc = blocks
    last_i = i1 - 1
    for p0 in range(0, k, kc):
        p1 = min(k, p0 + kc)
        acc = p0 > 0
        for jb in range(j0, j1, nc):
            je = min(j1, jb + nc)
            last_j = je - 1
            for i in range(i0, i1, 4):
                r1 = min(i + 1, last_i)
                r2 = min(i + 2, last_i)
                r3 = min(i + 3, last_i)
                for j in range(jb, je, 3):
                    _dot_4x3(a, b, out, i, r1, r2, r3, j, min(j + 1, last_j), min(j + 2, last_j), p0, p1, acc)


@njit(**FAST)
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


@njit(**FAST)
def _nn_1x1(a, b, out, i, p, j0, j1):
    """``out[i, j0:j1] += a[i, p] * b[p, j0:j1]`` (the edges of ``dot_nn_into``)."""
    c = a[i, p]
    x = b[p][j0:j1]
    o = out[i][j0:j1]
    for q in range(o.size):
        o[q] += c * x[q]


@njit(**JIT)
def dot_nn_into(a, b, out, i0, i1, j0, j1, k):
    """*Serial.* ``out[i, j] = sum_{p<k} a[i, p] * b[p, j]`` for i in [i0, i1), j in [j0, j1).

    The outer-product form of the product: blocks of 4 output rows by 4 rows of `b`,
    vectorised along the output rows, with no horizontal sums. It beats `dot_nt_into` when
    the depth `k` is short (tens) or the output rows are long (hundreds), e.g. a weight
    gradient ``delta.T @ x``; 4 output rows should fit in L1.

    Parameters
    ----------
    a : ndarray, (M, >= k), float32 or float64, C-contiguous
        Left operand.
    b : ndarray, (>= k, N), same dtype, C-contiguous
        Right operand, not transposed.
    out : ndarray, (>= M, N), same dtype, C-contiguous
        Receives the block in place; must not overlap `a` or `b`.
    i0, i1 : int
        The rows of `out` to compute, [i0, i1).
    j0, j1 : int
        The columns of `out` to compute, [j0, j1).
    k : int
        The depth: the first `k` columns of `a` and rows of `b`.
    """
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


@njit(**JIT)
def transpose_into(a, out, i0, i1):
    """*Serial.* ``out[j, i] = a[i, j]`` for rows i in [i0, i1) of `a` and j < ``out.shape[0]``.

    ``transpose_into(a, out, 0, a.shape[0])`` is ``out[:] = a.T``. Eight rows at a time, so
    each write is eight contiguous values.

    Parameters
    ----------
    a : ndarray, 2-D, float32 or float64
        The source; it may be wider than `out` is tall (e.g. padded).
    out : ndarray, 2-D, same dtype
        Receives the transposed rows in place; at least ``i1`` columns.
    i0, i1 : int
        The rows of `a` to transpose, [i0, i1).
    """
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


def product_blocks(dtype, l1_bytes, l2_bytes):
    """The block sizes ``(kc, nc)`` of the products for caches of the given sizes.

    A depth block of 4 rows of ``a`` and 3 rows of ``b`` (the registers' 4 x 3 block) fills
    7/8 of the L1 data cache, in whole cache lines: the 4 rows of ``a`` stay there while the
    rows of ``b`` stream past. ``nc`` rows of ``b``, one depth block each, fill 3/4 of L2.
    A 32 KiB L1d and a 1 MiB L2 (AMD Zen 4 and 5) give ``(1024, 192)`` for float32.

    Parameters
    ----------
    dtype : numpy.dtype or type
        The operands' dtype (float32 or float64).
    l1_bytes, l2_bytes : int
        The L1 data and L2 cache sizes of one core, bytes (see
        ``fastinit.kernels.cpu_caches.cache_sizes``).

    Returns
    -------
    kc : int
        The depth block, elements: a multiple of a cache line's, at least one line.
    nc : int
        The column block, rows of ``b``: a multiple of 3, at least 3.
    """
    itemsize = np.dtype(dtype).itemsize
    line = max(1, _LINE // itemsize)
    kc = max(line, l1_bytes * 7 // 8 // (7 * itemsize) // line * line)
    nc = max(3, l2_bytes * 3 // 4 // (kc * itemsize) // 3 * 3)
    return kc, nc


@functools.lru_cache(maxsize=8)
def machine_blocks(dtype):
    """The block sizes ``(kc, nc)`` of the products on this machine, for `dtype`.

    ``product_blocks(dtype, l1d, l2)`` with this machine's cache sizes, unless the
    environment variable ``FASTINIT_PRODUCT_BLOCKS`` (`BLOCKS_ENV`) sets them, as
    ``"KC,NC"``. Planned once per process and dtype, when first asked for (a look-up in
    ``os.environ`` costs as much as a small product's other checks);
    ``machine_blocks.cache_clear()`` forgets the plans, e.g. after changing the variable.

    Parameters
    ----------
    dtype : numpy.dtype or type
        The operands' dtype (float32 or float64).

    Returns
    -------
    tuple of (int, int)
        ``(kc, nc)``, for the ``blocks`` argument of the products.

    Raises
    ------
    ValueError
        When ``FASTINIT_PRODUCT_BLOCKS`` is not two positive integers.
    """
    override = os.environ.get(BLOCKS_ENV)
    if override is None:
        l1_bytes, l2_bytes, _ = cache_sizes()
        return product_blocks(dtype, l1_bytes, l2_bytes)
    try:
        blocks = tuple(int(v) for v in override.split(","))
    except ValueError:
        blocks = ()
    if len(blocks) != 2 or min(blocks) < 1:
        raise ValueError(f"{BLOCKS_ENV} must be two positive integers 'KC,NC', got {override!r}")
    return blocks


@njit(**JIT)
def _product_tile(a, b, out, i0, i1, j0, j1, k, blocks, outer):
    """Rows [i0, i1) and columns [j0, j1) of ``out``: `dot_nn_into` when ``outer`` (``b`` is
    (k, N)), else `dot_nt_into` (``b`` is (N, k))."""
    if outer:
        dot_nn_into(a, b, out, i0, i1, j0, j1, k)
    else:
        dot_nt_into(a, b, out, i0, i1, j0, j1, k, blocks)


@njit(parallel=True, **JIT)
def _product_par(a, b, out, k, rows, cols, blocks, outer):
    """`_product_tile` over the whole of ``out``, one tile of ``rows`` x ``cols`` per piece."""
    m, n = out.shape
    tn = (n + cols - 1) // cols
    for t in prange(((m + rows - 1) // rows) * tn):
        i = t // tn * rows
        j = t % tn * cols
        _product_tile(a, b, out, i, min(m, i + rows), j, min(n, j + cols), k, blocks, outer)


@njit(**JIT)
def product_tiles(m, n, k, threads):
    """The tile ``(rows, cols)`` that `matmul_into` cuts an (m, n) output into, one per thread.

    Parameters
    ----------
    m, n : int
        The output's shape.
    k : int
        The product's depth.
    threads : int
        The number of threads to split over.

    Returns
    -------
    rows, cols : int
        The tile's shape: ``(m, n)``, one tile on the calling thread, when the product is
        small or `threads` < 2; else rows in multiples of 4 (when ``m >= 4 * threads``) or,
        for few rows, columns in multiples of 3.
    """
    if threads < 2 or m * n * k < _PAR_FLOPS:
        return m, n
    if m >= 4 * threads:  # rows split in multiples of 4
        return ((m + threads - 1) // threads + 3) // 4 * 4, n
    return m, ((n + threads - 1) // threads + 2) // 3 * 3  # few rows: columns in multiples of 3


@njit(**JIT)
def _product_all(a, b, out, k, threads, blocks, outer):
    """`_product_tile` over the whole of ``out``: on one thread when small, else one tile per
    thread."""
    m, n = out.shape
    rows, cols = product_tiles(m, n, k, threads)
    if rows == m and cols == n:
        _product_tile(a, b, out, 0, m, 0, n, k, blocks, outer)
    else:
        _product_par(a, b, out, k, rows, cols, blocks, outer)


@njit(**JIT)
def outer_form(n, k, blocks):
    """Whether `matmul_into` computes an (M, n) output of depth `k` as outer products.

    The outer-product form (`dot_nn_into`) has no horizontal sums, which cost about as much
    as the multiply-adds of a short dot product, but it reads and writes its output rows at
    every 4 steps of the depth and reads all of ``b`` for every 4 rows. So it is taken for
    output rows long enough for vectors (16 elements) and a depth that is short (below 64)
    or shorter than the rows, while ``b`` fits where the dot products' column block does
    (``k * n <= kc * nc``, about 3/4 of L2) and 4 output rows fit in L1 (``n <= kc``).

    Parameters
    ----------
    n : int
        The output's columns.
    k : int
        The product's depth.
    blocks : tuple of (int, int)
        The block sizes ``(kc, nc)`` (see `product_blocks`).

    Returns
    -------
    bool
        True for the outer-product form.
    """
    kc, nc = blocks
    return n >= _OUTER_MIN_COLS and (k < _OUTER_DEPTH or n > k) and k * n <= kc * nc and n <= kc


@njit(**JIT)
def matmul_into(a, b, out, trans_a, trans_b, threads, blocks):
    """``out[:] = op(a) @ op(b)`` with ``op(x) = x.T`` when its flag is set.

    As dot products (`dot_nt_into`: ``op(a)`` read along its rows and ``op(b)`` along its
    columns) or, where `outer_form` says so, as outer products (`dot_nn_into`: ``op(b)``
    read along its rows). An operand not in the layout its form reads is first packed into a
    transposed copy (allocated here): `a` with `trans_a`, and `b` with `trans_b` for outer
    products or without it for dot products. With `trans_a`, where `outer_form` rejects the
    output's rows (N) but takes its columns (M), e.g. a first layer's weight gradient
    ``x.T @ delta`` (784 x 100, depth 128), the transpose ``op(b).T @ a`` is computed instead,
    as outer products that read `a` as it is, into a buffer then transposed into `out`.
    One tile per thread for `threads` threads (see `product_tiles`).

    Parameters
    ----------
    a : ndarray, (M, K), or (K, M) when `trans_a`; float32 or float64, C-contiguous
        Left operand.
    b : ndarray, (K, N), or (N, K) when `trans_b`; same dtype, C-contiguous
        Right operand.
    out : ndarray, (M, N), same dtype, C-contiguous
        Receives the product in place; must not overlap `a` or `b`.
    trans_a : bool
        Use ``a.T`` as the left operand.
    trans_b : bool
        Use ``b.T`` as the right operand.
    threads : int
        Threads to split over: ``numba.get_num_threads()``, or 1 inside a ``prange``.
    blocks : tuple of (int, int)
        The block sizes ``(kc, nc)``: ``machine_blocks(dtype)``, see `dot_nt_into`.
    """
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    outer = outer_form(n, k, blocks)
    if trans_a and not outer and outer_form(m, k, blocks):
        # Short output rows but long columns, and a stored (k, m): compute out.T = op(b).T @ a
        # as outer products along rows of m elements, reading a as it is, then transpose it.
        if trans_b:
            bp = b
        else:
            bp = np.empty((n, k), b.dtype)
            transpose_into(b, bp, 0, k)
        out_t = np.empty((n, m), out.dtype)
        _product_all(bp, a, out_t, k, threads, blocks, True)
        transpose_into(out_t, out, 0, n)
        return
    if trans_a:
        ap = np.empty((m, k), a.dtype)
        transpose_into(a, ap, 0, k)
    else:
        ap = a
    if trans_b == outer:  # b is (n, k) and outer products read it as (k, n), or the reverse
        bp = np.empty((k, n) if outer else (n, k), b.dtype)
        transpose_into(b, bp, 0, b.shape[0])
    else:
        bp = b
    _product_all(ap, bp, out, k, threads, blocks, outer)


@njit(**JIT)
def dense_forward_into(x, wt, b, code, out, threads, blocks):
    """``out = act(x @ wt.T + b)``, the product split over `threads` threads.

    Parameters
    ----------
    x : ndarray, (N, K), float32 or float64, C-contiguous
        The layer's input.
    wt : ndarray, (F, K), same dtype, C-contiguous
        The weights stored transposed.
    b : ndarray, (F,), same dtype
        The bias (zeros for none).
    code : int
        The activation code: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
    out : ndarray, (N, F), same dtype, C-contiguous
        Receives the result in place; must not overlap the inputs.
    threads : int
        Threads to split the product over: ``numba.get_num_threads()``, or 1 inside a
        ``prange``.
    blocks : tuple of (int, int)
        The block sizes ``(kc, nc)``: ``machine_blocks(dtype)``, see `dot_nt_into`.
    """
    _product_all(x, wt, out, x.shape[1], threads, blocks, False)
    activation_rows_into(out, b, code, 0, out.shape[0])
