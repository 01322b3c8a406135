"""Closed-form derivatives, Jacobians and O(n) VJPs against jax autodiff, in float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxnets import functional as F

ELEMENTWISE = [
    (F.sigmoid, F.sigmoid_grad),
    (F.tanh, F.tanh_grad),
    (F.softplus, F.softplus_grad),
    (F.relu, F.relu_grad),
]


@pytest.mark.parametrize("f, df", ELEMENTWISE, ids=lambda f: getattr(f, "__name__", ""))
def test_closed_form_derivative_equals_autodiff(x64, f, df):
    x = jnp.asarray(np.random.default_rng(0).normal(scale=4.0, size=257))
    x = x[jnp.abs(x) > 1e-6]  # relu has no derivative at 0
    auto = jax.vmap(jax.grad(f))(x)
    np.testing.assert_allclose(df(x), auto, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jax.jit(df)(x), auto, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("f, df", ELEMENTWISE[:3], ids=lambda f: getattr(f, "__name__", ""))
def test_autodiff_at_zero_equals_the_closed_form(x64, f, df):
    """At x = 0 too (a max(x, 0) + log1p(exp(-|x|)) softplus got slope 0 there from autodiff)."""
    assert float(jax.grad(f)(0.0)) == float(df(0.0))


def test_problem_set_identities_hold(x64):
    x = jnp.linspace(-30, 30, 1001)
    np.testing.assert_allclose(F.sigmoid(x), (jnp.tanh(x / 2) + 1) / 2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jnp.log(F.sigmoid(x)), -F.softplus(-x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.softplus(x) - F.softplus(-x), x, atol=1e-12)
    # softplus is exact far in both tails, where the naive log(1 + exp(x)) overflows / underflows
    np.testing.assert_allclose(F.softplus(jnp.array([800.0, -800.0])), [800.0, 0.0], atol=1e-300)


def test_heaviside_sign_relu_values():
    x = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(F.heaviside(x), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(F.sign(x), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(F.relu(x), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(F.relu(x), x * F.heaviside(x))  # relu(x) = x H(x)
    # relu'(0) := H(0) = 1/2 here; jax's convention is 0. Both lie in the subdifferential [0, 1].
    assert float(F.relu_grad(jnp.float32(0.0))) == 0.5
    assert float(jax.grad(jax.nn.relu)(0.0)) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_softmax_stable_for_huge_logits(scale):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 7)), jnp.float32) * scale
    s, ls = F.softmax(x), F.log_softmax(x)
    assert bool(jnp.all(jnp.isfinite(s)) & jnp.all(jnp.isfinite(ls)))
    np.testing.assert_allclose(jnp.sum(s, -1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(s, jax.nn.softmax(x), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(ls, jax.nn.log_softmax(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.exp(ls), s, rtol=1e-5, atol=1e-30)


def test_softmax_huge_logits_float64_matches_exact(x64):
    x = jnp.array([1e4, 1e4 - 1.0, -1e4])
    expected = np.exp([0.0, -1.0, -2e4]) / (1 + np.exp(-1.0))
    np.testing.assert_allclose(F.softmax(x), expected, rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(x)[:2], np.log(expected[:2]), rtol=1e-14)


@given(n=st.integers(1, 40), batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_softmax_jacobian_equals_autodiff(n, batch, seed):
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(seed).normal(scale=3.0, size=(batch, n)))
        auto = jax.vmap(jax.jacobian(F.softmax))(x)
        np.testing.assert_allclose(F.softmax_jacobian(x), auto, rtol=1e-12, atol=1e-15)
        # symmetric, rows sum to zero (translation invariance)
        J = F.softmax_jacobian(x)
        np.testing.assert_allclose(J, jnp.swapaxes(J, -1, -2), atol=1e-15)
        np.testing.assert_allclose(J.sum(-1), 0.0, atol=1e-14)


class VJPTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_vjps_equal_autodiff(self):
        with jax.enable_x64(True):
            rng = np.random.default_rng(2)
            for n in (1, 5, 300):
                x, g = (jnp.asarray(rng.normal(scale=3.0, size=(2, n))) for _ in range(2))
                for f, vjp in ((F.sigmoid, F.sigmoid_vjp), (F.softmax, F.softmax_vjp)):
                    _, pullback = jax.vjp(f, x)
                    chex.assert_trees_all_close(self.variant(vjp)(x, g), pullback(g)[0],
                                                rtol=1e-12, atol=1e-15)


def _max_intermediate_size(fn, *args) -> int:
    """The largest array any equation of fn's jaxpr produces."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
    return max(sizes)


def test_vjps_are_linear_in_n_at_one_million():
    """n = 1,000,000: an n x n Jacobian would need 4 TB; the O(n) VJPs run and agree."""
    n = 1_000_000
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=n), jnp.float32)
    g = jnp.asarray(rng.normal(size=n), jnp.float32)
    for f, vjp in ((F.sigmoid, F.sigmoid_vjp), (F.softmax, F.softmax_vjp)):
        assert _max_intermediate_size(vjp, x, g) <= n
        ours = jax.jit(vjp)(x, g)
        ref = jax.vjp(f, x)[1](g)[0]
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-11)


@pytest.mark.parametrize("R", [np.pi / 4, 20.0, 1e4])
def test_float32_sin_and_cos_within_1e7_of_exact(R):
    """The float32 polynomial against float64 numpy on 10^6 points of [-R, R] (and +-0)."""
    x = np.concatenate([np.linspace(-R, R, 1_000_001), [0.0, -0.0]]).astype(np.float32)
    exact = np.asarray(x, np.float64)
    s, c = jax.jit(F.sin)(x), jax.jit(F.cos)(x)
    assert s.dtype == c.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(s, np.float64), np.sin(exact), rtol=0, atol=1.2e-7)
    np.testing.assert_allclose(np.asarray(c, np.float64), np.cos(exact), rtol=0, atol=1.2e-7)


def test_float32_sin_derivative_is_functional_cos():
    """jax.grad of sin is the same float32 cos a hand-derived gradient uses: equal to rounding."""
    x = jax.random.uniform(jax.random.key(0), (4096,), jnp.float32, -30.0, 30.0)
    np.testing.assert_array_equal(jax.vmap(jax.grad(F.sin))(x), F.cos(x))


def test_float64_sin_is_exact(x64):
    x = jax.random.uniform(jax.random.key(1), (4096,), jnp.float64, -30.0, 30.0)
    np.testing.assert_array_equal(F.sin(x), jnp.sin(x))
    np.testing.assert_array_equal(F.cos(x), jnp.cos(x))
    np.testing.assert_array_equal(jax.vmap(jax.grad(F.sin))(x), jnp.cos(x))
    check_grads(F.sin, (x,), order=2, modes=("fwd", "rev"))


def test_sin_of_non_finite_is_nan():
    """NaN/inf pre-activations must stay non-finite so divergence is detected."""
    x = jnp.array([jnp.inf, -jnp.inf, jnp.nan], jnp.float32)
    assert np.all(np.isnan(F.sin(x))) and np.all(np.isnan(F.cos(x)))


def test_float32_sin_and_cos_compile_to_elementwise_code():
    """The quadrant choice is selects on the quadrant's bits: no reduction in the compiled code
    (jnp.select became an arg-max reduction on XLA CPU, 15% of the digits sweep's step)."""
    x = jnp.ones((64, 256), jnp.float32)
    hlo = jax.jit(lambda x: (F.sin(x), F.cos(x))).lower(x).compile().as_text()
    assert " reduce(" not in hlo
    assert " sine(" not in hlo and " cosine(" not in hlo  # the polynomial, not XLA's sin
