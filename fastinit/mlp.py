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
  SGD update of every layer) is ONE compiled Numba call. All parameters live
  in one flat contiguous buffer (per-layer W and b are views into it), the
  gradients in a second buffer with the same layout, activations and deltas
  in workspaces sized for the batch (reallocated only when the batch size
  changes), so the step allocates nothing;
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

Non-goals: no momentum, no regularisation, no mixed dtypes.
"""

from types import SimpleNamespace

import numpy as np

from kernels import _checks as chk

from .backends import BackendError, check_backend, require_cuda
from .init import init_weights, parse_init

__all__ = ["MLP", "NumpyEngine", "CpuEngine"]


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

    def grad_norms(self):
        if self._norms is None:
            self._norms = np.array([np.linalg.norm(g.astype(np.float64)) for g in self._gw])
        return self._norms.copy()


# --------------------------------------------------------------------------- cpu

# The compiled step is plain Python here and handed to ``numba.njit`` on first
# use (``_cpu_kernels``), so ``import fastinit.mlp`` and the numpy backend never
# import Numba or ``kernels.cpu``. ``_kc`` is bound to ``kernels.cpu`` then.
_kc = None
_CPU = None


def _layer(flat, layout, i):
    """Views of layer ``i``'s W (fan_in, fan_out) and b (fan_out,) in a flat buffer."""
    fi, fo, wo, bo = layout[i, 0], layout[i, 1], layout[i, 2], layout[i, 3]
    return flat[wo : wo + fi * fo].reshape((fi, fo)), flat[bo : bo + fo]


def _act_view(acts, layout, i, n):
    """View of layer ``i``'s output (n, fan_out) in the flat activation workspace."""
    fo, col = layout[i, 1], layout[i, 4]
    return acts[n * col : n * (col + fo)].reshape((n, fo))


def _forward_py(x, params, layout, code, acts):
    """Forward pass of every layer into ``acts``; hidden layers use ``code``, the last is linear."""
    n = x.shape[0]
    last = layout.shape[0] - 1
    w, b = _layer(params, layout, 0)
    out = _act_view(acts, layout, 0, n)
    _kc.matmul_into(x, w, out, False, False)
    _kc.bias_activation_into(out, b, True, code if last > 0 else 0)
    for i in range(1, last + 1):
        w, b = _layer(params, layout, i)
        inp = _act_view(acts, layout, i - 1, n)
        out = _act_view(acts, layout, i, n)
        _kc.matmul_into(inp, w, out, False, False)
        _kc.bias_activation_into(out, b, True, code if i < last else 0)


def _delta_view(delta, k, n, width):
    return delta[k, : n * width].reshape((n, width))


def _train_step_py(x, labels, lr, params, grads, layout, code, acts, delta):
    """Forward, softmax cross-entropy, backward and SGD of every layer; returns the loss."""
    n = x.shape[0]
    last = layout.shape[0] - 1
    _forward_py(x, params, layout, code, acts)
    dz = _delta_view(delta, last % 2, n, layout[last, 1])
    loss = _kc.softmax_xent_into(_act_view(acts, layout, last, n), labels, dz)
    for i in range(last, 0, -1):
        w, _ = _layer(params, layout, i)
        gw, gb = _layer(grads, layout, i)
        inp = _act_view(acts, layout, i - 1, n)
        _kc.matmul_into(inp, dz, gw, True, False)
        _kc.column_sum_into(dz, gb)
        dprev = _delta_view(delta, (i - 1) % 2, n, layout[i, 0])
        _kc.matmul_into(dz, w, dprev, False, True)
        _kc.activation_backward_into(inp, dprev, code, dprev)
        dz = dprev
    gw, gb = _layer(grads, layout, 0)
    _kc.matmul_into(x, dz, gw, True, False)
    _kc.column_sum_into(dz, gb)
    _kc.sgd_into(params, grads, lr)
    return loss


def _cpu_kernels():
    """Compile (on first use; cached on disk) the Numba functions of the cpu engine."""
    global _kc, _CPU
    if _CPU is None:
        import numba

        from kernels import cpu

        _kc = cpu
        jit = numba.njit(cache=True)
        g = globals()
        for name in ("_layer", "_act_view", "_delta_view", "_forward_py", "_train_step_py"):
            g[name] = jit(g[name])
        _CPU = SimpleNamespace(forward=g["_forward_py"], train_step=g["_train_step_py"])
    return _CPU


class CpuEngine:
    """Numba engine: one compiled call per training step, no allocation inside it.

    Storage: ``_params`` (flat, every layer's W then b), ``_grads`` (same
    layout), ``_layout`` int64 (layers, 5) rows of (fan_in, fan_out, W
    offset, b offset, activation column offset). Per batch size N:
    ``_acts`` (N * sum(fan_out)) holding every layer's output and ``_delta``
    (2, N * max(fan_out)) for the back-propagated gradients.
    """

    def __init__(self, weights, biases, activation, dtype):
        self._kern = _cpu_kernels()
        self.dtype = np.dtype(dtype)
        self.activation = activation
        self.code = chk.activation_code(activation)
        rows, off, col = [], 0, 0
        for w in weights:
            fi, fo = w.shape
            rows.append((fi, fo, off, off + fi * fo, col))
            off += fi * fo + fo
            col += fo
        self._layout = np.array(rows, dtype=np.int64)
        self._params = np.empty(off, dtype=self.dtype)
        self._grads = np.zeros(off, dtype=self.dtype)
        self._width_sum = col
        self._width_max = int(self._layout[:, 1].max())
        for (fi, fo, wo, bo, _), w, b in zip(rows, weights, biases):
            self._params[wo : wo + fi * fo] = np.asarray(w, dtype=self.dtype).ravel()
            self._params[bo : bo + fo] = np.asarray(b, dtype=self.dtype)
        self._n = -1
        self._acts = self._delta = None
        self._norms = None

    def _views(self, flat, i):
        fi, fo, wo, bo, _ = (int(v) for v in self._layout[i])
        return flat[wo : wo + fi * fo].reshape(fi, fo), flat[bo : bo + fo]

    def params(self):
        return [tuple(a.copy() for a in self._views(self._params, i)) for i in range(len(self._layout))]

    def _workspace(self, n):
        if n != self._n:
            self._acts = np.empty(n * self._width_sum, dtype=self.dtype)
            self._delta = np.empty((2, n * self._width_max), dtype=self.dtype)
            self._n = n
        return self._acts, self._delta

    def forward(self, x, record):
        n = x.shape[0]
        acts = np.empty(n * self._width_sum, dtype=self.dtype)  # fresh: the caller keeps the results
        self._kern.forward(x, self._params, self._layout, self.code, acts)
        outs = [acts[n * col : n * (col + fo)].reshape(n, fo) for _, fo, _, _, col in self._layout.tolist()]
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def train_step(self, x, labels, lr):
        acts, delta = self._workspace(x.shape[0])
        loss = self._kern.train_step(
            x, labels, self.dtype.type(lr), self._params, self._grads, self._layout, self.code, acts, delta
        )
        self._norms = None
        return float(loss)

    def grad_norms(self):
        if self._norms is None:
            self._norms = np.array(
                [np.linalg.norm(self._views(self._grads, i)[0].astype(np.float64)) for i in range(len(self._layout))]
            )
        return self._norms.copy()


# --------------------------------------------------------------------------- MLP


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
        """Replace every layer's (W, b) with host arrays of the MLP's shapes and dtype."""
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

    def grad_norms(self):
        """(n_layers,) float64: Frobenius norm of each layer's dL/dW in the last ``train_step``.

        Computed on demand from the gradients the step kept (the step itself
        pays nothing). Raises ``RuntimeError`` before the first step.
        """
        if not self._stepped:
            raise RuntimeError("grad_norms() needs a train_step first")
        return self._engine.grad_norms()
