"""The sin-MLP of problem set 001 Q2: hand backprop (Q2(g)-(o)) and Q2(p) against autodiff."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from hypothesis import given
from hypothesis import strategies as st

from jaxnets.models import sin_mlp

# The autodiff reference, compiled once per shape (eager autodiff compiles every op per shape).
grad_loss = jax.jit(jax.grad(sin_mlp.loss))

SHAPES = dict(B=st.integers(1, 9), d=st.integers(1, 12), d_h=st.integers(1, 16),
              m=st.integers(2, 7), seed=st.integers(0, 2**31 - 1))


def _case(B, d, d_h, m, seed, dtype):
    k_p, k_x, k_y, k_b = jax.random.split(jax.random.key(seed), 4)
    params = sin_mlp.init(k_p, d, d_h, m, dtype)
    # non-zero biases so every term of the formulas is exercised
    params["b1"] = jax.random.normal(k_b, (d_h,), dtype)
    params["b2"] = jax.random.normal(k_b, (m,), dtype) * 0.5
    x = jax.random.normal(k_x, (B, d), dtype) * 2.0
    y = jax.random.randint(k_y, (B,), 0, m)
    return params, (x, y)


def test_init_shapes_and_parameter_count():
    params = sin_mlp.init(jax.random.key(0), d=784, d_h=256, m=10)
    chex.assert_shape([params["W1"], params["b1"], params["W2"], params["b2"]],
                      [(256, 784), (256,), (10, 256), (10,)])
    # n_theta = d_h (d + 1) + m (d_h + 1)  (problem set 001 Q2(e))
    assert sum(v.size for v in jax.tree.leaves(params)) == 256 * 785 + 10 * 257 == 203_530


class ManualGradsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(**SHAPES)
    def test_float64_equals_jax_grad(self, B, d, d_h, m, seed):
        with jax.enable_x64(True):
            params, batch = _case(B, d, d_h, m, seed, jnp.float64)
            manual = self.variant(sin_mlp.manual_grads)(params, batch)
            auto = grad_loss(params, batch)
            chex.assert_trees_all_equal_structs(manual, auto)
            assert rel_err(manual, auto) <= 1e-10
            chex.assert_trees_all_close(manual, auto, rtol=1e-10, atol=1e-14)

    @chex.variants(with_jit=True, without_jit=True)
    @given(**SHAPES)
    def test_float32_equals_jax_grad(self, B, d, d_h, m, seed):
        params, batch = _case(B, d, d_h, m, seed, jnp.float32)
        manual = self.variant(sin_mlp.manual_grads)(params, batch)
        auto = grad_loss(params, batch)
        assert rel_err(manual, auto) <= 1e-5

    @chex.variants(with_jit=True, without_jit=True)
    @given(**SHAPES)
    def test_input_grads_q2p_equals_jax_grad(self, B, d, d_h, m, seed):
        with jax.enable_x64(True):
            params, (x, y) = _case(B, d, d_h, m, seed, jnp.float64)
            manual = self.variant(sin_mlp.input_grads)(params, (x, y))
            # per-example dL(x_i, y_i)/dx_i = gradient of the batch sum = B * mean
            auto = jax.jit(jax.grad(lambda x: sin_mlp.loss(params, (x, y)) * x.shape[0]))(x)
            chex.assert_shape(manual, (B, d))
            chex.assert_trees_all_close(manual, auto, rtol=1e-10, atol=1e-14)


def test_check_grads_on_the_loss(x64):
    params, batch = _case(5, 4, 6, 3, 0, jnp.float64)
    jax.test_util.check_grads(lambda p: sin_mlp.loss(p, batch), (params,), order=2,
                              modes=["rev", "fwd"])


def test_apply_is_vmappable_and_batch_first():
    params, (x, _) = _case(6, 5, 7, 3, 1, jnp.float32)
    np.testing.assert_allclose(jax.vmap(sin_mlp.apply, (None, 0))(params, x),
                               sin_mlp.apply(params, x), rtol=1e-6, atol=1e-6)
    # vmap over stacked params (two models) as well
    p2 = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    out = jax.vmap(sin_mlp.apply, (0, None))(p2, x)
    chex.assert_shape(out, (2, 6, 3))
    # float32: a vmapped product may sum in another order (1.5e-7 absolute seen in CI on 0.046)
    np.testing.assert_allclose(out[0], sin_mlp.apply(params, x), rtol=1e-6, atol=1e-6)


def test_loss_is_mean_nll_of_softmax(x64):
    params, (x, y) = _case(4, 3, 5, 4, 2, jnp.float64)
    logits = np.asarray(sin_mlp.apply(params, x))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(sin_mlp.loss(params, (x, y)),
                               -np.mean(np.log(p[np.arange(4), np.asarray(y)])), rtol=1e-13)


@pytest.mark.parametrize("fn", [sin_mlp.loss, sin_mlp.manual_grads, sin_mlp.metrics,
                                sin_mlp.input_grads])
def test_bad_batches_get_clear_errors(fn):
    params = sin_mlp.init(jax.random.key(0), 4, 3, 5)
    x, y = jnp.ones((2, 4)), jnp.array([0, 4])
    with pytest.raises(ValueError, match=r"x must have shape \[B, 4\], got \(2, 3\)"):
        fn(params, (jnp.ones((2, 3)), y))
    with pytest.raises(ValueError, match=r"y must have shape \[B\]"):
        fn(params, (x, jnp.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\), got values in \[0, 5\]"):
        fn(params, (x, jnp.array([0, 5])))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\), got values in \[-1, 0\]"):
        fn(params, (x, jnp.array([-1, 0])))
    with pytest.raises(TypeError, match="labels must be integers"):
        fn(params, (x, jnp.array([0.0, 1.0])))
    with pytest.raises(TypeError, match="pair"):
        fn(params, x)


def test_apply_and_init_reject_bad_arguments():
    params = sin_mlp.init(jax.random.key(0), 4, 3, 5)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 4\], got \(7,\)"):
        sin_mlp.apply(params, jnp.ones(7))
    with pytest.raises(ValueError, match="d_h must be a positive integer"):
        sin_mlp.init(jax.random.key(0), 4, 0, 5)
