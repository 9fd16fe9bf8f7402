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
    assert m.phase == "ordered" and m.xi_c == pytest.approx(-1 / math.log(sw2 / 2))
    q = variance_by_layer("relu", sw2, sb2, q0=0.7, depth=6)
    want = [sw2 * 0.7 + sb2]
    for _ in range(5):
        want.append(sw2 * want[-1] / 2 + sb2)
    np.testing.assert_allclose(q, want, rtol=1e-13)


def test_linear_closed_forms_and_phases():
    m = mean_field("linear", 0.8, 0.2)
    assert m.q_star == pytest.approx(0.2 / (1 - 0.8)) and m.chi1 == 0.8 and m.phase == "ordered"
    assert mean_field("linear", 1.0, 0.0).phase == "critical" and math.isinf(mean_field("linear", 1.0, 0.0).xi_c)
    boom = mean_field("linear", 1.3, 0.0)
    assert boom.phase == "exploding" and math.isinf(boom.q_star)
    np.testing.assert_allclose(variance_by_layer("linear", 1.3, 0.1, 1.0, 3), [1.4, 1.92, 2.596])


def test_edges_of_chaos():
    assert critical_sw2("relu") == 2.0 and critical_sw2("linear") == 1.0  # He's init is ReLU's edge
    assert critical_sw2("tanh", 0.05) == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, Fig. 1
    assert critical_sw2("tanh", 0.0) == pytest.approx(1.0, abs=2e-3)  # tanh'(0) = 1
    for sb2 in (0.01, 0.05, 0.3):
        at = mean_field("tanh", critical_sw2("tanh", sb2), sb2)
        assert at.chi1 == pytest.approx(1.0, abs=1e-7) and at.xi_c > 1e3


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
    assert m.q_star == pytest.approx(4.0 * (0.25 + np.var(phi(np.sqrt(m.q_star) * np.random.default_rng(0)
                                                                .standard_normal(400_000), "sigmoid"))), rel=2e-3)
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


@pytest.mark.parametrize("activation, sw2, sb2", [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.05), ("sigmoid", 6.0, 0.1),
                                                  ("relu", 2.0, 0.0)])
def test_variance_by_layer_matches_a_wide_random_network(activation, sw2, sb2):
    # finite width: each layer's variance fluctuates by about sqrt(2 / width); three nets averaged
    measured = np.mean([_wide_net(activation, sw2, sb2, depth=8, width=1500, samples=8, seed=s)[0]
                        for s in range(3)], axis=0)
    want = variance_by_layer(activation, sw2, sb2, q0=1.0, depth=8)
    np.testing.assert_allclose(measured, want, rtol=0.06)


def test_chaotic_correlation_fixed_point_matches_a_wide_random_network():
    m = mean_field("tanh", 3.0, 0.05)
    corr = []
    for seed in range(3):  # two independent inputs; the theory's c is q12 / q, not centred
        _, z = _wide_net("tanh", 3.0, 0.05, depth=45, width=1000, seed=seed)  # 45 layers: 5 xi_c
        corr.append(float(np.mean(z[0] * z[1]) / math.sqrt(np.mean(z[0] ** 2) * np.mean(z[1] ** 2))))
    assert np.mean(corr) == pytest.approx(m.c_star, abs=0.05)


@pytest.mark.parametrize("args, exc", [(("swish", 1.0, 0.0), ValueError), (("tanh", -1.0, 0.0), ValueError),
                                       (("tanh", float("nan"), 0.0), ValueError), (("tanh", "2", 0.0), TypeError)])
def test_bad_arguments(args, exc):
    with pytest.raises(exc):
        mean_field(*args)


def test_cli_prints_the_phases_and_writes_hdf5(tmp_path, capsys):
    import h5py

    from fastinit.cli import main

    out = tmp_path / "t.h5"
    assert main(["theory", "--activation", "tanh", "--sb2", "0.05", "--sw2", "1", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "edge of chaos at sw2 = 1.761" in text and "ordered" in text and "chaotic" in text
    with h5py.File(out, "r") as f:
        g = f["theory/tanh/sb2=0.05"]
        assert g["sw2"][()].tolist() == [1.0, 2.0] and g["xi_c"].attrs["units"] == "layers"
        assert g.attrs["critical_sw2"] == pytest.approx(1.761, abs=1e-3)
    assert main(["theory", "--sb2", "-1"]) == 2
