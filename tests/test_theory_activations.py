"""jaxnets.theory.activations: the problem sets' identities, limits and the distributional
derivative of
H, each against an independent computation, in float64; and every claim of the module passes."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import functional as F
from jaxnets.theory import activations as A
from jaxnets.theory.activations import CLAIMS


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured


def test_claim_names_are_unique():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)


def test_stated_numbers_flagged_only_where_wrong():
    differs = sorted(f"{c.problem_set} {c.question}" for c in CLAIMS if c.check().differs)
    assert differs == ["001 Q1(a)", "002 Q3.2"]  # rect's definition; e / (e + 1) ~ 0.71


def test_sign_by_indicators_values(x64):
    x = jnp.array([-2.0, -1e-300, -0.0, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(A.sign_by_indicators(x), [-1, -1, 0, 0, 1, 1])
    np.testing.assert_array_equal(A.indicator(x > 0), [0, 0, 0, 0, 1, 1])


def test_sigmoid_by_tanh_matches_definition(x64):
    x = jnp.linspace(-30, 30, 601)
    # absolute accuracy only: for x << 0, tanh(x/2) + 1 cancels (relative error ~1e-3 at -30)
    np.testing.assert_allclose(A.sigmoid_by_tanh(x), 1 / (1 + jnp.exp(-x)), rtol=1e-14, atol=5e-16)


def test_log_sigmoid_by_softplus_is_finite_where_log_of_sigmoid_is_not(x64):
    # ln sigma(x) = x - ln(1 + e^x) -> x as x -> -oo; sigma(-800) underflows to 0 in float64
    assert float(jnp.log(F.sigmoid(-800.0))) == -np.inf
    assert float(A.log_sigmoid_by_softplus(-800.0)) == -800.0
    np.testing.assert_allclose(A.log_sigmoid_by_softplus(jnp.array([-2.0, 0.0, 2.0])),
                               [-2 - np.log1p(np.exp(-2)), -np.log(2), -np.log1p(np.exp(-2))],
                               rtol=1e-15)


def test_norm_gradients_match_central_differences(x64):
    x = jnp.asarray(np.random.default_rng(0).normal(size=7))
    h, eye = 1e-6, jnp.eye(7)
    l1 = jax.vmap(lambda e: (jnp.sum(jnp.abs(x + h * e)) - jnp.sum(jnp.abs(x - h * e))) / (2 * h))
    l2 = jax.vmap(lambda e: (jnp.sum((x + h * e) ** 2) - jnp.sum((x - h * e) ** 2)) / (2 * h))
    np.testing.assert_allclose(l1(eye), A.l1_grad(x), atol=1e-9)
    np.testing.assert_allclose(l2(eye), A.squared_l2_grad(x), atol=1e-8)
    # at x_i = 0 the L1 "gradient" is 0, a subgradient in [-1, 1]
    np.testing.assert_array_equal(A.l1_grad(jnp.array([0.0, -3.0])), [0.0, -1.0])


def test_argmax_uniform_with_and_without_ties(x64):
    x = jnp.array([[1.0, 3.0, 3.0, 0.0], [5.0, -1.0, 2.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(A.argmax_uniform(x),
                                  [[0, 0.5, 0.5, 0], [1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(F.softmax(1e4 * x), A.argmax_uniform(x), atol=1e-300)


def test_two_class_softmax(x64):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 2)) * 20)
    s = A.two_class_softmax(x)
    assert s.shape == (3, 5, 2)
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    np.testing.assert_allclose(s, e / jnp.sum(e, axis=-1, keepdims=True), rtol=1e-13, atol=1e-300)
    with pytest.raises(ValueError, match="last axis 2"):
        A.two_class_softmax(jnp.zeros(3))


def test_k_minus_1_parametrisation_round_trips(x64):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(10, 4)))
    y = A.reduced_logits(x)
    assert y.shape == (10, 3)
    np.testing.assert_allclose(A.softmax_zero_first(y), F.softmax(x), rtol=1e-14)
    p = jnp.asarray(rng.dirichlet(np.ones(4), 10))
    np.testing.assert_allclose(A.softmax_zero_first(A.logits_of(p)), p, rtol=1e-13)
    np.testing.assert_allclose(A.logits_of(F.softmax(x)), y, atol=1e-13)  # y is unique
    for f in (A.reduced_logits, A.logits_of):
        with pytest.raises(ValueError, match="K >= 2"):
            f(jnp.ones((3, 1)))


def test_integral_of_heaviside(x64):
    h = 0.25
    mid = (jnp.arange(-8, 8) + 0.5) * h  # 0 a cell midpoint: exact
    np.testing.assert_allclose(A.integral_of_heaviside(mid), jnp.maximum(mid, 0), atol=1e-15)
    node = jnp.arange(-8, 9) * h  # 0 a grid point: h/4 at 0 only
    err = A.integral_of_heaviside(node) - jnp.maximum(node, 0)
    np.testing.assert_allclose(err, jnp.where(node == 0, h / 4, 0.0), atol=1e-15)


def test_bump_is_smooth_and_compactly_supported(x64):
    c, w = 0.7, 1.5
    phi = partial(A.bump, center=c, width=w)
    assert float(phi(c)) == pytest.approx(np.exp(-1), rel=1e-15)
    x = jnp.array([c - w, c + w, c - 2 * w, c + 3.0])
    np.testing.assert_array_equal(phi(x), 0.0)
    d1 = jax.vmap(jax.grad(phi))
    d2 = jax.vmap(jax.grad(jax.grad(phi)))
    edge = jnp.array([c - w, c + w, c - w + 1e-3, c + w - 1e-3])
    assert bool(jnp.all(jnp.isfinite(d1(edge))) & jnp.all(jnp.isfinite(d2(edge))))
    assert float(jnp.max(jnp.abs(d1(edge)))) < 1e-100  # flat to all orders at the edges
    with pytest.raises(ValueError, match="width"):
        A.bump(jnp.zeros(2), 0.0, 0.0)


def test_distributional_derivative_of_shifted_step_and_relu(x64):
    x = jnp.arange(-40_000, 40_001) * 1e-4
    phi = partial(A.bump, center=0.2, width=1.0)
    for t in (-0.5, 0.0, 0.5):  # 0.5 and -0.5 are grid points: H(0) = 1/2 there
        step = A.distributional_derivative(lambda u, t=t: F.heaviside(u - t), phi, x)
        assert float(step) == pytest.approx(float(phi(t)), abs=1e-8)
    # relu' = H in the distributional sense: -int relu phi' = int H phi
    relu_d = A.distributional_derivative(F.relu, phi, x)
    assert float(relu_d) == pytest.approx(float(jnp.trapezoid(F.heaviside(x) * phi(x), x)),
                                          abs=1e-9)


def test_maximize_finds_a_known_maximum(x64):
    xs, vs = A.maximize(lambda u: 2.0 - (u - 1.3) ** 2, jnp.array([-5.0, 0.0, 4.0]))
    np.testing.assert_allclose(xs, 1.3, atol=1e-6)
    np.testing.assert_allclose(vs, 2.0, atol=1e-12)


@pytest.mark.parametrize("starts", [jnp.array([]), jnp.zeros((2, 2)), jnp.array([1, 2])])
def test_maximize_rejects_bad_starts(starts):
    with pytest.raises(ValueError, match="starts"):
        A.maximize(jnp.sin, starts)


def test_maximize_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        A.maximize(jnp.sin, jnp.array([0.0]), steps=0)
