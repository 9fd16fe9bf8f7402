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

INIT_NAMES = tuple(
    ["std=<sigma>", "uniform=<a>", "truncated=<sigma>", "zeros", "orthogonal"]
    + [
        f"{base}{suffix}"
        for base in ("xavier", "glorot", "he", "kaiming", "lecun")
        for suffix in ("", "_uniform", "_truncated")
    ]
)


def gain(activation, param=None):
    """Recommended gain for an activation, like ``torch.nn.init.calculate_gain``.

    linear/identity/sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + slope**2)) with ``param`` the slope (default 0.01);
    selu: 3/4. Raises ``ValueError`` for other names.
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
        f"no gain for activation {activation!r}; expected linear, identity, sigmoid, tanh, relu, leaky_relu or selu"
    )


def _fan(fan_in, fan_out, mode):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]


@dataclass(frozen=True)
class InitScheme:
    """A parsed initialisation scheme; ``spec`` is the string it came from.

    ``kind`` is "zeros", "fixed" (std given by the spec), "scaling" (std from
    gain and fan) or "orthogonal"; ``distribution`` is "normal", "uniform" or
    "truncated" (all with the same std).
    """

    spec: str
    kind: str
    distribution: str = "normal"
    fixed_std: float = 0.0
    gain: float = 1.0
    mode: str = "fan_in"

    def std(self, fan_in, fan_out):
        """Theoretical standard deviation of the weights of a (fan_in, fan_out) layer."""
        if self.kind == "zeros":
            return 0.0
        if self.kind == "fixed":
            return self.fixed_std
        if self.kind == "orthogonal":
            # Orthonormal columns (or rows) of length 1 spread over max(fan_in, fan_out) entries.
            return self.gain / math.sqrt(max(fan_in, fan_out))
        return self.gain / math.sqrt(_fan(fan_in, fan_out, self.mode))

    def sample(self, fan_in, fan_out, rng, dtype=np.float32):
        """Draw a (fan_in, fan_out) C-contiguous weight matrix of ``dtype`` from ``rng``.

        Raises ``TypeError`` if ``rng`` is not a ``numpy.random.Generator`` and
        ``ValueError`` if a fan is < 1.
        """
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
    """Parse an init spec string (see the module docstring) into an ``InitScheme``.

    Raises ``ValueError`` listing the valid names for an unknown or malformed spec.
    """
    if isinstance(spec, InitScheme):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(spec, "expected a non-empty string")
    head, *options = [p.strip() for p in spec.strip().split(",")]
    name, _, value_text = head.partition("=")
    name = name.strip().lower()
    opts = {}
    for opt in options:
        key, eq, val = opt.partition("=")
        if not eq or key.strip() not in ("gain", "mode"):
            raise _bad_spec(spec, f"unknown option {opt!r}; options are gain=<number|activation> and mode=fan_in|fan_out|fan_avg")
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
            return InitScheme(spec=spec, kind="fixed", distribution="uniform", fixed_std=value / math.sqrt(3.0))
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


def init_weights(spec, fan_in, fan_out, rng, dtype=np.float32):
    """Draw a (fan_in, fan_out) weight matrix for the scheme named by ``spec``.

    ``rng`` is a ``numpy.random.Generator``; ``dtype`` float32 (default) or float64.
    """
    return parse_init(spec).sample(fan_in, fan_out, rng, dtype)
