"""jaxnets.theory.information: Bernoulli cross-entropy, the simplex projection, maximum entropy and
the equal-variance differential entropies, against independent references (optax's projection,
scipy.stats' entropies, closed forms), in float64; and every claim of the module passes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from jaxnets import losses
from jaxnets.theory import information as I
from jaxnets.theory.information import CLAIMS


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured


def test_claim_names_are_unique():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)


def test_problem_set_statements_flagged_only_where_wrong():
    differs = sorted(c.question for c in CLAIMS if c.check().differs)
    assert differs == ["Q2(c)", "Q2(d)"]  # entropy "convex"; the Lagrangian's derivative sign


def test_bernoulli_likelihood_and_cross_entropy(x64):
    p = jnp.array([0.3, 0.3, 0.9])
    x = jnp.array([1.0, 0.0, 0.25])
    np.testing.assert_allclose(I.bernoulli_likelihood(p[:2], x[:2]), [0.3, 0.7], rtol=1e-15)
    want = -x * np.log(p) - (1 - x) * np.log(1 - p)
    np.testing.assert_allclose(I.bernoulli_cross_entropy(p, x), want, rtol=1e-15)
    np.testing.assert_allclose(losses.binary_cross_entropy(jnp.log(p / (1 - p)), x), want,
                               rtol=1e-14)
    assert I.bernoulli(p).shape == (3, 2)
    np.testing.assert_allclose(jnp.sum(I.bernoulli(p), -1), 1.0, rtol=1e-15)


def test_cross_entropy_is_finite_at_certain_labels(x64):
    # x = 1, p = 1: 0 log 0 = 0 in the (1 - x) term
    assert float(I.bernoulli_cross_entropy(jnp.float64(1.0), jnp.float64(1.0))) == 0.0


@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_project_simplex_matches_optax_and_kkt(x64, n):
    v = jnp.asarray(np.random.default_rng(n).normal(size=(200, n)) * 3)
    p = I.project_simplex(v)
    ref = jax.vmap(optax.projections.projection_simplex)(v)
    np.testing.assert_allclose(p, ref, atol=1e-14)
    assert bool(jnp.all(p >= 0))
    np.testing.assert_allclose(jnp.sum(p, -1), 1.0, rtol=1e-14)
    # optimality of p in the simplex: <v - p, q - p> <= 0 for every vertex q = e_j
    r = v - p
    assert bool(jnp.all(r <= jnp.sum(r * p, -1, keepdims=True) + 1e-13))
    np.testing.assert_allclose(I.project_simplex(v + 4.2), p, atol=1e-13)  # shift invariance
    np.testing.assert_allclose(I.project_simplex(p), p, atol=1e-15)  # idempotent


def test_project_simplex_known_values(x64):
    np.testing.assert_allclose(I.project_simplex(jnp.array([2.0, 0.0])), [1.0, 0.0])
    np.testing.assert_allclose(I.project_simplex(jnp.array([0.6, 0.4, -1.0])), [0.6, 0.4, 0.0],
                               rtol=1e-15)
    np.testing.assert_allclose(I.project_simplex(jnp.zeros(4)), 0.25)
    with pytest.raises(ValueError, match="last axis"):
        I.project_simplex(jnp.float64(1.0))


def test_maximize_entropy(x64):
    p0 = np.random.default_rng(3).dirichlet(np.full(7, 0.3), 5)
    p = I.maximize_entropy(jnp.asarray(np.concatenate([p0, np.eye(7)])))  # incl. vertices
    np.testing.assert_allclose(p, 1 / 7, atol=1e-12)
    stay = I.maximize_entropy(jnp.full((1, 4), 0.25), steps=5)
    np.testing.assert_allclose(stay, 0.25, atol=1e-16)
    with pytest.raises(ValueError, match=r"\[m, n\]"):
        I.maximize_entropy(jnp.full(4, 0.25))
    with pytest.raises(ValueError, match="steps"):
        I.maximize_entropy(jnp.full((1, 4), 0.25), steps=0)


SCIPY = {  # name: (pdf, entropy, the scipy.stats distribution of variance var)
    "gaussian": (I.gaussian_pdf, I.gaussian_entropy,
                 lambda v: scipy.stats.norm(scale=np.sqrt(v))),
    "laplace": (I.laplace_pdf, I.laplace_entropy,
                lambda v: scipy.stats.laplace(scale=np.sqrt(v / 2))),
    "uniform": (I.uniform_pdf, I.uniform_entropy,
                lambda v: scipy.stats.uniform(-np.sqrt(3 * v), 2 * np.sqrt(3 * v))),
    "logistic": (I.logistic_pdf, I.logistic_entropy,
                 lambda v: scipy.stats.logistic(scale=np.sqrt(3 * v) / np.pi)),
}


@pytest.mark.parametrize("name", SCIPY)
def test_densities_and_entropies_against_scipy(x64, name):
    pdf, h, dist = SCIPY[name]
    for var in (0.3, 1.0, 4.0):
        ref = dist(var)
        assert ref.var() == pytest.approx(var, rel=1e-12)
        assert float(h(var)) == pytest.approx(ref.entropy(), rel=1e-13)
        x = np.linspace(-3, 3, 13) * np.sqrt(var) + 0.01
        np.testing.assert_allclose(pdf(jnp.asarray(x), var), ref.pdf(x), rtol=1e-12)


def test_generalized_normal_against_scipy(x64):
    for beta in (0.8, 1.0, 2.0, 3.5):
        alpha = float(I._gennorm_scale(beta, 2.0))
        ref = scipy.stats.gennorm(beta, scale=alpha)
        assert ref.var() == pytest.approx(2.0, rel=1e-12)
        assert float(I.generalized_normal_entropy(beta, 2.0)) == pytest.approx(ref.entropy(),
                                                                               rel=1e-12)
        x = np.linspace(-4, 4, 9) + 0.01
        np.testing.assert_allclose(I.generalized_normal_pdf(jnp.asarray(x), beta, 2.0),
                                   ref.pdf(x), rtol=1e-12)


@pytest.mark.parametrize("f", [I.gaussian_entropy, I.laplace_entropy, I.uniform_entropy,
                               I.logistic_entropy, lambda v: I.gaussian_pdf(jnp.zeros(2), v),
                               lambda v: I.generalized_normal_entropy(2.0, v)])
@pytest.mark.parametrize("var", [0.0, -1.0])
def test_nonpositive_variance_rejected(f, var):
    with pytest.raises(ValueError, match="must be > 0"):
        f(var)


def test_differential_entropy_quadrature(x64):
    x = jnp.linspace(0.0, 2.0, 101)
    assert float(I.differential_entropy(jnp.full(101, 0.5), x)) == pytest.approx(np.log(2),
                                                                                rel=1e-15)
    # exponential(1): h = 1
    x = jnp.linspace(0.0, 60.0, 600_001)
    assert float(I.differential_entropy(jnp.exp(-x), x)) == pytest.approx(1.0, abs=1e-9)


def test_trapezoid_weights_and_lagrangian_gradient(x64):
    rng = np.random.default_rng(4)
    x = jnp.asarray(np.sort(rng.uniform(-3, 3, 50)))  # non-uniform grid
    f = jnp.asarray(rng.uniform(0.1, 1.0, 50))
    assert float(jnp.sum(I.trapezoid_weights(x) * f)) == pytest.approx(
        float(jnp.trapezoid(f, x)), rel=1e-14)
    g = jax.grad(I.entropy_lagrangian)(f, x, 0.3, 1.2, 0.7, -0.4) / I.trapezoid_weights(x)
    np.testing.assert_allclose(g, jnp.log(f) + 1 + 0.7 - 0.4 * (x - 0.3) ** 2, rtol=1e-12,
                               atol=1e-13)
