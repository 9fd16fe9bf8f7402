"""Weight initialisation schemes, chosen by name.

A weight matrix is (fan_in, fan_out), so a layer computes ``x @ W + b``.
Spec strings name a scheme and optional parameters::

    std=0.01            Gaussian N(0, 0.01**2); std=0 gives zeros
    uniform=0.05        U(-0.05, 0.05)
    truncated=0.05      normal with std 0.05, cut at 2 sigma (Keras semantics)
    zeros
    xavier | glorot     normal, std = gain * sqrt(2 / (fan_in + fan_out))   (Glorot & Bengio)
    he | kaiming        normal, std = gain * sqrt(1 / fan_in), gain sqrt(2)   (He et al.)
    lecun               normal, std = gain * sqrt(1 / fan_in)                (LeCun)
    <scheme>_uniform    same variance from U(-a, a), a = sqrt(3) * std
    <scheme>_truncated  same variance from a normal cut at 2 sigma
    orthogonal          gain * a (semi-)orthogonal matrix (Saxe et al.)

Options follow the name after commas: ``gain=<number or activation>`` and
``mode=fan_in|fan_out|fan_avg`` for the variance-scaling schemes, e.g.
``he,mode=fan_out`` or ``orthogonal,gain=relu`` or ``xavier,gain=tanh``.

Data-driven schemes compute the weights of a whole network from a batch of
inputs, so they only work through ``MLP(sizes, init=..., data=x)`` (see
``fastinit.datainit``); options in any order, defaults shown::

    lsuv,tol=0.1,batch=512,max_iter=10
        orthogonal, then each layer rescaled until the variance of its
        pre-activation on ``batch`` rows of the data is 1 +- tol, at most
        ``max_iter`` times per layer (Mishkin & Matas 2016). tol in (0, 1),
        batch >= 2, max_iter >= 1.
    pretrain,steps=500,lr=1.0,batch=128
        greedy layer-wise autoencoder pre-training of the hidden layers:
        ``steps`` SGD steps of learning rate ``lr`` on ``batch`` rows each,
        epochs of the rows without replacement (Hinton & Salakhutdinov 2006,
        simplified). steps >= 1, lr > 0, batch >= 1.

Note on names: the "Deep Learning from Scratch" book code calls
``sqrt(1 / fan_in)`` "Xavier"; that is LeCun's scaling (``lecun`` here).
Glorot's Xavier is ``sqrt(2 / (fan_in + fan_out))``. For square layers the
two coincide; for 784 -> 100 they differ.

Randomness always comes from the ``numpy.random.Generator`` the caller
passes; values are drawn in float64 and cast, so a seed gives the same
weights on every backend.
"""

import math
from dataclasses import dataclass

import numpy as np

from fastinit.kernels.checks import fill_doc, with_doc

__all__ = ["InitScheme", "parse_init", "init_weights", "gain", "INIT_NAMES", "TRUNCATED_STD_CORRECTION"]

#: std of a unit normal truncated at +-2 sigma; Keras divides by it.
TRUNCATED_STD_CORRECTION = 0.87962566103423978

# name -> (distribution, default gain, default mode)
_VARIANCE_SCALING = {
    "xavier": (1.0, "fan_avg"),
    "he": (math.sqrt(2.0), "fan_in"),
    "lecun": (1.0, "fan_in"),
}
_ALIASES = {"glorot": "xavier", "kaiming": "he"}
_DISTRIBUTIONS = ("normal", "uniform", "truncated")
_VALUED = ("std", "uniform", "truncated")
_MODES = ("fan_in", "fan_out", "fan_avg")

# data-driven scheme -> {option: (default, what a valid value is, test)}; the default's type is the option's
_DATA_DRIVEN = {
    "lsuv": {
        "tol": (0.1, "a number in (0, 1)", lambda v: 0 < v < 1),
        "batch": (512, "an integer >= 2", lambda v: v >= 2),
        "max_iter": (10, "an integer >= 1", lambda v: v >= 1),
    },
    "pretrain": {
        "steps": (500, "an integer >= 1", lambda v: v >= 1),
        "lr": (1.0, "a number > 0", lambda v: v > 0),
        "batch": (128, "an integer >= 1", lambda v: v >= 1),
    },
}

INIT_NAMES = tuple(
    ["std=<sigma>", "uniform=<a>", "truncated=<sigma>", "zeros", "orthogonal"]
    + [
        f"{base}{suffix}"
        for base in ("xavier", "glorot", "he", "kaiming", "lecun")
        for suffix in ("", "_uniform", "_truncated")
    ]
    + list(_DATA_DRIVEN)
)


def gain(activation, param=None):
    """Return the recommended gain for an activation, like ``torch.nn.init.calculate_gain``.

    Parameters
    ----------
    activation : str
        ``linear``, ``identity``, ``sigmoid`` (gain 1), ``tanh`` (5/3), ``relu``
        (sqrt(2)), ``leaky_relu`` (sqrt(2 / (1 + slope**2))) or ``selu`` (3/4).
    param : float, optional
        The slope of ``leaky_relu`` (default 0.01); ignored otherwise.

    Returns
    -------
    float
        The gain.

    Raises
    ------
    ValueError
        For any other activation name.
    """
    if activation in ("linear", "identity", "sigmoid"):
        return 1.0
    if activation == "tanh":
        return 5.0 / 3.0
    if activation == "relu":
        return math.sqrt(2.0)
    if activation == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if activation == "selu":
        return 0.75
    raise ValueError(
        f"no gain for activation {activation!r}; "
        "expected linear, identity, sigmoid, tanh, relu, leaky_relu or selu"
    )


def _fan(fan_in, fan_out, mode):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]


# The layer's parameters of InitScheme.sample and init_weights.
_LAYER_PARAMETERS = """
    fan_in : int
        Inputs of the layer, >= 1.
    fan_out : int
        Outputs of the layer, >= 1.
    rng : numpy.random.Generator
        The source of randomness.
"""


@dataclass(frozen=True)
class InitScheme:
    """A parsed initialisation scheme.

    Built by `parse_init`; frozen.

    Parameters
    ----------
    spec : str
        The spec string it came from.
    kind : str
        ``"zeros"``, ``"fixed"`` (std given by the spec), ``"scaling"`` (std from
        gain and fan), ``"orthogonal"``, or a data-driven scheme (``"lsuv"``,
        ``"pretrain"``).
    distribution : {'normal', 'uniform', 'truncated'}, default 'normal'
        The distribution drawn from (all with the same std).
    fixed_std : float, default 0.0
        The std of a ``"fixed"`` scheme.
    gain : float, default 1.0
        The gain of a ``"scaling"`` or ``"orthogonal"`` scheme.
    mode : {'fan_in', 'fan_out', 'fan_avg'}, default 'fan_in'
        The fan a ``"scaling"`` scheme divides by.
    options : tuple of tuple, default ()
        A data-driven scheme's options as ``((name, value), ...)``, every option
        listed, defaults filled in.
    """

    spec: str
    kind: str
    distribution: str = "normal"
    fixed_std: float = 0.0
    gain: float = 1.0
    mode: str = "fan_in"
    options: tuple = ()

    @property
    def data_driven(self):
        """Whether the weights depend on data (then only ``MLP(..., data=x)`` can draw them)."""
        return self.kind in _DATA_DRIVEN

    def _needs_data(self):
        return ValueError(
            f"init {self.spec!r} is data-driven: its weights depend on the inputs; build the network with "
            f"MLP(sizes, init={self.spec!r}, data=x), x of shape (N, sizes[0])"
        )

    def std(self, fan_in, fan_out):
        """Return the theoretical standard deviation of the weights of a (fan_in, fan_out) layer.

        Parameters
        ----------
        fan_in : int
            Inputs of the layer.
        fan_out : int
            Outputs of the layer.

        Returns
        -------
        float
            The std (0 for ``zeros``).

        Raises
        ------
        ValueError
            For a data-driven scheme: its std depends on the data.
        """
        if self.data_driven:
            raise self._needs_data()
        if self.kind == "zeros":
            return 0.0
        if self.kind == "fixed":
            return self.fixed_std
        if self.kind == "orthogonal":
            # Orthonormal columns (or rows) of length 1 spread over max(fan_in, fan_out) entries.
            return self.gain / math.sqrt(max(fan_in, fan_out))
        return self.gain / math.sqrt(_fan(fan_in, fan_out, self.mode))

    @with_doc(
        fill_doc(
            """Draw a C-contiguous weight matrix from `rng`.

        Values are drawn in float64 and cast, so a seed gives the same weights on every
        backend and dtype.

        Parameters
        ----------
        {layer}
        dtype : numpy.dtype, default numpy.float32
            The dtype of the result.

        Returns
        -------
        ndarray, shape (fan_in, fan_out)
            The weights.

        Raises
        ------
        TypeError
            If `rng` is not a ``numpy.random.Generator``.
        ValueError
            If a fan is < 1 or the scheme is data-driven.
        """,
            layer=_LAYER_PARAMETERS,
        )
    )
    def sample(self, fan_in, fan_out, rng, dtype=np.float32):
        if self.data_driven:
            raise self._needs_data()
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator, e.g. numpy.random.default_rng(seed)")
        if int(fan_in) < 1 or int(fan_out) < 1:
            raise ValueError(f"fan_in and fan_out must be >= 1, got {fan_in} and {fan_out}")
        shape = (int(fan_in), int(fan_out))
        if self.kind == "orthogonal":
            w = self.gain * _orthogonal(shape, rng)
        else:
            w = _draw(self.distribution, self.std(fan_in, fan_out), shape, rng)
        return np.ascontiguousarray(w, dtype=dtype)


def _draw(dist, std, shape, rng):
    if std == 0.0:
        return np.zeros(shape)
    if dist == "normal":
        return rng.normal(0.0, std, size=shape)
    if dist == "uniform":
        limit = math.sqrt(3.0) * std
        return rng.uniform(-limit, limit, size=shape)
    # Truncated normal with Keras semantics: sigma corrected so the final std is `std`,
    # samples beyond 2 sigma redrawn.
    sigma = std / TRUNCATED_STD_CORRECTION
    out = rng.normal(0.0, sigma, size=shape)
    bad = np.abs(out) > 2 * sigma
    while bad.any():
        out[bad] = rng.normal(0.0, sigma, size=int(bad.sum()))
        bad = np.abs(out) > 2 * sigma
    return out


def _orthogonal(shape, rng):
    rows, cols = shape
    flat = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # make the decomposition unique (Mezzadri 2007)
    return q if rows >= cols else q.T


def _bad_spec(spec, why):
    return ValueError(f"invalid init {spec!r}: {why}. Valid names: {', '.join(INIT_NAMES)}")


def _number(spec, text, what):
    try:
        value = float(text)
    except ValueError:
        raise _bad_spec(spec, f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise _bad_spec(spec, f"{what} must be finite, got {text!r}")
    return value


def parse_init(spec):
    """Parse an init spec string (see the module docstring) into an `InitScheme`.

    Parameters
    ----------
    spec : str or InitScheme
        E.g. ``"he"``, ``"std=0.01"``, ``"xavier_uniform,gain=tanh"``, ``"lsuv,tol=0.05"``;
        an `InitScheme` is returned as it is.

    Returns
    -------
    InitScheme
        The parsed scheme.

    Raises
    ------
    ValueError
        Listing the valid names, for an unknown or malformed spec.
    """
    if isinstance(spec, InitScheme):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(spec, "expected a non-empty string")
    head, *options = [p.strip() for p in spec.strip().split(",")]
    name, _, value_text = head.partition("=")
    name = name.strip().lower()
    if name in _DATA_DRIVEN:
        return _parse_data_driven(spec, name, value_text, options)
    opts = {}
    for opt in options:
        key, eq, val = opt.partition("=")
        if not eq or key.strip() not in ("gain", "mode"):
            raise _bad_spec(
                spec,
                f"unknown option {opt!r}; "
                "options are gain=<number|activation> and mode=fan_in|fan_out|fan_avg",
            )
        opts[key.strip()] = val.strip()

    if name in _VALUED:
        if not value_text:
            raise _bad_spec(spec, f"{name} needs a value, e.g. {name}=0.01")
        if opts:
            raise _bad_spec(spec, f"{name}=<value> takes no options")
        value = _number(spec, value_text, name)
        if value < 0:
            raise _bad_spec(spec, f"{name} must be >= 0, got {value}")
        if name == "uniform":
            return InitScheme(
                spec=spec, kind="fixed", distribution="uniform", fixed_std=value / math.sqrt(3.0)
            )
        dist = "truncated" if name == "truncated" else "normal"
        return InitScheme(spec=spec, kind="fixed", distribution=dist, fixed_std=value)
    if value_text:
        raise _bad_spec(spec, f"{name} takes no '=<value>'")
    if name == "zeros":
        if opts:
            raise _bad_spec(spec, "zeros takes no options")
        return InitScheme(spec=spec, kind="zeros")

    base, _, dist = name.partition("_")
    base = _ALIASES.get(base, base)
    dist = dist or "normal"
    if name == "orthogonal":
        if "mode" in opts:
            raise _bad_spec(spec, "orthogonal takes no mode")
        return InitScheme(spec=spec, kind="orthogonal", gain=_gain_option(spec, opts, 1.0))
    if base not in _VARIANCE_SCALING or dist not in _DISTRIBUTIONS:
        raise _bad_spec(spec, f"unknown scheme {name!r}")
    default_gain, default_mode = _VARIANCE_SCALING[base]
    mode = opts.get("mode", default_mode)
    if mode not in _MODES:
        raise _bad_spec(spec, f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    return InitScheme(
        spec=spec,
        kind="scaling",
        distribution=dist,
        gain=_gain_option(spec, opts, default_gain),
        mode=mode,
    )


def _parse_data_driven(spec, name, value_text, options):
    if value_text:
        raise _bad_spec(spec, f"{name} takes no '=<value>'")
    table = _DATA_DRIVEN[name]
    values = {}
    for opt in options:
        key, eq, text = (p.strip() for p in opt.partition("="))
        if key in table and not eq:
            raise _bad_spec(spec, f"{key} needs a value, e.g. {key}={table[key][0]}")
        if key not in table:
            valid = ", ".join(f"{k}=<{what.split(' ', 1)[1]}>" for k, (_, what, _) in table.items())
            raise _bad_spec(spec, f"unknown option {opt!r}; {name} takes {valid}")
        if key in values:
            raise _bad_spec(spec, f"option {key} given twice")
        default, what, ok = table[key]
        if isinstance(default, int):
            try:
                value = int(text)
            except ValueError:
                raise _bad_spec(spec, f"{key} must be {what}, got {text!r}") from None
        else:
            value = _number(spec, text, key)
        if not ok(value):
            raise _bad_spec(spec, f"{key} must be {what}, got {text!r}")
        values[key] = value
    return InitScheme(
        spec=spec, kind=name, options=tuple((k, values.get(k, d)) for k, (d, _, _) in table.items())
    )


def _gain_option(spec, opts, default):
    if "gain" not in opts:
        return default
    text = opts["gain"]
    try:
        value = float(text)
    except ValueError:
        try:
            return gain(text)
        except ValueError as exc:
            raise _bad_spec(spec, str(exc)) from None
    if not (math.isfinite(value) and value >= 0):
        raise _bad_spec(spec, f"gain must be a finite number >= 0 (or an activation name), got {text!r}")
    return value


@with_doc(
    fill_doc(
        """Draw a (fan_in, fan_out) weight matrix for the scheme named by `spec`.

    Parameters
    ----------
    spec : str or InitScheme
        The scheme (`parse_init`).
    {layer}
    dtype : numpy.dtype, default numpy.float32
        float32 or float64.

    Returns
    -------
    ndarray, shape (fan_in, fan_out)
        The weights, C-contiguous.

    Raises
    ------
    ValueError
        For a bad spec, a fan < 1, or a data-driven scheme (``lsuv``, ``pretrain``:
        use ``MLP(..., data=x)``).
    TypeError
        If `rng` is not a ``numpy.random.Generator``.
    """,
        layer=_LAYER_PARAMETERS,
    )
)
def init_weights(spec, fan_in, fan_out, rng, dtype=np.float32):
    return parse_init(spec).sample(fan_in, fan_out, rng, dtype)
