"""The cpu engine: a whole SGD step of the MLP in two parallel regions of ``kernels.cpu`` blocks.

Implements ``fastinit.engines.Engine``. The step is composed of the public,
serial building blocks of ``kernels.cpu`` (``dot_nt_into``,
``activation_rows_into``, ``softmax_xent_rows``,
``activation_backward_rows_into``, ``transpose_into``), so training runs the
same activation and product code as the kernels and the histograms.

Every product is a ``dot_nt_into`` (``a @ b.T``, both read along contiguous
rows), which decides the storage:

===========  ==============================  ===========================
product      as ``a @ b.T``                  stored for it
===========  ==============================  ===========================
forward      ``H[i] = H[i-1] @ Wt[i].T``     ``Wt`` (fan_out, fan_in)
delta        ``D[i-1] = D[i] @ W[i].T``      ``W`` (fan_in, fan_out), layers >= 1
gradient     ``G[i] = DT[i] @ HT[i-1].T``    ``DT``, ``HT``: transposed copies
===========  ==============================  ===========================

Rows are padded with zeros to a multiple of 16 elements, so the vector loops
over them have no remainders; the padding is never written and stays zero.

Threads. The step is two parallel regions (two fork/joins):

1. each thread takes a slice of the batch rows through the forward pass, the
   softmax cross-entropy and every layer's delta, and writes its rows of the
   transposed copies (rows never interact until the weight gradient);
2. each thread takes a slice of every layer's output features: their weight
   gradient over the whole batch, bias gradient, SGD update of ``Wt``, ``b``
   and ``W``, and sum of squares for ``grad_norms``.

A batch too small to share runs on the calling thread, with no fork/join.
All buffers belong to the engine (reallocated only when the batch size
changes), so the step allocates nothing. Compiled on first use and cached on
disk; one dtype is compiled per process unless both are used.
"""

import numpy as np
import threading

from numba import njit

from kernels import checks as chk
from kernels.cpu import (
    CACHE,
    activation_backward_rows_into,
    activation_rows_into,
    dot_nt_into,
    softmax_xent_rows,
    transpose_into,
)

__all__ = ["CpuEngine"]

_J = dict(cache=CACHE, error_model="numpy", nogil=True)
_PAD = 16  # row padding in elements: one AVX-512 vector of float32
_ROWS_PER_PIECE = 16  # fewest batch rows worth a thread of their own
_MAX_PIECES = 64

# Columns of the layout table, one row per layer (offsets are in elements).
FI, FO, KIN, KOUT, WT, B, W, GWT, H, XT, DT = range(11)


@njit(**_J)
def _padded(n):
    return (n + _PAD - 1) // _PAD * _PAD


@njit(**_J)
def _mat(flat, off, rows, cols):
    return flat[off : off + rows * cols].reshape((rows, cols))


@njit(**_J)
def _split(n, parts, t):
    """[lo, hi) of piece ``t`` of ``range(n)`` cut in ``parts``, boundaries on multiples of 4."""
    step = ((n + parts - 1) // parts + 3) // 4 * 4
    return min(n, t * step), min(n, (t + 1) * step)


@njit(**_J)
def _rows_piece(x, labels, idx, xb, lb, params, acts, deltas, trans, layout, code, train, t, parts):
    """Piece ``t`` of ``parts`` of the batch rows ``x[idx]``: gathered into ``xb`` (and
    ``labels[idx]`` into ``lb`` when ``train``), the forward pass, and when ``train`` the
    loss, every layer's delta and the rows' share of the transposed copies. Returns the
    piece's summed loss (0.0 unless ``train``).

    ``x``, ``labels``, ``idx`` are read-only views (one compiled type for any caller's
    arrays); everything after the gather reads the engine's own buffers."""
    n = idx.size
    r0, r1 = _split(n, parts, t)
    for r in range(r0, r1):
        xb[r] = x[idx[r]]
        if train:
            lb[r] = labels[idx[r]]
    layers = layout.shape[0]
    np_ = _padded(n)
    h_in = xb
    for i in range(layers):
        fi, fo, kin, kout = layout[i, FI], layout[i, FO], layout[i, KIN], layout[i, KOUT]
        h = _mat(acts, layout[i, H], n, kout)
        dot_nt_into(h_in, _mat(params, layout[i, WT], fo, kin), h, r0, r1, 0, fo, kin, False)
        activation_rows_into(h, params[layout[i, B] : layout[i, B] + fo], code if i < layers - 1 else 0, r0, r1)
        if train:
            transpose_into(h_in, _mat(trans, layout[i, XT], fi, np_), r0, r1)
        h_in = h
    if not train:
        return 0.0
    last = layers - 1
    d = _mat(deltas, layout[last, H], n, layout[last, KOUT])
    loss = softmax_xent_rows(h_in, lb, d, r0, r1, n, layout[last, FO])
    for i in range(last, -1, -1):
        fi, fo, kout = layout[i, FI], layout[i, FO], layout[i, KOUT]
        transpose_into(d, _mat(trans, layout[i, DT], fo, np_), r0, r1)
        if i == 0:
            break
        prev = _mat(deltas, layout[i - 1, H], n, layout[i - 1, KOUT])
        dot_nt_into(d, _mat(params, layout[i, W], fi, kout), prev, r0, r1, 0, fi, kout, False)
        activation_backward_rows_into(_mat(acts, layout[i - 1, H], n, layout[i - 1, KOUT]), prev, code, r0, r1)
        d = prev
    return loss


@njit(**_J)
def _update_piece(n, params, grads, trans, layout, lr, sq, t, parts):
    """Piece ``t`` of every layer's output features (after ``_rows_piece``): weight and bias
    gradients over the whole batch, the SGD update of ``Wt``, ``b`` and ``W``, and each
    layer's sum of squares of the piece's weight gradient into ``sq[t, layer]``."""
    np_ = _padded(n)
    for i in range(layout.shape[0]):
        fi, fo, kin, kout = layout[i, FI], layout[i, FO], layout[i, KIN], layout[i, KOUT]
        j0, j1 = _split(fo, parts, (t + i) % parts)  # rotated: uneven splits even out over layers
        dt = _mat(trans, layout[i, DT], fo, np_)
        g = _mat(grads, layout[i, GWT], fo, kin)
        dot_nt_into(dt, _mat(trans, layout[i, XT], fi, np_), g, j0, j1, 0, fi, np_, False)
        wt = _mat(params, layout[i, WT], fo, kin)
        b = params[layout[i, B] : layout[i, B] + fo]
        total = 0.0
        for j in range(j0, j1):
            b[j] -= lr * dt[j].sum()
            gj = g[j, :fi]
            wj = wt[j, :fi]
            ss = gj.dtype.type(0)
            for q in range(fi):
                v = gj[q]
                wj[q] -= lr * v
                ss += v * v
            total += ss
            if i > 0:
                w = _mat(params, layout[i, W], fi, kout)
                for q in range(fi):
                    w[q, j] -= lr * gj[q]
        sq[t, i] = total


def _read_only(a):
    """A read-only view of ``a``: the compiled step takes its inputs read-only, one type for all."""
    v = a.view()
    v.flags.writeable = False
    return v


def _pieces(n):
    """Threads for a batch of ``n`` rows: at most Numba's, and at least 16 rows each."""
    import numba

    return max(1, min(numba.get_num_threads(), _MAX_PIECES, n // _ROWS_PER_PIECE))


class _Team:
    """The calling thread plus persistent helper threads that run the pieces of a parallel
    region: ``run(func, args, parts)`` calls ``func(*args, t, parts)`` for t < parts, piece 0
    on the calling thread, and returns their results. The compiled pieces release the GIL.

    (A ``prange`` loop would make Numba compile a parallel wrapper that links in and
    re-optimises the whole step: about half of the cold compile time.)"""

    _lock = threading.Lock()
    _helpers = []

    @classmethod
    def run(cls, func, args, parts):
        with cls._lock:  # one region at a time, whichever thread asks
            while len(cls._helpers) < parts - 1:
                cls._helpers.append(_Helper())
            for t in range(1, parts):
                cls._helpers[t - 1].start(func, args, t, parts)
            try:
                first = func(*args, 0, parts)
            finally:
                rest = [cls._helpers[t - 1].result() for t in range(1, parts)]
        return [first, *rest]


class _Helper:
    """One persistent daemon thread that runs one piece at a time for ``_Team``."""

    def __init__(self):
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._job = self._out = None
        threading.Thread(target=self._loop, name="fastinit-cpu-helper", daemon=True).start()

    def start(self, func, args, t, parts):
        self._job = (func, args, t, parts)
        self._go.release()

    def result(self):
        """Wait for the piece; its result, or its exception raised here."""
        self._done.acquire()
        ok, value = self._out
        if not ok:
            raise value
        return value

    def _loop(self):
        while True:
            self._go.acquire()
            func, args, t, parts = self._job
            try:
                self._out = (True, func(*args, t, parts))
            except BaseException as exc:  # handed to the caller of result()
                self._out = (False, exc)
            self._done.release()


class CpuEngine:
    """Numba engine: one compiled call per training step, allocating nothing.

    ``_params`` holds every layer's ``Wt`` (fan_out, kin), ``b`` (fan_out,)
    and, from the second layer on, ``W`` (fan_in, kout), with kin = the
    input's row stride (the input width for the first layer, else the previous
    kout) and kout = fan_out padded to 16; ``_grads`` holds each ``dL/dWt``.
    ``_layout`` (layers, 11) int64 has each layer's widths and offsets
    (columns ``FI`` ... ``DT``); the workspace columns (``H``, ``XT``, ``DT``)
    are filled in for the batch size of the buffers they point into.
    """

    def __init__(self, weights, biases, activation, dtype):
        self.dtype = np.dtype(dtype)
        self.activation = activation
        self.code = chk.activation_code(activation)
        rows, off, goff = [], 0, 0
        kin = weights[0].shape[0]
        for i, w in enumerate(weights):
            fi, fo = w.shape
            kout = (fo + _PAD - 1) // _PAD * _PAD
            wt, b, wo = off, off + fo * kin, off + fo * kin + fo
            off = wo + (fi * kout if i > 0 else 0)
            rows.append([fi, fo, kin, kout, wt, b, wo if i > 0 else -1, goff, 0, 0, 0])
            goff += fo * kin
            kin = kout
        self._layout = np.array(rows, dtype=np.int64)
        self._params = np.zeros(off, dtype=self.dtype)
        self._grads = np.zeros(goff, dtype=self.dtype)
        for i, (w, b) in enumerate(zip(weights, biases)):
            fi, fo = w.shape
            self._wt(i)[:, :fi] = w.T
            self._params[rows[i][B] : rows[i][B] + fo] = b
            if i > 0:
                self._w(i)[:, :fo] = w
        self._train = None  # the training workspace, for one batch size
        self._sq = np.zeros((_MAX_PIECES, len(rows)))
        self._pieces = 0
        self._loss = None
        self._data = None
        self._range = None  # read-only arange(n): the rows of a batch given as x

    def _wt(self, i):
        fi, fo, kin, kout, wt = (int(v) for v in self._layout[i, :5])
        return self._params[wt : wt + fo * kin].reshape(fo, kin)

    def _w(self, i):
        fi, fo, kin, kout, _, _, w = (int(v) for v in self._layout[i, :7])
        return self._params[w : w + fi * kout].reshape(fi, kout)

    def params(self):
        out = []
        for i, (fi, fo, _, _, _, b) in enumerate(self._layout[:, :6].tolist()):
            out.append((np.ascontiguousarray(self._wt(i)[:, :fi].T), self._params[b : b + fo].copy()))
        return out

    def _workspace(self, n, train):
        """Buffers for a batch of ``n`` rows (zeroed: the padding stays 0) and a layout pointing
        into them: (layout, xb, lb, acts, deltas, trans); the last two are empty unless ``train``."""
        layout = self._layout.copy()
        col = 0
        for row in layout:
            row[H] = col
            col += n * int(row[KOUT])
        np_, off = (n + _PAD - 1) // _PAD * _PAD, 0
        for row in layout:
            row[XT] = off
            off += int(row[FI]) * np_
            row[DT] = off
            off += int(row[FO]) * np_
        z = np.zeros
        return (layout, z((n, int(layout[0, FI])), self.dtype), z(n, np.int64), z(col, self.dtype),
                z(col if train else 0, self.dtype), z(off if train else 0, self.dtype))

    def _call(self, x, labels, idx, ws, train, lr):
        """Run the compiled pieces on workspace ``ws``; return the summed loss."""
        layout, xb, lb, acts, deltas, trans = ws
        n = idx.size
        parts = _pieces(n)
        rows = (x, labels, idx, xb, lb, self._params, acts, deltas, trans, layout, self.code, train)
        update = (n, self._params, self._grads, trans, layout, lr, self._sq)
        if parts == 1:  # small: this thread only, no fork/join
            loss = _rows_piece(*rows, 0, 1)
            if train:
                _update_piece(*update, 0, 1)
            return loss
        loss = sum(_Team.run(_rows_piece, rows, parts))
        if train:
            _Team.run(_update_piece, update, parts)
        return loss

    def forward(self, x, record):
        n = x.shape[0]
        ws = self._workspace(n, False)
        idx = _read_only(np.arange(n, dtype=np.int64))
        self._call(_read_only(x), idx, idx, ws, False, self.dtype.type(0))
        layout, acts = ws[0], ws[3]
        outs = [np.ascontiguousarray(acts[h : h + n * kout].reshape(n, kout)[:, :fo])
                for fo, kout, h in layout[:, [FO, KOUT, H]].tolist()]
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def _step(self, x, labels, idx, lr):
        n = idx.size
        if self._train is None or self._train[1].shape[0] != n:
            self._train = self._workspace(n, True)
        loss = self._call(x, labels, idx, self._train, True, self.dtype.type(lr))
        self._pieces = _pieces(n)
        self._loss = float(loss) / n
        return self._loss

    def train_step(self, x, labels, lr):
        n = x.shape[0]
        if self._range is None or self._range.size != n:
            self._range = _read_only(np.arange(n, dtype=np.int64))
        labels = _read_only(np.ascontiguousarray(labels, dtype=np.int64))
        return self._step(_read_only(x), labels, self._range, lr)

    def set_dataset(self, x, labels):
        self._data = (_read_only(x), _read_only(labels))

    def train_step_indices(self, idx, lr, return_loss=True):
        x, labels = self._data
        loss = self._step(x, labels, _read_only(idx), lr)
        return loss if return_loss else None

    def last_loss(self):
        return self._loss

    def grad_norms(self):
        return np.sqrt(self._sq[: self._pieces].sum(axis=0))
