"""Mean-field theory of signal propagation in deep random networks, in plain NumPy.

For a network whose weights are drawn with variance ``sw2 / fan_in`` and
biases with variance ``sb2`` (Poole et al. 2016, "Exponential expressivity in
deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep
Information Propagation"), in the infinite-width limit:

- the pre-activation variance follows ``q_{l+1} = sw2 E[phi(sqrt(q_l) z)^2] + sb2``
  (``z ~ N(0, 1)``) towards a fixed point ``q_star``;
- ``chi1 = sw2 E[phi'(sqrt(q_star) z)^2]`` decides the phase: below 1 the
  network is ordered (inputs become correlated, gradients vanish), above 1
  chaotic (correlations decay, gradients explode); at 1 it sits on the edge of
  chaos;
- the correlation of two inputs converges to ``c_star`` (1 when ordered), and
  information survives about ``xi_c = 1 / |ln chi_c|`` layers, where ``chi_c``
  is the slope of the correlation map at ``c_star``; ``xi_c`` diverges at the
  edge of chaos, and networks train when their depth is below about 6 xi_c.

Gaussian expectations use Gauss-Hermite quadrature. For ReLU and linear units,
whose variance grows without bound above the critical point, ``q_star`` is
``inf`` there and the phase is "exploding".

    >>> mean_field("relu", 2.0, 0.0).phase
    'critical'
"""

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ACTIVATIONS", "MeanField", "mean_field", "critical_sw2", "variance_by_layer", "gaussian_moments",
           "slope_moment", "phi", "phi_prime"]

ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid")
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(101)  # E[f(z)], z ~ N(0, 1)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
_NODES2, _WEIGHTS2 = np.polynomial.hermite_e.hermegauss(61)  # for the 2-D correlation integrals
_WEIGHTS2 = _WEIGHTS2 / _WEIGHTS2.sum()
_CRITICAL_TOL = 1e-9


def phi(x, activation):
    """The activation applied to an array (sigmoid written stably)."""
    x = np.asarray(x, dtype=np.float64)
    if activation == "tanh":
        return np.tanh(x)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))
    if activation == "relu":
        return np.maximum(x, 0.0)
    if activation == "linear":
        return x
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def phi_prime(x, activation):
    """The activation's derivative applied to an array (ReLU's is 1 above 0, else 0)."""
    x = np.asarray(x, dtype=np.float64)
    if activation == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if activation == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * x))
        return s * (1.0 - s)
    if activation == "relu":
        return (x > 0).astype(np.float64)
    if activation == "linear":
        return np.ones_like(x)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


@dataclass(frozen=True)
class MeanField:
    """The mean-field quantities of one (activation, sw2, sb2); see the module docstring.

    ``phase`` is "ordered" (chi1 < 1), "critical" (chi1 = 1), "chaotic"
    (chi1 > 1, bounded activation) or "exploding" (chi1 > 1, unbounded
    activation: the variance grows without limit and q_star is inf)."""

    activation: str
    sw2: float
    sb2: float
    q_star: float
    chi1: float
    c_star: float
    chi_c: float
    xi_c: float
    phase: str


def _check(activation, sw2, sb2):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    for name, value in (("sw2", sw2), ("sb2", sb2)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(sw2), float(sb2)


def gaussian_moments(q, activation):
    """(E[phi(u)], E[phi(u)^2]) for u ~ N(0, q): closed forms for ReLU and linear units,
    Gauss-Hermite quadrature (101 nodes) for tanh and sigmoid."""
    if activation == "relu":
        return math.sqrt(q / (2.0 * math.pi)), q / 2.0
    if activation == "linear":
        return 0.0, q
    h = phi(math.sqrt(q) * _NODES, activation)
    return float(_WEIGHTS @ h), float(_WEIGHTS @ (h * h))


def slope_moment(q, activation):
    """E[phi'(u)^2] for u ~ N(0, q). For tanh and sigmoid phi'^2 is a bump of width about 1
    around 0, which Gauss-Hermite nodes spaced sqrt(q) apart miss once q is large (a std=1
    net has q near 100): it is integrated on a fine grid in u instead (|u| <= 40, where
    phi' is negligible beyond)."""
    if activation == "relu":
        return 0.5
    if activation == "linear":
        return 1.0
    if q <= 0:
        return float(phi_prime(np.zeros(1), activation)[0] ** 2)
    half = min(10.0 * math.sqrt(q), 40.0)
    u = np.linspace(-half, half, 8001)
    density = np.exp(-0.5 * u * u / q) / math.sqrt(2.0 * math.pi * q)
    f = phi_prime(u, activation) ** 2 * density
    return float((u[1] - u[0]) * (f.sum() - 0.5 * (f[0] + f[-1])))  # the trapezoid rule


def _second_moment(q, activation):
    """E[phi(sqrt(q) z)^2]."""
    return gaussian_moments(q, activation)[1]


def _variance_map(q, activation, sw2, sb2):
    return sw2 * _second_moment(q, activation) + sb2


def _q_star(activation, sw2, sb2):
    """The fixed point of the variance map (inf where the variance grows without bound)."""
    if activation in ("relu", "linear"):  # linear maps: q* = sb2 / (1 - slope)
        slope = sw2 / 2.0 if activation == "relu" else sw2
        if slope < 1.0:
            return sb2 / (1.0 - slope)
        return 0.0 if sb2 == 0.0 and slope == 1.0 else math.inf
    q = 1.0
    for _ in range(10_000):  # bounded activation: the map is a contraction towards q*
        new = _variance_map(q, activation, sw2, sb2)
        if abs(new - q) <= 1e-13 * max(1.0, q):
            return new
        q = new
    return q


def _chi1(q, activation, sw2):
    return sw2 * slope_moment(q, activation)


def _pair_expectation(q, c, f):
    """E[f(u1) f(u2)] for (u1, u2) Gaussian with variance q and correlation c."""
    z1, z2 = np.meshgrid(_NODES2, _NODES2, indexing="ij")
    w = np.outer(_WEIGHTS2, _WEIGHTS2)
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(max(0.0, 1.0 - c * c)) * z2)
    return float(np.sum(w * f(u1) * f(u2)))


def _correlation_fixed_point(activation, sw2, sb2, q):
    """c* (and the slope chi_c of the correlation map there) of a chaotic, bounded network."""
    c = 0.5
    for _ in range(2_000):
        new = (sw2 * _pair_expectation(q, c, lambda u: phi(u, activation)) + sb2) / q
        new = min(1.0, max(-1.0, new))
        if abs(new - c) < 1e-12:
            c = new
            break
        c = new
    chi_c = sw2 * _pair_expectation(q, c, lambda u: phi_prime(u, activation))
    return c, chi_c


def mean_field(activation, sw2, sb2):
    """The :class:`MeanField` of ``activation`` with weight variance ``sw2 / fan_in`` and bias
    variance ``sb2``. Raises ``ValueError`` for an unknown activation or a negative or
    non-finite variance, ``TypeError`` for a non-number."""
    sw2, sb2 = _check(activation, sw2, sb2)
    q = _q_star(activation, sw2, sb2)
    chi1 = _chi1(q if math.isfinite(q) else 1.0, activation, sw2)
    if abs(chi1 - 1.0) <= _CRITICAL_TOL:
        phase, c_star, chi_c = "critical", 1.0, 1.0
    elif chi1 < 1.0:
        phase, c_star, chi_c = "ordered", 1.0, chi1
    elif not math.isfinite(q) or activation in ("relu", "linear"):
        phase, c_star, chi_c = "exploding", 1.0, chi1
    else:
        phase = "chaotic"
        c_star, chi_c = _correlation_fixed_point(activation, sw2, sb2, q)
    xi_c = math.inf if phase == "critical" or chi_c == 1.0 else 1.0 / abs(math.log(chi_c)) if chi_c > 0 else 0.0
    return MeanField(activation, sw2, sb2, q, chi1, c_star, chi_c, xi_c, phase)


def critical_sw2(activation, sb2=0.0):
    """The weight variance ``sw2`` at the edge of chaos (chi1 = 1) for bias variance ``sb2``:
    2 for ReLU (He's init), 1 for linear units, about 1.76 for tanh with sb2 = 0.05."""
    _check(activation, 1.0, sb2)
    if activation == "relu":
        return 2.0
    if activation == "linear":
        return 1.0

    def chi(sw2):
        return _chi1(_q_star(activation, sw2, sb2), activation, sw2) - 1.0

    lo, hi = 1e-6, 1.0
    while chi(hi) < 0:  # chi1 grows with sw2: bracket the root, then bisect
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise ValueError(f"{activation} with sb2={sb2} has no edge of chaos below sw2=1e6")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def variance_by_layer(activation, sw2, sb2, q0, depth):
    """The pre-activation variance q^l of layers 1..``depth`` for inputs whose components
    have mean square ``q0``: ``q^1 = sw2 q0 + sb2``, then the variance map. Returns a
    float64 array of shape (depth,) (inf where it overflows)."""
    sw2, sb2 = _check(activation, sw2, sb2)
    if not (math.isfinite(q0) and q0 >= 0):
        raise ValueError(f"q0 must be finite and >= 0, got {q0}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    out = np.empty(int(depth))
    q = sw2 * float(q0) + sb2
    with np.errstate(over="ignore"):
        for layer in range(int(depth)):
            out[layer] = q
            q = _variance_map(q, activation, sw2, sb2) if math.isfinite(q) else math.inf
    return out
