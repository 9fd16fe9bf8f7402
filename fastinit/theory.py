"""Mean-field theory of signal propagation in deep random networks, in plain NumPy.

For a network whose weights are drawn with variance ``sw2 / fan_in`` and
biases with variance ``sb2`` (Poole et al. 2016, "Exponential expressivity in
deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep
Information Propagation"), in the infinite-width limit:

- the pre-activation variance follows ``q_{l+1} = sw2 E[phi(sqrt(q_l) z)^2] + sb2``
  (``z ~ N(0, 1)``) towards a fixed point ``q_star``, over about
  ``xi_q = 1 / |ln chi_q|`` layers, ``chi_q`` being the slope of that map at ``q_star``;
- ``chi1 = sw2 E[phi'(sqrt(q_star) z)^2]`` decides the phase: below 1 the
  network is ordered (inputs become correlated, gradients vanish), above 1
  chaotic (correlations decay, gradients explode); at 1 it sits on the edge of
  chaos;
- the correlation of two inputs converges to ``c_star`` (1 when ordered), and
  information survives about ``xi_c = 1 / |ln chi_c|`` layers, where ``chi_c``
  is the slope of the correlation map at ``c_star``; ``xi_c`` diverges at the
  edge of chaos, and networks train when their depth is below about 6 xi_c.

Gaussian expectations of the bounded activations (tanh, sigmoid, erf) are
composite Gauss-Legendre sums in the pre-activation ``u = sqrt(q) z`` itself:
panels no wider than the activation's own scale where it is not yet saturated
and no wider than half a standard deviation of the Gaussian, the saturated
tails (beyond ``|u| = T``, where the activation is constant to double
precision) added in closed form with ``erfc``. They agree with closed forms
(erf, ReLU) and adaptive quadrature to 1e-9 relative or better from ``q = 0``
to ``q = 1e4`` and beyond, where a fixed Gauss-Hermite rule loses the
activation's transition between its nodes (``chi_q``, a difference of nearly
equal terms, to about 1e-6 at ``q = 1e4``). Two-input expectations
are iterated: the outer sum over ``u1``, the inner one over ``u2`` given
``u1``. ``q_star`` and ``c_star`` are roots found by Brent's method and a
bracketed Newton iteration, not by iterating the maps, so that they converge
near the edge of chaos too. ReLU and linear units use closed forms (the
arc-cosine kernel); their variance grows without bound above the critical
point, so ``q_star`` is ``inf`` there and the phase is "exploding".

    >>> mean_field("relu", 2.0, 0.0).phase
    'critical'
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fastinit.kernels.checks import fill_doc, with_doc

__all__ = [
    "ACTIVATIONS",
    "WEIGHTS",
    "MeanField",
    "mean_field",
    "critical_sw2",
    "check_parameters",
    "edge_of_chaos",
    "variance_by_layer",
    "gaussian_moments",
    "slope_moment",
    "slope_moments",
    "correlation_moments",
    "jacobian_spectrum",
    "phi",
    "phi_prime",
]

ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid", "erf")
#: Weight distributions of :func:`jacobian_spectrum`, with the first coefficient s1 of the
#: S-transform of W W^T / sw2 (Marchenko-Pastur for Gaussian weights, a point mass for orthogonal).
WEIGHTS = {"gaussian": -1.0, "orthogonal": 0.0}
_CRITICAL_TOL = 1e-9

# Composite Gauss-Legendre rule: _GL_N nodes per panel (exact for polynomials of degree 15).
_GL_N = 8
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_N)
_T01 = (_GL_X + 1.0) / 2.0  # the nodes on [0, 1]
_W01 = _GL_W / 2.0
_Z = 8.0  # Gaussians are cut at 8 standard deviations: P(|z| > 8) = 1.2e-15
_DZ = 1.0  # panels at most one standard deviation wide
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class _Shape:
    """How to integrate an activation: beyond ``|u| > sat`` it equals ``low`` / ``high`` to
    double precision (its derivatives are below 1e-16); ``panel`` is the widest panel that
    resolves it (its nearest complex singularity is at least pi/2 panel-half-widths away)."""

    sat: float
    panel: float
    low: float
    high: float


_BOUNDED = {
    "tanh": _Shape(20.0, 1.25, -1.0, 1.0),  # poles at i pi/2: 1 - tanh(20) < 1e-17
    "sigmoid": _Shape(40.0, 2.5, 0.0, 1.0),  # sigmoid(-40) = 4e-18
    "erf": _Shape(6.5, 0.6, -1.0, 1.0),
}  # erfc(6.5) = 4e-20
_HOMOGENEOUS = ("relu", "linear")  # phi(a u) = a phi(u) for a > 0: closed forms
_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _unknown(activation):
    return ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


# The docstring of phi and phi_prime, after their summary line.
_PHI_DOC = """
    Parameters
    ----------
    x : array_like
        Pre-activations.
    activation : str
        One of :data:`ACTIVATIONS` (sigmoid is written stably through tanh).

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``x``.

    Raises
    ------
    ValueError
        For an unknown activation.
"""


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _phi_all(x, activation):
    """(phi, phi', phi'') of ``activation`` at the float64 array ``x``, sharing the work."""
    if activation == "relu":
        return np.maximum(x, 0.0), (x > 0).astype(np.float64), np.zeros_like(x)
    if activation == "linear":
        return x, np.ones_like(x), np.zeros_like(x)
    if activation == "tanh":
        t = np.tanh(x)
        d = 1.0 - t * t
        return t, d, -2.0 * t * d
    if activation == "sigmoid":
        s = _sigmoid(x)
        d = s * (1.0 - s)
        return s, d, d * (1.0 - 2.0 * s)
    if activation == "erf":
        d = (2.0 / math.sqrt(math.pi)) * np.exp(-x * x)
        return np.asarray(_erf(x), dtype=np.float64), d, -2.0 * x * d
    raise _unknown(activation)


def _phi_doc(summary):
    """The docstring of phi and phi_prime: ``summary``, then ``_PHI_DOC``."""
    return with_doc(fill_doc(f"{summary}\n\n{{rest}}", rest=_PHI_DOC))


@_phi_doc("The activation applied to an array.")
def phi(x, activation):
    return _phi_all(np.asarray(x, dtype=np.float64), activation)[0]


@_phi_doc("The activation's derivative applied to an array (ReLU's is 1 above 0, else 0).")
def phi_prime(x, activation):
    return _phi_all(np.asarray(x, dtype=np.float64), activation)[1]


@dataclass(frozen=True)
class MeanField:
    """The mean-field quantities of one (activation, sw2, sb2); see the module docstring.

    Built by `mean_field`; frozen.

    Parameters
    ----------
    activation : str
        One of ``ACTIVATIONS``.
    sw2 : float
        Weight variance times fan_in.
    sb2 : float
        Bias variance.
    q_star : float
        The fixed point of the pre-activation variance (inf when exploding).
    chi1 : float
        ``sw2 E[phi'(sqrt(q_star) z)^2]``, the slope of the correlation map at ``c = 1``.
    c_star : float
        The fixed point of the correlation of two inputs.
    chi_c : float
        The slope of the correlation map at `c_star`.
    xi_c : float
        The depth scale of the correlation, ``1 / |ln chi_c|``.
    phase : {'ordered', 'critical', 'chaotic', 'exploding'}
        "ordered" (chi1 < 1), "critical" (chi1 = 1), "chaotic" (chi1 > 1, bounded
        activation) or "exploding" (chi1 > 1, unbounded activation: the variance grows
        without limit and q_star is inf).
    chi_q : float, default nan
        The slope of the variance map at `q_star` (equal to `chi1` for ReLU and linear units).
    xi_q : float, default nan
        The depth scale of the variance, ``1 / |ln chi_q|``.

    Notes
    -----
    ``xi_c`` is always the depth scale of the *correlation* of two inputs. For
    ReLU and linear units whose ``q_star`` is 0 (``sb2 = 0``, at or below the
    edge) or inf (exploding), the correlation map does not depend on the scale
    of the inputs and has slope exactly 1 at ``c = 1``: correlations approach 1
    only polynomially, so ``chi_c = 1`` and ``xi_c = inf``. What then shrinks or
    grows geometrically is the variance (and the gradient), over ``xi_q``
    layers.
    """

    activation: str
    sw2: float
    sb2: float
    q_star: float
    chi1: float
    c_star: float
    chi_c: float
    xi_c: float
    phase: str
    chi_q: float = math.nan
    xi_q: float = math.nan


def check_parameters(activation, sw2, sb2):
    """Check a network's activation and variances as the mean-field functions take them.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sw2, sb2 : float
        Weight variance (times 1/fan_in) and bias variance.

    Returns
    -------
    tuple of float
        ``(sw2, sb2)`` as floats.

    Raises
    ------
    ValueError
        For an unknown activation, or a variance that is negative or not finite.
    TypeError
        For a variance that is not a real number.
    """
    if activation not in ACTIVATIONS:
        raise _unknown(activation)
    for name, value in (("sw2", sw2), ("sb2", sb2)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(sw2), float(sb2)


# --------------------------------------------------------------------------- quadrature


def _grid(lo, hi, step):
    """Breakpoints from ``lo`` to ``hi`` (``hi > lo``), equally spaced, at most ``step`` apart."""
    return np.linspace(lo, hi, max(1, math.ceil((hi - lo) / step - 1e-9)) + 1)


def _symmetric(*pieces):
    """Breakpoints mirrored about 0 from increasing positive ``pieces`` (0 always a breakpoint)."""
    pos = np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])
    return np.concatenate([-pos[:0:-1], pos])


def _composite(breaks):
    """Nodes and weights of the composite Gauss-Legendre rule on the panels ``breaks``."""
    width = np.diff(breaks)[:, None]
    return (breaks[:-1, None] + width * _T01).ravel(), (width * _W01).ravel()


def _shape(activation):
    """The integration shape; ReLU (kink at 0, unbounded) gets an infinite saturation point."""
    if activation in _BOUNDED:
        return _BOUNDED[activation]
    return _Shape(math.inf, math.inf, math.nan, math.nan)


def _line_rule(s, shape):
    """Nodes ``u``, weights (Gaussian density of std ``s > 0`` included) and the tail mass
    ``P(u > sat)`` (the same below ``-sat``) for E[f(u)], u ~ N(0, s^2)."""
    half = min(shape.sat, _Z * s)
    u, w = _composite(_symmetric(_grid(0.0, half, min(shape.panel, _DZ * s))))
    w *= np.exp(-0.5 * (u / s) ** 2) / (_SQRT2PI * s)
    tail = 0.5 * math.erfc(shape.sat / (_SQRT2 * s)) if _Z * s > shape.sat else 0.0
    return u, w, tail


@lru_cache(maxsize=4096)
def _moments(q, activation):
    """(E[phi], E[phi^2], E[phi'^2], E[phi'^2 + phi phi''], E[phi'^4]) for u ~ N(0, q), bounded
    activations. The fourth is d E[phi^2] / dq (Gaussian integration by parts), the slope of the
    variance map over sw2."""
    shape = _BOUNDED[activation]
    if q == 0.0:
        f, d, dd = (float(v[0]) for v in _phi_all(np.zeros(1), activation))
        return f, f * f, d * d, d * d + f * dd, d**4
    u, w, tail = _line_rule(math.sqrt(q), shape)
    f, d, dd = _phi_all(u, activation)
    lo, hi = shape.low, shape.high
    d2 = d * d
    return (
        float(w @ f) + tail * (lo + hi),
        float(w @ (f * f)) + tail * (lo * lo + hi * hi),
        float(w @ d2),
        float(w @ (d2 + f * dd)),
        float(w @ (d2 * d2)),
    )


def _any_moments(q, activation):
    """:func:`_moments` for every activation, after checking ``q``: ReLU's and linear units'
    in closed form (``inf`` for ``q = inf`` where they grow with ``q``)."""
    q = _check_q(q)
    if activation == "relu":
        return math.sqrt(q / (2.0 * math.pi)), q / 2.0, 0.5, 0.5, 0.5
    if activation == "linear":
        return 0.0, q, 1.0, 1.0, 1.0
    if activation not in _BOUNDED:
        raise _unknown(activation)
    return _moments(q, activation)


def _check_q(q):
    q = float(q)
    if not q >= 0:  # also NaN
        raise ValueError(f"q must be >= 0, got {q}")
    return q


# The Parameters of slope_moment and slope_moments, and the Raises of gaussian_moments too.
_Q_PARAMETERS = """
    Parameters
    ----------
    q : float
        The variance, >= 0.
    activation : str
        One of :data:`ACTIVATIONS`.
"""
_Q_RAISES = """
    Raises
    ------
    ValueError
        For an unknown activation or a negative or NaN ``q``.
"""


@with_doc(
    fill_doc(
        """The mean and mean square of ``phi(u)`` for ``u ~ N(0, q)``.

    Closed forms for ReLU and linear units; for tanh, sigmoid and erf a composite
    Gauss-Legendre sum in ``u`` (see the module docstring), accurate to 1e-9 relative
    or better for any ``q`` from 0 to 1e4 and beyond.

    Parameters
    ----------
    q : float
        The variance, >= 0 (``inf`` gives ``inf`` moments for ReLU and linear units).
    activation : str
        One of :data:`ACTIVATIONS`.

    Returns
    -------
    tuple of float
        ``(E[phi(u)], E[phi(u)^2])``.

    {raises}
    """,
        raises=_Q_RAISES,
    )
)
def gaussian_moments(q, activation):
    mean, second = _any_moments(q, activation)[:2]
    return mean, second


@with_doc(
    fill_doc(
        """``E[phi'(u)^2]`` for ``u ~ N(0, q)``.

    The per-layer gain of the mean-square gradient over ``sw2``.

    For tanh, sigmoid and erf ``phi'^2`` is a bump of width about 1 around 0; the sum
    places panels of that width there whatever ``q`` is (see the module docstring).

    {parameters}

    Returns
    -------
    float
        ``E[phi'(u)^2]`` (1/2 for ReLU, 1 for linear units).

    {raises}
    """,
        parameters=_Q_PARAMETERS,
        raises=_Q_RAISES,
    )
)
def slope_moment(q, activation):
    return _any_moments(q, activation)[2]


@with_doc(
    fill_doc(
        """The first two moments of the squared slope, ``E[phi'(u)^2]`` and ``E[phi'(u)^4]``.

    For ``u ~ N(0, q)``: ``mu1`` and ``mu2`` of the Jacobian's spectrum (Pennington et al. 2017).

    {parameters}

    Returns
    -------
    tuple of float
        ``(mu1, mu2)`` (both 1/2 for ReLU, both 1 for linear units).

    {raises}
    """,
        parameters=_Q_PARAMETERS,
        raises=_Q_RAISES,
    )
)
def slope_moments(q, activation):
    moments = _any_moments(q, activation)
    return moments[2], moments[4]


def _pair_quadrature(q, c, activation):
    """(E[phi(u1) phi(u2)], E[(phi(u1) - phi(u2))^2], E[phi'(u1) phi'(u2)]) for (u1, u2)
    Gaussian with variance ``q > 0`` each and correlation ``|c| < 1``, by iterated composite
    Gauss-Legendre sums. Works for ReLU too (its kink at 0 is a breakpoint of both sums);
    used for it only by the tests, against the arc-cosine kernel."""
    shape = _shape(activation)
    sat, panel, lo, hi = shape.sat, shape.panel, shape.low, shape.high
    kink = activation == "relu"
    s = math.sqrt(q)
    sp = s * math.sqrt((1.0 - c) * (1.0 + c))  # std of u2 given u1
    # outer sum over u1: resolve phi where it is not saturated, then the inner expectation,
    # which depends on u1 through m = c u1 and saturates where |m| > sat + _Z sp
    top = _Z * s
    if kink:  # the inner expectation turns over the kink's smoothing scale sp / |c| around u1 = 0
        near = min(top, _Z * sp / abs(c)) if c != 0 else top
        pieces = [_grid(0.0, near, _DZ * min(s, sp / abs(c) if c != 0 else s))]
        if top > near:
            pieces.append(_grid(near, top, _DZ * s))
    else:
        pieces = [_grid(0.0, min(sat, top), min(panel, _DZ * s))]
    if top > sat:
        ac = abs(c)
        mid = min(top, (sat + _Z * sp) / ac) if ac > 0 else sat
        if mid > sat:
            pieces.append(_grid(sat, mid, min(_DZ * s, max(panel, _DZ * sp) / ac)))
        if top > mid:
            pieces.append(_grid(mid, top, _DZ * s))
    u1, w1 = _composite(_symmetric(*pieces))
    w1 *= np.exp(-0.5 * (u1 / s) ** 2) / (_SQRT2PI * s)
    # inner sums over u2 ~ N(m, sp^2) on [a, b] = [m - _Z sp, m + _Z sp] cut to [-sat, sat],
    # the same number of equal panels for every u1 (no wider than needed for the widest)
    m = c * u1
    a = np.maximum(-sat, m - _Z * sp)
    b = np.minimum(sat, m + _Z * sp)
    step = min(panel, _DZ * sp)
    panels = max(1, math.ceil(min(2.0 * sat, 2.0 * _Z * sp) / step - 1e-9))
    t = ((np.arange(panels)[:, None] + _T01) / panels).ravel()
    wt = np.tile(_W01, panels) / panels
    if kink:  # two runs of panels, [a, k] and [k, b], k = 0 clipped into [a, b]
        k = np.clip(0.0, a, b)
        starts, lengths = np.concatenate([a, k]), np.concatenate([k - a, b - k])
        rows = np.concatenate([np.arange(len(u1))] * 2)
    else:
        starts, lengths, rows = a, np.maximum(b - a, 0.0), np.arange(len(u1))
    u2 = starts[:, None] + lengths[:, None] * t
    z = (u2 - m[rows, None]) / sp
    w2 = (lengths[:, None] * wt) * np.exp(-0.5 * z * z) / (_SQRT2PI * sp)
    if kink:
        f1, d1 = phi(u1, activation), phi_prime(u1, activation)
        f2, d2 = phi(u2, activation), phi_prime(u2, activation)
        f1r = f1[rows]
        inner_f = np.bincount(rows, (w2 * f2).sum(axis=1))
        inner_dd = np.bincount(rows, (w2 * (f1r[:, None] - f2) ** 2).sum(axis=1))
        inner_d = np.bincount(rows, (w2 * d2).sum(axis=1))
    else:
        f1, d1, _ = _phi_all(u1, activation)
        f2, d2, _ = _phi_all(u2, activation)
        above = np.asarray(_erfc((sat - m) / (_SQRT2 * sp)), dtype=np.float64) * 0.5  # P(u2 > sat | u1)
        below = np.asarray(_erfc((sat + m) / (_SQRT2 * sp)), dtype=np.float64) * 0.5
        inner_f = (w2 * f2).sum(axis=1) + lo * below + hi * above
        inner_dd = (
            (w2 * (f1[:, None] - f2) ** 2).sum(axis=1) + (f1 - lo) ** 2 * below + (f1 - hi) ** 2 * above
        )
        inner_d = (w2 * d2).sum(axis=1)
    return float(w1 @ (f1 * inner_f)), float(w1 @ inner_dd), float(w1 @ (d1 * inner_d))


def correlation_moments(q, c, activation):
    """Two-input Gaussian expectations behind the correlation map.

    For ``(u1, u2)`` jointly Gaussian with mean 0, variance ``q`` each and correlation
    ``c``: closed forms for ReLU (the arc-cosine kernel) and linear units, iterated
    composite Gauss-Legendre sums for tanh, sigmoid and erf (see the module docstring).
    The difference moment is summed as such, not as ``2 E[phi^2] - 2 E[phi phi]``, so it
    keeps its relative accuracy as ``c`` approaches 1.

    Parameters
    ----------
    q : float
        The variance of each input, finite and >= 0.
    c : float
        The correlation, in [-1, 1].
    activation : str
        One of :data:`ACTIVATIONS`.

    Returns
    -------
    tuple of float
        ``(E[phi(u1) phi(u2)], E[(phi(u1) - phi(u2))^2], E[phi'(u1) phi'(u2)])``.

    Raises
    ------
    ValueError
        For an unknown activation, a negative or non-finite ``q`` or ``c`` outside [-1, 1].
    """
    q, c = _check_q(q), float(c)
    if not math.isfinite(q):
        raise ValueError(f"q must be finite, got {q}")
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must be in [-1, 1], got {c}")
    if activation == "relu":  # the arc-cosine kernel (Cho and Saul 2009), c = cos(theta)
        theta = math.acos(c)
        sine = math.sqrt((1.0 - c) * (1.0 + c))
        both = q / (2.0 * math.pi) * (sine + (math.pi - theta) * c)
        # q - 2 both = q (1 - c - (sin theta - theta cos theta) / pi), summed without cancellation
        t2 = theta * theta
        bend = theta * t2 * (1 / 3 - t2 * (1 / 30 - t2 / 840)) if theta < 1e-2 else sine - theta * c
        diff = q * (2.0 * math.sin(0.5 * theta) ** 2 - bend / math.pi)
        return both, diff, (math.pi - theta) / (2.0 * math.pi)
    if activation == "linear":
        return q * c, 2.0 * q * (1.0 - c), 1.0
    if activation not in _BOUNDED:
        raise _unknown(activation)
    if q == 0.0 or abs(c) == 1.0:  # u2 = c u1: one-dimensional
        if c == 1.0:
            _, second, slope = _moments(q, activation)[:3]
            return second, 0.0, slope
        if q == 0.0:
            f, d, _ = (float(v[0]) for v in _phi_all(np.zeros(1), activation))
            return f * f, 0.0, d * d
        shape = _BOUNDED[activation]
        u, w, tail = _line_rule(math.sqrt(q), shape)
        f, d, _ = _phi_all(u, activation)
        g, e, _ = _phi_all(-u, activation)
        return (
            float(w @ (f * g)) + 2 * tail * shape.low * shape.high,
            float(w @ (f - g) ** 2) + 2 * tail * (shape.high - shape.low) ** 2,
            float(w @ (d * e)),
        )
    return _pair_quadrature(q, c, activation)


# --------------------------------------------------------------------------- root finding


def _brent(f, a, b, fa, fb, xtol=0.0, maxiter=200):
    """A root of ``f`` in [a, b] where ``fa = f(a)`` and ``fb = f(b)`` differ in sign (Brent 1973)."""
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    if (fa > 0) == (fb > 0):
        raise ValueError("the root is not bracketed")
    c, fc = a, fa
    d = e = b - a
    for _ in range(maxiter):
        if (fb > 0) == (fc > 0):
            c, fc = a, fa
            d = e = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol = 2.0 * np.finfo(float).eps * abs(b) + 0.5 * xtol
        m = 0.5 * (c - b)
        if abs(m) <= tol or fb == 0.0:
            return b
        if abs(e) >= tol and abs(fa) > abs(fb):
            s = fb / fa
            if a == c:  # secant
                p, qq = 2.0 * m * s, 1.0 - s
            else:  # inverse quadratic interpolation
                qq, r = fa / fc, fb / fc
                p = s * (2.0 * m * qq * (qq - r) - (b - a) * (r - 1.0))
                qq = (qq - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0:
                qq = -qq
            else:
                p = -p
            if 2.0 * p < min(3.0 * m * qq - abs(tol * qq), abs(e * qq)):
                e, d = d, p / qq
            else:
                d = e = m
        else:
            d = e = m
        a, fa = b, fb
        b += d if abs(d) > tol else math.copysign(tol, m)
        fb = f(b)
    return b


def _odd(activation):
    return activation in ("tanh", "erf")


def _variance_map(q, activation, sw2, sb2):
    return sw2 * gaussian_moments(q, activation)[1] + sb2


def _q_star(activation, sw2, sb2):
    """The fixed point of the variance map (inf where the variance grows without bound)."""
    if activation in _HOMOGENEOUS:  # linear maps: q* = sb2 / (1 - slope)
        slope = sw2 / 2.0 if activation == "relu" else sw2
        if slope < 1.0:
            return sb2 / (1.0 - slope)
        return 0.0 if sb2 == 0.0 and slope == 1.0 else math.inf
    shape = _BOUNDED[activation]
    if sw2 == 0.0:
        return sb2
    slope0 = _moments(0.0, activation)[2]
    if _odd(activation) and sb2 == 0.0 and sw2 * slope0 <= 1.0:
        return 0.0  # |phi(u)| <= phi'(0) |u|: the variance map lies below q -> 0 is the only fixed point

    def excess(q):
        return sw2 * _moments(q, activation)[1] + sb2 - q

    hi = sw2 * max(shape.low**2, shape.high**2) + sb2  # the map never exceeds this
    f_hi = excess(hi)
    if f_hi >= 0.0:
        return hi
    lo = hi
    while True:  # go down to where the map lies above q (at once unless odd with sb2 = 0)
        lo *= 0.5
        f_lo = excess(lo) if lo > 1e-300 else 0.0
        if f_lo >= 0.0:
            break
        hi, f_hi = lo, f_lo
    return _brent(excess, lo, hi, f_lo, f_hi)


def _chi1(q, activation, sw2):
    return sw2 * slope_moment(q, activation)


def _chi_q(q, activation, sw2):
    """The slope of the variance map at ``q``."""
    if activation == "relu":
        return sw2 / 2.0
    if activation == "linear":
        return sw2
    return sw2 * _moments(q, activation)[3]


def _correlation_fixed_point(activation, sw2, sb2, q):
    """c* and the slope chi_c of the correlation map there, for a chaotic bounded network.

    With d = 1 - c, ``K(d) = sw2 E[(phi(u1) - phi(u2))^2] / (2 q) - d`` is 1 - c - (1 - map(c)):
    concave in d (the map is a power series in c with non-negative coefficients), K(0) = 0,
    K'(0) = chi1 - 1 > 0 and K(1) = -map(0) <= 0, and K'(d) = chi_c(1 - d) - 1 (Price's
    theorem). Bracketed Newton from the right of the root."""

    def k(d):
        _, diff, slopes = correlation_moments(q, 1.0 - d, activation)
        return sw2 * diff / (2.0 * q) - d, sw2 * slopes

    k_hi, chi = k(1.0)
    if k_hi >= 0.0:  # map(0) = 0: c* = 0 (odd activation, sb2 = 0)
        return 0.0, chi
    k0 = _chi1(q, activation, sw2) - 1.0
    lo, hi = 0.0, 1.0
    d = k0 / (k0 - k_hi)  # the root of the quadratic through K(0) = 0, K'(0) and K(1)
    for _ in range(100):
        val, chi = k(d)
        if val > 0.0:
            lo = d
        else:
            hi = d
        slope = chi - 1.0
        new = d - val / slope if slope < 0.0 else 0.5 * (lo + hi)
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        done = abs(new - d) <= 1e-13 * d or hi - lo <= 1e-13 * hi  # c* to 1e-13: the sums' own accuracy
        d = new
        if done:
            break
    return 1.0 - d, chi


def _depth_scale(chi):
    if chi == 1.0 or not math.isfinite(chi):
        return math.inf
    return 1.0 / abs(math.log(chi)) if chi > 0 else 0.0


def mean_field(activation, sw2, sb2):
    """The mean-field quantities of a deep random network.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sw2 : float
        Weight variance times fan_in (weights ~ N(0, sw2 / fan_in)), finite and >= 0.
    sb2 : float
        Bias variance, finite and >= 0.

    Returns
    -------
    MeanField
        ``q_star``, ``chi1``, ``c_star``, ``chi_c``, ``xi_c``, ``phase``, ``chi_q`` and ``xi_q``.

    Raises
    ------
    ValueError
        For an unknown activation or a negative or non-finite variance.
    TypeError
        For a variance that is not a number.
    """
    sw2, sb2 = check_parameters(activation, sw2, sb2)
    q = _q_star(activation, sw2, sb2)
    chi1 = _chi1(q if math.isfinite(q) else 1.0, activation, sw2)
    chi_q = _chi_q(q if math.isfinite(q) else 1.0, activation, sw2)
    scale_free = activation in _HOMOGENEOUS and (q == 0.0 or not math.isfinite(q))
    if abs(chi1 - 1.0) <= _CRITICAL_TOL:
        phase, c_star, chi_c = "critical", 1.0, 1.0
    elif chi1 < 1.0:
        phase, c_star, chi_c = "ordered", 1.0, 1.0 if scale_free else chi1
    elif not math.isfinite(q) or activation in _HOMOGENEOUS:
        phase, c_star, chi_c = "exploding", 1.0, 1.0
    else:
        phase = "chaotic"
        c_star, chi_c = _correlation_fixed_point(activation, sw2, sb2, q)
    xi_c = math.inf if phase == "critical" else _depth_scale(chi_c)
    return MeanField(activation, sw2, sb2, q, chi1, c_star, chi_c, xi_c, phase, chi_q, _depth_scale(chi_q))


def critical_sw2(activation, sb2=0.0):
    """The weight variance ``sw2`` at the edge of chaos (chi1 = 1) for bias variance ``sb2``.

    2 for ReLU (He's init), 1 for linear units, exactly 1 for tanh (and pi/4 for erf) with
    ``sb2 = 0``, about 1.76 for tanh with ``sb2 = 0.05``. For bounded activations the edge
    is found as the variance ``q`` where ``q - E[phi^2] / E[phi'^2] = sb2`` (there
    ``sw2 = 1 / E[phi'^2]`` makes ``q`` the fixed point with chi1 = 1), by Brent's method.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sb2 : float, optional
        Bias variance, finite and >= 0.

    Returns
    -------
    float
        The critical ``sw2``.

    Raises
    ------
    ValueError
        For an unknown activation or a bad ``sb2``, or when no edge lies below sw2 = 1e6.
    """
    _, sb2 = check_parameters(activation, 1.0, sb2)
    if activation == "relu":
        return 2.0
    if activation == "linear":
        return 1.0
    if _odd(activation) and sb2 == 0.0:
        return 1.0 / _moments(0.0, activation)[2]  # q* = 0 at the edge: chi1 = sw2 phi'(0)^2

    def gap(q):
        _, second, slope = _moments(q, activation)[:3]
        return q - second / slope - sb2

    lo, f_lo = 0.0, gap(0.0)
    hi, f_hi = 1.0, gap(1.0)
    while f_hi < 0:  # the gap grows like q: bracket the root, then Brent
        lo, f_lo, hi = hi, f_hi, 2 * hi
        f_hi = gap(hi)
        if hi > 1e12:
            raise ValueError(f"{activation} with sb2={sb2} has no edge of chaos")
    q = _brent(gap, lo, hi, f_lo, f_hi)
    sw2 = 1.0 / _moments(q, activation)[2]
    if sw2 > 1e6:
        raise ValueError(f"{activation} with sb2={sb2} has no edge of chaos below sw2=1e6")
    return sw2


def edge_of_chaos(activation, q_star):
    """The point ``(sw2, sb2)`` on the edge of chaos (chi1 = 1) whose variance fixed point is `q_star`.

    The parametrisation of Pennington et al. (2017).

    For bounded activations ``sw2 = 1 / E[phi'^2]`` and ``sb2 = q_star - sw2 E[phi^2]`` at
    ``q_star``; ReLU's edge is (2, 0) and a linear unit's (1, 0) whatever ``q_star`` (their
    variance is then preserved at any scale).

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    q_star : float
        The pre-activation variance at the fixed point, finite and > 0.

    Returns
    -------
    tuple of float
        ``(sw2, sb2)``.

    Raises
    ------
    ValueError
        For an unknown activation, a bad ``q_star``, or one that would need ``sb2 < 0``
        (sigmoid, whose mean is 1/2, has no edge with a small ``q_star``).
    """
    if activation not in ACTIVATIONS:
        raise _unknown(activation)
    if (
        isinstance(q_star, bool)
        or not isinstance(q_star, (int, float, np.integer, np.floating))
        or not 0 < q_star < math.inf
    ):
        raise ValueError(f"q_star must be a finite number > 0, got {q_star!r}")
    if activation == "relu":
        return 2.0, 0.0
    if activation == "linear":
        return 1.0, 0.0
    _, second, slope = _moments(float(q_star), activation)[:3]
    sw2 = 1.0 / slope
    sb2 = float(q_star) - sw2 * second
    if sb2 < 0:
        raise ValueError(
            f"{activation} has no edge of chaos with q* = {q_star:g}: it would need sb2 = {sb2:.3g} < 0"
        )
    return sw2, max(sb2, 0.0)


def jacobian_spectrum(activation, sw2, sb2, depth, weights="gaussian"):
    """Mean and variance of the squared singular values of a deep network's input-output Jacobian.

    ``J = D_L W_L ... D_1 W_1`` with ``D_l = diag(phi'(h_l))`` at an input whose pre-activations
    sit at the variance fixed point ``q_star``. In the infinite-width limit the S-transform of
    ``J J^T`` is the product of its factors' (Pennington, Schoenholz and Ganguli 2017,
    "Resurrecting the sigmoid in deep learning through dynamical isometry"), whose first two
    coefficients give, with ``mu_k = E[phi'(h)^(2k)]`` and ``chi1 = sw2 mu1``::

        mean     = chi1^L
        variance = L (mu2 / mu1^2 - 1 - s1) chi1^(2L)

    ``s1 = -1`` for Gaussian weights, 0 for orthogonal ones (:data:`WEIGHTS`). At the edge of
    chaos the mean is 1 and the variance grows linearly with depth; it stays small only for
    orthogonal weights and ``mu2 ~ mu1^2``, i.e. a small ``q_star`` for tanh, never for ReLU
    (``mu2 / mu1^2 = 2``). Where ``q_star`` is 0 or inf (ReLU or linear units with ``sb2 = 0``,
    or exploding), their ``mu_k`` do not depend on it.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sw2, sb2 : float
        Weight variance times fan_in, and bias variance; finite and >= 0.
    depth : int
        Number of layers ``L``, >= 1.
    weights : str, optional
        "gaussian" or "orthogonal" (scaled by ``sqrt(sw2)``).

    Returns
    -------
    tuple of float
        ``(mean, variance)`` of the squared singular values (the eigenvalues of ``J J^T``).

    Raises
    ------
    ValueError
        For a bad activation, variance, depth or weight distribution.
    TypeError
        For a variance that is not a number.
    """
    m = mean_field(activation, sw2, sb2)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    q = m.q_star if math.isfinite(m.q_star) else 1.0
    mu1, mu2 = slope_moments(q, activation)
    chi = m.sw2 * mu1
    return chi**depth, depth * (mu2 / mu1**2 - 1.0 - WEIGHTS[weights]) * chi ** (2 * depth)


def variance_by_layer(activation, sw2, sb2, q0, depth):
    """The pre-activation variance of each layer of a deep random network.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sw2, sb2 : float
        Weight variance times fan_in, and bias variance; finite and >= 0.
    q0 : float
        The mean square of the input's components, finite and >= 0.
    depth : int
        Number of layers, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 of shape (depth,): ``q^1 = sw2 q0 + sb2``, then the variance map (inf where it
        overflows).

    Raises
    ------
    ValueError
        For a bad activation, variance, ``q0`` or ``depth``.
    TypeError
        For a variance that is not a number.
    """
    sw2, sb2 = check_parameters(activation, sw2, sb2)
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
