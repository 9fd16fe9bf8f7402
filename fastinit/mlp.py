"""A multilayer perceptron trained with SGD on softmax cross-entropy.

``MLP(sizes, activation="relu", init="he", backend="cpu", dtype="float32", seed=0, data=None)``
builds ``len(sizes) - 1`` dense layers ``h = act(h @ W + b)``; hidden layers use
``activation``, the last layer is linear (its output are the logits) and
``train_step`` puts a mean softmax cross-entropy on top. Weights are
(fan_in, fan_out), drawn with ``fastinit.init.init_weights`` from
``numpy.random.default_rng(seed)`` layer by layer in order, biases are zero;
the draw happens on the host in float64 before the cast, so the same seed
gives identical initial weights on every backend. Data-driven inits
(``lsuv``, ``pretrain``: ``fastinit.datainit``) compute the weights (and, for
``pretrain``, the hidden biases) from ``data`` on the MLP's backend, from the
same generator. ``init_seconds`` records how long the init took.

The MLP validates every argument in Python and hands the arithmetic to the
backend's engine (``fastinit.engines``: numpy, cpu or cuda, one interface).
``MLP.evaluate`` is every experiment's evaluation (loss and accuracy on a data
set); ``MLP.per_sample_gradients`` and ``backprop_to_layers`` send a gradient
down to every hidden layer on the host in float64 (the probe gradients of
``fastinit train``, the gradient figures of ``fastinit histogram``). The SGD
loop over seeded mini-batches that trains an MLP is ``fastinit.training.sgd``.

Non-goals: no momentum, no regularisation, no mixed dtypes.
"""

import time

import numpy as np

from fastinit.kernels import checks as chk
from fastinit.kernels import reference
from fastinit.kernels.checks import fill_doc, with_doc

from . import datainit
from .engines import engine_class
from .init import init_weights, parse_init

__all__ = ["MLP", "compile_backend", "backprop_to_layers"]


# --------------------------------------------------------------------------- MLP


def compile_backend(backend, dtype="float32", activation="relu", parallel=True):
    """Compile (or load from the on-disk cache) what an MLP on `backend` runs, ahead of use.

    Returns when all of it is ready. Only the cpu backend compiles on the host; for the
    others this does nothing. Safe to call from a background thread, to overlap the
    compilation with other start-up work (as ``fastinit.experiments.train`` does). Call it
    before starting processes that share one Numba cache directory, so that they only load
    from the cache: processes compiling the same function into one cache at the same moment
    can corrupt it (numba#4807).

    Parameters
    ----------
    backend : {'numpy', 'cpu', 'cuda'}
        The backend.
    dtype : {'float32', 'float64'}, default 'float32'
        The MLP's dtype.
    activation : str, default 'relu'
        The hidden activation (``fastinit.kernels.checks.ACTIVATIONS``).
    parallel : bool, default True
        Also compile the cpu engine's parallel step (False: only what a single-threaded
        process runs, as a sweep's worker does).
    """
    if backend != "cpu":
        return
    import numba

    n = 64  # enough rows for every thread: the parallel step gets compiled too
    threads = numba.get_num_threads()
    if not parallel:
        numba.set_num_threads(1)  # this thread only: the engine then never starts the parallel step
    try:
        mlp = MLP([8, 8, 2], activation=activation, backend="cpu", dtype=dtype)
        x = np.zeros((n, 8), dtype=mlp.dtype)
        mlp.set_dataset(x, np.zeros(n, dtype=np.int64))
        for _ in range(2):  # the first step compiles the building blocks, the second starts the rest
            mlp.train_step_indices(np.arange(n), 0.0)
        engine_class("cpu").wait_compiled()
        mlp.train_step_indices(np.arange(n), 0.0)
        mlp.forward(x, record=True)
    finally:
        numba.set_num_threads(threads)


def _check_sizes(sizes):
    try:
        ok = len(sizes) >= 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            "sizes must be a sequence of at least 2 positive ints (inputs, hidden..., classes), "
            f"got {sizes!r}"
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


# The batch parameters and their errors, shared by MLP.loss, train_step and set_dataset.
_BATCH = """
    x : ndarray, shape (N, sizes[0]), the MLP's dtype
        A batch, C-contiguous, N >= 1 (never cast or copied).
    labels : ndarray, shape (N,), int32 or int64
        Class labels in [0, sizes[-1]).
"""
_BATCH_RAISES = """
    Raises
    ------
    TypeError
        If `x` is not an array of the MLP's dtype (cast with ``x.astype(mlp.dtype)``),
        or `labels` not int32/int64.
    ValueError
        If `x` is not 2-D of width ``sizes[0]`` or not C-contiguous, or `labels`
        has the wrong shape or values out of range.
"""


class MLP:
    """A dense network trained by SGD on softmax cross-entropy.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(inputs, hidden..., classes)``, at least 2 entries, each >= 1.
    activation : {'relu', 'linear', 'sigmoid', 'tanh'}, default 'relu'
        Hidden activation. The last layer is always linear (logits).
    init : str, default 'he'
        Weight init spec for every layer (``fastinit.init``), e.g. ``he``,
        ``xavier``, ``std=0.01``, or a data-driven ``lsuv`` or ``pretrain``
        (options: ``fastinit.init``; what they do: ``fastinit.datainit``).
        Biases start at zero (``pretrain`` learns the hidden layers').
    backend : {'cpu', 'numpy', 'cuda'}, default 'cpu'
        The engine that does the arithmetic (``fastinit.engines``).
    dtype : str or numpy.dtype, default 'float32'
        ``float32`` or ``float64``.
    seed : int, default 0
        Seed of the ``numpy.random.default_rng`` the weights are drawn from.
    data : ndarray, shape (N, sizes[0]), optional
        Inputs for a data-driven init (its calibration or training set), cast
        to `dtype`; required by ``lsuv`` and ``pretrain``, ignored by every other init.

    Attributes
    ----------
    init_seconds : float
        Wall-clock seconds the initial weights took (for a data-driven init: its
        whole computation on the backend, including any first-call compilation of
        the kernels it uses).
    init_info : dict
        What a data-driven init measured per layer (``fastinit.datainit.initialise``;
        ``{}`` for the others).

    Raises
    ------
    ValueError
        For bad `sizes`, an unknown activation or init, or a data-driven init
        without `data` (the message names ``data=``).
    TypeError
        For a dtype other than float32/float64.
    BackendError
        For an unknown backend, or ``cuda`` without a GPU.

    Notes
    -----
    Inputs are never cast or copied: ``x`` must be a C-contiguous 2-D array
    of the MLP's dtype (anything else raises ``TypeError``/``ValueError``
    naming ``x``; cast with ``x.astype(mlp.dtype)``).
    """

    def __init__(
        self, sizes, activation="relu", init="he", backend="cpu", dtype="float32", seed=0, *, data=None
    ):
        self.sizes = _check_sizes(sizes)
        chk.activation_code(activation)
        self.activation = activation
        self.init = parse_init(init)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self.seed = seed
        engine_cls = engine_class(backend)
        rng = np.random.default_rng(seed)
        if self.init.data_driven:
            data = datainit.check_data(data, self.sizes[0], self.dtype, self.init.spec)
        start = time.perf_counter()
        if self.init.data_driven:
            weights, biases, self.init_info = datainit.initialise(
                self.init, self.sizes, activation, data, rng, self.dtype, backend
            )
        else:
            weights = [
                init_weights(self.init, fi, fo, rng, self.dtype)
                for fi, fo in zip(self.sizes[:-1], self.sizes[1:])
            ]
            biases = [np.zeros(fo, dtype=self.dtype) for fo in self.sizes[1:]]
            self.init_info = {}
        self.init_seconds = time.perf_counter() - start
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
        """``[(W, b), ...]``: host NumPy copies of the parameters, on every backend.

        W is (fan_in, fan_out) and b (fan_out,). Writing to them does not change the
        network; use `load_params`.
        """
        return self._engine.params()

    def load_params(self, params):
        """Replace every layer's (W, b); forgets any `set_dataset`.

        Parameters
        ----------
        params : sequence of tuple of ndarray
            ``n_layers`` pairs ``(W, b)``: host arrays of shapes (fan_in, fan_out) and
            (fan_out,), of the MLP's dtype.

        Raises
        ------
        ValueError
            For a wrong number of pairs, a wrong shape or a non-contiguous array.
        TypeError
            For a non-float array or another dtype than the MLP's.
        """
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

    def draw_biases(self, std, rng):
        """Replace every layer's bias by draws from N(0, `std`**2); forgets any `set_dataset`.

        Layer by layer from the input, ``(std * rng.standard_normal(fan_out)).astype(dtype)``;
        the weights are kept.

        Parameters
        ----------
        std : float
            The biases' standard deviation.
        rng : numpy.random.Generator
            The source of the draws.
        """
        self.load_params(
            [(w, (std * rng.standard_normal(b.size)).astype(self.dtype)) for w, b in self.params]
        )

    # -- validation -----------------------------------------------------------

    def _check_x(self, x):
        chk.float_array("x", x, 2)
        if np.dtype(x.dtype) != self.dtype:
            raise TypeError(
                f"x must have dtype {self.dtype} (the MLP's dtype), got {x.dtype}; cast with x.astype"
            )
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
        """Compute the logits of a batch.

        Parameters
        ----------
        x : ndarray, shape (N, sizes[0]), the MLP's dtype
            A batch, C-contiguous, N >= 1 (never cast or copied).
        record : bool, default False
            Also return the hidden layers' outputs.

        Returns
        -------
        ndarray, shape (N, sizes[-1]), or tuple
            The logits; with `record`, ``(logits, hidden)`` where `hidden` is the list of
            the ``n_layers - 1`` hidden layers' outputs (after the activation, each
            (N, width)); the logits are not repeated in it. All returned arrays are new
            host arrays (they may share one base buffer).

        Raises
        ------
        TypeError
            If `x` is not an array of the MLP's dtype.
        ValueError
            If `x` is not 2-D of width ``sizes[0]``, is empty or not C-contiguous.
        """
        self._check_x(x)
        return self._engine.forward(x, bool(record))

    def predict(self, x):
        """Predict the class of each row of `x`.

        Parameters
        ----------
        x : ndarray, shape (N, sizes[0]), the MLP's dtype
            A batch, C-contiguous, N >= 1 (never cast or copied).

        Returns
        -------
        ndarray, shape (N,), int64
            The arg max of the logits.
        """
        return np.argmax(self.forward(x), axis=1)

    @with_doc(
        fill_doc(
            """Compute the mean softmax cross-entropy on (`x`, `labels`) without updating anything.

        Parameters
        ----------
        {batch}

        Returns
        -------
        float
            The mean loss.

        {batch_raises}
        """,
            batch=_BATCH,
            batch_raises=_BATCH_RAISES,
        )
    )
    def loss(self, x, labels):
        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        logits = np.ascontiguousarray(self._engine.forward(x, False))
        return reference.softmax_cross_entropy(logits, np.asarray(labels))[0]

    @with_doc(
        fill_doc(
            """Evaluate the network on a data set, in chunks: the one evaluation of every experiment.

        The logits of each chunk go through a float64 softmax cross-entropy, so the loss
        does not depend on the chunk size beyond rounding.

        Parameters
        ----------
        {batch}
        chunk : int, optional
            Rows per forward pass (bounds the memory of the logits).

        Returns
        -------
        loss : float
            The mean softmax cross-entropy over the rows.
        accuracy : float
            The fraction of rows whose largest logit is the label's.

        {batch_raises}
        """,
            batch=_BATCH,
            batch_raises=_BATCH_RAISES,
        )
    )
    def evaluate(self, x, labels, chunk=1000):
        self._check_x(x)
        labels = np.asarray(labels)
        self._check_labels(labels, x.shape[0])
        total, correct = 0.0, 0
        for start in range(0, x.shape[0], chunk):
            rows = np.ascontiguousarray(x[start : start + chunk])
            logits = np.asarray(self._engine.forward(rows, False), dtype=np.float64)
            y = labels[start : start + chunk]
            total += reference.softmax_cross_entropy(np.ascontiguousarray(logits), y)[0] * y.size
            correct += int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        return total / x.shape[0], correct / x.shape[0]

    @with_doc(
        fill_doc(
            """Differentiate each row's own loss with respect to every hidden layer's pre-activation.

        One recorded forward pass (``forward(x, record=True)``), then the softmax
        cross-entropy of each row sent down the layers on the host in float64
        (`backprop_to_layers`): row i of layer l is ``d loss_i / d z_l[i]``, N times the
        gradient of the batch's mean loss.

        Parameters
        ----------
        {batch}

        Returns
        -------
        hidden : list of ndarray, each shape (N, width)
            The hidden layers' outputs, as ``forward(x, record=True)`` returns them.
        gradients : list of ndarray, each shape (N, width), float64
            The gradient at each hidden layer's pre-activation, layer 1 first; NaN where
            the network overflowed.

        {batch_raises}
        """,
            batch=_BATCH,
            batch_raises=_BATCH_RAISES,
        )
    )
    def per_sample_gradients(self, x, labels):
        self._check_x(x)
        labels = np.asarray(labels)
        self._check_labels(labels, x.shape[0])
        logits, hidden = self._engine.forward(x, True)
        logits = np.ascontiguousarray(logits, dtype=np.float64)
        _, top = reference.softmax_cross_entropy(logits, labels)
        weights = [w for w, _ in self._engine.params()[1:]]
        return hidden, backprop_to_layers(top * logits.shape[0], weights, hidden, self.activation)

    @with_doc(
        fill_doc(
            """Take one SGD step on the mean softmax cross-entropy of a batch.

        Updates the parameters in place (in the engine's storage).

        Parameters
        ----------
        {batch}
        lr : float
            Learning rate, a finite real number.

        Returns
        -------
        float
            The loss before the update.

        {batch_raises}
        """,
            batch=_BATCH,
            batch_raises=_BATCH_RAISES,
        )
    )
    def train_step(self, x, labels, lr):
        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        lr = chk.learning_rate(lr)
        loss = self._engine.train_step(x, labels, lr)
        self._stepped = True
        return loss

    @with_doc(
        fill_doc(
            """Keep a training set for `train_step_indices`.

        The host backends keep references (do not modify the arrays while training on
        them); cuda copies the set to the device once.

        Parameters
        ----------
        {batch}

        {batch_raises}
        """,
            batch=_BATCH,
            batch_raises=_BATCH_RAISES,
        )
    )
    def set_dataset(self, x, labels):
        self._check_x(x)
        self._check_labels(labels, x.shape[0])
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        self._engine.set_dataset(x, labels)
        self._dataset_rows = x.shape[0]

    def train_step_indices(self, idx, lr, *, return_loss=True):
        """Take `train_step` on the rows `idx` of the `set_dataset` set.

        The same arithmetic as ``train_step(x[idx], labels[idx], lr)``; on cuda only
        `idx` is copied to the device.

        Parameters
        ----------
        idx : array_like of int, shape (B,)
            Row numbers in [0, N), non-empty.
        lr : float
            Learning rate, a finite real number.
        return_loss : bool, default True
            Return the loss; when false, on cuda the step runs without waiting for the
            GPU (`last_loss` fetches it).

        Returns
        -------
        float or None
            The loss before the update, None unless `return_loss`.

        Raises
        ------
        RuntimeError
            Before `set_dataset`.
        ValueError
            For a bad `idx` or a non-finite `lr`.
        """
        rows = self._dataset_rows
        if rows is None:
            raise RuntimeError("train_step_indices needs set_dataset(x, labels) first")
        idx = chk.row_indices(idx, rows)
        lr = chk.learning_rate(lr)
        loss = self._engine.train_step_indices(idx, lr, bool(return_loss))
        self._stepped = True
        return loss

    def last_loss(self):
        """Return the loss (before its update) of the last training step.

        Returns
        -------
        float
            The mean loss.

        Raises
        ------
        RuntimeError
            Before the first training step.
        """
        if not self._stepped:
            raise RuntimeError("last_loss() needs a training step first")
        return float(self._engine.last_loss())

    def grad_norms(self):
        """Return the Frobenius norm of each layer's dL/dW in the last training step.

        From the gradients the step kept (the cpu step sums their squares as it goes).

        Returns
        -------
        ndarray, shape (n_layers,), float64
            One norm per layer.

        Raises
        ------
        RuntimeError
            Before the first training step.
        """
        if not self._stepped:
            raise RuntimeError("grad_norms() needs a train_step first")
        return self._engine.grad_norms()


def backprop_to_layers(top, weights, hidden, activation):
    """Send a gradient at a layer's pre-activation down to every hidden layer below it.

    The recursion of backpropagation, ``d_l = (d_{l+1} @ W_{l+1}.T) * phi'(z_l)``, in
    float64 on the host with ``fastinit.kernels.reference.activation_backward``, which
    takes ``phi'(z_l)`` from the layer's saved output ``h_l = phi(z_l)``. Where ``h_l``
    is NaN (the network overflowed) the gradient is NaN, and so below it (ReLU's
    ``h > 0`` test alone would give such a unit 0).

    Parameters
    ----------
    top : ndarray, shape (N, width_top)
        dL/dz of the layer above the last hidden one (the logits' for an MLP).
    weights : sequence of ndarray
        One per hidden layer: ``weights[l]``, shape (width_l, width_{l+1}), the weights
        from hidden layer l to the layer above it (the last one's into the top layer).
        Cast to float64.
    hidden : sequence of ndarray
        The hidden layers' outputs ``h_l``, each shape (N, width_l), layer 1 first; as
        many as `weights`. Cast to float64.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The hidden layers' activation.

    Returns
    -------
    list of ndarray, each shape (N, width_l), float64
        dL/dz_l of every hidden layer, layer 1 first.

    Raises
    ------
    ValueError
        If `weights` and `hidden` differ in length, or on a shape mismatch.
    """
    if len(weights) != len(hidden):
        raise ValueError(
            f"weights and hidden must have one entry per hidden layer, got {len(weights)} and {len(hidden)}"
        )
    d = np.asarray(top, dtype=np.float64)
    grads = []
    with np.errstate(over="ignore", invalid="ignore"):
        for w, h in zip(weights[::-1], hidden[::-1]):  # (W_{l+1}, h_l) from the top down
            h = np.ascontiguousarray(h, dtype=np.float64)
            d = reference.activation_backward(h, d @ np.asarray(w, dtype=np.float64).T, activation)
            d = np.where(np.isnan(h), np.nan, d)
            grads.append(d)
    return grads[::-1]
