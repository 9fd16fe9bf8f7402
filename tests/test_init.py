"""Init schemes: empirical std against the formula, orthogonality, seeds, errors."""

import math

import numpy as np
import pytest

from fastinit.init import INIT_NAMES, TRUNCATED_STD_CORRECTION, gain, init_weights, parse_init

FAN_IN, FAN_OUT = 400, 300

# spec -> expected std of a (FAN_IN, FAN_OUT) matrix, written out from the papers' formulas.
EXPECTED_STD = {
    "std=0.01": 0.01,
    "std=1": 1.0,
    "std=10": 10.0,
    "uniform=0.5": 0.5 / math.sqrt(3),
    "truncated=0.2": 0.2,
    "xavier": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "glorot": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "xavier_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "glorot_truncated": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "he": math.sqrt(2 / FAN_IN),
    "kaiming": math.sqrt(2 / FAN_IN),
    "he_uniform": math.sqrt(2 / FAN_IN),
    "he_truncated": math.sqrt(2 / FAN_IN),
    "lecun": math.sqrt(1 / FAN_IN),
    "lecun_uniform": math.sqrt(1 / FAN_IN),
    "lecun_truncated": math.sqrt(1 / FAN_IN),
    "he,mode=fan_out": math.sqrt(2 / FAN_OUT),
    "xavier,gain=tanh": 5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "lecun,gain=2.5": 2.5 * math.sqrt(1 / FAN_IN),
    "orthogonal": 1 / math.sqrt(FAN_IN),
}


@pytest.mark.parametrize("spec", sorted(EXPECTED_STD))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empirical_std_matches_formula(spec, dtype):
    w = init_weights(spec, FAN_IN, FAN_OUT, np.random.default_rng(1), dtype)
    assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == dtype and w.flags.c_contiguous
    expected = EXPECTED_STD[spec]
    assert parse_init(spec).std(FAN_IN, FAN_OUT) == pytest.approx(expected, rel=1e-12)
    # 120000 samples: the sample std is within ~0.5% of the truth; 3% is a safe margin.
    assert w.std() == pytest.approx(expected, rel=0.03)
    assert abs(w.mean()) < 0.02 * expected + 1e-12


def test_uniform_bounds_and_truncation():
    rng = np.random.default_rng(2)
    assert np.abs(init_weights("uniform=0.3", 50, 60, rng)).max() <= 0.3
    limit = math.sqrt(3) * math.sqrt(2 / 110)
    assert np.abs(init_weights("xavier_uniform", 50, 60, rng)).max() <= limit + 1e-7
    sigma = 0.2 / TRUNCATED_STD_CORRECTION
    w = init_weights("truncated=0.2", 300, 300, rng, np.float64)
    assert np.abs(w).max() <= 2 * sigma
    assert np.abs(w).max() > 1.9 * sigma  # really cut at 2 sigma, not narrower


def test_truncation_constant_is_the_std_of_a_two_sigma_truncated_normal():
    # Var of N(0, 1) cut at +-a: 1 - 2 a phi(a) / (Phi(a) - Phi(-a)).
    a = 2.0
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))
    assert math.sqrt(1 - 2 * a * phi / mass) == pytest.approx(TRUNCATED_STD_CORRECTION, rel=1e-12)


@pytest.mark.parametrize("shape", [(100, 100), (784, 100), (10, 100), (1, 5), (5, 1)])
def test_orthogonal_is_orthogonal(shape):
    w = init_weights("orthogonal", *shape, np.random.default_rng(3), np.float64)
    small = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_orthogonal_gain_scales():
    rng = np.random.default_rng(4)
    w = init_weights("orthogonal,gain=relu", 64, 64, rng, np.float64)
    np.testing.assert_allclose(w.T @ w, 2 * np.eye(64), atol=1e-12)


def test_zeros_and_std_zero_are_zero():
    rng = np.random.default_rng(0)
    assert not init_weights("zeros", 3, 4, rng).any()
    assert not init_weights("std=0", 3, 4, rng).any()


def test_same_seed_same_weights_and_float32_is_cast_of_float64():
    a = init_weights("he", 30, 20, np.random.default_rng(7), np.float64)
    b = init_weights("he", 30, 20, np.random.default_rng(7), np.float64)
    c = init_weights("he", 30, 20, np.random.default_rng(7), np.float32)
    d = init_weights("he", 30, 20, np.random.default_rng(8), np.float64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, a.astype(np.float32))
    assert not np.allclose(a, d)


@pytest.mark.parametrize(
    "activation, expected",
    [
        ("linear", 1.0),
        ("sigmoid", 1.0),
        ("tanh", 5 / 3),
        ("relu", math.sqrt(2)),
        ("selu", 0.75),
        ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
    ],
)
def test_gain(activation, expected):
    assert gain(activation) == pytest.approx(expected)


def test_leaky_relu_gain_with_slope_and_unknown_activation():
    assert gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="no gain for activation 'softplus'"):
        gain("softplus")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bogus", "unknown scheme 'bogus'"),
        ("he_bogus", "unknown scheme"),
        ("std=", "std needs a value"),
        ("std=abc", "std must be a number"),
        ("std=-1", "must be >= 0"),
        ("std=nan", "must be finite"),
        ("he=3", "takes no '=<value>'"),
        ("he,mode=sideways", "mode must be one of"),
        ("he,colour=red", "unknown option"),
        ("xavier,gain=softplus", "no gain for activation"),
        ("xavier,gain=nan", "gain must be a finite number >= 0"),
        ("xavier,gain=inf", "gain must be a finite number >= 0"),
        ("he,gain=-1", "gain must be a finite number >= 0"),
        ("zeros,gain=2", "zeros takes no options"),
        ("orthogonal,mode=fan_in", "orthogonal takes no mode"),
        ("", "expected a non-empty string"),
    ],
)
def test_bad_specs_name_the_problem_and_list_valid_names(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_init(spec)
    assert "Valid names:" in str(info.value) and "xavier" in str(info.value)


def test_bad_sampling_arguments():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init_weights("he", 3, 3, rng=0)
    with pytest.raises(ValueError, match="fan_in and fan_out must be >= 1"):
        init_weights("he", 0, 3, np.random.default_rng(0))


def test_valid_names_listed_parse():
    """Every listed name parses into a scheme of its own kind and keeps its spec string."""
    kinds = set()
    for name in INIT_NAMES:
        spec = name.replace("<sigma>", "0.1").replace("<a>", "0.1")
        scheme = parse_init(spec)
        assert scheme.spec == spec
        assert scheme.kind in ("zeros", "fixed", "scaling", "orthogonal", "lsuv", "pretrain"), scheme
        kinds.add(scheme.kind)
        if scheme.kind == "fixed":
            assert scheme.fixed_std == pytest.approx(0.1 if not spec.startswith("uniform") else 0.1 / 3**0.5)
        if "_uniform" in spec or spec.startswith("uniform"):
            assert scheme.distribution == "uniform"
        if "truncated" in spec:
            assert scheme.distribution == "truncated"
    assert kinds == {"zeros", "fixed", "scaling", "orthogonal", "lsuv", "pretrain"}
