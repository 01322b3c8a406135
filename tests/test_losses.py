"""Losses: identities between them, stability, and the hand-derived softmax-CE gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxnets import losses as L
from jaxnets.functional import log_softmax, sigmoid, softmax


def _dist(rng, shape, zeros=False):
    p = rng.random(shape)
    if zeros:
        p = np.where(rng.random(shape) < 0.3, 0.0, p)
        p[..., 0] += 1e-3  # never all zero
    return jnp.asarray(p / p.sum(-1, keepdims=True))


@given(n=st.integers(2, 30), seed=st.integers(0, 2**31 - 1), zeros=st.booleans())
def test_cross_entropy_is_entropy_plus_kl(n, seed, zeros):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        p, q = _dist(rng, (3, n), zeros), _dist(rng, (3, n))
        np.testing.assert_allclose(L.cross_entropy(p, q), L.entropy(p) + L.kl_divergence(p, q),
                                   rtol=1e-12)
        # KL >= 0 with equality iff p = q; H(p) <= log n
        assert bool(jnp.all(L.kl_divergence(p, q) >= 0))
        np.testing.assert_allclose(L.kl_divergence(p, p), 0.0, atol=1e-15)
        assert bool(jnp.all(L.entropy(p) <= jnp.log(n) + 1e-12))


def test_entropy_and_kl_against_direct_sums(x64):
    p = jnp.array([0.5, 0.25, 0.25, 0.0])
    q = jnp.array([0.25, 0.25, 0.25, 0.25])
    # 0 log 0 = 0: computed with numpy on the support only
    sup = np.asarray(p) > 0
    pn, qn = np.asarray(p)[sup], np.asarray(q)[sup]
    np.testing.assert_allclose(L.entropy(p), -np.sum(pn * np.log(pn)), rtol=1e-15)
    np.testing.assert_allclose(L.kl_divergence(p, q), np.sum(pn * np.log(pn / qn)), rtol=1e-14)


def test_softmax_cross_entropy_is_nll_of_log_softmax_and_stable(x64):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 5)))
    y = jnp.asarray(rng.integers(0, 5, 6))
    expected = -np.log(np.asarray(softmax(logits))[np.arange(6), np.asarray(y)])
    np.testing.assert_allclose(L.softmax_cross_entropy(logits, y), expected, rtol=1e-13)
    np.testing.assert_allclose(L.nll(log_softmax(logits), y), expected, rtol=1e-13)
    # logits of magnitude 1e4 in float32: finite, and logsumexp(o) - o_y exactly
    big = jnp.array([[1e4, -1e4, 0.0]], jnp.float32)
    np.testing.assert_allclose(L.softmax_cross_entropy(big, jnp.array([1])), [2e4], rtol=1e-6)
    np.testing.assert_allclose(L.softmax_cross_entropy(big, jnp.array([0])), [0.0], atol=1e-6)


def test_binary_cross_entropy_matches_definition_and_is_stable(x64):
    z = jnp.linspace(-8, 8, 81)  # where the direct formula itself is accurate to ~1e-10
    for t in (0.0, 0.3, 1.0):
        direct = -(t * jnp.log(sigmoid(z)) + (1 - t) * jnp.log(1 - sigmoid(z)))
        np.testing.assert_allclose(L.binary_cross_entropy(z, t), direct, rtol=1e-9)
    # at |z| = 1000 the direct formula gives inf/nan; ours is exact
    np.testing.assert_allclose(L.binary_cross_entropy(jnp.array([1e3, -1e3]), 0.0), [1e3, 0.0])
    # equals the categorical cross-entropy of the two-class softmax [z, 0]
    y = jnp.array([1, 0, 1])
    zz = jnp.array([2.0, -1.0, 0.3])
    two = jnp.stack([zz, jnp.zeros_like(zz)], -1)
    np.testing.assert_allclose(L.binary_cross_entropy(zz, y.astype(float)),
                               L.softmax_cross_entropy(two, 1 - y), rtol=1e-13)


def test_mse(x64):
    p, t = jnp.array([[1.0, 2.0, 4.0]]), jnp.array([[0.0, 2.0, 1.0]])
    np.testing.assert_allclose(L.mse(p, t), [(1 + 0 + 9) / 3])


class SoftmaxCrossEntropyGradTest(chex.TestCase):
    """problem set 001 Q2(g): dL/do_a = softmax(o_a) - onehot(y)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_grad_equals_autodiff(self):
        with jax.enable_x64(True):
            rng = np.random.default_rng(4)
            for m, b in ((2, 1), (10, 7), (33, 4)):
                logits = jnp.asarray(rng.normal(scale=5.0, size=(b, m)))
                y = jnp.asarray(rng.integers(0, m, b))
                auto = jax.vmap(jax.grad(L.softmax_cross_entropy))(logits, y)
                chex.assert_trees_all_close(
                    self.variant(L.softmax_cross_entropy_grad)(logits, y), auto,
                    rtol=1e-12, atol=1e-15)
