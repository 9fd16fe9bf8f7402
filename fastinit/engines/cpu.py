"""The cpu engine: a whole SGD step of the MLP in two parallel regions of ``fastinit.kernels.cpu`` blocks.

Implements ``fastinit.engines.Engine``. The step is composed of the public,
serial building blocks of ``fastinit.kernels.cpu`` (``dot_nt_into``, ``dot_nn_into``,
the one-activation row blocks such as ``relu_rows_into`` and
``relu_backward_rows_into``, ``softmax_xent_rows``, ``transpose_into``), so training runs the
same activation and product code as the kernels and the histograms; only the
batch gather and the fused SGD update, which know this engine's storage, are
its own.

The weights are stored transposed, ``Wt`` (fan_out, fan_in), and the
hidden layers' also as they are, ``W`` (fan_in, fan_out). Most products are
``dot_nt_into`` (dot products along contiguous rows of both operands); two
are ``dot_nn_into`` (outer products along the rows of the output), which is
faster where the dot products would be short or the output rows are long:

===========  ==========================================  ====================
product      computed as                                 where
===========  ==========================================  ====================
forward      ``H[i] = H[i-1] @ Wt[i].T``                 every layer
gradient     ``G[0] = DT[0] @ X`` (nn)                   first layer (784 wide)
gradient     ``G[i] = DT[i] @ HT[i-1].T``                 the others
delta        ``D[i-1] = D[i] @ Wt[i]`` (nn)               fan_out < 32 (the output layer)
delta        ``D[i-1] = D[i] @ W[i].T``                   the others
===========  ==========================================  ====================

``X`` is the gathered batch; ``DT`` and ``HT`` are transposed copies of the
deltas and activations, which each thread writes for its rows of the batch;
the SGD update writes ``W`` from the updated rows of ``Wt`` (a transpose of a
layer costs a few microseconds, against the tens that a delta computed any
other way loses).

Rows are padded with zeros to a multiple of 16 elements, so the vector loops
over them have no remainders; the padding is never written and stays zero.

Threads. The step is two parallel regions (two fork/joins):

1. each thread takes a slice of the batch rows through the gather, the
   forward pass, the softmax cross-entropy and every layer's delta, and writes
   its rows' share of the transposed copies (rows never interact until the
   weight gradient);
2. each thread takes an equal share, by cost, of all layers' output features
   (in blocks of 4): their weight gradient over the whole batch and the fused
   SGD update of ``Wt`` and ``b``, with the sum of squares for ``grad_norms``.

A batch too small to share runs on the calling thread, with no fork/join.

Compilation. The step is written once, as a Python function closed over the
activation code (``_step_for``), and compiled per activation: the code is a
constant of the closure, so Numba drops the other activations' branches before
compiling, and the on-disk cache keys the entry by it. A run therefore compiles
one dtype and one activation. On a cold cache, compiling the parallel step (a
``prange`` wrapper links in and re-optimises everything it calls) takes
several times as long as the building blocks themselves. So the engine's
first steps run that Python function itself with one piece, which only calls
compiled blocks, on this thread, while a background thread compiles the
parallel step; once it is ready (or loaded from the on-disk cache) every step
uses it. Both paths run the same compiled arithmetic.
"""

import threading

import numpy as np
from numba import njit, prange

from fastinit.kernels import checks as chk
from fastinit.kernels.checks import fill_doc, shared_doc, with_doc
from fastinit.kernels.cpu import (
    bias_rows_into,
    dot_nn_into,
    dot_nt_into,
    machine_blocks,
    relu_backward_rows_into,
    relu_rows_into,
    sigmoid_backward_rows_into,
    sigmoid_rows_into,
    softmax_xent_rows,
    tanh_backward_rows_into,
    tanh_rows_into,
    transpose_into,
)
from fastinit.kernels.jit import FAST, JIT

from . import ENGINE_PARAMETERS, Engine

__all__ = ["CpuEngine"]

_PAD = 16  # row padding in elements: one AVX-512 vector of float32
_ROWS_PER_PIECE = 16  # fewest batch rows worth a thread of their own
_MAX_PIECES = 64
_UPDATE_ROWS = 4  # rows of a weight gradient computed, then applied, at a time
_ROW_OVERHEAD = 64  # a weight-gradient row costs about fan_in + this many multiply-adds per batch row
_NN_DEPTH = 32  # a delta product with a depth (fan_out) below this runs in outer-product form
# Integer constants for compiled callees as int64 values: a literal ``0`` in a call
# would be a type of its own and compile the callee once more.
_ZERO = np.int64(0)


@njit(**JIT)
def _gather(x, labels, idx, xb, lb, r0, r1, with_labels):
    """Rows [r0, r1) of ``xb = x[idx]`` (and of ``lb = labels[idx]`` when ``with_labels``)."""
    for r in range(r0, r1):
        src = x[idx[r]]
        dst = xb[r]
        for q in range(dst.size):  # an explicit loop compiles much faster than a row assignment
            dst[q] = src[q]
        if with_labels:
            lb[r] = labels[idx[r]]


@njit(**FAST)
def _sgd_block(wt, g, lr, j0, j1, q0, q1):
    """``wt[j, q] -= lr * g[j, q]`` for j in [j0, j1), q in [q0, q1); returns the sum of
    squares of that block of ``g`` (float64)."""
    total = 0.0
    for j in range(j0, j1):
        wj = wt[j][q0:q1]
        gj = g[j][q0:q1]
        ss = g.dtype.type(0)
        for q in range(gj.size):
            v = gj[q]
            wj[q] -= lr * v
            ss += v * v
        total += ss
    return total


@njit(**FAST)
def _sgd_bias(b, dt, lr, j0, j1):
    """``b[j] -= lr * dt[j].sum()`` for j in [j0, j1): the bias gradient is the row sum of the
    transposed delta ``dt`` (its padding is zero)."""
    for j in range(j0, j1):
        b[j] -= lr * dt[j].sum()


@njit(**JIT)
def _forward_layer(i, xb, wt0, wth, acts, ht, sizes, blocks, r0, r1, train):
    """Rows [r0, r1) of layer i's pre-activation ``acts[i] = H[i-1] @ Wt[i].T`` (H[-1] = xb)
    and, when ``train``, of the transposed copy of its input ``ht[i-1]`` (for i > 0)."""
    fo = sizes[i + 1]
    if i == 0:
        dot_nt_into(xb, wt0, acts[0], r0, r1, _ZERO, fo, sizes[0], blocks)
        return
    h_in = acts[i - 1]
    k = (sizes[i] + _PAD - 1) // _PAD * _PAD
    dot_nt_into(h_in, wth[i - 1], acts[i], r0, r1, _ZERO, fo, k, blocks)
    if train:
        transpose_into(h_in, ht[i - 1], r0, r1)


@njit(**JIT)
def _delta_layer(i, wth, wh, deltas, dt, sizes, blocks, r0, r1):
    """Rows [r0, r1) of the transposed copy ``dt[i]`` of layer i's delta and of the delta
    before the activation's derivative, ``deltas[i-1] = deltas[i] @ W[i].T`` (i > 0)."""
    d = deltas[i]
    transpose_into(d, dt[i], r0, r1)
    fo = sizes[i + 1]
    if fo < _NN_DEPTH:  # D[i-1] = d @ Wt[i]
        dot_nn_into(d, wth[i - 1], deltas[i - 1], r0, r1, _ZERO, sizes[i], fo)
    else:  # the padding of d and W is zero
        k = (fo + _PAD - 1) // _PAD * _PAD
        dot_nt_into(d, wh[i - 1], deltas[i - 1], r0, r1, _ZERO, sizes[i], k, blocks)


@njit(**JIT)
def _first_block(x, cost, blocks):
    """The first of ``blocks`` blocks of ``cost`` each whose midpoint is at or past ``x``."""
    return min(blocks, max(0, (2 * x + cost - 1) // (2 * cost)))  # ceil((x - cost / 2) / cost)


def _update_piece(net, grads, ws, sizes, blocks, lr, sq, t, parts):
    """Piece ``t`` of ``parts`` of every layer's output features (after the rows pieces):
    the weight gradient over the whole batch and the fused SGD update; the sum of squares
    of the piece's gradient rows of layer i goes to ``sq[t, i]``, and the updated rows of
    ``Wt`` are copied into the columns of ``W``. ``grads = (g0, gh)``; ``blocks``, the
    products' block sizes (``fastinit.kernels.cpu.machine_blocks``).

    The work is split by its cost, not by rows per layer: all layers' blocks of 4 rows, in
    order, cost ``fan_in + _ROW_OVERHEAD`` a row, and piece t takes the blocks whose midpoints
    fall in the t-th equal share (the first layer's 784-wide rows cost 5-6 hidden ones)."""
    wt0, wth, wh, b = net
    g0, gh = grads
    xb, lb, acts, deltas, ht, dt = ws
    n, k = xb.shape[0], dt.shape[2]  # the batch, and padded
    layers = sizes.size - 1
    total_cost = 0
    for i in range(layers):
        total_cost += (
            (sizes[i + 1] + _UPDATE_ROWS - 1) // _UPDATE_ROWS * (sizes[i] + _ROW_OVERHEAD) * _UPDATE_ROWS
        )
    lo, hi = t * total_cost // parts, (t + 1) * total_cost // parts
    start = 0  # the cost of the blocks before layer i
    for i in range(layers):
        fi, fo = sizes[i], sizes[i + 1]
        row_blocks = (fo + _UPDATE_ROWS - 1) // _UPDATE_ROWS
        cost = (fi + _ROW_OVERHEAD) * _UPDATE_ROWS
        j0 = min(fo, _UPDATE_ROWS * _first_block(lo - start, cost, row_blocks))
        j1 = min(fo, _UPDATE_ROWS * _first_block(hi - start, cost, row_blocks))
        start += row_blocks * cost
        _sgd_bias(b[i], dt[i], lr, j0, j1)
        g = g0 if i == 0 else gh[i - 1]
        total = 0.0
        for jb in range(j0, j1, _UPDATE_ROWS):  # the SGD update reads each block of G while in L1
            je = min(j1, jb + _UPDATE_ROWS)
            if i == 0:  # long rows of G: the outer-product form, G[0] = DT[0] @ x[idx]
                dot_nn_into(dt[0], xb, g, jb, je, _ZERO, fi, n)
            else:
                dot_nt_into(dt[i], ht[i - 1], g, jb, je, _ZERO, fi, k, blocks)
            total += _sgd_block(wt0 if i == 0 else wth[i - 1], g, lr, jb, je, _ZERO, fi)
        sq[t, i] = total
        if i > 0:
            transpose_into(wth[i - 1], wh[i - 1], j0, j1)


_update_piece_jit = njit(**JIT)(_update_piece)


def _step_for(code):
    """The whole training (or, without ``train``, forward) step for one activation ``code``,
    as a Python function: compiled with ``prange`` it is the parallel step; run as Python
    (``parts=1``) it is the serial step, which calls only compiled blocks. ``code`` is a
    constant of the closure: Numba drops the other activations' branches before compiling,
    and keys the on-disk cache entry by it, so a run compiles one activation."""
    sigmoid, tanh, relu = (chk.ACTIVATION_CODES[a] for a in ("sigmoid", "tanh", "relu"))

    def parallel_step(x, labels, idx, net, grads, ws, sizes, blocks, lr, sq, train, losses, parts):
        """Piece t < parts of the batch rows ``x[idx]`` on each thread: the gather, the
        forward pass and, when ``train``, the loss, every layer's delta and the rows' share
        of the transposed copies; then, when ``train``, ``_update_piece`` on each thread. Two
        fork/joins. Returns the summed loss (0.0 unless ``train``).

        ``x``, ``labels``, ``idx``: read-only views (one compiled type for any caller's
        arrays); ``net = (wt0, wth, wh, b)``, ``grads = (g0, gh)``,
        ``ws = (xb, lb, acts, deltas, ht, dt)``: see ``CpuEngine``; ``blocks``: the products'
        block sizes (``fastinit.kernels.cpu.machine_blocks``). (The tuples are unpacked
        here and built again for ``_update_piece``: a ``prange`` body takes arrays, not tuples
        of them.)"""
        wt0, wth, wh, b = net
        g0, gh = grads
        xb, lb, acts, deltas, ht, dt = ws
        layers = sizes.size - 1
        n = idx.size
        rows = ((n + parts - 1) // parts + 3) // 4 * 4
        for t in prange(parts):
            r0, r1 = min(n, t * rows), min(n, (t + 1) * rows)
            _gather(x, labels, idx, xb, lb, r0, r1, train)
            for i in range(layers):
                _forward_layer(i, xb, wt0, wth, acts, ht, sizes, blocks, r0, r1, train)
                z, bias = acts[i], b[i][: sizes[i + 1]]
                if i == layers - 1:
                    bias_rows_into(z, bias, r0, r1)
                elif code == sigmoid:
                    sigmoid_rows_into(z, bias, r0, r1)
                elif code == tanh:
                    tanh_rows_into(z, bias, r0, r1)
                elif code == relu:
                    relu_rows_into(z, bias, r0, r1)
                else:
                    bias_rows_into(z, bias, r0, r1)
            loss = 0.0
            if train:
                loss = softmax_xent_rows(acts[layers - 1], lb, deltas[layers - 1], r0, r1, n, sizes[layers])
                for i in range(layers - 1, 0, -1):
                    _delta_layer(i, wth, wh, deltas, dt, sizes, blocks, r0, r1)
                    y, d = acts[i - 1], deltas[i - 1]
                    if code == sigmoid:
                        sigmoid_backward_rows_into(y, d, r0, r1)
                    elif code == tanh:
                        tanh_backward_rows_into(y, d, r0, r1)
                    elif code == relu:
                        relu_backward_rows_into(y, d, r0, r1)
                transpose_into(deltas[0], dt[0], r0, r1)
            losses[t] = loss
        if train:
            for t in prange(parts):
                _update_piece_jit(
                    (wt0, wth, wh, b),
                    (g0, gh),
                    (xb, lb, acts, deltas, ht, dt),
                    sizes,
                    blocks,
                    lr,
                    sq,
                    np.int64(t),
                    parts,
                )
        return losses[:parts].sum()

    return parallel_step


_STEPS = {code: _step_for(code) for code in chk.ACTIVATION_CODES.values()}  # Python, for the serial path
_PARALLEL_STEPS = {code: njit(parallel=True, **JIT)(step) for code, step in _STEPS.items()}


class _Compiled:
    """The parallel step of an activation compiled (or loaded from the cache) in a background
    thread, once per argument types; ``ready(code, args)`` says whether it can be called
    without waiting."""

    _lock = threading.Lock()
    _done = {}  # (activation code, argument types) -> threading.Event
    warm = set()  # (dtype, code) whose building blocks a serial training step has compiled

    @classmethod
    def ready(cls, code, args):
        import numba

        types = tuple(numba.typeof(a) for a in args)
        with cls._lock:
            event = cls._done.get((code, types))
            if event is None:
                event = cls._done[code, types] = threading.Event()
                # Not a daemon: the interpreter waits for it at exit. A daemon thread still in
                # LLVM when the interpreter shuts down crashes the process (abort or segfault).
                threading.Thread(
                    target=cls._compile,
                    args=(_PARALLEL_STEPS[code], types, event),
                    daemon=False,
                    name="fastinit-compile",
                ).start()
        return event.is_set()

    @classmethod
    def wait(cls):
        """Wait for every compile started so far."""
        with cls._lock:
            events = list(cls._done.values())
        for event in events:
            event.wait()

    @staticmethod
    def _compile(step, types, event):
        try:
            step.compile(types)
        finally:
            event.set()


def _read_only(a):
    """A read-only view of ``a``: the compiled step takes its inputs read-only, one type for all."""
    v = a.view()
    v.flags.writeable = False
    return v


def _pieces(n):
    """Threads for a batch of ``n`` rows: at most Numba's, and at least 16 rows each."""
    import numba

    return max(1, min(numba.get_num_threads(), _MAX_PIECES, n // _ROWS_PER_PIECE))


def _padded(n):
    return (n + _PAD - 1) // _PAD * _PAD


@with_doc(
    fill_doc(
        """Numba engine: one compiled call per training step, allocating nothing.

    {parameters}

    Raises
    ------
    ValueError
        For an unknown activation.

    Notes
    -----
    Parameters (``_net``), for layers of ``sizes[i]`` -> ``sizes[i + 1]`` units,
    K = the widest layer padded to 16 and F = the widest layer:

    - ``wt0`` (sizes[1], sizes[0]): the first layer's W transposed;
    - ``wth`` (layers - 1, F, K): the other layers' W transposed, each in the top-left;
    - ``wh`` (layers - 1, F, K): the other layers' W, each in the top-left;
    - ``b`` (layers, K).

    ``_grads = (g0, gh)`` has ``wt0``'s and ``wth``'s shapes. The workspace for
    batches of n rows (``_workspace``): the gathered batch ``xb`` (n, sizes[0])
    and ``lb`` (n,), every layer's output ``acts`` and delta ``deltas``
    (layers, n, K), and the transposed copies ``ht`` (layers - 1, F, n16)
    and ``dt`` (layers, F, n16) with n16 = n padded.
    """,
        parameters=ENGINE_PARAMETERS,
    )
)
class CpuEngine:
    def __init__(self, weights, biases, activation, dtype):
        self.dtype = np.dtype(dtype)
        self.activation = activation
        self.code = chk.activation_code(activation)
        sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        self._sizes = np.array(sizes, dtype=np.int64)
        self._blocks = machine_blocks(self.dtype)  # the products' block sizes, planned once
        layers, f = len(weights), max(sizes[1:])
        k = _padded(f)
        z, dt = np.zeros, self.dtype
        hidden = (max(layers - 1, 1), f, k)
        self._net = (z((sizes[1], sizes[0]), dt), z(hidden, dt), z(hidden, dt), z((layers, k), dt))
        wt0, wth, wh, b = self._net
        for i, (wi, bi) in enumerate(zip(weights, biases)):
            fi, fo = wi.shape
            if i == 0:
                wt0[:] = wi.T
            else:
                wth[i - 1][:fo, :fi] = wi.T
                wh[i - 1][:fi, :fo] = wi
            b[i][:fo] = bi
        self._grads = (np.zeros_like(wt0), np.zeros_like(wth))
        self._k = k
        self._train = None  # the training workspace, for one batch size
        self._losses = np.zeros(_MAX_PIECES)
        self._sq = np.zeros((_MAX_PIECES, layers))
        self._pieces = 0
        self._loss = None
        self._data = None
        self._range = None  # read-only arange(n): the rows of a batch given as x
        self._ready = False  # see _parallel_ready

    @staticmethod
    def wait_compiled():
        """Block until the parallel steps being compiled in the background are ready."""
        _Compiled.wait()

    @with_doc(shared_doc(Engine.params))
    def params(self):
        wt0, wth, _, b = self._net
        out = []
        for i, (fi, fo) in enumerate(zip(self._sizes[:-1].tolist(), self._sizes[1:].tolist())):
            wt = wt0 if i == 0 else wth[i - 1][:fo, :fi]
            out.append((np.ascontiguousarray(wt.T), b[i][:fo].copy()))
        return out

    def _workspace(self, n, train):
        """(xb, lb, acts, deltas, ht, dt) for batches of ``n`` rows, zeroed (the padding
        stays 0); the last three are empty unless ``train``."""
        s = self._sizes
        layers, f, k, n16 = s.size - 1, int(s[1:].max()), self._k, _padded(n)
        z, dt = np.zeros, self.dtype
        if not train:
            return (
                z((n, s[0]), dt),
                z(n, np.int64),
                z((layers, n, k), dt),
                z((1, 1, 1), dt),
                z((1, 1, 1), dt),
                z((1, 1, 1), dt),
            )
        return (
            z((n, s[0]), dt),
            z(n, np.int64),
            z((layers, n, k), dt),
            z((layers, n, k), dt),
            z((max(layers - 1, 1), f, n16), dt),
            z((layers, f, n16), dt),
        )

    def _call(self, x, labels, idx, ws, train, lr):
        """Run the pieces on the workspace ``ws``; return the summed loss."""
        parts = _pieces(idx.size)
        args = (
            x,
            labels,
            idx,
            self._net,
            self._grads,
            ws,
            self._sizes,
            self._blocks,
            lr,
            self._sq,
            train,
            self._losses,
            parts,
        )
        if parts > 1 and self._parallel_ready(args):
            loss = _PARALLEL_STEPS[self.code](*args)
        else:  # small, or the parallel step still compiling: this thread, no fork/join
            parts = 1
            loss = _STEPS[self.code](*args[:-1], 1)
            if train:
                _Compiled.warm.add((self.dtype, self.code))
        self._pieces = parts
        return loss

    def _parallel_ready(self, args):
        """Whether the parallel step is compiled for ``args``. Its compile is started only
        once a serial training step of this dtype and activation has compiled the building blocks on this
        thread (a compile in the background holds Numba's compiler lock until it is done)."""
        if not self._ready and (self.dtype, self.code) in _Compiled.warm:
            self._ready = _Compiled.ready(self.code, args)
        return self._ready

    @with_doc(shared_doc(Engine.forward))
    def forward(self, x, record):
        n = x.shape[0]
        ws = self._workspace(n, False)
        idx = _read_only(np.arange(n, dtype=np.int64))
        self._call(_read_only(x), idx, idx, ws, False, self.dtype.type(0))
        acts = ws[2]
        outs = [np.ascontiguousarray(acts[i, :, :fo]) for i, fo in enumerate(self._sizes[1:].tolist())]
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def _step(self, x, labels, idx, lr):
        n = idx.size
        if self._train is None or self._train[0].shape[0] != n:
            self._train = self._workspace(n, True)
        loss = self._call(x, labels, idx, self._train, True, self.dtype.type(lr))
        self._loss = float(loss) / n
        return self._loss

    @with_doc(
        shared_doc(
            Engine.train_step,
            """
        One compiled call (two parallel regions), allocating nothing once the workspace for
        this batch size exists.
    """,
        )
    )
    def train_step(self, x, labels, lr):
        n = x.shape[0]
        if self._range is None or self._range.size != n:
            self._range = _read_only(np.arange(n, dtype=np.int64))
        labels = _read_only(np.ascontiguousarray(labels, dtype=np.int64))
        return self._step(_read_only(x), labels, self._range, lr)

    @with_doc(shared_doc(Engine.set_dataset))
    def set_dataset(self, x, labels):
        self._data = (_read_only(x), _read_only(labels))

    @with_doc(shared_doc(Engine.train_step_indices))
    def train_step_indices(self, idx, lr, return_loss=True):
        x, labels = self._data
        loss = self._step(x, labels, _read_only(idx), lr)
        return loss if return_loss else None

    @with_doc(shared_doc(Engine.last_loss))
    def last_loss(self):
        return self._loss

    @with_doc(shared_doc(Engine.grad_norms))
    def grad_norms(self):
        return np.sqrt(self._sq[: self._pieces].sum(axis=0))
