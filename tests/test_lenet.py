"""LeNet-style CNN: parameter count, shapes, errors, and its hand-derived conv gradients."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import layers
from jaxnets.models import lenet


def test_exact_parameter_count():
    # conv k*k*c_in*c_out + c_out; dense d_in*d_out + d_out; 32 -> 28 -> 14 -> 10 -> 5
    expected = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (16 * 5 * 5 * 120 + 120) \
        + (120 * 84 + 84) + (84 * 10 + 10)
    params = lenet.init(jax.random.key(0))
    assert sum(v.size for v in jax.tree.leaves(params)) == expected == 61706
    assert jax.tree.map(jnp.shape, params) == {
        "C1": {"F": (5, 5, 1, 6), "b": (6,)}, "C3": {"F": (5, 5, 6, 16), "b": (16,)},
        "F5": {"W": (400, 120), "b": (120,)}, "F6": {"W": (120, 84), "b": (84,)},
        "F7": {"W": (84, 10), "b": (10,)}}


@pytest.mark.parametrize("in_shape, d5", [((32, 32, 1), 400), ((28, 28, 3), 256),
                                           ((36, 20, 1), 16 * 6 * 2)])
def test_feature_size_matches_the_network(in_shape, d5):
    params = lenet.init(jax.random.key(0), in_shape=in_shape, num_classes=7)
    assert params["F5"]["W"].shape[0] == d5
    logits = lenet.apply(params, jnp.zeros((2, *in_shape)))
    assert logits.shape == (2, 7)


def _net_with(conv, params, x, activation, pool):
    """The same network written with a given conv function and lax's pooling (for the autodiff
    reference)."""
    act, pool_fn = lenet.ACTIVATIONS[activation], {"max": layers.max_pool,
                                                   "avg": layers.avg_pool}[pool]
    h = pool_fn(act(conv(x, params["C1"]["F"], params["C1"]["b"])), 2)
    h = pool_fn(act(conv(h, params["C3"]["F"], params["C3"]["b"])), 2)
    h = act(layers.dense(params["F5"], h.reshape(h.shape[0], -1)))
    return layers.dense(params["F7"], act(layers.dense(params["F6"], h)))


class LeNetGradTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_derived_conv_gradients_equal_autodiff_float64(self):
        """lenet's convs differentiate by conv2d_backward and its max pools by
        max_pool_backward; the whole net's gradient equals autodiff through lax's conv and
        reduce_window."""
        for activation, pool in [("relu", "max"), ("tanh", "avg"), ("sigmoid", "max")]:
            self._check_grads(activation, pool)

    def _check_grads(self, activation, pool):
        with jax.enable_x64(True):
            params = lenet.init(jax.random.key(1), dtype=jnp.float64)
            rng = np.random.default_rng(2)
            x, y = jnp.asarray(rng.random((3, 32, 32, 1))), jnp.asarray([1, 7, 3])
            kw = dict(activation=activation, pool=pool)
            g = self.variant(jax.grad(partial(lenet.loss, **kw)))(params, (x, y))

            def reference(p):
                logits = _net_with(layers.conv2d, p, x, activation, pool)
                return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(3), y])

            chex.assert_trees_all_close(g, jax.grad(reference)(params), atol=1e-12, rtol=1e-10)
            g_auto = jax.grad(partial(lenet.loss, **kw, grads="autodiff"))(params, (x, y))
            chex.assert_trees_all_close(g, g_auto, atol=1e-12, rtol=1e-10)


def test_manual_grads_use_the_hand_derived_pool_and_conv_paths():
    """grads="manual": no SelectAndScatter (max_pool_backward routes dy) and the convolutions'
    gradients matrix products over rows; grads="autodiff": lax's own derivatives."""
    from test_conv import primitives

    params = lenet.init(jax.random.key(0))
    batch = (jnp.ones((2, 32, 32, 1)), jnp.asarray([0, 1]))
    used = {g: primitives(jax.make_jaxpr(jax.grad(partial(lenet.loss, grads=g)))(
        params, batch).jaxpr) for g in ("manual", "autodiff")}
    assert "select_and_scatter_add" not in used["manual"]
    assert "select_and_scatter_add" in used["autodiff"]
    # manual: none (C1's forward is shifted multiply-adds, C3's a row product); autodiff: C1
    # and C3 forward, C1 dF, C3 dX, C3 dF
    assert used["manual"].count("conv_general_dilated") == 0
    assert used["autodiff"].count("conv_general_dilated") == 5


def test_manual_xla_grads_are_the_maths_with_the_same_gradients(x64):
    """grads="manual_xla": the hand-derived gradients as written (impl="xla": convolutions, the
    arg-max from x, no row products, no fused reduction), the gradients of "manual" and
    "autodiff" in float64."""
    from test_conv import primitives

    params = lenet.init(jax.random.key(3), dtype=jnp.float64)
    rng = np.random.default_rng(4)
    batch = (jnp.asarray(rng.random((3, 32, 32, 1))), jnp.asarray([2, 5, 9]))
    grads = {g: jax.jit(jax.grad(partial(lenet.loss, grads=g)))(params, batch)
             for g in ("manual", "manual_xla", "autodiff")}
    chex.assert_trees_all_close(grads["manual_xla"], grads["manual"], atol=1e-12, rtol=1e-10)
    chex.assert_trees_all_close(grads["manual_xla"], grads["autodiff"], atol=1e-12, rtol=1e-10)
    used = primitives(jax.make_jaxpr(jax.grad(partial(lenet.loss, grads="manual_xla")))(
        params, batch).jaxpr)
    # C1 and C3: forward, dF, dX each; the maxima by reduce_window, routed by hand
    assert used.count("conv_general_dilated") == 6
    assert "select_and_scatter_add" not in used and "cond" not in used
    assert used.count("reduce_window_max") == 2 and "argmax" in used


def test_jit_vmap_over_params_equals_a_loop():
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lenet.init)(keys)
    x = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 1)), jnp.float32)
    out = jax.jit(jax.vmap(lenet.apply, in_axes=(0, None)))(stacked, x)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(out[i], lenet.apply(lenet.init(k), x), rtol=2e-5, atol=2e-6)


def test_metrics_and_loss_agree():
    params = lenet.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).random((5, 32, 32, 1)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 3, 4])
    m = lenet.metrics(params, (x, y), activation="tanh", pool="avg")
    assert float(m["loss"]) == pytest.approx(float(lenet.loss(params, (x, y), activation="tanh",
                                                               pool="avg")))
    logits = lenet.apply(params, x, activation="tanh", pool="avg")
    assert float(m["accuracy"]) == float(np.mean(np.argmax(logits, -1) == np.asarray(y)))


@pytest.mark.parametrize("x_shape, y, kwargs, match", [
    ((2, 28, 28, 1), [0, 1], {}, r"images \(28, 28\) give 256 inputs to F5, whose W expects 400"),
    ((2, 32, 32, 3), [0, 1], {}, r"x must have shape \[B, H, W, 1\]"),
    ((2, 32, 32, 1), [0, 10], {}, r"labels must be in \[0, 10\), got values in \[0, 10\]"),
    ((2, 32, 32, 1), [0], {}, r"y must have shape \[B\]"),
    ((2, 32, 32, 1), [0, 1], {"activation": "gelu"}, "unknown activation 'gelu'"),
    ((2, 32, 32, 1), [0, 1], {"pool": "median"}, "unknown pool 'median'"),
    ((2, 32, 32, 1), [0, 1], {"grads": "fft"}, "unknown grads 'fft'"),
])
def test_bad_input_raises_clear_errors(x_shape, y, kwargs, match):
    params = lenet.init(jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        lenet.loss(params, (jnp.zeros(x_shape), jnp.asarray(y)), **kwargs)


def test_too_small_images_are_refused_at_init():
    with pytest.raises(ValueError, match=r"input sides \(12, 32\) are too small"):
        lenet.init(jax.random.key(0), in_shape=(12, 32, 1))
