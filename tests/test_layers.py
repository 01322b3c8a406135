"""Batch norm (training mode): the hand-derived backward of problem set 003 Q2 against jax.vjp."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxnets import layers


def _bn_case(rng, shape):
    c = shape[-1]
    x = jnp.asarray(rng.normal(loc=2.0, scale=3.0, size=shape))
    gamma, beta = (jnp.asarray(rng.normal(size=c)) for _ in range(2))
    dy = jnp.asarray(rng.normal(size=shape))
    return x, gamma, beta, dy


def _autodiff(x, gamma, beta, dy, eps):
    _, pullback = jax.vjp(lambda x, g, b: layers.batch_norm(x, g, b, eps), x, gamma, beta)
    return pullback(dy)


class BatchNormBackwardTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(shape=st.sampled_from([(2, 1), (5, 3), (16, 8), (3, 4, 4, 2), (7, 1, 5, 6)]),
           eps=st.sampled_from([1e-5, 1e-3, 0.0]), seed=st.integers(0, 2**31 - 1))
    def test_backward_equals_autodiff(self, shape, eps, seed):
        with jax.enable_x64(True):
            x, gamma, beta, dy = _bn_case(np.random.default_rng(seed), shape)
            manual = self.variant(layers.batch_norm_backward, static_argnames="eps")(
                dy, x, gamma, eps=eps)
            dx, dgamma, dbeta = _autodiff(x, gamma, beta, dy, eps)
            chex.assert_trees_all_close(tuple(manual), (dx, dgamma, dbeta),
                                        rtol=1e-10, atol=1e-12)


def test_forward_normalises_each_feature(x64):
    x, gamma, beta, _ = _bn_case(np.random.default_rng(0), (64, 5))
    y = layers.batch_norm(x, jnp.ones(5), jnp.zeros(5), eps=0.0)
    np.testing.assert_allclose(jnp.mean(y, 0), 0.0, atol=1e-13)
    np.testing.assert_allclose(jnp.var(y, 0), 1.0, rtol=1e-12)
    y = layers.batch_norm(x, gamma, beta, eps=0.0)
    np.testing.assert_allclose(jnp.mean(y, 0), beta, atol=1e-13)
    np.testing.assert_allclose(jnp.std(y, 0), jnp.abs(gamma), rtol=1e-12)


def test_problem_set_003_boxed_dgamma_is_wrong(x64):
    """The problem set boxes dl/dgamma = sum_i dl/dy_i gamma; autodiff gives sum_i dl/dy_i x^_i."""
    x, gamma, beta, dy = _bn_case(np.random.default_rng(1), (9, 3))
    _, dgamma, _ = _autodiff(x, gamma, beta, dy, 1e-5)
    seed_answer = jnp.sum(dy, 0) * gamma
    assert not np.allclose(seed_answer, dgamma, rtol=1e-3)
    np.testing.assert_allclose(layers.batch_norm_backward(dy, x, gamma).dgamma, dgamma, rtol=1e-12)


def test_check_grads_finite_differences(x64):
    x, gamma, beta, _ = _bn_case(np.random.default_rng(2), (6, 3))
    jax.test_util.check_grads(lambda x, g, b: jnp.sum(jnp.sin(layers.batch_norm(x, g, b))),
                              (x, gamma, beta), order=2, modes=["rev"])


@pytest.mark.parametrize("x_shape, c, match", [
    ((5,), 5, "ndim >= 2"),
    ((4, 3), 2, r"gamma must have shape \(3,\)"),
])
def test_bad_shapes_are_named(x_shape, c, match):
    with pytest.raises(ValueError, match=match):
        layers.batch_norm(jnp.ones(x_shape), jnp.ones(c), jnp.zeros(c))


def test_backward_rejects_mismatched_dy():
    with pytest.raises(ValueError, match="dy must have x's shape"):
        layers.batch_norm_backward(jnp.ones((4, 2)), jnp.ones((4, 3)), jnp.ones(3))


def test_layer_norm_equals_its_definition(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 5, 7))
    gamma, beta = rng.normal(size=7), rng.normal(size=7)
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(layers.layer_norm(jnp.asarray(x), jnp.asarray(gamma),
                                                 jnp.asarray(beta)),
                               gamma * (x - mu) / sd + beta, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"gamma \(6,\) and beta \(7,\) must match"):
        layers.layer_norm(jnp.asarray(x), jnp.zeros(6), jnp.zeros(7))


def test_gelu_is_x_times_the_normal_cdf(x64):
    from scipy.stats import norm

    x = np.linspace(-6, 6, 101)
    np.testing.assert_allclose(layers.gelu(jnp.asarray(x)), x * norm.cdf(x), rtol=1e-12,
                               atol=1e-15)


def test_dense_and_its_errors():
    params = layers.dense_init(jax.random.key(0), 3, 4)
    assert jax.tree.map(jnp.shape, params) == {"W": (3, 4), "b": (4,)}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    np.testing.assert_allclose(layers.dense(params, x),
                               np.asarray(x) @ np.asarray(params["W"]) + np.asarray(params["b"]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 3\]"):
        layers.dense(params, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="d_out must be a positive integer"):
        layers.dense_init(jax.random.key(0), 3, 0)
