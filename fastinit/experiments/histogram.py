"""The activation-histogram experiment: how the init scheme shapes activations through depth.

The classic experiment (Glorot & Bengio 2010; "Deep Learning from Scratch",
ch. 6): push ``samples`` inputs drawn from N(0, 1) through ``layers`` dense
layers of ``units`` units with no bias, each layer a fresh weight matrix drawn
by the init scheme, and look at the distribution of every layer's outputs.
With sigmoid, std=1 pushes the outputs to 0 and 1 (saturation: vanishing
gradients), std=0.01 collapses them onto 0.5 (no diversity), Xavier keeps a
healthy spread in every layer.

Seeding (so the same seed gives the same numbers on every backend, and
the result of one init does not depend on which other inits ran): the input is
``default_rng(seed).standard_normal((samples, units))``; layer ``l`` of every
init draws its weights from ``default_rng([seed, l + 1])``. Every init therefore
sees the same input and the same random stream, so ``std=1`` and ``std=0.01``
differ only by scale. Values are drawn in float64 and cast to ``dtype``.

Python use::

    from fastinit.experiments.histogram import HistogramConfig, run, write
    from fastinit.store import open_results

    res = run(HistogramConfig("tanh", inits=("std=1", "xavier")), progress=False)
    res.runs["xavier"].std          # per-layer std, shape (layers,)
    with open_results("results.h5") as f:
        write(f, res)

HDF5 layout written by :func:`write`: one group ``/histogram/<activation>/<init>`` per
init, its datasets, units and descriptions as :data:`fastinit.schema.HISTOGRAM_RUN` declares them
(``docs/storage.md`` shows them all).
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .. import schema
from ..backends import check_backend, kernels_for, require_cuda
from ..init import parse_init
from ..mlp import backprop_to_layers

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_INITS",
    "SATURATION_RULES",
    "HistogramConfig",
    "InitRun",
    "HistogramResults",
    "run",
    "backprop",
    "write",
    "read",
    "saturated_fraction",
    "theory_std",
    "format_table",
    "group_path",
]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
DEFAULT_INITS = ("std=10", "std=1", "std=0.01", "std=0", "xavier", "he")
DTYPES = ("float32", "float64")
SATURATION_RULES = {
    "sigmoid": "y < 0.01 or y > 0.99",
    "tanh": "|y| > 0.99",
    "relu": "y == 0 (dead)",
}


@dataclass
class InitRun:
    """The result for one init scheme. Arrays are NumPy; per-layer arrays have shape (layers,).

    Parameters
    ----------
    init : str
        The init spec.
    activations : numpy.ndarray
        (layers, samples, units), the run's dtype: every layer's outputs.
    weight_std : numpy.ndarray
        Nominal std of each layer's weights (the scheme's formula).
    weight_std_measured : numpy.ndarray
        Std of the weights actually drawn.
    mean, std : numpy.ndarray
        Mean and std of each layer's outputs (NaN/Inf values skipped).
    saturated : numpy.ndarray
        Fraction of saturated (or dead) values per layer (:data:`SATURATION_RULES`).
    theory_std : numpy.ndarray
        Mean-field (infinite-width) prediction of ``std`` (:func:`theory_std`).
    nonfinite : numpy.ndarray, optional
        Fraction of NaN/Inf values per layer (overflow); default zeros.
    grad_rms : numpy.ndarray, optional
        RMS of the gradient backpropagated to each layer's pre-activation; default NaN.
    grad_theory : numpy.ndarray, optional
        Its mean-field prediction (see ``gradient_theory``); default NaN.
    gradients : numpy.ndarray, optional
        (layers, samples, units), the run's dtype: that gradient (see :func:`backprop`), if kept.
    """

    init: str
    activations: np.ndarray  # (layers, samples, units), the run's dtype
    weight_std: np.ndarray  # nominal std of each layer's weights (the scheme's formula)
    weight_std_measured: np.ndarray  # std of the weights actually drawn
    mean: np.ndarray
    std: np.ndarray
    saturated: np.ndarray  # fraction of saturated (or dead) values per layer
    theory_std: np.ndarray  # mean-field (infinite-width) prediction of ``std``
    nonfinite: np.ndarray = None  # fraction of NaN/Inf values per layer (overflow); mean/std skip them
    grad_rms: np.ndarray = None  # RMS of the gradient backpropagated to each layer's pre-activation
    grad_theory: np.ndarray = None  # its mean-field prediction (see gradient_theory)
    gradients: np.ndarray = (
        None  # (layers, samples, units), the run's dtype: that gradient (see backprop), if kept
    )

    def __post_init__(self):
        if self.nonfinite is None:
            self.nonfinite = np.zeros(len(self.mean))
        if self.grad_rms is None:
            self.grad_rms = np.full(len(self.mean), np.nan)
        if self.grad_theory is None:
            self.grad_theory = np.full(len(self.mean), np.nan)

    def overflow_layer(self):
        """The first layer (1-based) with NaN/Inf values, or None.

        Returns
        -------
        int or None
            The layer number, or None when every value is finite.
        """
        bad = np.flatnonzero(self.nonfinite > 0)
        return int(bad[0]) + 1 if bad.size else None


@dataclass
class HistogramResults:
    """Everything one experiment produced.

    Parameters
    ----------
    activation : str
        The activation of every layer.
    layers, units, samples : int
        Depth, width and number of input samples.
    seed : int
        Seed of the input and the weights.
    backend : str
        The kernel backend that ran.
    dtype : str
        ``"float32"`` or ``"float64"``.
    runs : dict, optional
        Init spec -> :class:`InitRun`, in run order.
    bias_std : float, default 0.0
        Std of the biases (0: no bias).
    """

    activation: str
    layers: int
    units: int
    samples: int
    seed: int
    backend: str
    dtype: str
    runs: dict = field(default_factory=dict)
    bias_std: float = 0.0

    @property
    def inits(self):
        """The init specs of ``runs``, in run order."""
        return list(self.runs)


def saturated_fraction(y, activation):
    """Fraction of the values of ``y`` that are saturated for ``activation``.

    Parameters
    ----------
    y : numpy.ndarray
        Activation outputs, any shape.
    activation : {'sigmoid', 'tanh', 'relu'}
        Selects the rule of :data:`SATURATION_RULES`.

    Returns
    -------
    float
        The fraction in [0, 1] (0 for an empty ``y``).

    Raises
    ------
    ValueError
        For an unknown activation.
    """
    if activation == "sigmoid":
        bad = (y < 0.01) | (y > 0.99)
    elif activation == "tanh":
        bad = np.abs(y) > 0.99
    elif activation == "relu":
        bad = y == 0
    else:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return float(np.count_nonzero(bad)) / max(1, bad.size)


def theory_std(activation, weight_stds, units, input_var=1.0, bias_var=0.0):
    """Mean-field prediction of each layer's output std.

    For weights with zero mean and variance ``s_l**2`` the pre-activation of
    layer ``l`` is approximately N(0, q_l) with the variance recursion
    ``q_1 = units * s_1**2 * E[x**2] + bias_var``, ``q_{l+1} = units * s_{l+1}**2 * E[h_l**2] + bias_var``
    (He et al. 2015; Poole et al. 2016), with the Gaussian moments of
    :func:`fastinit.theory.gaussian_moments` (closed forms for ReLU). Exact in the
    infinite-width limit; at 100 units expect a few percent of deviation.

    Parameters
    ----------
    activation : {'sigmoid', 'tanh', 'relu'}
        The activation of every layer.
    weight_stds : sequence of float
        Each layer's weight std ``s_l``.
    units : int
        Width of every layer (its fan-in).
    input_var : float, default 1.0
        ``E[x**2]`` of the network input.
    bias_var : float, default 0.0
        Variance of the biases.

    Returns
    -------
    numpy.ndarray
        float64, shape (len(weight_stds),): the predicted std of each layer's outputs.
    """
    from ..theory import gaussian_moments

    second = float(input_var)  # E[h**2] of the layer's input
    out = np.empty(len(weight_stds))
    for i, s in enumerate(weight_stds):
        mean, second = gaussian_moments(units * float(s) ** 2 * second + bias_var, activation)
        out[i] = math.sqrt(max(second - mean * mean, 0.0))
    return out


#: The integer fields of :class:`HistogramConfig` and their lowest values.
_LOWEST = {"layers": 1, "units": 1, "samples": 1, "seed": 0}


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_inits(inits):
    """``inits`` as a tuple of distinct, valid init specs (a single spec may be a str)."""
    inits = (inits,) if isinstance(inits, str) else tuple(inits)
    if not inits:
        raise ValueError("inits must name at least one init scheme")
    if len(set(inits)) != len(inits):
        dup = next(i for i in inits if inits.count(i) > 1)
        raise ValueError(f"init {dup!r} is given twice")
    for spec in inits:
        parse_init(spec)  # raises ValueError listing valid names
    for spec in inits:
        if "/" in spec:
            raise ValueError(f"init {spec!r} must not contain '/'")
    return inits


def _check_dtype(dtype):
    try:
        name = str(np.dtype(dtype))
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def _check_bias_std(bias_std):
    number = isinstance(bias_std, (int, float, np.integer, np.floating)) and not isinstance(bias_std, bool)
    if not (number and 0 <= bias_std < math.inf):
        raise ValueError(f"bias_std must be a finite number >= 0, got {bias_std!r}")
    return float(bias_std)


@dataclass(frozen=True)
class HistogramConfig:
    """What :func:`run` measures.

    Every layer maps ``units`` -> ``units`` with ``dense_forward(x, w, b, activation)`` of the
    chosen ``backend``. Memory: the activations of every init are kept, ``len(inits) * layers *
    samples * units`` values, twice that with ``gradients``.

    Parameters
    ----------
    activation : {'sigmoid', 'tanh', 'relu'}
        The activation of every layer.
    inits : tuple of str
        Init specs (see :mod:`fastinit.init`), one run each; a single spec may be a str.
    layers, units, samples : int
        Depth, width and input samples drawn from N(0, 1).
    seed : int
        Seed of the input and the weights (see the module docstring).
    backend : {'numpy', 'cpu', 'cuda'}
        Kernel backend.
    dtype : {'float32', 'float64'}
        Floating-point type of the activations.
    bias_std : float
        Biases are 0, or drawn from N(0, ``bias_std``**2) per layer (so the mean-field theory's
        sigma_b^2 = ``bias_std``**2 can be matched), the same for every init.
    gradients : bool
        Also keep every layer's backpropagated gradient (:func:`backprop`,
        ``InitRun.gradients``) for :func:`write` and the gradient-histogram figure; its RMS
        (``grad_rms``) is always computed.
    """

    activation: str = "sigmoid"
    inits: tuple = DEFAULT_INITS
    layers: int = 5
    units: int = 100
    samples: int = 1000
    seed: int = 0
    backend: str = "cpu"
    dtype: str = "float32"
    bias_std: float = 0.0
    gradients: bool = True

    def validate(self):
        """The config with normalised types (``inits`` a tuple, sizes int, ``dtype`` a name).

        Returns
        -------
        HistogramConfig
            A checked copy.

        Raises
        ------
        ValueError
            For a bad activation, init spec, size, dtype or bias_std.
        TypeError
            For a non-integer size.
        fastinit.backends.BackendError
            For an unknown backend, or cuda without a GPU.
        """
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        inits = _check_inits(self.inits)
        sizes = {name: _check_int(name, getattr(self, name), low) for name, low in _LOWEST.items()}
        check_backend(self.backend)
        if self.backend == "cuda":
            require_cuda()
        dtype, bias_std = _check_dtype(self.dtype), _check_bias_std(self.bias_std)
        return replace(
            self, inits=inits, dtype=dtype, bias_std=bias_std, gradients=bool(self.gradients), **sizes
        )


class _Device:
    """Moves arrays to and from a backend (host arrays for numpy/cpu, device arrays for cuda)."""

    def __init__(self, backend):
        self.k = kernels_for(backend)
        if backend == "cuda":
            from numba import cuda

            self.put = cuda.to_device
            self.get = lambda a: a.copy_to_host()
        else:
            self.put = np.ascontiguousarray
            self.get = np.asarray


def run(config, *, progress=True):
    """Run the activation-histogram experiment of ``config``.

    Parameters
    ----------
    config : HistogramConfig
        What to measure, checked first (:meth:`HistogramConfig.validate`).
    progress : bool, default True
        A bar on a terminal, else heartbeat lines on stderr (``fastinit.progress``); False: none.

    Returns
    -------
    HistogramResults
        One :class:`InitRun` per init, in ``config.inits`` order.

    Raises
    ------
    ValueError, TypeError, fastinit.backends.BackendError
        For a bad config (see :meth:`HistogramConfig.validate`), or a backend that cannot run here.
    """
    from ..progress import Progress

    c = config.validate()
    dev = _Device(c.backend)
    x0 = np.ascontiguousarray(
        np.random.default_rng(c.seed).standard_normal((c.samples, c.units)), dtype=c.dtype
    )
    results = HistogramResults(
        c.activation, c.layers, c.units, c.samples, c.seed, c.backend, c.dtype, bias_std=c.bias_std
    )
    bar = Progress(len(c.inits) * c.layers, f"histogram {c.activation}", "layers", enabled=progress)
    done = False
    # Overflow (e.g. ReLU with std=10 through many layers) is expected here: it is
    # counted per layer (InitRun.nonfinite) and reported, not warned about.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            for spec in c.inits:
                results.runs[spec] = _run_init(c, spec, x0, dev, bar)
        done = True
    finally:
        bar.close(f"{len(c.inits)} inits x {c.layers} layers x {c.samples} samples" if done else None)
    return results


def _run_init(c, spec, x0, dev, bar):
    """The :class:`InitRun` of init ``spec`` under the validated config ``c``, from the input ``x0``."""
    scheme = parse_init(spec)
    acts = np.empty((c.layers, c.samples, c.units), dtype=c.dtype)
    w_nominal = np.empty(c.layers)
    w_measured = np.empty(c.layers)
    x = dev.put(x0)
    weights = _weights(scheme, x0, c.layers, c.units, c.activation, c.seed, c.dtype, c.backend)
    for layer in range(c.layers):
        w, b = weights(layer)
        w_measured[layer] = float(np.std(w, dtype=np.float64))
        # A data-driven init has no nominal std: the theory uses the measured one.
        w_nominal[layer] = w_measured[layer] if scheme.data_driven else scheme.std(c.units, c.units)
        if b is None and c.bias_std > 0:  # its own stream: the weights stay those of a bias-free run
            rng = np.random.default_rng([c.seed, layer + 1, 1])
            b = (c.bias_std * rng.standard_normal(c.units)).astype(c.dtype)
        if b is not None:
            b = dev.put(b)
        x = dev.k.dense_forward(x, dev.put(w), b, c.activation)
        acts[layer] = dev.get(x)
        bar.update(1, init=spec)
    run = _summarise(spec, acts, w_nominal, w_measured, c.activation, c.units, c.bias_std)
    grads = backprop(
        acts, lambda layer: weights(layer)[0], c.activation, np.random.default_rng([c.seed, 0, 2])
    )
    run.grad_rms = gradient_rms(grads)
    run.grad_theory = gradient_theory(c.activation, w_nominal, c.units, c.bias_std)
    if c.gradients:
        run.gradients = grads.astype(c.dtype)
    return run


def _weights(scheme, x0, layers, units, activation, seed, dtype, backend):
    """``layer -> (W (units, units), b or None)`` for an init: layer l of a drawn scheme from
    ``default_rng([seed, l + 1])`` with no bias; a data-driven scheme (lsuv, pretrain) computed
    once for the whole stack from the samples ``x0`` (its biases included), on ``backend``."""
    if not scheme.data_driven:
        return lambda layer: (
            scheme.sample(units, units, np.random.default_rng([seed, layer + 1]), dtype),
            None,
        )
    from ..datainit import initialise

    # One extra layer stands in for the output layer, which a data-driven init treats as linear.
    ws, bs, _ = initialise(
        scheme, (units,) * (layers + 2), activation, x0, np.random.default_rng([seed, 0, 3]), dtype, backend
    )
    return lambda layer: (ws[layer], bs[layer] if scheme.kind == "pretrain" else None)


def backprop(acts, weights, activation, rng):
    """The gradient at init of every layer's pre-activation, for a random loss on the last layer.

    The loss is ``L = sum(G * z_last)`` with ``G`` (samples, units) drawn N(0, 1)
    from ``rng``, so ``dL/dz_last = G`` and going down
    ``d_l = (d_{l+1} @ W_{l+1}.T) * phi'(z_l)``, with ``phi'`` from the saved
    outputs ``acts`` (layers, samples, units) and ``weights(l)`` layer l's
    weights (drawn again, in float64), by :func:`fastinit.mlp.backprop_to_layers`.

    Parameters
    ----------
    acts : numpy.ndarray
        (layers, samples, units): every layer's saved outputs.
    weights : callable
        ``weights(l)`` returns layer ``l``'s weights, (units, units).
    activation : {'sigmoid', 'tanh', 'relu'}
        The activation of every layer.
    rng : numpy.random.Generator
        Draws ``G``.

    Returns
    -------
    numpy.ndarray
        float64, (layers, samples, units); NaN where an activation is NaN (overflow) and below it.
    """
    grads = np.empty(acts.shape)
    grads[-1] = rng.standard_normal(acts.shape[1:])
    below = backprop_to_layers(
        grads[-1], [weights(layer) for layer in range(1, acts.shape[0])], acts[:-1], activation
    )
    for layer, d in enumerate(below):
        grads[layer] = d
    return grads


def gradient_rms(grads):
    """The RMS of each layer's gradient (layers, samples, units) relative to the N(0, 1) one that
    enters the last layer: float64 (layers,), the last being 1 (its nominal value)."""
    with np.errstate(all="ignore"):
        rms = np.sqrt(np.mean(np.square(grads, dtype=np.float64), axis=(1, 2)))
    rms[-1] = 1.0
    return rms


def gradient_theory(activation, w_nominal, units, bias_std):
    """Mean-field prediction of :func:`gradient_rms` for weights of std ``w_nominal`` (layers,).

    Going down, the mean square is multiplied by ``chi_l = units * s_{l+1}^2 *
    E[phi'(z_l)^2]`` per layer, ``z_l`` Gaussian with the variance recursion's
    ``q_l`` for a N(0, 1) input (the mean-field gradient-independence
    assumption: ``chi1^depth`` at the fixed point). Returns float64 (layers,),
    the last being 1."""
    from ..theory import gaussian_moments, slope_moment

    layers = len(w_nominal)
    qs = [units * w_nominal[0] ** 2 * 1.0 + bias_std**2]  # the input is N(0, 1)
    for layer in range(1, layers):
        _, second = gaussian_moments(qs[-1], activation)
        qs.append(units * w_nominal[layer] ** 2 * second + bias_std**2)
    theory = np.ones(layers)
    for layer in range(layers - 2, -1, -1):
        chi = units * w_nominal[layer + 1] ** 2 * slope_moment(qs[layer], activation)
        theory[layer] = theory[layer + 1] * math.sqrt(chi)
    return theory


def _summarise(spec, acts, w_nominal, w_measured, activation, units, bias_std=0.0):
    layers = acts.shape[0]
    mean, std, sat, nonfinite = (np.empty(layers) for _ in range(4))
    for i, row in enumerate(acts.reshape(layers, -1)):
        finite = np.isfinite(row)
        ok = row if finite.all() else row[finite]
        nonfinite[i] = 1.0 - ok.size / row.size
        mean[i] = ok.mean(dtype=np.float64) if ok.size else np.nan
        std[i] = ok.std(dtype=np.float64) if ok.size else np.nan
        sat[i] = saturated_fraction(row, activation)
    return InitRun(
        spec,
        acts,
        w_nominal,
        w_measured,
        mean,
        std,
        sat,
        theory_std(activation, w_nominal, units, bias_var=bias_std**2),
        nonfinite,
    )


def _attrs(results, run):
    return {
        "init": run.init,
        "activation": results.activation,
        "seed": results.seed,
        "backend": results.backend,
        "dtype": results.dtype,
        "layers": results.layers,
        "units": results.units,
        "samples": results.samples,
        "weight_std": run.weight_std,
        "bias_std": results.bias_std,
        "saturation": SATURATION_RULES[results.activation],
    }


def group_path(activation, init):
    """The HDF5 group that holds one init's run (:data:`fastinit.schema.HISTOGRAM_RUN`).

    Parameters
    ----------
    activation : str
        The activation.
    init : str
        The init spec.

    Returns
    -------
    str
        ``/histogram/<activation>/<init>``.
    """
    return schema.HISTOGRAM_RUN.at(activation=activation, init=init)


def write(f, result):
    """Write ``result`` into the open results file ``f`` (from :func:`fastinit.store.open_results`).

    Replaces ``/histogram/<activation>/<init>`` for each init that ran and
    leaves every other group alone. A cuda result also names the GPU in the file's attr ``gpu``.

    Parameters
    ----------
    f : h5py.File
        A results file open for writing.
    result : HistogramResults
        What :func:`run` returned.

    Returns
    -------
    list of str
        The group paths written.
    """
    from ..store import append, create_appendable, record_gpu, replace_group

    record_gpu(f, result.backend)
    written = []
    for run in result.runs.values():
        attrs = _attrs(result, run)
        g = replace_group(f, group_path(result.activation, run.init), attrs=attrs)
        for entry in schema.HISTOGRAM_RUN.datasets:
            data = getattr(run, entry.name)
            if data is None:  # gradients not kept
                continue
            if entry.dtype == schema.RUN_DTYPE:  # (layers, samples, units): one layer per chunk
                ds = create_appendable(g, entry.name, data.shape[1:], data.dtype, chunk_rows=1, attrs=attrs)
                append(schema.label(ds, entry), data)
            else:  # per-layer statistics
                ds = g.create_dataset(entry.name, data=np.asarray(data, dtype=np.float64))
                schema.label(ds, entry, {"rule": attrs["saturation"]})
        written.append(g.name)
    return written


def read(path, activation="sigmoid", inits=None):
    """Read one activation's runs back from the results file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    activation : {'sigmoid', 'tanh', 'relu'}, default 'sigmoid'
        Which histogram to read.
    inits : sequence of str, optional
        The init specs to read (default: all stored, in file order).

    Returns
    -------
    HistogramResults
        Its global attrs (seed, sizes, backend, dtype, bias_std) from the first run read.

    Raises
    ------
    fastinit.store.StoreError
        For a bad file.
    KeyError
        With a clear message when the activation or an init is not in the file.
    """
    from ..store import open_read

    with open_read(path) as f:
        base = f"/histogram/{activation}"
        if base not in f:
            stored = sorted(f["/histogram"]) if "/histogram" in f else []
            raise KeyError(
                f"{path} holds no histogram for {activation!r}"
                + (f"; it holds {', '.join(stored)}" if stored else "")
            )
        names = list(f[base]) if inits is None else list(inits)
        results = None
        for name in names:
            if name not in f[base]:
                raise KeyError(f"{path} holds no {activation} histogram for init {name!r}")
            g = f[base][name]
            a = g.attrs
            if results is None:
                results = HistogramResults(
                    activation,
                    int(a["layers"]),
                    int(a["units"]),
                    int(a["samples"]),
                    int(a["seed"]),
                    str(a["backend"]),
                    str(a["dtype"]),
                    bias_std=float(a.get("bias_std", 0.0)),
                )
            stored = {e.name: g[e.name][()] for e in schema.HISTOGRAM_RUN.datasets if e.name in g}
            results.runs[name] = InitRun(name, **stored)  # nonfinite and the gradients are optional
    return results


def _num(v, width=9):
    """Fixed-point for ordinary magnitudes, 3 significant digits for tiny or huge ones."""
    v = float(v)
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:>{width}.4f}"
    return f"{v:>{width}.3g}"


def format_table(results):
    """A plain-text per-layer table: mean, std (theory), saturated % for every init.

    Parameters
    ----------
    results : HistogramResults
        From :func:`run` or :func:`read`.

    Returns
    -------
    str
        The table, with a warning line per init whose activations overflowed.
    """
    sat_name = "dead" if results.activation == "relu" else "sat"
    head = f"{'init':<14} {'layer':>5} {'w std':>9} {'mean':>9} {'std':>9} {'theory':>9} {sat_name + ' %':>7}"
    lines = [
        f"{results.activation}: {results.layers} layers x {results.units} units, {results.samples} samples, "
        f"seed {results.seed}, backend {results.backend}, {results.dtype}",
        head,
        "-" * len(head),
    ]
    for run in results.runs.values():
        for layer in range(results.layers):
            name = run.init if layer == 0 else ""
            lines.append(
                f"{name:<14} {layer + 1:>5} {run.weight_std[layer]:>9.4g} {_num(run.mean[layer])} "
                f"{_num(run.std[layer])} {_num(run.theory_std[layer])} {100 * run.saturated[layer]:>7.1f}"
            )
    lines.append(
        f"theory: mean-field variance recursion (infinite width); {sat_name}: "
        f"{SATURATION_RULES[results.activation]}"
    )
    for run in results.runs.values():
        layer = run.overflow_layer()
        if layer is not None:
            lines.append(
                f"warning: {run.init}: activations overflowed {results.dtype} from layer {layer} "
                f"({100 * run.nonfinite[layer - 1]:.0f}% NaN/Inf there; mean and std skip them)"
                + ("; try --dtype float64" if results.dtype == "float32" else "")
            )
    return "\n".join(lines)
