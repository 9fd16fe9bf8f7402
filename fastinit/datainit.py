"""Data-driven initialisation: LSUV and greedy layer-wise autoencoder pre-training.

Both compute the initial weights of a whole network from a batch of inputs,
so they run through ``MLP(sizes, activation, init="lsuv", data=x)`` (or
``initialise``), never through ``fastinit.init.init_weights``. Their spec
strings and options are parsed, with the other schemes, by
``fastinit.init.parse_init``.

``lsuv`` (Mishkin & Matas 2016, "All you need is a good init")
    Every layer starts orthogonal (``fastinit.init``'s ``orthogonal``). Then,
    layer by layer from the input, the weights are divided by the standard
    deviation of the layer's pre-activation ``h @ W + b`` (its variance over
    all entries, on ``batch`` rows of the data drawn once without
    replacement), until that variance is 1 +- ``tol``. The output layer is
    rescaled too (unit-variance logits), as in the paper's algorithm, which
    treats every layer alike. Biases stay zero, so the pre-activation is
    linear in ``W`` and one rescaling normally lands within rounding of 1;
    ``max_iter`` bounds the rescalings per layer. A layer that is not within
    ``tol`` after ``max_iter`` rescalings, or whose variance is 0 or not
    finite (constant inputs, dead units: nothing to rescale), keeps its
    weights as they are and gets a ``RuntimeWarning`` naming the layer, and
    ``info["converged"]`` records False for it; nothing raises.
``pretrain`` (Hinton & Salakhutdinov 2006, simplified: autoencoders, no RBMs)
    Each hidden layer in turn is the encoder of a one-hidden-layer autoencoder
    ``r = act(x @ W + b) @ V + c``, trained on the previous layer's codes (the
    first on the data): ``steps`` plain SGD steps of learning rate ``lr`` on
    mini-batches of ``batch`` rows (all rows when there are fewer), on the mean
    squared error ``mean((r - x)**2)`` over every entry (the
    ``mean_squared_error`` kernel). The code layer uses the network's
    activation, the decoder is linear (codes and data may take any real
    value). Weights are *not* tied (``V`` is not ``W.T``): the gradient is
    then exactly two ``dense_backward`` calls, and the decoder, thrown away
    afterwards, may scale freely. The encoders' weights and biases become the
    hidden layers' init. Encoders and the output layer start from ``he`` for
    relu networks and ``xavier`` (Glorot) otherwise, decoders from
    ``xavier``, all biases from zero; the output layer is not pre-trained (it
    keeps that draw and a zero bias). The default ``lr=1.0`` suits the mean
    over all entries, whose gradient is ``2 (r - x) / (batch * width)``: on
    MNIST it is stable for sigmoid, tanh and relu (tanh diverged at 10).

    Each autoencoder trains through ``fastinit.training.sgd``, the loop that
    trains the MLPs: its mini-batches are epochs of the rows, sampled without
    replacement (``fastinit.training.batch_indices``), their order seeded by
    one number drawn per layer from the caller's generator. An autoencoder
    whose loss turns NaN or Inf stops there: its layer keeps the weights it
    has, gets a ``RuntimeWarning``, and ``info["diverged"]`` records True for
    it (``info["steps_done"]`` the steps it took); nothing raises.

Both run on the MLP's backend through its kernel module (``fastinit.kernels.reference``,
``fastinit.kernels.cpu``, ``fastinit.kernels.cuda``): dense_forward, dense_backward,
mean_squared_error, sgd_update; on cuda the data and the autoencoder stay on
the device, each step copies its row numbers there and gathers its mini-batch
there, and reads back only its loss. Randomness comes from the
caller's ``numpy.random.Generator`` only, so a seed gives the same weights on
every run (and, within float rounding, on every backend).
"""

import math
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

import numpy as np

from .backends import kernels_for
from .init import init_weights, parse_init
from .training import sgd

__all__ = ["initialise", "check_data"]

#: Rows (at most) on which pre-training measures each autoencoder's reconstruction error.
EVAL_ROWS = 1024


def check_data(data, n_inputs, dtype, spec):
    """Check a data-driven init's inputs, cast (and copied) to `dtype` if needed.

    Parameters
    ----------
    data : array_like, shape (N, n_inputs), or None
        The inputs, numeric and finite, N >= 1.
    n_inputs : int
        The network's input width, ``sizes[0]``.
    dtype : numpy.dtype
        float32 or float64.
    spec : str
        The data-driven init's spec, named in the messages.

    Returns
    -------
    ndarray, shape (N, n_inputs)
        `data` as a C-contiguous array of `dtype`.

    Raises
    ------
    ValueError
        When `data` is None (pass ``data=``), not 2-D, has the wrong width or no rows,
        or holds NaN or Inf.
    TypeError
        When `data` is not numeric.
    """
    if data is None:
        raise ValueError(
            f"init {spec!r} is data-driven: pass data=x, a float array of shape (N, {n_inputs}) "
            f"(e.g. MLP(..., init={spec!r}, data=train_images[:1000]))"
        )
    x = np.asarray(data)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"data must be a numeric array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_inputs or x.shape[0] < 1:
        raise ValueError(f"data must have shape (N, {n_inputs}) with N >= 1, got {x.shape}")
    x = np.ascontiguousarray(x, dtype=dtype)
    if not np.isfinite(x).all():
        raise ValueError("data must be finite (it holds NaN or Inf)")
    return x


def initialise(init, sizes, activation, data, rng, dtype, backend):
    """Compute the weights and biases of a network from a data-driven init spec.

    Parameters
    ----------
    init : str or InitScheme
        A ``lsuv...`` or ``pretrain...`` spec, or its parsed scheme.
    sizes : sequence of int
        The layer widths ``(inputs, hidden..., outputs)``.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The hidden layers' activation (the last layer is linear).
    data : ndarray, shape (N, sizes[0]), `dtype`
        The inputs, C-contiguous (see `check_data`).
    rng : numpy.random.Generator
        The only source of randomness.
    dtype : numpy.dtype
        float32 or float64.
    backend : {'numpy', 'cpu', 'cuda'}
        Where the computation runs.

    Returns
    -------
    weights : list of ndarray, each shape (fan_in, fan_out)
        Host arrays of `dtype`, one per layer.
    biases : list of ndarray, each shape (fan_out,)
        Host arrays of `dtype`, one per layer.
    info : dict of str to list
        Per-layer lists: for lsuv ``variance_before``, ``variance``, ``iterations``,
        ``converged`` (every layer); for pretrain ``loss_before``, ``loss_after``
        (each hidden layer's reconstruction error on up to ``EVAL_ROWS`` rows of its
        input), ``steps_done`` (its SGD steps) and ``diverged`` (whether its loss
        turned NaN or Inf, which ended its training early).

    Raises
    ------
    ValueError
        For a scheme that is not data-driven, or a malformed spec.

    Warns
    -----
    RuntimeWarning
        From lsuv, naming a layer left unconverged; from pretrain, naming a layer whose
        autoencoder diverged (see the module docstring).
    """
    scheme = parse_init(init)
    if not scheme.data_driven:
        raise ValueError(f"init {scheme.spec!r} is not data-driven; use fastinit.init.init_weights")
    run = _lsuv if scheme.kind == "lsuv" else _pretrain
    return run(tuple(sizes), activation, data, rng, np.dtype(dtype), backend, **dict(scheme.options))


class _Device(NamedTuple):
    """A backend's kernel module and the four ways data-driven inits handle its arrays."""

    k: ModuleType  #: the kernel module
    put: Callable  #: ``put(a)``: a host array as an array the kernels take
    get: Callable  #: ``get(a)``: a host copy
    take: Callable  #: ``take(x, idx, out)``: gather the rows ``idx`` (host ints) of ``x`` into ``out``
    empty: Callable  #: ``empty(shape)``: a buffer of the dtype


def _device(backend, dtype):
    """The :class:`_Device` of ``backend`` for arrays of ``dtype``; on cuda, ``take`` copies
    the row numbers into a device buffer kept per number of rows and gathers there."""
    k = kernels_for(backend)
    if backend != "cuda":
        take = lambda x, idx, out: np.take(x, idx, axis=0, out=out)  # noqa: E731
        return _Device(k, np.ascontiguousarray, np.array, take, lambda s: np.empty(s, dtype))
    from numba import cuda

    rows = {}  # number of rows -> the device buffer of their numbers

    def take(x, idx, out):
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        if idx.size not in rows:
            rows[idx.size] = cuda.device_array(idx.size, np.int64)
        rows[idx.size].copy_to_device(idx)
        return k.gather_rows_into(x, rows[idx.size], out)

    return _Device(k, k.as_device, lambda a: a.copy_to_host(), take, lambda s: cuda.device_array(s, dtype))


# --------------------------------------------------------------------------- lsuv


def _lsuv(sizes, activation, data, rng, dtype, backend, *, tol, batch, max_iter):
    k, put, get, _, _ = _device(backend, dtype)
    weights = [init_weights("orthogonal", fi, fo, rng, dtype) for fi, fo in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(fo, dtype) for fo in sizes[1:]]
    n = data.shape[0]
    h = put(data if n <= batch else data[rng.choice(n, size=batch, replace=False)])
    info = {"variance_before": [], "variance": [], "iterations": [], "converged": []}
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = k.dense_forward(h, put(w), put(b), "linear")
        var = before = float(np.var(get(z), dtype=np.float64))
        iterations = 0
        while abs(var - 1) >= tol and iterations < max_iter and 0 < var < math.inf:
            w *= dtype.type(1 / math.sqrt(var))
            z = k.dense_forward(h, put(w), put(b), "linear")
            var = float(np.var(get(z), dtype=np.float64))
            iterations += 1
        converged = abs(var - 1) < tol
        for key, value in zip(info, (before, var, iterations, converged)):
            info[key].append(value)
        if not converged:
            why = (
                "it cannot be rescaled" if not 0 < var < math.inf else f"after max_iter={max_iter} rescalings"
            )
            warnings.warn(
                f"lsuv: layer {i} ({w.shape[0]} -> {w.shape[1]}) has pre-activation variance {var:.6g}, "
                f"not 1 +- {tol}, {why}; its weights are kept as they are (MLP.init_info['converged'])",
                RuntimeWarning,
                stacklevel=4,
            )
        if i < len(weights) - 1:
            h = k.activation_forward(z, activation)
    return weights, biases, info


# --------------------------------------------------------------------------- pretrain


def _pretrain(sizes, activation, data, rng, dtype, backend, *, steps, lr, batch):
    dev = _device(backend, dtype)
    base = "he" if activation == "relu" else "xavier"
    n = data.shape[0]
    x = dev.put(data)
    eval_rows = rng.choice(n, size=min(n, EVAL_ROWS), replace=False)
    weights, biases = [], []
    info = {"loss_before": [], "loss_after": [], "steps_done": [], "diverged": []}
    for i, (fi, fo) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        enc = (dev.put(init_weights(base, fi, fo, rng, dtype)), dev.put(np.zeros(fo, dtype)))
        dec = (dev.put(init_weights("xavier", fo, fi, rng, dtype)), dev.put(np.zeros(fi, dtype)))
        autoencoder = _Autoencoder(dev, enc, dec, activation)
        x_eval = dev.take(x, eval_rows, dev.empty((eval_rows.size, fi)))
        info["loss_before"].append(autoencoder.reconstruction_error(x_eval))
        seed = int(rng.integers(2**63))  # the mini-batches' order
        (stop,) = sgd(autoencoder, x, None, lr=lr, batch_size=min(batch, n), seed=seed, stops=[steps])
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged autoencoder's error is not finite
            info["loss_after"].append(autoencoder.reconstruction_error(x_eval))
            codes = dev.k.dense_forward(x, enc[0], enc[1], activation)  # the next autoencoder's data
        info["steps_done"].append(stop.step)
        info["diverged"].append(stop.diverged)
        if stop.diverged:
            _warn_diverged(i, (fi, fo), stop, steps)
        weights.append(dev.get(enc[0]))
        biases.append(dev.get(enc[1]))
        x = codes
    weights.append(init_weights(base, sizes[-2], sizes[-1], rng, dtype))
    biases.append(np.zeros(sizes[-1], dtype))
    return weights, biases, info


def _warn_diverged(layer, shape, stop, steps):
    """Warn that the autoencoder of ``layer`` (``shape`` its encoder's) diverged at ``stop``."""
    warnings.warn(
        f"pretrain: the autoencoder of layer {layer} ({shape[0]} -> {shape[1]}) diverged at step "
        f"{stop.step} of {steps} (loss {stop.loss:.6g}); its weights are kept as they are "
        f"(MLP.init_info['diverged']): try a smaller lr",
        RuntimeWarning,
        stacklevel=5,  # the caller of MLP(...)
    )


class _Autoencoder:
    """The autoencoder ``r = act(x @ W + b) @ V + c`` of one hidden layer, as a model that
    :func:`fastinit.training.sgd` trains: its targets are its inputs.

    ``enc`` = (W, b) and ``dec`` = (V, c) are arrays of the kernels of ``dev`` (a
    :class:`_Device`), updated in place; a step's buffers are allocated once per batch size.
    """

    def __init__(self, dev, enc, dec, activation):
        self._dev, self._enc, self._dec, self._activation = dev, enc, dec, activation
        self._x = self._buffers = None

    def set_dataset(self, x, labels=None):
        """Keep the inputs ``x`` (N, fan_in), an array of the kernels; `labels` is ignored."""
        self._x = x

    def train_step_indices(self, idx, lr):
        """One SGD step on ``mean((r - xb)**2)``, ``xb`` the rows `idx` (host ints) of the
        inputs; returns that loss before the update, a float."""
        k, (w, b), (v, c) = self._dev.k, self._enc, self._dec
        xb, h, r, dr, dh, grads = self._workspace(idx.size)
        self._dev.take(self._x, idx, xb)
        k.dense_forward(xb, w, b, self._activation, out=h)
        k.dense_forward(h, v, c, "linear", out=r)
        loss, _ = k.mean_squared_error(r, xb, grad=dr)
        k.dense_backward(h, v, r, dr, "linear", dx=dh, dw=grads[2], db=grads[3])
        k.dense_backward(xb, w, h, dh, self._activation, dw=grads[0], db=grads[1], compute_dx=False)
        for p, g in zip((w, b, v, c), grads):
            k.sgd_update(p, g, lr)
        return loss

    def reconstruction_error(self, x):
        """The mean squared error of the autoencoder on the rows ``x``, a float."""
        k, (w, b), (v, c) = self._dev.k, self._enc, self._dec
        h = k.dense_forward(x, w, b, self._activation)
        return k.mean_squared_error(k.dense_forward(h, v, c, "linear"), x)[0]

    def _workspace(self, batch):
        """(xb, h, r, dr, dh, [dW, db, dV, dc]) for mini-batches of ``batch`` rows."""
        if self._buffers is None or self._buffers[0].shape[0] != batch:
            empty, (fi, fo) = self._dev.empty, self._enc[0].shape
            acts = [empty(s) for s in ((batch, fi), (batch, fo), (batch, fi), (batch, fi), (batch, fo))]
            self._buffers = (*acts, [empty(p.shape) for p in (*self._enc, *self._dec)])
        return self._buffers
