"""CUDA kernels (Numba ``@cuda.jit``) with thin host wrappers.

Same public functions and signatures as ``fastinit.kernels.reference`` (the NumPy
oracle) and ``fastinit.kernels.cpu``; see ``fastinit.kernels.reference`` for the shared
conventions (dtypes, C-contiguity, ``out=`` arguments, saved outputs in the
backward passes). What is specific to this backend:

Arrays
    Inputs may be Numba device arrays (``numba.cuda.to_device``), other
    ``__cuda_array_interface__`` arrays (e.g. CuPy, wrapped without a copy),
    or host NumPy arrays, which are *copied to the device* on every call (a
    convenience; keep data on the device in hot loops). Results are always
    device arrays: call ``.copy_to_host()`` to read them.
In place
    ``out=``, ``grad=``, ``dx=``, ``dw=``, ``db=`` and ``sgd_update``'s
    ``param`` must be device arrays: writing into a temporary device copy of a
    host array would silently lose the result, so a host array there raises
    ``TypeError`` naming the argument.
Synchronisation
    Launches are asynchronous on the default stream. The only functions that
    wait for the device are ``softmax_cross_entropy``, which copies the loss
    (one 16-byte copy) to return it as a Python float, and
    ``mean_squared_error``, which copies its D per-column sums.
Labels
    Host labels are range-checked on the host before anything is launched.
    Device labels are checked on the device: the softmax kernel counts the
    out-of-range labels, the count travels back with the loss, and the
    wrapper raises ``ValueError`` (the gradient of such rows is meaningless).
dtypes
    float32 and float64; each kernel is compiled per dtype and float32
    kernels compute in float32 (typed literals, shared/local buffers of the
    array dtype). Exception: ``softmax_cross_entropy`` adds the per-row
    losses into the batch mean in float64 (N values, a negligible cost), and
    ``mean_squared_error`` its per-column sums (D values, on the host).

Nothing is compiled at import: the kernels are built by cached factories on
first use, so ``import fastinit.kernels.cuda`` needs neither a GPU nor a CUDA toolkit.
On a machine without a GPU they run on Numba's simulator when
``NUMBA_ENABLE_CUDASIM=1`` is set before Numba is imported (slow; small
sizes only).

The second half of the module exposes the device-level building blocks the
wrappers are made of (``gemm_into``, ``activation_backward_colsum_into``,
``softmax_xent_into``, ``gather_rows_into``, ...): no validation, no host
copies, no synchronisation; used by ``fastinit.engines.cuda`` and ``fastinit.experiments.profile``.
"""

import math
from functools import cache

import numpy as np
from numba import cuda, float32, float64

from . import checks as chk
from . import reference
from .checks import ACTIVATIONS, KERNEL_API, shared_doc, with_doc

__all__ = [
    "ACTIVATIONS",
    *KERNEL_API,  # the shared API (see fastinit.kernels.checks.KERNEL_API)
    # njit/device building blocks for other compiled code:
    "MATMUL_CONFIGS",
    "matmul_config",
    "gemm_into",
    "activation_forward_into",
    "activation_backward_into",
    "activation_backward_colsum_into",
    "column_sums_into",
    "softmax_xent_into",
    "mse_into",
    "sgd_into",
    "gather_rows_into",
    "gather_into",
    "segment_sumsq_into",
    "read_stats",
    "as_device",
    "is_device_array",
    "synchronize",
]

_NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}

#: Matmul tilings: name -> (BM, BN, BK, TM, TN). A block of (BN/TN, BM/TM)
#: threads computes a BM x BN tile of the result, each thread TM x TN outputs
#: held in registers, stepping through K in slabs of BK staged in shared memory.
MATMUL_CONFIGS = {
    "16x16": (16, 16, 8, 2, 2),
    "32x32": (32, 32, 16, 2, 2),
    "64x64": (64, 64, 16, 4, 4),
    "128x128": (128, 128, 8, 8, 8),
}

_ELEMENTWISE_TPB = 256
_ELEMENTWISE_MAX_BLOCKS = 4096
_ROW_TPB = 32  # threads per row in the softmax kernel for many classes
_NARROW_CLASSES = 64  # up to this many classes: one thread per row
_NARROW_TPB = 128
_COL_X, _COL_Y = 32, 8  # column-sum block: 32 columns x 8 row groups
_REDUCE_TPB = 256


# =========================================================================== helpers


def is_device_array(x):
    """Tell whether `x` lives on the GPU.

    Parameters
    ----------
    x : object
        Any object.

    Returns
    -------
    bool
        True for a Numba device array (real or simulated) or any
        ``__cuda_array_interface__`` object.
    """
    return hasattr(x, "copy_to_host") or hasattr(x, "__cuda_array_interface__")


def as_device(x):
    """Return `x` as a Numba device array.

    Parameters
    ----------
    x : device array, __cuda_array_interface__ object or ndarray
        Device arrays pass through, CAI objects (e.g. CuPy) are wrapped without a
        copy, host arrays are copied to the device.

    Returns
    -------
    device array
        The array on the device.
    """
    if hasattr(x, "copy_to_host"):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cuda.as_cuda_array(x)
    return cuda.to_device(x)


def _device_out(name, out):
    """A caller's in-place target as a device array; host arrays are refused."""
    if out is None:
        return None
    if not is_device_array(out):
        raise TypeError(
            f"{name} must be a device array on the cuda backend (got {type(out).__name__}); "
            f"an in-place result cannot be written into a host array: pass "
            f"numba.cuda.to_device(...) or leave {name}=None"
        )
    return as_device(out)


def synchronize():
    """Wait for every launched kernel (call before stopping a timer)."""
    cuda.synchronize()


def _flat(x):
    return x.reshape(x.size)


def _blocks_1d(n):
    return max(1, min(_ELEMENTWISE_MAX_BLOCKS, (n + _ELEMENTWISE_TPB - 1) // _ELEMENTWISE_TPB))


def _nbtype(dtype):
    return _NUMBA_TYPES[np.dtype(dtype)]


_MIN_BLOCKS = 100  # about one block per multiprocessor of a large GPU


def matmul_config(m, n):
    """Choose the tiling (a key of ``MATMUL_CONFIGS``) for an (m, n) result.

    The biggest tile that still gives at least ``_MIN_BLOCKS`` (100) blocks, else
    the smallest. Bigger tiles reuse each loaded element more (8 x 8 outputs per
    thread at 128 x 128) but small results would leave most of a GPU idle: the
    MLP's 128 x 100 product makes 4 blocks of 64 x 64 but 56 of 16 x 16; 784 x 100
    makes 100 of 32 x 32.

    Parameters
    ----------
    m : int
        Rows of the result.
    n : int
        Columns of the result.

    Returns
    -------
    str
        ``"128x128"``, ``"64x64"``, ``"32x32"`` or ``"16x16"``.
    """
    for config in ("128x128", "64x64", "32x32"):
        bm, bn = MATMUL_CONFIGS[config][:2]
        if ((m + bm - 1) // bm) * ((n + bn - 1) // bn) >= _MIN_BLOCKS:
            return config
    return "16x16"


# =========================================================================== device functions


@cache
def _activation_fns(T):
    """Device functions (forward, backward) of every activation for numba type ``T``."""
    zero = T(0)
    one = T(1)

    @cuda.jit(device=True, inline=True)
    def act_forward(v, code):
        if code == 1:  # sigmoid, stable: exp only ever sees -|v|
            if v >= zero:
                return one / (one + T(math.exp(-v)))
            e = T(math.exp(v))
            return e / (one + e)
        if code == 2:
            return T(math.tanh(v))
        if code == 3:
            return zero if v < zero else v  # NaN propagates like numpy.maximum
        return v

    @cuda.jit(device=True, inline=True)
    def act_backward(y, dy, code):
        if code == 1:
            return dy * y * (one - y)
        if code == 2:
            return dy * (one - y * y)
        if code == 3:
            return dy if y > zero else zero
        return dy

    return act_forward, act_backward


# =========================================================================== kernel factories


@cache
def _gemm_kernel(T, trans_a, trans_b, config):
    """Tiled, register-blocked ``c = act(op(a) @ op(b) + bias)`` for numba type ``T``.

    ``trans_a``/``trans_b`` are compile-time: each variant gets its own
    global-to-shared load pattern, reading consecutive addresses along the
    stored rows. Shared tiles are stored k-major (``As[k, m]``, ``Bs[k, n]``);
    thread (tx, ty) owns rows ``ty + i*TY`` and columns ``tx + j*TX`` of the
    tile, so a warp reads consecutive shared words (no bank conflicts) and
    writes consecutive columns of ``c`` (coalesced). The next K slab is loaded
    from global memory into registers while the current one is multiplied, so
    the loads' latency hides behind the FMAs. Out-of-range elements are loaded
    as zero and never stored, so any M, N, K works.
    """
    BM, BN, BK, TM, TN = MATMUL_CONFIGS[config]
    TX, TY = BN // TN, BM // TM
    NT = TX * TY
    LOADS_A = (BM * BK) // NT
    LOADS_B = (BK * BN) // NT
    assert LOADS_A * NT == BM * BK and LOADS_B * NT == BK * BN
    PAD_A = 0 if trans_a else 4  # transposing store: pad to spread banks
    PAD_B = 4 if trans_b else 0
    A_SHAPE = (BK, BM + PAD_A)  # shapes must be compile-time constants
    B_SHAPE = (BK, BN + PAD_B)
    ACC_SHAPE = (TM, TN)
    act_forward, _ = _activation_fns(T)

    @cuda.jit(device=True, inline=True)
    def load_a(a, pa, tid, k0, m0, k_size, m_size):
        """Slab k0 of op(a) into registers: element e of the tile is thread tid's ld-th load."""
        for ld in range(LOADS_A):
            e = tid + ld * NT
            if trans_a:  # a stored (K, M): consecutive threads walk m
                kk = e // BM
                mm = e - kk * BM
            else:  # a stored (M, K): consecutive threads walk k
                mm = e // BK
                kk = e - mm * BK
            gk = k0 + kk
            gm = m0 + mm
            v = T(0)
            if gk < k_size and gm < m_size:
                v = a[gk, gm] if trans_a else a[gm, gk]
            pa[ld] = v

    @cuda.jit(device=True, inline=True)
    def store_a(As, pa, tid):
        for ld in range(LOADS_A):
            e = tid + ld * NT
            if trans_a:
                kk = e // BM
                mm = e - kk * BM
            else:
                mm = e // BK
                kk = e - mm * BK
            As[kk, mm] = pa[ld]

    @cuda.jit(device=True, inline=True)
    def load_b(b, pb, tid, k0, n0, k_size, n_size):
        for ld in range(LOADS_B):
            e = tid + ld * NT
            if trans_b:  # b stored (N, K)
                nn = e // BK
                kk = e - nn * BK
            else:  # b stored (K, N)
                kk = e // BN
                nn = e - kk * BN
            gk = k0 + kk
            gn = n0 + nn
            v = T(0)
            if gk < k_size and gn < n_size:
                v = b[gn, gk] if trans_b else b[gk, gn]
            pb[ld] = v

    @cuda.jit(device=True, inline=True)
    def store_b(Bs, pb, tid):
        for ld in range(LOADS_B):
            e = tid + ld * NT
            if trans_b:
                nn = e // BK
                kk = e - nn * BK
            else:
                kk = e // BN
                nn = e - kk * BN
            Bs[kk, nn] = pb[ld]

    @cuda.jit
    def gemm(a, b, c, bias, has_bias, code):
        m_size, n_size = c.shape
        k_size = a.shape[0] if trans_a else a.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        m0 = cuda.blockIdx.y * BM
        n0 = cuda.blockIdx.x * BN
        As = cuda.shared.array(A_SHAPE, T)
        Bs = cuda.shared.array(B_SHAPE, T)
        acc = cuda.local.array(ACC_SHAPE, T)
        ra = cuda.local.array(TM, T)
        rb = cuda.local.array(TN, T)
        pa = cuda.local.array(LOADS_A, T)  # the next slab, staged in registers
        pb = cuda.local.array(LOADS_B, T)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = T(0)
        load_a(a, pa, tid, 0, m0, k_size, m_size)
        load_b(b, pb, tid, 0, n0, k_size, n_size)
        for k0 in range(0, k_size, BK):
            store_a(As, pa, tid)
            store_b(Bs, pb, tid)
            cuda.syncthreads()
            if k0 + BK < k_size:  # issue the next slab's global loads before computing this one
                load_a(a, pa, tid, k0 + BK, m0, k_size, m_size)
                load_b(b, pb, tid, k0 + BK, n0, k_size, n_size)
            for kk in range(BK):
                for i in range(TM):
                    ra[i] = As[kk, ty + i * TY]
                for j in range(TN):
                    rb[j] = Bs[kk, tx + j * TX]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()
        for i in range(TM):
            row = m0 + ty + i * TY
            if row < m_size:
                for j in range(TN):
                    col = n0 + tx + j * TX
                    if col < n_size:
                        v = acc[i, j]
                        if has_bias:
                            v += bias[col]
                        c[row, col] = act_forward(v, code)

    return gemm, (TX, TY), (BM, BN)


@cache
def _elementwise_kernels(T):
    act_forward, act_backward = _activation_fns(T)

    @cuda.jit
    def forward(x, out, code):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, x.size, stride):
            out[i] = act_forward(x[i], code)

    @cuda.jit
    def backward(y, dy, out, code):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, y.size, stride):
            out[i] = act_backward(y[i], dy[i], code)

    @cuda.jit
    def sgd(param, grad, lr):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, param.size, stride):
            param[i] -= lr * grad[i]

    return forward, backward, sgd


@cache
def _column_kernels(T):
    """Column sums without atomics: each block owns 32 columns, 8 row groups
    accumulate strided rows, then a shared-memory tree adds the 8 partials."""
    _, act_backward = _activation_fns(T)

    @cuda.jit
    def backward_colsum(y, dy, code, dz, db):
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        col = cuda.blockIdx.x * _COL_X + tx
        n_rows, n_cols = y.shape
        part = cuda.shared.array((_COL_Y, _COL_X), T)
        acc = T(0)
        if col < n_cols:
            for i in range(ty, n_rows, _COL_Y):
                g = act_backward(y[i, col], dy[i, col], code)
                dz[i, col] = g
                acc += g
        part[ty, tx] = acc
        cuda.syncthreads()
        s = _COL_Y // 2
        while s > 0:
            if ty < s:
                part[ty, tx] += part[ty + s, tx]
            cuda.syncthreads()
            s //= 2
        if ty == 0 and col < n_cols:
            db[col] = part[0, tx]

    @cuda.jit
    def colsum(x, out):
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        col = cuda.blockIdx.x * _COL_X + tx
        n_rows, n_cols = x.shape
        part = cuda.shared.array((_COL_Y, _COL_X), T)
        acc = T(0)
        if col < n_cols:
            for i in range(ty, n_rows, _COL_Y):
                acc += x[i, col]
        part[ty, tx] = acc
        cuda.syncthreads()
        s = _COL_Y // 2
        while s > 0:
            if ty < s:
                part[ty, tx] += part[ty + s, tx]
            cuda.syncthreads()
            s //= 2
        if ty == 0 and col < n_cols:
            out[col] = part[0, tx]

    return backward_colsum, colsum


@cache
def _softmax_kernels(T):
    """Softmax cross-entropy rows: for many classes one block of 32 threads per
    row (shared-memory max and sum reductions), for few classes (MNIST's 10)
    one thread per row, which wastes no lanes and needs no barriers."""

    @cuda.jit
    def softmax_rows(logits, labels, grad, rows):
        r = cuda.blockIdx.x
        t = cuda.threadIdx.x
        n_rows, n_cols = logits.shape
        red = cuda.shared.array(_ROW_TPB, T)
        # row max
        mx = logits[r, 0]
        for j in range(t, n_cols, _ROW_TPB):
            v = logits[r, j]
            if v > mx:
                mx = v
        red[t] = mx
        cuda.syncthreads()
        s = _ROW_TPB // 2
        while s > 0:
            if t < s and red[t + s] > red[t]:
                red[t] = red[t + s]
            cuda.syncthreads()
            s //= 2
        mx = red[0]
        cuda.syncthreads()
        # sum of exp(z - max)
        acc = T(0)
        for j in range(t, n_cols, _ROW_TPB):
            acc += T(math.exp(logits[r, j] - mx))
        red[t] = acc
        cuda.syncthreads()
        s = _ROW_TPB // 2
        while s > 0:
            if t < s:
                red[t] += red[t + s]
            cuda.syncthreads()
            s //= 2
        lse = T(math.log(red[0]))
        lab = labels[r]
        inside = lab >= 0 and lab < n_cols
        if t == 0:
            if inside:
                rows[r, 0] = float64(lse) - (float64(logits[r, lab]) - float64(mx))
                rows[r, 1] = float64(0)
            else:
                rows[r, 0] = float64(0)
                rows[r, 1] = float64(1)
        inv_n = T(1) / T(n_rows)
        for j in range(t, n_cols, _ROW_TPB):
            g = T(math.exp(logits[r, j] - mx - lse))
            if j == lab:
                g -= T(1)
            grad[r, j] = g * inv_n

    @cuda.jit
    def softmax_rows_narrow(logits, labels, grad, rows):
        """One thread per row, for few classes: no shared memory, no barriers."""
        r = cuda.grid(1)
        n_rows, n_cols = logits.shape
        if r >= n_rows:
            return
        mx = logits[r, 0]
        for j in range(1, n_cols):
            v = logits[r, j]
            if v > mx:
                mx = v
        acc = T(0)
        for j in range(n_cols):
            acc += T(math.exp(logits[r, j] - mx))
        lse = T(math.log(acc))
        lab = labels[r]
        if lab >= 0 and lab < n_cols:
            rows[r, 0] = float64(lse) - (float64(logits[r, lab]) - float64(mx))
            rows[r, 1] = float64(0)
        else:
            rows[r, 0] = float64(0)
            rows[r, 1] = float64(1)
        inv_n = T(1) / T(n_rows)
        for j in range(n_cols):
            g = T(math.exp(logits[r, j] - mx - lse))
            if j == lab:
                g -= T(1)
            grad[r, j] = g * inv_n

    return softmax_rows, softmax_rows_narrow


@cache
def _mse_kernel(T):
    """One thread per column: a warp reads 32 neighbouring entries of a row
    (coalesced), with no shared memory and no barriers; each thread writes
    its column's gradient and sum of squared errors (stored as float64)."""

    @cuda.jit
    def mse_columns(pred, target, grad, scale, cols):
        j = cuda.grid(1)
        if j >= pred.shape[1]:
            return
        acc = T(0)
        for i in range(pred.shape[0]):
            d = pred[i, j] - target[i, j]
            acc += d * d
            grad[i, j] = d * scale
        cols[j] = float64(acc)

    return mse_columns


@cache
def _stats_kernel():
    """Single block: ``stats = [mean of rows[:, 0], sum of rows[:, 1]]`` in float64."""

    @cuda.jit
    def row_stats(rows, stats):
        t = cuda.threadIdx.x
        n_rows = rows.shape[0]
        red = cuda.shared.array((2, _REDUCE_TPB), float64)
        a = float64(0)
        b = float64(0)
        for i in range(t, n_rows, _REDUCE_TPB):
            a += rows[i, 0]
            b += rows[i, 1]
        red[0, t] = a
        red[1, t] = b
        cuda.syncthreads()
        s = _REDUCE_TPB // 2
        while s > 0:
            if t < s:
                red[0, t] += red[0, t + s]
                red[1, t] += red[1, t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            stats[0] = red[0, 0] / float64(n_rows)
            stats[1] = red[1, 0]

    return row_stats


@cache
def _gather_kernels():
    @cuda.jit
    def gather_rows(src, idx, out):
        n_rows, n_cols = out.shape
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for e in range(start, n_rows * n_cols, stride):
            r = e // n_cols
            out[r, e - r * n_cols] = src[idx[r], e - r * n_cols]

    @cuda.jit
    def gather(src, idx, out):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, out.size, stride):
            out[i] = src[idx[i]]

    return gather_rows, gather


@cache
def _segment_kernels():
    @cuda.jit
    def segment_sumsq(flat, segments, out):
        """Block s: out[s] = sum of flat[start:start+size]**2 in float64 (segments[s] = start, size)."""
        sidx = cuda.blockIdx.x
        t = cuda.threadIdx.x
        start = segments[sidx, 0]
        size = segments[sidx, 1]
        red = cuda.shared.array(_REDUCE_TPB, float64)
        acc = float64(0)
        for i in range(t, size, _REDUCE_TPB):
            v = float64(flat[start + i])
            acc += v * v
        red[t] = acc
        cuda.syncthreads()
        s = _REDUCE_TPB // 2
        while s > 0:
            if t < s:
                red[t] += red[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            out[sidx] = red[0]

    return segment_sumsq


# =========================================================================== building blocks


def gemm_into(a, b, out, trans_a=False, trans_b=False, bias=None, act_code=0, config=None):
    """Launch ``out = act(op(a) @ op(b) + bias)`` on device arrays (no checks, no sync).

    Parameters
    ----------
    a : device array, shape (M, K), or (K, M) when `trans_a`; float32 or float64
        Left operand.
    b : device array, shape (K, N), or (N, K) when `trans_b`; same dtype
        Right operand.
    out : device array, shape (M, N), same dtype
        Receives the result.
    trans_a : bool, default False
        Use ``a.T`` (read in place) as the left operand.
    trans_b : bool, default False
        Use ``b.T`` (read in place) as the right operand.
    bias : device array, shape (N,), same dtype, optional
        Added to every row before the activation; None for no bias.
    act_code : int, default 0
        The activation, a value of ``fastinit.kernels.checks.ACTIVATION_CODES`` (0 is linear).
    config : str, optional
        A key of ``MATMUL_CONFIGS``; default ``matmul_config(M, N)``.

    Returns
    -------
    device array, shape (M, N)
        `out`.
    """
    m, n = out.shape
    if m == 0 or n == 0:
        return out
    config = config or matmul_config(m, n)
    kernel, block, tile = _gemm_kernel(_nbtype(out.dtype), bool(trans_a), bool(trans_b), config)
    grid = ((n + tile[1] - 1) // tile[1], (m + tile[0] - 1) // tile[0])
    if bias is None:
        bias, has_bias = out.reshape(out.size), False  # placeholder, never read
    else:
        has_bias = True
    kernel[grid, block](a, b, out, bias, has_bias, int(act_code))
    return out


def activation_forward_into(x, act_code, out):
    """Launch ``out = act(x)`` elementwise (no checks, no sync).

    Parameters
    ----------
    x : device array, float32 or float64, C-contiguous
        Input of any shape.
    act_code : int
        The activation, a value of ``fastinit.kernels.checks.ACTIVATION_CODES``.
    out : device array, same shape and dtype as `x`
        Receives the result (may be `x`).

    Returns
    -------
    device array
        `out`.
    """
    if x.size:
        forward, _, _ = _elementwise_kernels(_nbtype(x.dtype))
        forward[_blocks_1d(x.size), _ELEMENTWISE_TPB](_flat(x), _flat(out), int(act_code))
    return out


def activation_backward_into(y, dy, act_code, out):
    """Launch ``out = act'(y) * dy`` from the saved output `y` (no checks, no sync).

    Parameters
    ----------
    y : device array, float32 or float64, C-contiguous
        The saved output of the activation, any shape.
    dy : device array, same shape and dtype
        The upstream gradient.
    act_code : int
        The activation, a value of ``fastinit.kernels.checks.ACTIVATION_CODES``.
    out : device array, same shape and dtype
        Receives the gradient (may alias `dy`).

    Returns
    -------
    device array
        `out`.
    """
    if y.size:
        _, backward, _ = _elementwise_kernels(_nbtype(y.dtype))
        backward[_blocks_1d(y.size), _ELEMENTWISE_TPB](_flat(y), _flat(dy), _flat(out), int(act_code))
    return out


def activation_backward_colsum_into(y, dy, act_code, dz, db):
    """Launch ``dz = act'(y) * dy`` and ``db = dz.sum(axis=0)`` in one pass (no checks, no sync).

    Parameters
    ----------
    y : device array, shape (N, F), float32 or float64
        The saved output of the activation.
    dy : device array, shape (N, F), same dtype
        The upstream gradient.
    act_code : int
        The activation, a value of ``fastinit.kernels.checks.ACTIVATION_CODES``.
    dz : device array, shape (N, F), same dtype
        Receives the pre-activation gradient.
    db : device array, shape (F,), same dtype
        Receives the column sums of `dz` (no atomics: deterministic).

    Returns
    -------
    dz : device array, shape (N, F)
        `dz`.
    db : device array, shape (F,)
        `db`.
    """
    n, f = y.shape
    if f:
        kernel, _ = _column_kernels(_nbtype(y.dtype))
        kernel[(f + _COL_X - 1) // _COL_X, (_COL_X, _COL_Y)](y, dy, int(act_code), dz, db)
    return dz, db


def column_sums_into(x, out):
    """Launch ``out = x.sum(axis=0)`` (deterministic, no atomics; no checks, no sync).

    Parameters
    ----------
    x : device array, shape (N, F), float32 or float64
        The array to sum.
    out : device array, shape (F,), same dtype
        Receives the column sums.

    Returns
    -------
    device array, shape (F,)
        `out`.
    """
    n, f = x.shape
    if f:
        _, kernel = _column_kernels(_nbtype(x.dtype))
        kernel[(f + _COL_X - 1) // _COL_X, (_COL_X, _COL_Y)](x, out)
    return out


def softmax_xent_into(logits, labels, grad, rows, stats):
    """Launch softmax cross-entropy on the device, without synchronising.

    Up to 64 classes one thread handles a row; beyond, a block of 32 threads.
    No checks: out-of-range labels are counted in ``stats[1]`` (see `read_stats`).

    Parameters
    ----------
    logits : device array, shape (N, C), float32 or float64
        Class scores, N and C >= 1.
    labels : device array, shape (N,), int32 or int64
        Class of each row.
    grad : device array, shape (N, C), same dtype as `logits`
        Receives ``(softmax(logits) - onehot(labels)) / N``.
    rows : device array, shape (N, 2), float64
        Scratch: per-row loss and out-of-range flag.
    stats : device array, shape (2,), float64
        Receives ``[mean loss, number of out-of-range labels]``.

    Returns
    -------
    device array, shape (2,)
        `stats`.
    """
    n, c = logits.shape
    wide, narrow = _softmax_kernels(_nbtype(logits.dtype))
    if c <= _NARROW_CLASSES:
        narrow[(n + _NARROW_TPB - 1) // _NARROW_TPB, _NARROW_TPB](logits, labels, grad, rows)
    else:
        wide[n, _ROW_TPB](logits, labels, grad, rows)
    _stats_kernel()[1, _REDUCE_TPB](rows, stats)
    return stats


def mse_into(pred, target, grad, cols):
    """Launch the squared error of `pred` against `target` on the device, without synchronising.

    Parameters
    ----------
    pred : device array, shape (N, D), float32 or float64
        Predictions, N and D >= 1.
    target : device array, shape (N, D), same dtype
        Targets.
    grad : device array, shape (N, D), same dtype
        Receives ``2 * (pred - target) / (N * D)`` (may alias `pred` or `target`).
    cols : device array, shape (D,), float64
        Receives each column's sum of squared errors (summed in the array dtype).

    Returns
    -------
    device array, shape (D,)
        `cols`; the mean squared error is ``cols.copy_to_host().sum() / (N * D)``.
    """
    n, d = pred.shape
    scale = np.dtype(pred.dtype).type(2.0 / (n * d))
    _mse_kernel(_nbtype(pred.dtype))[_blocks_1d(d), _ELEMENTWISE_TPB](pred, target, grad, scale, cols)
    return cols


def sgd_into(param, grad, lr):
    """Launch ``param -= lr * grad`` (no checks, no sync).

    Parameters
    ----------
    param : device array, float32 or float64, C-contiguous
        The parameters, any shape; updated in place.
    grad : device array, same shape and dtype
        The gradient.
    lr : float
        Learning rate, cast to the array dtype.

    Returns
    -------
    device array
        `param`.
    """
    if param.size:
        _, _, sgd = _elementwise_kernels(_nbtype(param.dtype))
        sgd[_blocks_1d(param.size), _ELEMENTWISE_TPB](
            _flat(param), _flat(grad), np.dtype(param.dtype).type(lr)
        )
    return param


def gather_rows_into(src, idx, out):
    """Launch ``out[i, :] = src[idx[i], :]`` (no checks, no sync).

    Parameters
    ----------
    src : device array, shape (R, F)
        The rows to gather from.
    idx : device array, shape (N,), int32 or int64
        Row numbers in [0, R); not bounds-checked.
    out : device array, shape (N, F), dtype of `src`
        Receives the gathered rows.

    Returns
    -------
    device array, shape (N, F)
        `out`.
    """
    if out.size:
        kernel, _ = _gather_kernels()
        kernel[_blocks_1d(out.size), _ELEMENTWISE_TPB](src, idx, out)
    return out


def gather_into(src, idx, out):
    """Launch ``out[i] = src[idx[i]]`` for 1-D device arrays (no checks, no sync).

    Parameters
    ----------
    src : device array, shape (R,)
        The values to gather from.
    idx : device array, shape (N,), int32 or int64
        Indices in [0, R); not bounds-checked.
    out : device array, shape (N,), dtype of `src`
        Receives the gathered values.

    Returns
    -------
    device array, shape (N,)
        `out`.
    """
    if out.size:
        _, kernel = _gather_kernels()
        kernel[_blocks_1d(out.size), _ELEMENTWISE_TPB](src, idx, out)
    return out


def segment_sumsq_into(flat, segments, out):
    """Launch the float64 sum of squares of each segment of a flat array (no sync).

    ``out[s] = sum(flat[start:start + size] ** 2)`` for each row ``(start, size)``
    of `segments`; one block per segment, deterministic. Used for per-layer
    gradient norms.

    Parameters
    ----------
    flat : device array, shape (P,), float32 or float64
        The values, e.g. every layer's gradient laid end to end.
    segments : device array, shape (S, 2), int64
        ``(start, size)`` of each segment.
    out : device array, shape (S,), float64
        Receives the sums of squares.

    Returns
    -------
    device array, shape (S,)
        `out`.
    """
    if segments.shape[0]:
        _segment_kernels()[segments.shape[0], _REDUCE_TPB](flat, segments, out)
    return out


def read_stats(stats):
    """Copy a `softmax_xent_into` stats buffer to the host (synchronises) and return the loss.

    Parameters
    ----------
    stats : device array, shape (2,), float64
        ``[mean loss, number of out-of-range labels]``.

    Returns
    -------
    float
        The mean loss.

    Raises
    ------
    ValueError
        If any label was out of range.
    """
    host = stats.copy_to_host()
    if host[1] > 0:
        raise ValueError(f"labels must lie in [0, n_classes): {int(host[1])} device label(s) out of range")
    return float(host[0])


# =========================================================================== public API

# The full docstrings live in fastinit.kernels.reference; each function below takes its reference
# docstring (fastinit.kernels.checks.shared_doc) with these Notes added, and some a paragraph of its own.
_NOTES = """
    On the GPU. Every input may be a device array, or a host array (copied to the device on
    each call); the results are device arrays (``.copy_to_host()`` reads them). The arrays
    written in place (`out`, `grad`, `dx`, `dw`, `db`, `param`) must be device arrays: a host
    one raises TypeError. Overlaps are not checked: an output may be exactly an input of an
    elementwise function (``out=x``, ``out=dy``, ``grad=pred``, ``grad=param``), and must not
    overlap an input, or another output, otherwise.
"""


def _empty(shape, dtype):
    return cuda.device_array(shape, dtype=dtype)


@with_doc(
    shared_doc(
        reference.matmul,
        _NOTES
        + """
    A tiled, register-blocked kernel (see ``MATMUL_CONFIGS``); `trans_a` and
    `trans_b` read the transposes in place.
""",
    )
)
def matmul(a, b, out=None, *, trans_a=False, trans_b=False):
    m, _, n = chk.matmul_shapes(a, b, trans_a, trans_b)
    chk.out_array("out", out, (m, n), a.dtype)
    out = _device_out("out", out)
    a, b = as_device(a), as_device(b)
    if out is None:
        out = _empty((m, n), a.dtype)
    return gemm_into(a, b, out, trans_a, trans_b)


def _elementwise(x, out, code):
    chk.elementwise_args(x, out)
    out = _device_out("out", out)
    x = as_device(x)
    if out is None:
        out = _empty(x.shape, x.dtype)
    return activation_forward_into(x, code, out)


def _backward(y, dy, out, code):
    chk.backward_args(y, dy, out)
    out = _device_out("out", out)
    y, dy = as_device(y), as_device(dy)
    if out is None:
        out = _empty(y.shape, y.dtype)
    return activation_backward_into(y, dy, code, out)


@with_doc(shared_doc(reference.sigmoid, _NOTES))
def sigmoid(x, out=None):
    return _elementwise(x, out, 1)


@with_doc(shared_doc(reference.sigmoid_backward, _NOTES))
def sigmoid_backward(y, dy, out=None):
    return _backward(y, dy, out, 1)


@with_doc(shared_doc(reference.tanh, _NOTES))
def tanh(x, out=None):
    return _elementwise(x, out, 2)


@with_doc(shared_doc(reference.tanh_backward, _NOTES))
def tanh_backward(y, dy, out=None):
    return _backward(y, dy, out, 2)


@with_doc(shared_doc(reference.relu, _NOTES))
def relu(x, out=None):
    return _elementwise(x, out, 3)


@with_doc(shared_doc(reference.relu_backward, _NOTES))
def relu_backward(y, dy, out=None):
    return _backward(y, dy, out, 3)


@with_doc(shared_doc(reference.activation_forward, _NOTES))
def activation_forward(x, activation, out=None):
    chk.elementwise_args(x, out)
    return _elementwise(x, out, chk.activation_code(activation))


@with_doc(shared_doc(reference.activation_backward, _NOTES))
def activation_backward(y, dy, activation, out=None):
    chk.backward_args(y, dy, out)
    return _backward(y, dy, out, chk.activation_code(activation))


@with_doc(
    shared_doc(
        reference.dense_forward,
        _NOTES
        + """
    One launch: the bias and the activation are applied in the matmul kernel's
    epilogue, so ``x @ w`` is never stored.
""",
    )
)
def dense_forward(x, w, b=None, activation="linear", out=None):
    n, fan_out, code = chk.dense_forward_args(x, w, b, activation, out)
    out = _device_out("out", out)
    x, w = as_device(x), as_device(w)
    b = None if b is None else as_device(b)
    if out is None:
        out = _empty((n, fan_out), x.dtype)
    return gemm_into(x, w, out, False, False, b, code)


@with_doc(
    shared_doc(
        reference.dense_backward,
        _NOTES
        + """
    One kernel computes ``dz = act'(y) * dy`` and ``db = dz.sum(0)`` (column sums
    without atomics); then ``dw = x.T @ dz`` and ``dx = dz @ w.T`` are tiled matmuls reading the
    transposes in place. A temporary `dz` (N, fan_out) is allocated per call.
""",
    )
)
def dense_backward(x, w, y, dy, activation="linear", dx=None, dw=None, db=None, *, compute_dx=True):
    code = chk.dense_backward_args(x, w, y, dy, activation, dx, dw, db)
    dx, dw, db = _device_out("dx", dx), _device_out("dw", dw), _device_out("db", db)
    x, w, y, dy = as_device(x), as_device(w), as_device(y), as_device(dy)
    dtype = x.dtype
    dz = _empty(y.shape, dtype)
    dw = _empty(w.shape, dtype) if dw is None else dw
    db = _empty((w.shape[1],), dtype) if db is None else db
    activation_backward_colsum_into(y, dy, code, dz, db)
    gemm_into(x, dz, dw, True, False)
    if compute_dx:
        dx = _empty(x.shape, dtype) if dx is None else dx
        gemm_into(dz, w, dx, False, True)
    else:
        dx = None
    return dx, dw, db


@with_doc(
    shared_doc(
        reference.softmax_cross_entropy,
        _NOTES
        + """
    Copying the loss back (16 bytes) is the one synchronisation. Host labels
    are range-checked before anything is launched, device labels on the device (out-of-range
    ones raise ValueError either way). The per-row losses are added into the mean in float64.
""",
    )
)
def softmax_cross_entropy(logits, labels, grad=None):
    n, c = chk.softmax_args(logits, labels, grad)
    if c == 0:
        raise ValueError("logits must have at least one column (class)")
    if not is_device_array(labels):
        chk.label_range(np.asarray(labels), c)
    grad = _device_out("grad", grad)
    logits, labels = as_device(logits), as_device(labels)
    if grad is None:
        grad = _empty((n, c), logits.dtype)
    rows = _empty((n, 2), np.float64)
    stats = _empty(2, np.float64)
    softmax_xent_into(logits, labels, grad, rows, stats)
    return read_stats(stats), grad


@with_doc(
    shared_doc(
        reference.mean_squared_error,
        _NOTES
        + """
    The loss: per-column sums of squares in the arrays' dtype, added in
    float64 on the host; copying those D values is the one synchronisation.
""",
    )
)
def mean_squared_error(pred, target, grad=None):
    n, d = chk.mse_args(pred, target, grad)
    grad = _device_out("grad", grad)
    pred, target = as_device(pred), as_device(target)
    if grad is None:
        grad = _empty((n, d), pred.dtype)
    cols = mse_into(pred, target, grad, _empty(d, np.float64))
    return float(cols.copy_to_host().sum()) / (n * d), grad


@with_doc(shared_doc(reference.sgd_update, _NOTES))
def sgd_update(param, grad, lr):
    lr = chk.sgd_args(param, grad, lr)
    param = _device_out("param", param)
    grad = as_device(grad)
    return sgd_into(param, grad, lr)
