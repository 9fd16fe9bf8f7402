"""fastinit.theory against closed forms and against wide random networks (Monte Carlo)."""

import math

import numpy as np
import pytest

from fastinit.theory import critical_sw2, mean_field, phi, phi_prime, variance_by_layer


@pytest.mark.parametrize("sw2, sb2", [(0.5, 0.1), (1.5, 0.05), (1.9, 0.3), (1.0, 0.0)])
def test_relu_closed_forms(sw2, sb2):
    m = mean_field("relu", sw2, sb2)
    assert m.chi1 == sw2 / 2  # exactly: E[relu'(u)^2] = 1/2 for any variance
    assert m.q_star == pytest.approx(sb2 / (1 - sw2 / 2), rel=1e-12, abs=1e-15)
    assert m.phase == "ordered" and m.xi_q == pytest.approx(-1 / math.log(sw2 / 2))  # variance's depth scale
    if sb2 > 0:
        assert m.chi_c == m.chi1 and m.xi_c == pytest.approx(-1 / math.log(sw2 / 2))
    else:  # q* = 0: the correlation map is scale-free, slope 1 at c = 1, no exponential depth scale
        assert m.chi_c == 1.0 and math.isinf(m.xi_c)
    q = variance_by_layer("relu", sw2, sb2, q0=0.7, depth=6)
    want = [sw2 * 0.7 + sb2]
    for _ in range(5):
        want.append(sw2 * want[-1] / 2 + sb2)
    np.testing.assert_allclose(q, want, rtol=1e-13)


def test_linear_closed_forms_and_phases():
    m = mean_field("linear", 0.8, 0.2)
    assert m.q_star == pytest.approx(0.2 / (1 - 0.8)) and m.chi1 == 0.8 and m.phase == "ordered"
    assert mean_field("linear", 1.0, 0.0).phase == "critical" and math.isinf(
        mean_field("linear", 1.0, 0.0).xi_c
    )
    boom = mean_field("linear", 1.3, 0.0)
    assert boom.phase == "exploding" and math.isinf(boom.q_star)
    np.testing.assert_allclose(variance_by_layer("linear", 1.3, 0.1, 1.0, 3), [1.4, 1.92, 2.596])


def test_edges_of_chaos():
    assert critical_sw2("relu") == 2.0 and critical_sw2("linear") == 1.0  # He's init is ReLU's edge
    assert critical_sw2("tanh", 0.05) == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, Fig. 1
    assert critical_sw2("tanh", 0.0) == 1.0  # tanh'(0) = 1, q* = 0 there
    at_one = mean_field("tanh", 1.0, 0.0)
    assert at_one.phase == "critical" and at_one.q_star == 0.0 and math.isinf(at_one.xi_c)
    assert mean_field("tanh", 0.9, 0.0).q_star == 0.0 and mean_field("tanh", 1.1, 0.0).phase == "chaotic"
    for activation in ("tanh", "sigmoid", "erf"):
        for sb2 in (0.01, 0.05, 0.3):
            at = mean_field(activation, critical_sw2(activation, sb2), sb2)
            assert at.chi1 == pytest.approx(1.0, abs=1e-12) and at.phase == "critical" and math.isinf(at.xi_c)


def test_depth_scale_diverges_at_the_edge_and_phases_flip():
    crit = critical_sw2("tanh", 0.05)
    xs = [mean_field("tanh", crit * f, 0.05) for f in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0)]
    assert [m.phase for m in xs] == ["ordered"] * 3 + ["chaotic"] * 3
    xi = [m.xi_c for m in xs]
    assert xi[0] < xi[1] < xi[2] and xi[3] > xi[4] > xi[5]  # grows towards the edge from both sides
    assert all(m.c_star == 1.0 for m in xs[:3]) and all(0 <= m.c_star < 1 for m in xs[3:])


def test_quadrature_matches_closed_gaussian_integrals():
    # E[tanh'(u)] etc. cannot be checked in closed form, but E[relu(u)^2] = q/2 and
    # E[sigmoid(u)] = 1/2 for a zero-mean Gaussian (odd symmetry) can, through the same code.
    m = mean_field("sigmoid", 4.0, 0.0)
    assert m.q_star == pytest.approx(
        4.0
        * (
            0.25
            + np.var(phi(np.sqrt(m.q_star) * np.random.default_rng(0).standard_normal(400_000), "sigmoid"))
        ),
        rel=2e-3,
    )
    assert phi_prime(np.array([0.0]), "sigmoid")[0] == 0.25


def _wide_net(activation, sw2, sb2, depth, width=2000, samples=2, seed=0):
    """Per-layer mean square pre-activation of a wide random network, and its last layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, width))
    h = x
    qs = []
    for _ in range(depth):
        w = rng.standard_normal((width, width)) * math.sqrt(sw2 / width)
        b = rng.standard_normal(width) * math.sqrt(sb2)
        z = h @ w + b
        qs.append(float(np.mean(z * z)))
        h = phi(z, activation)
    return np.array(qs), z


@pytest.mark.parametrize(
    "activation, sw2, sb2",
    [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.05), ("sigmoid", 6.0, 0.1), ("relu", 2.0, 0.0)],
)
def test_variance_by_layer_matches_a_wide_random_network(activation, sw2, sb2):
    # finite width: each layer's variance fluctuates by about sqrt(2 / width); three nets averaged
    measured = np.mean(
        [_wide_net(activation, sw2, sb2, depth=8, width=1500, samples=8, seed=s)[0] for s in range(3)], axis=0
    )
    want = variance_by_layer(activation, sw2, sb2, q0=1.0, depth=8)
    np.testing.assert_allclose(measured, want, rtol=0.06)


def test_chaotic_correlation_fixed_point_matches_a_wide_random_network():
    m = mean_field("tanh", 3.0, 0.05)
    corr = []
    for seed in range(3):  # two independent inputs; the theory's c is q12 / q, not centred
        _, z = _wide_net("tanh", 3.0, 0.05, depth=45, width=1000, seed=seed)  # 45 layers: 5 xi_c
        corr.append(float(np.mean(z[0] * z[1]) / math.sqrt(np.mean(z[0] ** 2) * np.mean(z[1] ** 2))))
    assert np.mean(corr) == pytest.approx(m.c_star, abs=0.05)


@pytest.mark.parametrize(
    "args, exc",
    [
        (("swish", 1.0, 0.0), ValueError),
        (("tanh", -1.0, 0.0), ValueError),
        (("tanh", float("nan"), 0.0), ValueError),
        (("tanh", "2", 0.0), TypeError),
    ],
)
def test_bad_arguments(args, exc):
    with pytest.raises(exc):
        mean_field(*args)


def test_cli_prints_the_phases_and_writes_hdf5(tmp_path, capsys):
    import h5py

    from fastinit.cli import main

    out = tmp_path / "t.h5"
    assert (
        main(["theory", "--activation", "tanh", "--sb2", "0.05", "--sw2", "1", "2", "--out", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "edge of chaos at sw2 = 1.761" in text and "ordered" in text and "chaotic" in text
    with h5py.File(out, "r") as f:
        g = f["theory/tanh/sb2=0.05"]
        assert g["sw2"][()].tolist() == [1.0, 2.0] and g["xi_c"].attrs["units"] == "layers"
        assert g.attrs["critical_sw2"] == pytest.approx(1.761, abs=1e-3)
    assert main(["theory", "--sb2", "-1"]) == 2


# ------------------------------------------------------------------ exact at any variance
# Oracles: closed forms for erf (E[erf(u1) erf(u2)] = 2/pi arcsin(2 q c / (1 + 2 q)),
# E[erf'(u1) erf'(u2)] = 4/pi / sqrt((1 + 2 q)^2 - 4 q^2 c^2)) and ReLU (the arc-cosine kernel),
# and adaptive quadrature (scipy.integrate.quad) for tanh and sigmoid.

from fastinit.theory import correlation_moments, gaussian_moments, slope_moment  # noqa: E402

scipy_integrate = pytest.importorskip("scipy.integrate")
scipy_optimize = pytest.importorskip("scipy.optimize")

QS = [0.0, 1e-6, 1e-3, 0.1, 1.0, 3.0, 30.0, 300.0, 1e4]


def _erf_diff(q, c):
    """E[(erf(u1) - erf(u2))^2] = 4/pi (arcsin x - arcsin x c), x = 2q / (1 + 2q), without cancellation."""
    x = 2 * q / (1 + 2 * q)
    num = x * (1 - c) * (1 + c) / (math.sqrt(1 - x * x * c * c) + c * math.sqrt(1 - x * x))
    return 4 / math.pi * math.atan2(num, math.sqrt(1 - x * x) * math.sqrt(1 - x * x * c * c) + x * x * c)


def _erf_theory(sw2, sb2):
    """(q*, chi1, c*, chi_c) of erf units from the closed forms, roots by scipy's brentq."""
    brentq = scipy_optimize.brentq
    if sb2 == 0 and sw2 * 4 / math.pi <= 1:
        q = 0.0
    else:
        q = brentq(
            lambda q: sw2 * 2 / math.pi * math.asin(2 * q / (1 + 2 * q)) + sb2 - q,
            1e-12 if sb2 == 0 else 0.0,
            sw2 + sb2 + 1,
            xtol=1e-300,
            rtol=1e-15,
        )
    chi1 = sw2 * 4 / math.pi / math.sqrt(1 + 4 * q)
    if chi1 <= 1:
        return q, chi1, 1.0, chi1

    def k(d):  # 1 - c - (1 - map(c)), d = 1 - c
        return sw2 * _erf_diff(q, 1 - d) / (2 * q) - d

    lo = 0.5
    while k(lo) <= 0:
        lo /= 2
    c = 0.0 if k(1.0) >= 0 else 1 - brentq(k, lo, 1.0, xtol=1e-300, rtol=1e-15)
    return q, chi1, c, sw2 * 4 / math.pi / math.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c)


def _quad(f, lo, hi, points=()):
    inside = [p for p in points if lo < p < hi]
    return scipy_integrate.quad(f, lo, hi, points=inside or None, epsabs=1e-16, epsrel=1e-12, limit=500)[0]


def _gauss_ref(q, f):
    """E[f(u)], u ~ N(0, q), by adaptive quadrature with breakpoints where the activations turn."""
    s = math.sqrt(q)
    return _quad(
        lambda u: f(u) * math.exp(-0.5 * u * u / q) / (s * math.sqrt(2 * math.pi)),
        -9 * s,
        9 * s,
        points=[p for p in (-3, -1, 0, 1, 3)],
    )


def _pair_ref(q, c, f):
    """E[f(u1, u2)] for (u1, u2) with variance q and correlation c, nested adaptive quadrature."""
    s, sp = math.sqrt(q), math.sqrt(q * (1 - c * c))

    def inner(u1):
        m = c * u1
        return _quad(
            lambda u2: f(u1, u2) * _density(u2 - m, sp), m - 9 * sp, m + 9 * sp, points=[-3, -1, 0, 1, 3]
        )

    return _quad(lambda u1: inner(u1) * _density(u1, s), -9 * s, 9 * s, points=[-3, -1, 0, 1, 3])


def _density(x, std):
    return math.exp(-0.5 * (x / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _rel(got, want):
    return abs(got - want) / abs(want) if want else abs(got)


def test_gaussian_moments_of_erf_match_closed_forms_for_any_variance():
    worst = 0.0
    for q in QS:
        _, second = gaussian_moments(q, "erf")
        worst = max(
            worst,
            _rel(second, 2 / math.pi * math.asin(2 * q / (1 + 2 * q))),
            _rel(slope_moment(q, "erf"), 4 / math.pi / math.sqrt(1 + 4 * q)),
        )
    assert worst < 1e-9


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gaussian_moments_match_adaptive_quadrature_for_any_variance(activation):
    # the old 101-node Gauss-Hermite rule gave 4689 for 1e4 E[sigmoid^2] at q = 1e4 (std=10, layer 2): 4960
    f = {"tanh": math.tanh, "sigmoid": lambda u: 0.5 * (1 + math.tanh(0.5 * u))}[activation]
    for q in QS[1:]:
        mean, second = gaussian_moments(q, activation)
        assert _rel(second, _gauss_ref(q, lambda u: f(u) ** 2)) < 1e-9, q
        slope = _gauss_ref(q, lambda u: phi_prime(u, activation) ** 2)
        assert _rel(slope_moment(q, activation), slope) < 1e-9, q
        assert abs(mean - (0.5 if activation == "sigmoid" else 0.0)) < 1e-12
    assert 1e4 * gaussian_moments(1e4, "sigmoid")[1] == pytest.approx(4960.11, abs=0.01)


@pytest.mark.parametrize("q", [1e-3, 1.0, 30.0, 1e4])
def test_correlation_moments_match_erf_and_relu_closed_forms(q):
    from fastinit.theory import _pair_quadrature  # the generic sums that mean_field uses for tanh, sigmoid

    for c in (-0.9, 0.0, 0.3, 0.9, 0.999, 1 - 1e-7):
        both, diff, slopes = correlation_moments(q, c, "erf")
        assert _rel(both, 2 / math.pi * math.asin(2 * q * c / (1 + 2 * q))) < 1e-9 or abs(both) < 1e-15
        assert _rel(diff, _erf_diff(q, c)) < 1e-9
        assert _rel(slopes, 4 / math.pi / math.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c)) < 1e-9
        theta = math.acos(c)  # the arc-cosine kernel, through the same sums with a kink at 0
        got = _pair_quadrature(q, c, "relu")
        assert _rel(got[0], q / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * c)) < 1e-9
        assert _rel(got[2], (math.pi - theta) / (2 * math.pi)) < 1e-9
        assert _rel(got[1], correlation_moments(q, c, "relu")[1]) < 1e-9


ERF_CASES = [(sw2, sb2) for sb2 in (0.0, 0.05, 0.3, 2.0) for sw2 in (0.5, 1.0, 1.5, 2.5, 4.0, 25.0, 100.0)]


@pytest.mark.parametrize("sw2, sb2", ERF_CASES)
def test_mean_field_of_erf_matches_closed_forms(sw2, sb2):
    q, chi1, c, chi_c = _erf_theory(sw2, sb2)
    m = mean_field("erf", sw2, sb2)
    assert _rel(m.q_star, q) < 1e-6 and _rel(m.chi1, chi1) < 1e-6
    assert m.c_star == pytest.approx(c, abs=1e-9)
    if abs(chi1 - 1) > 1e-3:  # away from the edge
        assert _rel(m.xi_c, 1 / abs(math.log(chi_c))) < 1e-4
        assert m.phase == ("chaotic" if chi1 > 1 else "ordered")
    assert _rel(m.chi_q, sw2 * 4 / math.pi / ((1 + 2 * q) * math.sqrt(1 + 4 * q))) < 1e-6


def test_critical_sw2_of_erf_matches_its_closed_form():
    assert critical_sw2("erf", 0.0) == pytest.approx(math.pi / 4, rel=1e-15)
    for sb2 in (0.05, 0.3):
        crit = critical_sw2("erf", sb2)
        assert _erf_theory(crit, sb2)[1] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sw2, sb2", [(1.765, 0.05), (3.0, 0.05), (25.0, 0.05), (100.0, 0.3)])
def test_tanh_fixed_points_against_adaptive_quadrature(sw2, sb2):
    """q*, chi1 and chi_c of tanh at large variance, against nested adaptive quadrature (the review found
    xi_c 9.67 at sw2 = 25 and 1.06 at sw2 = 100 from the old 61-node rule; 3.29 and 2.65 are right, and
    1165 at sw2 = 1.765, where 2000 plain iterations of the map had stopped at 810)."""
    m = mean_field("tanh", sw2, sb2)
    q, c = m.q_star, m.c_star
    assert _rel(sw2 * _gauss_ref(q, lambda u: math.tanh(u) ** 2) + sb2, q) < 1e-9  # q* is the fixed point
    assert _rel(m.chi1, sw2 * _gauss_ref(q, lambda u: (1 - math.tanh(u) ** 2) ** 2)) < 1e-9
    one_minus_map = sw2 * _pair_ref(q, c, lambda a, b: (math.tanh(a) - math.tanh(b)) ** 2) / (2 * q)
    chi_c = sw2 * _pair_ref(q, c, lambda a, b: (1 - math.tanh(a) ** 2) * (1 - math.tanh(b) ** 2))
    # c* is the fixed point: the map's residue, divided by its slope (1 - chi_c), is the error in c*
    assert abs(1 - c - one_minus_map) / (1 - chi_c) < 1e-7
    assert _rel(m.xi_c, 1 / abs(math.log(chi_c))) < 1e-4
    known = {1.765: 1165.2, 25.0: 3.2906, 100.0: 2.6509}
    if sw2 in known:
        assert m.xi_c == pytest.approx(known[sw2], rel=1e-4)


def test_edge_of_chaos_and_the_jacobian_spectrum_theory():
    from fastinit.theory import edge_of_chaos, jacobian_spectrum, slope_moments

    for q in (1 / 64, 0.25, 1.0, 4.0):
        sw2, sb2 = edge_of_chaos("tanh", q)
        m = mean_field("tanh", sw2, sb2)
        assert m.q_star == pytest.approx(q, rel=1e-9) and m.chi1 == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="sb2"):
        edge_of_chaos("sigmoid", 0.1)  # its mean is 1/2: q* >= sw2 / 4 >= 4
    # erf: mu1 = 4/pi / sqrt(1 + 4q), mu2 = E[erf'^4] = (2/sqrt(pi))^4 / sqrt(1 + 8q)
    mu1, mu2 = slope_moments(0.3, "erf")
    assert mu1 == pytest.approx(4 / math.pi / math.sqrt(2.2), rel=1e-10)
    assert mu2 == pytest.approx(16 / math.pi**2 / math.sqrt(3.4), rel=1e-10)
    assert jacobian_spectrum("relu", 2.0, 0.0, 10, "gaussian") == (1.0, 20.0)  # mu2 / mu1^2 = 2
    assert jacobian_spectrum("relu", 2.0, 0.0, 10, "orthogonal") == (1.0, 10.0)
    assert jacobian_spectrum("linear", 1.0, 0.0, 7, "orthogonal") == (1.0, 0.0)  # deep linear: an isometry
    mean, var = jacobian_spectrum("tanh", 3.0, 0.05, 5, "gaussian")
    chi = mean_field("tanh", 3.0, 0.05).chi1
    mu1, mu2 = slope_moments(mean_field("tanh", 3.0, 0.05).q_star, "tanh")
    assert mean == pytest.approx(chi**5) and var == pytest.approx(5 * mu2 / mu1**2 * chi**10)


@pytest.mark.parametrize(
    "fields, error, match",
    [
        (dict(sw2=()), ValueError, "non-empty"),
        (dict(activation="swish"), ValueError, "swish"),
        (dict(sw2=(1.0, -1.0)), ValueError, "sw2 must be finite and >= 0"),
        (dict(sb2=float("nan")), ValueError, "sb2 must be finite"),
        (dict(sw2=(1.0, "2")), TypeError, "sw2 must be a number"),
    ],
)
def test_theory_config_names_its_bad_field(fields, error, match):
    from fastinit.experiments.meanfield import TheoryConfig

    with pytest.raises(error, match=match):
        TheoryConfig(**fields).validate()
    assert TheoryConfig(sw2=[1, 2.5]).validate().sw2 == (1.0, 2.5)
