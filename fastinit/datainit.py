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
    ``batch`` rows drawn with replacement, on the mean squared error
    ``mean((r - x)**2)`` over every entry (the ``mean_squared_error`` kernel).
    The code layer uses the network's activation, the decoder is linear (codes
    and data may take any real value). Weights are *not* tied (``V`` is not
    ``W.T``): the gradient is then exactly two ``dense_backward`` calls, and
    the decoder, thrown away afterwards, may scale freely. The encoders'
    weights and biases become the hidden layers' init. Encoders and the output
    layer start from ``he`` for relu networks and ``xavier`` (Glorot)
    otherwise, decoders from ``xavier``, all biases from zero; the output
    layer is not pre-trained (it keeps that draw and a zero bias). The default
    ``lr=1.0`` suits the mean over all entries, whose gradient is
    ``2 (r - x) / (batch * width)``: on MNIST it is stable for sigmoid, tanh
    and relu (tanh diverged at 10).

Both run on the MLP's backend through its kernel module (``fastinit.kernels.reference``,
``fastinit.kernels.cpu``, ``fastinit.kernels.cuda``): dense_forward, dense_backward,
mean_squared_error, sgd_update; on cuda the data and the autoencoder stay on
the device and mini-batches are gathered there. Randomness comes from the
caller's ``numpy.random.Generator`` only, so a seed gives the same weights on
every run (and, within float rounding, on every backend).
"""

import math
import warnings

import numpy as np

from .backends import kernels_for
from .init import init_weights, parse_init

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
        input).

    Raises
    ------
    ValueError
        For a scheme that is not data-driven, or a malformed spec.

    Warns
    -----
    RuntimeWarning
        From lsuv, naming a layer left unconverged (see the module docstring).
    """
    scheme = parse_init(init)
    if not scheme.data_driven:
        raise ValueError(f"init {scheme.spec!r} is not data-driven; use fastinit.init.init_weights")
    run = _lsuv if scheme.kind == "lsuv" else _pretrain
    return run(tuple(sizes), activation, data, rng, np.dtype(dtype), backend, **dict(scheme.options))


def _device(backend, dtype):
    """(kernel module, put, get, take, empty) for ``backend``: ``put`` makes a host array
    usable by the kernels, ``get`` returns a host copy, ``take(x, idx, out)`` gathers rows
    ``idx`` (already ``put``) of ``x`` into ``out``, ``empty(shape)`` allocates a buffer."""
    k = kernels_for(backend)
    if backend == "cuda":
        from numba import cuda

        return (
            k,
            k.as_device,
            lambda a: a.copy_to_host(),
            k.gather_rows_into,
            lambda s: cuda.device_array(s, dtype),
        )
    take = lambda x, idx, out: np.take(x, idx, axis=0, out=out)  # noqa: E731
    return k, np.ascontiguousarray, np.array, take, lambda s: np.empty(s, dtype)


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
    k, put, get, take, empty = _device(backend, dtype)
    base = "he" if activation == "relu" else "xavier"
    n = data.shape[0]
    x = put(data)
    eval_rows = put(rng.choice(n, size=min(n, EVAL_ROWS), replace=False))
    weights, biases = [], []
    info = {"loss_before": [], "loss_after": []}
    for fi, fo in zip(sizes[:-2], sizes[1:-1]):
        enc = (put(init_weights(base, fi, fo, rng, dtype)), put(np.zeros(fo, dtype)))
        dec = (put(init_weights("xavier", fo, fi, rng, dtype)), put(np.zeros(fi, dtype)))
        x_eval = take(x, eval_rows, empty((eval_rows.shape[0], fi)))
        info["loss_before"].append(_reconstruction_error(k, x_eval, enc, dec, activation))
        _train_autoencoder(
            k, take, empty, x, put(rng.integers(0, n, size=(steps, batch))), enc, dec, activation, lr
        )
        info["loss_after"].append(_reconstruction_error(k, x_eval, enc, dec, activation))
        weights.append(get(enc[0]))
        biases.append(get(enc[1]))
        x = k.dense_forward(x, enc[0], enc[1], activation)  # the codes: the next autoencoder's data
    weights.append(init_weights(base, sizes[-2], sizes[-1], rng, dtype))
    biases.append(np.zeros(sizes[-1], dtype))
    return weights, biases, info


def _reconstruction_error(k, x, enc, dec, activation):
    """Mean squared error of the autoencoder ``enc``, ``dec`` ((W, b) pairs) on the rows ``x``."""
    h = k.dense_forward(x, enc[0], enc[1], activation)
    return k.mean_squared_error(k.dense_forward(h, dec[0], dec[1], "linear"), x)[0]


def _train_autoencoder(k, take, empty, x, idx, enc, dec, activation, lr):
    """SGD on ``mean((act(xb @ W + b) @ V + c - xb)**2)``, one step per row of ``idx``
    (steps, batch), ``xb`` the rows ``idx[s]`` of ``x``; ``enc`` = (W, b) and
    ``dec`` = (V, c) are updated in place, all in the kernels' arrays."""
    (w, b), (v, c) = enc, dec
    batch, (fi, fo) = idx.shape[1], w.shape
    xb, h, r, dr, dh = (empty(s) for s in ((batch, fi), (batch, fo), (batch, fi), (batch, fi), (batch, fo)))
    grads = [empty(p.shape) for p in (w, b, v, c)]
    for s in range(idx.shape[0]):
        take(x, idx[s], xb)
        k.dense_forward(xb, w, b, activation, out=h)
        k.dense_forward(h, v, c, "linear", out=r)
        k.mean_squared_error(r, xb, grad=dr)
        k.dense_backward(h, v, r, dr, "linear", dx=dh, dw=grads[2], db=grads[3])
        k.dense_backward(xb, w, h, dh, activation, dw=grads[0], db=grads[1], compute_dx=False)
        for p, g in zip((w, b, v, c), grads):
            k.sgd_update(p, g, lr)
