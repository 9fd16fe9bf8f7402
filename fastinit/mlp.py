"""A multilayer perceptron trained with SGD on softmax cross-entropy.

``MLP(sizes, activation="relu", init="he", backend="cpu", dtype="float32", seed=0)``
builds ``len(sizes) - 1`` dense layers ``h = act(h @ W + b)``; hidden layers use
``activation``, the last layer is linear (its output are the logits) and
``train_step`` puts a mean softmax cross-entropy on top. Weights are
(fan_in, fan_out), drawn with ``fastinit.init.init_weights`` from
``numpy.random.default_rng(seed)`` layer by layer in order, biases are zero;
the draw happens on the host in float64 before the cast, so the same seed
gives identical initial weights on every backend.

The MLP validates every argument in Python and delegates the arithmetic to a
per-backend *engine*:

- ``"numpy"``: ``NumpyEngine``, a Python loop over the ``kernels.reference``
  layer kernels (the readable oracle);
- ``"cpu"``: ``CpuEngine``, the whole training step (forward, loss, backward,
  SGD update of every layer) is ONE compiled Numba call with two parallel
  regions. All parameters live in one flat contiguous buffer (per-layer
  weights, stored transposed, and biases are views into it), the gradients
  in a second buffer with the same layout, activations and deltas in
  workspaces sized for the batch (reallocated only when the batch size
  changes), so the step allocates nothing. Its kernels live in this module
  (see the "cpu" section below for why they are not ``kernels.cpu``'s);
- ``"cuda"``: ``fastinit.mlp_cuda.CudaEngine``, imported lazily after
  ``fastinit.backends.require_cuda()``.

Engine interface (what ``fastinit.mlp_cuda.CudaEngine`` implements)
--------------------------------------------------------------------
``Engine(weights, biases, activation, dtype)``
    ``weights``: list of host ``numpy`` arrays (fan_in, fan_out), C-contiguous,
    of ``dtype``; ``biases``: list of (fan_out,) arrays; ``activation``: the
    hidden activation name (one of ``kernels.ACTIVATIONS``); ``dtype``: a
    ``numpy.dtype`` (float32 or float64). The engine copies what it needs.
``params() -> [(W, b), ...]``
    Host NumPy *copies* of the current parameters (never views of the
    engine's storage, so a caller can keep them across steps).
``forward(x, record) -> logits`` or ``(logits, hidden)``
    ``x`` (N, fan_in) of ``dtype``, already validated. Returns host arrays:
    logits (N, n_classes) and, when ``record``, the list of the hidden layers'
    outputs (after the activation), ``len(sizes) - 2`` arrays; the logits are
    NOT repeated in that list.
``train_step(x, labels, lr) -> float``
    One SGD step on the mean softmax cross-entropy; returns the loss *before*
    the update. ``x`` validated as above, ``labels`` (N,) int32/int64 in
    range (the MLP checks host labels; device labels are the engine's
    business), ``lr`` a finite Python float.
``grad_norms() -> ndarray``
    (layers,) float64: the Frobenius norm of each layer's weight gradient
    dL/dW of the last ``train_step`` (biases not included).
``set_dataset(x, labels)``, ``train_step_indices(idx, lr) -> float``
    A training set kept by the engine (validated by the MLP), and a step on
    its rows ``idx`` (a validated int64 array). numpy gathers the batch with
    ``np.take`` into reused buffers; cpu passes the set and ``idx`` to its
    compiled step, which gathers in parallel; cuda keeps the set on the device
    and gathers there, so only ``idx`` goes in.

Non-goals: no momentum, no regularisation, no mixed dtypes.
"""

import math
import threading
from types import SimpleNamespace

import numpy as np

from kernels import _checks as chk

from .backends import BackendError, check_backend, require_cuda
from .init import init_weights, parse_init

__all__ = ["MLP", "NumpyEngine", "CpuEngine", "compile_backend"]


# --------------------------------------------------------------------------- numpy


class NumpyEngine:
    """Reference engine: a Python loop over ``kernels.reference`` layer kernels."""

    def __init__(self, weights, biases, activation, dtype):
        from kernels import reference as k

        self._k = k
        self.activation = activation
        self.dtype = np.dtype(dtype)
        self._w = [np.array(w, dtype=self.dtype, order="C") for w in weights]
        self._b = [np.array(b, dtype=self.dtype, order="C") for b in biases]
        self._gw = [np.zeros_like(w) for w in self._w]
        self._gb = [np.zeros_like(b) for b in self._b]
        self._norms = None
        self._data = self._batch = None

    def _act(self, i):
        return self.activation if i < len(self._w) - 1 else "linear"

    def params(self):
        return [(w.copy(), b.copy()) for w, b in zip(self._w, self._b)]

    def _forward(self, x):
        outs = []
        h = x
        for i, (w, b) in enumerate(zip(self._w, self._b)):
            h = self._k.dense_forward(h, w, b, self._act(i))
            outs.append(h)
        return outs

    def forward(self, x, record):
        outs = self._forward(x)
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def train_step(self, x, labels, lr):
        k = self._k
        outs = self._forward(x)
        loss, dy = k.softmax_cross_entropy(outs[-1], labels)
        for i in range(len(self._w) - 1, -1, -1):
            inp = x if i == 0 else outs[i - 1]
            dy, _, _ = k.dense_backward(
                inp, self._w[i], outs[i], dy, self._act(i), dw=self._gw[i], db=self._gb[i], compute_dx=i > 0
            )
        for w, b, gw, gb in zip(self._w, self._b, self._gw, self._gb):
            k.sgd_update(w, gw, lr)
            k.sgd_update(b, gb, lr)
        self._norms = None
        return loss

    def set_dataset(self, x, labels):
        self._data = (x, labels)
        self._batch = None

    def train_step_indices(self, idx, lr):
        x, labels = self._data
        if self._batch is None or self._batch[0].shape[0] != idx.size:
            self._batch = (np.empty((idx.size, x.shape[1]), dtype=x.dtype), np.empty(idx.size, dtype=labels.dtype))
        xb, lb = self._batch
        np.take(x, idx, axis=0, out=xb)
        np.take(labels, idx, out=lb)
        return self.train_step(xb, lb, lr)

    def grad_norms(self):
        if self._norms is None:
            self._norms = np.array([np.linalg.norm(g.astype(np.float64)) for g in self._gw])
        return self._norms.copy()


# --------------------------------------------------------------------------- cpu
#
# The cpu engine's compiled code. It is written as plain Python functions,
# marked with ``_jit`` or ``_per_thread``, and compiled on first use
# (``_cpu_kernels``), so ``import fastinit.mlp`` and the numpy backend never
# import Numba. Once compiled, the module globals name the dispatchers, so the
# functions call each other as compiled code (and are cached on disk).
#
# Compile time. Numba links a callee's code into every caller and optimises it
# again there; a parallel region adds three such layers (the prange body, two
# gufunc wrappers). So the work of a step lives in three per-thread bodies,
# ``numba.cfunc``s that inline their small helpers (``inline="always"``) and
# are called through a pointer from one parallel loop, ``_parallel_for``; the
# matrix product both the backward and the update bodies need, ``_product_rows``,
# is a cfunc of its own that they call through a pointer too. Each is compiled once,
# and on a cold cache a helper process compiles part of them at the same time
# (``_compile_cfuncs``). This took the cold compile from about 14 s to about 3 s.
#
# Layout. Weights are stored TRANSPOSED, ``Wt`` (fan_out, fan_in), so that every
# product of the step streams along contiguous rows with no transposed copy:
#
#   forward   z  = x @ W    = x . Wt^T  -> _dot_rows   (row-by-row dot products)
#   backward  dx = dz @ W^T = dz @ Wt   -> _product_rows  (rows of Wt scaled and summed)
#             dWt = dz^T @ x            -> _product_rows  (op(A) = dz^T: rows of x scaled and summed)
#
# Threads. The step is two parallel regions, each split into disjoint pieces:
# 1. forward (``_forward_slice``), then softmax cross-entropy and every layer's
#    delta dz (``_backward_slice``) for a slice of the batch rows per thread
#    (rows never interact until the weight gradient);
# 2. per layer, a slice of the rows of dWt (output features) per thread
#    (``_update_slice``): the gradient over the whole batch, the bias gradient,
#    and the SGD update of those rows of Wt and b, fused.
# All buffers come from the engine, so the step allocates nothing.
#
# Why not compose ``kernels.cpu``'s ``matmul_into`` & co.: those are parallel
# inside (a prange inside this step's prange would nest parallel regions, which
# the workqueue threading layer refuses) and ``matmul_into`` packs a transposed
# copy of an operand (an allocation) for three of the four transpose variants.
# The step needs serial, row-range kernels on fixed layouts, fused with the bias,
# activation and SGD update, which is what the functions below are.

_JITTED = []
_CFUNCS = {}  # name -> (plain function, its Numba signature for a dtype name)
_CPU = None
_CPU_LOCK = threading.Lock()
prange = range  # rebound to numba.prange before compiling
_call_cfunc = None  # bound to fastinit._cfunc_call.call_cfunc before compiling
_outer_tile = None  # bound to kernels._tile.outer_tile before compiling
_dot_tile = None  # bound to kernels._tile.dot_tile before compiling
_FASTMATH = {"reassoc", "contract"}  # no nnan/ninf: NaN and Inf still propagate


def _jit(**options):
    """Mark a function for ``numba.njit(cache=True, error_model='numpy', **options)``."""

    def mark(func):
        _JITTED.append((func.__name__, options))
        return func

    return mark


def _types(key):
    """Numba types for dtype name ``key``: (real, 1-D C array, 2-D C array)."""
    t = __import__("numba").types
    real = getattr(t, key)
    return real, t.Array(real, 1, "C"), t.Array(real, 2, "C")


def _body_signature(key):
    """(x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, t, parts, product) -> float64."""
    t = __import__("numba").types
    real, vec, mat = _types(key)
    ints, table, i64 = t.Array(t.int64, 1, "C"), t.Array(t.int64, 2, "C"), t.int64
    f64 = t.Array(t.float64, 1, "C")
    return t.float64(mat, ints, ints, mat, ints, vec, vec, table, i64, vec, vec, real, f64, i64, i64, i64)


def _product_signature(key):
    """(A, si, sp, B, C, i0, i1) -> float64 (always 0.0)."""
    t = __import__("numba").types
    _, _, mat = _types(key)
    return t.float64(mat, t.int64, t.int64, mat, mat, t.int64, t.int64)


def _per_thread(func):
    """Mark a per-thread body: a ``numba.cfunc`` per dtype with ``_body_signature`` (see ``_cpu_kernels``)."""
    _CFUNCS[func.__name__.lstrip("_")] = (func, _body_signature)
    return func


def _cpu_kernels(dtype):
    """The cpu engine's compiled functions for ``dtype`` (float32 or float64).

    Compiled on first use and cached on disk (see "Compile time" above). The
    per-thread bodies (``_per_thread``) and ``_product_rows`` become
    ``numba.cfunc``s with explicit signatures; the namespace holds their
    addresses (under ``NUMBA_DISABLE_JIT``, the plain functions), which the
    engine passes to ``_parallel_for``, and keeps the cfuncs alive (``cfuncs``).
    """
    with _CPU_LOCK:  # a background warm-up (``compile_backend``) may be compiling too
        return _compile_cpu_kernels(dtype)


def _compile_cpu_kernels(dtype):
    import numba

    _bind_compiled()
    key = np.dtype(dtype).name
    if key not in _CPU:
        if numba.config.DISABLE_JIT:  # debugging: the bodies are called directly, as plain Python
            cfuncs = {name: func for name, (func, _) in _CFUNCS.items()}
            handles = cfuncs
        else:
            cfuncs = _compile_cfuncs(key)
            handles = {name: cfunc.address for name, cfunc in cfuncs.items()}
        _CPU[key] = SimpleNamespace(
            parallel_for=_parallel_for, train_step=_cpu_train_step, threads=numba.get_num_threads, cfuncs=cfuncs,
            **handles,
        )
    return _CPU[key]


def _bind_compiled():
    """Once per process: rebind the module globals marked ``_jit`` to Numba dispatchers (see above)."""
    global _CPU
    if _CPU is not None:
        return
    import numba

    from ._cfunc_call import call_cfunc
    from kernels._tile import dot_tile, dot_tile_py, outer_tile, outer_tile_py

    g = globals()
    g["prange"] = numba.prange
    g["_call_cfunc"] = (lambda func, *args: func(*args)) if numba.config.DISABLE_JIT else call_cfunc
    g["_outer_tile"] = outer_tile_py if numba.config.DISABLE_JIT else outer_tile
    g["_dot_tile"] = dot_tile_py if numba.config.DISABLE_JIT else dot_tile
    for name, options in _JITTED:
        g[name] = numba.njit(cache=True, error_model="numpy", **options)(g[name])
    _CPU = {}


def _cfunc(name, key):
    """The ``numba.cfunc`` ``name`` of ``_CFUNCS`` for dtype name ``key`` (compiled, or loaded from the cache)."""
    import numba

    func, signature = _CFUNCS[name]
    return numba.cfunc(signature(key), cache=True, error_model="numpy", fastmath=_FASTMATH)(func)


# On a cold cache a helper process compiles these (about half of the compile
# time) while this one compiles the product, the forward body and the parallel
# entry points; see ``fastinit._compile_helper``.
_HELPER_CFUNCS = ("backward_slice", "update_slice")


def compile_cfuncs(key, *names):
    """Entry point of the helper process: compile the cfuncs ``names`` for dtype name ``key`` into the cache."""
    _bind_compiled()
    for name in names:
        _cfunc(name, key)


def _compile_cfuncs(key):
    """Every cfunc of ``_CFUNCS`` for dtype name ``key``, a helper process compiling some of them
    when they are not in the on-disk cache yet."""
    from . import _compile_helper as helper

    cold = [name for name in _HELPER_CFUNCS if not helper.is_cached(_CFUNCS[name][0], _CFUNCS[name][1](key))]
    proc = helper.start(__name__, "compile_cfuncs", [key, *cold]) if cold else None
    try:
        cfuncs = {name: _cfunc(name, key) for name in _CFUNCS if proc is None or name not in cold}
        if proc is not None:
            _compile_entry_points(key)  # meanwhile
    except BaseException:  # an error or Ctrl-C here: do not wait for the helper
        helper.stop(proc)
        raise
    helper.finish(proc)
    cfuncs.update({name: _cfunc(name, key) for name in cold})  # loaded from the cache the helper filled
    return cfuncs


def _compile_entry_points(key):
    """Compile ``_parallel_for`` and ``_cpu_train_step`` for dtype name ``key`` with the argument types
    the engine calls them with (``tests/test_mlp.py`` checks that no other overload gets compiled)."""
    import numba

    for func, values in _entry_values(np.dtype(key)).items():
        func.compile(tuple(numba.typeof(v) for v in values))


def _entry_values(dtype):
    """Stand-ins with the types of ``CpuEngine``'s arguments to ``_parallel_for`` (``forward``)
    and ``_cpu_train_step`` (``train_step``)."""
    x, ints, real, i = _frozen(np.zeros((1, 1)), dtype), _NO_INTS, dtype.type(0), 0
    vec, f64, table = np.zeros(1, dtype=dtype), np.zeros(1), np.zeros((1, 7), dtype=np.int64)
    xb, lb = np.zeros((1, 1), dtype=dtype), np.zeros(1, dtype=np.int64)
    return {
        _parallel_for: (i, i, i, i, x, ints, ints, xb, lb, vec, vec, table, i, vec, vec, real, f64, f64),
        _cpu_train_step: (x, ints, ints, xb, lb, real, vec, vec, table, i, vec, vec, f64, f64, i, i, i, i, i),
    }


@_jit(inline="always")
def _act1(v, code, one):
    """One activation value: 0 linear, 1 sigmoid (stable), 2 tanh, 3 relu (NaN passes).

    ``one`` is 1 in the data's dtype (a bare ``1`` would promote float32 to float64)."""
    if code == 3:
        zero = v - v
        return zero if v < zero else v
    if code == 1:
        if v >= 0:
            return one / (one + math.exp(-v))
        e = math.exp(v)
        return e / (one + e)
    if code == 2:
        return math.tanh(v)
    return v


@_jit(inline="always", fastmath=_FASTMATH)
def _dot_rows(A, Bt, bias, C, i0, i1, code):
    """Rows [i0, i1) of ``C = act(A @ Bt.T + bias)``; A (N, K), Bt (M, K), C (N, M).

    4 x 4 blocks of dot products along the contiguous K in register tiles
    (``kernels._tile.dot_tile``, which sums its 16 accumulators together) over
    the largest multiple of the vector lanes in K, the last K % lanes terms
    added by scalar code; the last columns and rows (M or the rows not a
    multiple of 4) by scalar code that LLVM vectorises along K. Then the bias
    and activation, row by row.
    """
    n = Bt.shape[0]
    k = A.shape[1]
    kb = Bt.shape[1]
    kv = k - k % (64 // A.itemsize)
    i = i0
    while i + 4 <= i1:
        a0 = A[i]
        a1 = A[i + 1]
        a2 = A[i + 2]
        a3 = A[i + 3]
        j = 0
        while j + 4 <= n:
            _dot_tile(A, i * k, k, Bt, j * kb, kb, C, i * C.shape[1] + j, C.shape[1], kv)
            for p in range(kv, k):
                for r in range(4):
                    x = A[i + r, p]
                    for q in range(4):
                        C[i + r, j + q] += x * Bt[j + q, p]
            j += 4
        while j < n:
            b0 = Bt[j]
            z = A.dtype.type(0)
            s0 = s1 = s2 = s3 = z
            for p in range(k):
                y = b0[p]
                s0 += a0[p] * y
                s1 += a1[p] * y
                s2 += a2[p] * y
                s3 += a3[p] * y
            C[i, j] = s0
            C[i + 1, j] = s1
            C[i + 2, j] = s2
            C[i + 3, j] = s3
            j += 1
        i += 4
    while i < i1:
        a = A[i]
        for j in range(n):
            b = Bt[j]
            s = A.dtype.type(0)
            for p in range(k):
                s += a[p] * b[p]
            C[i, j] = s
        i += 1
    one = A.dtype.type(1)
    for r in range(i0, i1):
        c = C[r]
        for j in range(n):
            c[j] = _act1(c[j] + bias[j], code, one)


@_jit(inline="always")
def _axpy_rows(A, si, sp, B, C, i0, i1):
    """Rows [i0, i1) of ``C = op(A) @ B``, op(A)[i, p] = ``A.flat[i * si + p * sp]``, one row at a time.

    A C-contiguous (r, c): ``si, sp = c, 1`` is A itself, ``1, c`` its
    transpose (run-time steps: one compiled body for both). B (K, L), C (M, L):
    each output row is a sum of rows of B scaled by scalars of op(A), which
    LLVM vectorises along the contiguous L. Only for the last block of fewer
    than 4 rows of ``_product_rows``, whose register tiles do the rest.
    """
    a = A.reshape(A.size)
    k = B.shape[0]
    width = B.shape[1]
    for i in range(i0, i1):
        c = C[i]
        for q in range(width):
            c[q] = 0
        for p in range(k):
            x = a[i * si + p * sp]
            b = B[p]
            for q in range(width):
                c[q] += x * b[q]


def _product_rows(A, si, sp, B, C, i0, i1):
    """Rows [i0, i1) of ``C = op(A) @ B`` (as ``_axpy_rows``); returns 0.0.

    Blocks of 4 rows in register tiles (``kernels._tile``): 4 vectors wide,
    then one tile of the 1 to 3 vectors left, then a scalar loop over the last
    columns (C's width not a multiple of the vector). A last block of fewer
    than 4 rows goes to ``_axpy_rows``."""
    k = B.shape[0]
    width = C.shape[1]
    vl = 64 // C.itemsize
    a = A.reshape(A.size)
    for ib in range(i0, i1, 4):
        ie = min(i1, ib + 4)
        if ie - ib < 4:
            _axpy_rows(A, si, sp, B, C, ib, ie)
            continue
        q = 0
        while q + 4 * vl <= width:
            _outer_tile(4, A, ib * si, si, sp, B, q, width, C, ib * width + q, width, k)
            q += 4 * vl
        rest = (width - q) // vl
        if rest == 3:
            _outer_tile(3, A, ib * si, si, sp, B, q, width, C, ib * width + q, width, k)
        elif rest == 2:
            _outer_tile(2, A, ib * si, si, sp, B, q, width, C, ib * width + q, width, k)
        elif rest == 1:
            _outer_tile(1, A, ib * si, si, sp, B, q, width, C, ib * width + q, width, k)
        q += rest * vl
        for i in range(ib, ie):
            for c in range(q, width):
                s = C.dtype.type(0)
                for p in range(k):
                    s += a[i * si + p * sp] * B[p, c]
                C[i, c] = s
    return 0.0


_CFUNCS["product_rows"] = (_product_rows, _product_signature)  # shared by two bodies: compiled once


@_jit(inline="always")
def _act_backward_rows(y, d, code, i0, i1):
    """In place ``d *= act'(.)`` from the saved output ``y``, rows [i0, i1)."""
    if code == 0:
        return
    width = y.shape[1]
    one = y.dtype.type(1)
    for i in range(i0, i1):
        yr = y[i]
        dr = d[i]
        for q in range(width):
            v = yr[q]
            if code == 3:
                dr[q] = dr[q] if v > 0 else v - v
            elif code == 1:
                dr[q] = dr[q] * v * (one - v)
            else:
                dr[q] = dr[q] * (one - v * v)


@_jit(inline="always")
def _softmax_xent_rows(logits, labels, grad, c, i0, i1, n_total):
    """Rows [i0, i1) of ``grad = (softmax - onehot) / n_total`` over the first ``c`` columns;
    returns their summed loss (float64)."""
    inv_n = 1.0 / n_total
    total = 0.0
    for i in range(i0, i1):
        z = logits[i]
        g = grad[i]
        m = z[0]
        for j in range(1, c):
            if z[j] > m:
                m = z[j]
        s = 0.0
        for j in range(c):
            e = math.exp(float(z[j]) - float(m))
            g[j] = e
            s += e
        scale = inv_n / s
        for j in range(c):
            g[j] = g[j] * scale
        lab = labels[i]
        g[lab] -= inv_n
        total += math.log(s) - (float(z[lab]) - float(m))
    return total


@_jit(inline="always")
def _wt(flat, layout, i):
    """Layer ``i``'s Wt (fan_out, in_stride) and b (fan_out,) as views of a flat buffer."""
    fo, wo, bo, stride = layout[i, 1], layout[i, 2], layout[i, 3], layout[i, 5]
    return flat[wo : wo + fo * stride].reshape((fo, stride)), flat[bo : bo + fo]


@_jit(inline="always")
def _rows(buf, layout, i, n):
    """Layer ``i``'s (n, out_stride) slab of a flat per-layer activation/delta buffer."""
    stride, col = layout[i, 6], layout[i, 4]
    return buf[n * col : n * (col + stride)].reshape((n, stride))


@_jit(inline="always")
def _split(n, parts, t):
    """[lo, hi) of piece ``t`` of ``range(n)`` cut in ``parts``, boundaries on multiples of 4."""
    step = ((n + parts - 1) // parts + 3) // 4 * 4
    return min(n, t * step), min(n, (t + 1) * step)


@_jit(inline="always")
def _gather_rows(x, labels, idx, xb, lb, r0, r1):
    """Rows [r0, r1) of ``xb = x[idx]`` and ``lb = labels[idx]``."""
    width = x.shape[1]
    for r in range(r0, r1):
        src = x[idx[r]]
        dst = xb[r]
        for q in range(width):
            dst[q] = src[q]
        lb[r] = labels[idx[r]]


# Per-thread bodies: piece ``t`` of ``parts`` of one parallel phase. They share
# one signature so that one parallel loop (``_parallel_for``) runs them all.


@_per_thread
def _forward_slice(x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, t, parts, product):
    """Forward pass of piece ``t`` of the batch rows through every layer into ``acts``; returns 0.0.

    With indices (``idx`` not empty) it first gathers its rows of the batch into ``xb``, ``lb``."""
    if idx.shape[0] > 0:
        r0, r1 = _split(xb.shape[0], parts, t)
        _gather_rows(x, labels, idx, xb, lb, r0, r1)
    else:
        xb = x
    n = xb.shape[0]
    r0, r1 = _split(n, parts, t)
    last = layout.shape[0] - 1
    inp = xb
    for i in range(last + 1):
        wt, b = _wt(params, layout, i)
        out = _rows(acts, layout, i, n)
        _dot_rows(inp, wt, b, out, r0, r1, code if i < last else 0)
        inp = out
    return 0.0


@_per_thread
def _backward_slice(x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, t, parts, product):
    """Loss and every layer's delta for piece ``t`` of the batch rows (after ``_forward_slice``).

    Returns the pieces' summed loss."""
    if idx.shape[0] > 0:
        labels = lb
    n = labels.shape[0]
    r0, r1 = _split(n, parts, t)
    last = layout.shape[0] - 1
    dz = _rows(deltas, layout, last, n)
    loss = _softmax_xent_rows(_rows(acts, layout, last, n), labels, dz, layout[last, 1], r0, r1, n)
    for i in range(last, 0, -1):
        wt, _ = _wt(params, layout, i)
        dprev = _rows(deltas, layout, i - 1, n)
        _call_cfunc(product, dz, dz.shape[1], np.int64(1), wt, dprev, r0, r1)
        _act_backward_rows(_rows(acts, layout, i - 1, n), dprev, code, r0, r1)
        dz = dprev
    return loss


@_per_thread
def _update_slice(x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, t, parts, product):
    """Piece ``t`` of every layer's weight gradient and SGD update; returns 0.0.

    ``sq[t * layers + i]`` receives the sum of squares of the piece's gradient
    rows of layer i (the engine's ``grad_norms`` adds the pieces up). Piece t
    of layer i is (t + i) % parts: a split of fan_out on multiples of 4 is
    uneven (100 -> 52 + 48); rotating evens it out over the layers."""
    if idx.shape[0] > 0:
        x = xb
    n = x.shape[0]
    layers = layout.shape[0]
    inp = x
    for i in range(layers):
        wt, b = _wt(params, layout, i)
        gwt, gb = _wt(grads, layout, i)
        j0, j1 = _split(layout[i, 1], parts, (t + i) % parts)
        sq[t * layers + i] = _update_rows(inp, _rows(deltas, layout, i, n), wt, b, gwt, gb, lr, j0, j1, product)
        inp = _rows(acts, layout, i, n)
    return 0.0


@_jit(inline="always")
def _update_rows(inp, dz, wt, b, gwt, gb, lr, j0, j1, product):
    """Rows [j0, j1) of one layer: gWt = dz^T @ inp, gb = column sums of dz, then SGD on Wt and b
    (``product``: the ``_product_rows`` cfunc).

    Four rows at a time, so each block of gWt is still in L1 when it is applied.
    Returns the sum of squares of those rows of gWt (float64; padding columns are 0)."""
    n = dz.shape[0]
    width = wt.shape[1]
    total = 0.0
    for jb in range(j0, j1, 4):
        je = min(j1, jb + 4)
        _call_cfunc(product, dz, np.int64(1), dz.shape[1], inp, gwt, jb, je)
        for j in range(jb, je):
            s = dz.dtype.type(0)
            for r in range(n):
                s += dz[r, j]
            gb[j] = s
            b[j] -= lr * s
            w = wt[j]
            g = gwt[j]
            ss = dz.dtype.type(0)
            for q in range(width):
                w[q] -= lr * g[q]
                ss += g[q] * g[q]
            total += ss
    return total


@_jit(parallel=True)
def _parallel_for(
    first, body, parts, product, x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, out
):
    """For t in range(parts), in parallel: ``first(..., t, parts, product)`` (unless ``first`` is 0),
    then ``out[t] = body(..., t, parts, product)``.

    ``first``, ``body``: addresses of per-thread bodies' cfuncs for this dtype, ``product``:
    of the ``_product_rows`` cfunc that they call (``_cpu_kernels``)."""
    for t in prange(parts):
        ti = np.int64(t)
        if first != 0:
            _call_cfunc(first, x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, ti, parts,
                        product)
        out[t] = _call_cfunc(body, x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, ti,
                             parts, product)


@_jit()
def _cpu_train_step(
    x, labels, idx, xb, lb, lr, params, grads, layout, code, acts, deltas, loss_parts, sq, threads, forward, backward,
    update, product
):
    """One SGD step of the whole MLP (see the section comment) on ``threads`` threads; returns the mean loss.

    The batch is ``x``, ``labels``; or, when ``idx`` is not empty, their rows
    ``idx``, gathered into ``xb``, ``lb`` by the forward pieces (``xb``, ``lb``
    are unused otherwise: pass empty arrays). ``idx`` is trusted (in range).
    ``loss_parts`` (float64, at least ``threads`` long) receives the per-slice
    loss sums, ``sq`` (float64, at least ``threads * layers`` long) the pieces'
    sums of squares of the weight gradients (``_update_slice``); ``forward``,
    ``backward``, ``update`` and ``product`` are the addresses of the
    ``_forward_slice``, ``_backward_slice``, ``_update_slice`` and ``_product_rows`` cfuncs."""
    n = idx.shape[0] if idx.shape[0] > 0 else x.shape[0]
    threads = max(1, min(threads, loss_parts.shape[0], sq.shape[0] // layout.shape[0]))
    parts = max(1, min(threads, n // 8))
    args = (x, labels, idx, xb, lb, params, grads, layout, code, acts, deltas, lr, sq, loss_parts)
    _parallel_for(forward, backward, parts, product, *args)
    loss = 0.0
    for t in range(parts):
        loss += loss_parts[t]
    _parallel_for(np.int64(0), update, threads, product, *args)
    return loss / n


def _frozen(a, dtype):
    """A read-only C-contiguous view of ``a`` as ``dtype`` (a copy only if ``a`` is not one already).

    The parallel entry points are compiled once, for read-only inputs, and pass
    them on to per-thread bodies declared with writeable arrays of the same
    layout that only read them (see ``fastinit._cfunc_call``)."""
    a = np.asarray(a)
    if a.dtype != dtype or not a.flags.c_contiguous:
        a = np.array(a, dtype=dtype, order="C")
    view = a.view()
    view.flags.writeable = False
    return view


_MAX_PIECES = 64  # most threads the cpu engine splits a step over
_NO_INTS = _frozen(np.zeros(0, dtype=np.int64), np.int64)  # no labels (a forward pass), no indices (a given batch)


def _padded(width):
    """Row stride for a layer of ``width`` features: a multiple of 16 (one AVX-512 vector of float32).

    16 rather than 8: with AVX-512 the 100-wide layers' loops otherwise end in a
    scalar remainder (the seed's forward pass took 185 us instead of 171 on 2 cores)."""
    return (width + 15) // 16 * 16


class CpuEngine:
    """Numba engine: one compiled call per training step that allocates nothing.

    Storage: ``_params`` (flat: every layer's Wt, i.e. W transposed, then b),
    ``_grads`` (same layout), ``_layout`` int64 (layers, 7) rows of
    (fan_in, fan_out, Wt offset, b offset, column offset of the layer in the
    activation buffers, in_stride, out_stride). Rows are padded with zeros to
    a multiple of 16 (``_padded``) so the vector loops run without scalar
    remainders: Wt is (fan_out, in_stride) with in_stride = sizes[0] for the
    first layer (the caller's x is not padded) and the previous out_stride
    after. Per batch size N: ``_acts`` and ``_deltas`` hold every layer's
    output and back-propagated gradient as (N, out_stride) slabs, zeroed once
    and reallocated only when N changes. The padding stays exactly zero:
    zero weights give zero outputs and zero gradients. ``train_step_indices``
    passes the whole ``set_dataset`` set and the indices to the step, whose
    forward pieces gather their rows of the batch into ``_batch``.
    """

    _data = None
    _batch = None

    def __init__(self, weights, biases, activation, dtype):
        self.dtype = np.dtype(dtype)
        self._kern = _cpu_kernels(self.dtype)
        self.activation = activation
        self.code = chk.activation_code(activation)
        rows, off, col = [], 0, 0
        in_stride = weights[0].shape[0]
        for w in weights:
            fi, fo = w.shape
            out_stride = _padded(fo)
            rows.append((fi, fo, off, off + fo * in_stride, col, in_stride, out_stride))
            off += fo * in_stride + fo
            col += out_stride
            in_stride = out_stride
        self._layout = np.array(rows, dtype=np.int64)
        self._params = np.zeros(off, dtype=self.dtype)
        self._grads = np.zeros(off, dtype=self.dtype)
        self._width_sum = col
        for i, (w, b) in enumerate(zip(weights, biases)):
            wt, bv = self._views(self._params, i)
            wt[:, : w.shape[0]] = np.asarray(w, dtype=self.dtype).T
            bv[...] = b
        self._loss_parts = np.zeros(_MAX_PIECES, dtype=np.float64)
        self._sq = np.zeros(_MAX_PIECES * len(rows), dtype=np.float64)
        self._pieces = 0  # update pieces of the last step (their sums of squares are in _sq)
        self._n = -1
        self._acts = self._deltas = None
        self._no_batch = (np.zeros((0, 1), dtype=self.dtype), np.zeros(0, dtype=np.int64))  # no gather buffers
        self._fwd_acts = np.zeros(0, dtype=self.dtype)  # forward()'s workspace, grown to the largest N seen

    def _views(self, flat, i):
        """Layer ``i``'s Wt (fan_out, in_stride) and b (fan_out,) views of ``flat``."""
        _, fo, wo, bo, _, stride, _ = (int(v) for v in self._layout[i])
        return flat[wo : wo + fo * stride].reshape(fo, stride), flat[bo : bo + fo]

    def params(self):
        out = []
        for i, fi in enumerate(self._layout[:, 0].tolist()):
            wt, b = self._views(self._params, i)
            out.append((np.ascontiguousarray(wt[:, :fi].T), b.copy()))
        return out

    def _slabs(self, buf, n):
        return [
            buf[n * col : n * (col + stride)].reshape(n, stride)[:, :fo]
            for _, fo, _, _, col, _, stride in self._layout.tolist()
        ]

    def forward(self, x, record):
        x = _frozen(x, self.dtype)
        n = x.shape[0]
        if self._fwd_acts.size < n * self._width_sum:  # zeroed once: the padding columns must stay zero
            self._fwd_acts = np.zeros(n * self._width_sum, dtype=self.dtype)
        acts = self._fwd_acts
        k = self._kern
        parts = max(1, min(k.threads(), n // 8))
        out = np.empty(parts)
        zero = self.dtype.type(0)
        xb, lb = self._no_batch
        k.parallel_for(0, k.forward_slice, parts, k.product_rows, x, _NO_INTS, _NO_INTS, xb, lb, self._params,
                       self._grads, self._layout, self.code, acts, acts, zero, self._sq, out)
        slabs = self._slabs(acts, n)
        if not record:
            return np.ascontiguousarray(slabs[-1])
        outs = [np.ascontiguousarray(a) for a in slabs]
        return outs[-1], outs[:-1]

    def train_step(self, x, labels, lr):
        x, labels = _frozen(x, self.dtype), _frozen(labels, np.int64)
        return self._step(x, labels, _NO_INTS, *self._no_batch, lr)

    def set_dataset(self, x, labels):
        self._data = (_frozen(x, self.dtype), _frozen(labels, np.int64))
        self._batch = None

    def train_step_indices(self, idx, lr):
        # The step's forward pieces gather the batch themselves, in parallel, into ``_batch``.
        x, labels = self._data
        if self._batch is None or self._batch[0].shape[0] != idx.size:
            self._batch = (np.zeros((idx.size, x.shape[1]), dtype=self.dtype), np.zeros(idx.size, dtype=np.int64))
        return self._step(x, labels, _frozen(idx, np.int64), *self._batch, lr)

    def _step(self, x, labels, idx, xb, lb, lr):
        n = idx.size if idx.size else x.shape[0]
        threads = max(1, min(self._kern.threads(), _MAX_PIECES))
        if n != self._n:
            self._acts = np.zeros(n * self._width_sum, dtype=self.dtype)
            self._deltas = np.zeros(n * self._width_sum, dtype=self.dtype)
            self._n = n
        k = self._kern
        loss = k.train_step(
            x, labels, idx, xb, lb, self.dtype.type(lr), self._params, self._grads, self._layout, self.code,
            self._acts, self._deltas, self._loss_parts, self._sq, threads,
            k.forward_slice, k.backward_slice, k.update_slice, k.product_rows,
        )
        self._pieces = threads
        return float(loss)

    def grad_norms(self):
        # The step's update pieces summed the squares as they went (no pass over
        # the gradients here, and no np.linalg.norm, whose OpenBLAS threads would
        # spin against the step's own on a small machine).
        pieces = self._sq[: self._pieces * len(self._layout)].reshape(self._pieces, -1)
        return np.sqrt(pieces.sum(axis=0))


# --------------------------------------------------------------------------- MLP


def compile_backend(backend, dtype="float32"):
    """Compile (or load from the on-disk cache) what an MLP on ``backend`` runs, ahead of use.

    Only the cpu backend compiles on the host; for the others this does
    nothing. Safe to call from a background thread, to overlap the
    compilation with other start-up work (as ``fastinit.train.train`` does).
    """
    if backend != "cpu":
        return
    mlp = MLP([8, 8, 2], backend="cpu", dtype=dtype)
    x = np.zeros((8, 8), dtype=mlp.dtype)
    mlp.train_step(x, np.zeros(8, dtype=np.int64), 0.0)
    mlp.forward(x, record=True)
    mlp.grad_norms()


def _engine_class(backend):
    check_backend(backend)
    if backend == "numpy":
        return NumpyEngine
    if backend == "cpu":
        return CpuEngine
    require_cuda()
    try:
        from .mlp_cuda import CudaEngine
    except ModuleNotFoundError as exc:
        if exc.name != "fastinit.mlp_cuda":
            raise
        raise BackendError("the cuda MLP engine (fastinit.mlp_cuda) is not installed in this build") from None
    return CudaEngine


def _check_sizes(sizes):
    try:
        ok = len(sizes) >= 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"sizes must be a sequence of at least 2 positive ints (inputs, hidden..., classes), got {sizes!r}"
        )
    return tuple(int(s) for s in sizes)


def _check_dtype(dtype):
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d not in chk.FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return d


class MLP:
    """A dense network trained by SGD on softmax cross-entropy.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(inputs, hidden..., classes)``, at least 2 entries.
    activation : str
        Hidden activation: ``linear``, ``sigmoid``, ``tanh`` or ``relu``.
        The last layer is always linear (logits).
    init : str
        Weight init spec for every layer (``fastinit.init``), e.g. ``he``,
        ``xavier``, ``std=0.01``. Biases start at zero.
    backend : str
        ``numpy``, ``cpu`` (default) or ``cuda``.
    dtype : str or numpy dtype
        ``float32`` (default) or ``float64``.
    seed : int
        Seed of the ``numpy.random.default_rng`` the weights are drawn from.

    Inputs are never cast or copied: ``x`` must be a C-contiguous 2-D array
    of the MLP's dtype (anything else raises ``TypeError``/``ValueError``
    naming ``x``; cast with ``x.astype(mlp.dtype)``). Raises ``BackendError``
    for an unknown backend or ``cuda`` without a GPU.
    """

    def __init__(self, sizes, activation="relu", init="he", backend="cpu", dtype="float32", seed=0):
        self.sizes = _check_sizes(sizes)
        chk.activation_code(activation)
        self.activation = activation
        self.init = parse_init(init)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self.seed = seed
        engine_cls = _engine_class(backend)
        rng = np.random.default_rng(seed)
        weights = [
            init_weights(self.init, fi, fo, rng, self.dtype) for fi, fo in zip(self.sizes[:-1], self.sizes[1:])
        ]
        biases = [np.zeros(fo, dtype=self.dtype) for fo in self.sizes[1:]]
        self._engine = engine_cls(weights, biases, activation, self.dtype)
        self._dataset_rows = None
        self._stepped = False

    def __repr__(self):
        return (
            f"MLP(sizes={list(self.sizes)}, activation={self.activation!r}, init={self.init.spec!r}, "
            f"backend={self.backend!r}, dtype={self.dtype.name!r}, seed={self.seed!r})"
        )

    @property
    def n_layers(self):
        """Number of dense layers, ``len(sizes) - 1``."""
        return len(self.sizes) - 1

    @property
    def params(self):
        """``[(W, b), ...]``: host NumPy *copies* (W (fan_in, fan_out), b (fan_out,)) on every backend.

        Writing to them does not change the network; use ``load_params``."""
        return self._engine.params()

    def load_params(self, params):
        """Replace every layer's (W, b) with host arrays of the MLP's shapes and dtype (forgets any ``set_dataset``)."""
        if len(params) != self.n_layers:
            raise ValueError(f"params must hold {self.n_layers} (W, b) pairs, got {len(params)}")
        ws, bs = [], []
        for i, ((w, b), fi, fo) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:])):
            for name, arr, shape in ((f"params[{i}][0]", w, (fi, fo)), (f"params[{i}][1]", b, (fo,))):
                chk.float_array(name, arr, len(shape))
                chk.shape_is(name, arr, shape)
                if np.dtype(arr.dtype) != self.dtype:
                    raise TypeError(f"{name} must have dtype {self.dtype}, got {arr.dtype}")
            ws.append(np.asarray(w))
            bs.append(np.asarray(b))
        self._engine = type(self._engine)(ws, bs, self.activation, self.dtype)
        self._dataset_rows = None
        self._stepped = False

    # -- validation -----------------------------------------------------------

    def _check_x(self, x):
        chk.float_array("x", x, 2)
        if np.dtype(x.dtype) != self.dtype:
            raise TypeError(f"x must have dtype {self.dtype} (the MLP's dtype), got {x.dtype}; cast with x.astype")
        if x.shape[1] != self.sizes[0] or x.shape[0] < 1:
            raise ValueError(f"x must have shape (N, {self.sizes[0]}) with N >= 1, got {tuple(x.shape)}")
        return x

    def _check_labels(self, labels, n):
        chk.labels_array(labels, n, self.sizes[-1])
        if isinstance(labels, np.ndarray):
            chk.label_range(labels, self.sizes[-1])
        return labels

    # -- compute --------------------------------------------------------------

    def forward(self, x, record=False):
        """Logits (N, sizes[-1]) for a batch ``x`` (N, sizes[0]).

        With ``record=True`` returns ``(logits, hidden)`` where ``hidden`` is
        the list of the ``n_layers - 1`` hidden layers' outputs (after the
        activation, each (N, width)); the logits are not repeated in it. All
        returned arrays are new host arrays (they may share one base buffer).
        """
        self._check_x(x)
        return self._engine.forward(x, bool(record))

    def predict(self, x):
        """Predicted class per row of ``x``: int64 (N,)."""
        return np.argmax(self.forward(x), axis=1)

    def loss(self, x, labels):
        """Mean softmax cross-entropy on (x, labels) without updating anything."""
        from kernels import reference

        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        logits = np.ascontiguousarray(self._engine.forward(x, False))
        return reference.softmax_cross_entropy(logits, np.asarray(labels))[0]

    def train_step(self, x, labels, lr):
        """One SGD step on the mean softmax cross-entropy; returns the loss before the update.

        ``x`` (N, sizes[0]) of the MLP's dtype, ``labels`` (N,) int32/int64
        in [0, sizes[-1]), ``lr`` a finite real number. Updates the
        parameters in place (in the engine's storage).
        """
        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        lr = chk.learning_rate(lr)
        loss = self._engine.train_step(x, labels, lr)
        self._stepped = True
        return loss

    def set_dataset(self, x, labels):
        """Keep a training set for ``train_step_indices``: ``x`` (N, sizes[0]) of the MLP's dtype,
        ``labels`` (N,) int32/int64 in [0, sizes[-1]).

        The host backends keep references (do not modify the arrays while
        training on them); cuda copies the set to the device once.
        """
        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        self._engine.set_dataset(x, labels)
        self._dataset_rows = x.shape[0]

    def train_step_indices(self, idx, lr):
        """``train_step`` on the rows ``idx`` ((B,) integers in [0, N)) of the ``set_dataset`` set.

        The same arithmetic as ``train_step(x[idx], labels[idx], lr)``; on cuda
        only ``idx`` is copied to the device. Raises ``RuntimeError`` before
        ``set_dataset``, ``ValueError`` for a bad ``idx``.
        """
        rows = self._dataset_rows
        if rows is None:
            raise RuntimeError("train_step_indices needs set_dataset(x, labels) first")
        idx = chk.row_indices(idx, rows)
        lr = chk.learning_rate(lr)
        loss = self._engine.train_step_indices(idx, lr)
        self._stepped = True
        return loss

    def grad_norms(self):
        """(n_layers,) float64: Frobenius norm of each layer's dL/dW in the last ``train_step``.

        From the gradients the step kept (the cpu step sums their squares as
        it goes). Raises ``RuntimeError`` before the first step.
        """
        if not self._stepped:
            raise RuntimeError("grad_norms() needs a train_step first")
        return self._engine.grad_norms()
