"""LeNet-style CNN (LeCun et al. 1998), NHWC, as pure functions.

    x [B, 32, 32, 1] -> C1: conv 6@5x5 -> act -> S2: pool 2x2/2 -> C3: conv 16@5x5 -> act
    -> S4: pool 2x2/2 -> flatten [B, 400] -> F5: dense 120 -> act -> F6: dense 84 -> act
    -> F7: dense 10 (logits)

Params ``{"C1": {"F", "b"}, "C3": {"F", "b"}, "F5": {"W", "b"}, "F6": {"W", "b"},
"F7": {"W", "b"}}`` with F [5, 5, C_in, C_out] (HWIO) and W [d_in, d_out]; 61,706 numbers for
32x32x1 input and 10 classes (tests/test_lenet.py counts them). The activation ("relu", "tanh",
"sigmoid") and pooling ("max", "avg") are keyword arguments of ``apply``, ``loss`` and
``metrics``; bind them with functools.partial for training. Gradients are hand-derived by
default (``grads="manual"``): convolutions are ``layers.conv2d_manual`` (problem set 004 Q5's
gradients) and max pooling is ``layers.max_pool_manual`` (arg-max routing), both with their
default ``impl``, the fast paths of jaxnets.kernels where those pay (for C1 and C3 the
gradients as matrix products over image rows); ``grads="manual_xla"`` runs the same
hand-derived gradients as the maths is written (``impl="xla"``); ``grads="autodiff"``
differentiates lax's convolution and reduce_window instead (experiments/benchmark_lenet.py
compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import Array

from jaxnets import functional as F
from jaxnets import layers, losses
from jaxnets._checks import check_image_batch

Params = dict[str, dict[str, Array]]
Batch = tuple[Array, Array]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid}
POOLS = ("max", "avg")
# grads -> (convolution, {pool: pooling}): whose derivative jax.grad uses. "manual" is the
# default because XLA:CPU runs autodiff's convolution and max-pool gradients slowly in lax.scan.
GRADS = {"manual": (layers.conv2d_manual, {"max": layers.max_pool_manual,
                                           "avg": layers.avg_pool}),
         "manual_xla": (partial(layers.conv2d_manual, impl="xla"),
                        {"max": partial(layers.max_pool_manual, impl="xla"),
                         "avg": layers.avg_pool}),
         "autodiff": (layers.conv2d, {"max": layers.max_pool, "avg": layers.avg_pool})}
CONV_KERNEL, CONV_CHANNELS, DENSE_UNITS = 5, (6, 16), (120, 84)

_conv_init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _check_choice(name: str, value: str, options) -> None:
    if value not in options:
        raise ValueError(f"lenet: unknown {name} {value!r}; expected one of {sorted(options)}")


def feature_size(in_hw: tuple[int, int]) -> int:
    """Inputs to F5: 16 h w, where each side goes i -> (i - 4) // 2 twice (400 for 32x32)."""
    sides = []
    for i in in_hw:
        for _ in CONV_CHANNELS:
            if i - CONV_KERNEL + 1 < 2:
                raise ValueError(f"lenet: input sides {tuple(in_hw)} are too small; each must "
                                 f"survive two 5x5 convolutions and 2x2 pools (>= 16)")
            i = (i - CONV_KERNEL + 1) // 2
        sides.append(i)
    return CONV_CHANNELS[-1] * sides[0] * sides[1]


def init(key: Array, in_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10,
         dtype=jnp.float32) -> Params:
    """LeCun-normal weights (variance 1/fan_in), zero biases.

    Args:
      key: a PRNG key. in_shape: (H, W, C_in) of one image. num_classes: outputs of F7.
    """
    h, w, c_in = in_shape
    k1, k3, k5, k6, k7 = jax.random.split(key, 5)
    conv = lambda k, ci, co: {  # noqa: E731
        "F": _conv_init(k, (CONV_KERNEL, CONV_KERNEL, ci, co), dtype), "b": jnp.zeros((co,), dtype)}
    d5, d6 = DENSE_UNITS
    return {
        "C1": conv(k1, c_in, CONV_CHANNELS[0]),
        "C3": conv(k3, *CONV_CHANNELS),
        "F5": layers.dense_init(k5, feature_size((h, w)), d5, dtype),
        "F6": layers.dense_init(k6, d5, d6, dtype),
        "F7": layers.dense_init(k7, d6, num_classes, dtype),
    }


def apply(params: Params, x: Array, *, activation: str = "relu", pool: str = "max",
          grads: str = "manual") -> Array:
    """Logits [B, num_classes] for x [B, H, W, C_in]."""
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("pool", pool, POOLS)
    _check_choice("grads", grads, GRADS)
    act, (conv_fn, pools) = ACTIVATIONS[activation], GRADS[grads]
    pool_fn = pools[pool]
    h = pool_fn(act(conv_fn(x, params["C1"]["F"], params["C1"]["b"])), 2)
    h = pool_fn(act(conv_fn(h, params["C3"]["F"], params["C3"]["b"])), 2)
    h = h.reshape(h.shape[0], -1)  # [B, h, w, 16] -> [B, 16 h w]
    h = act(layers.dense(params["F5"], h))
    h = act(layers.dense(params["F6"], h))
    return layers.dense(params["F7"], h)


def _checked(params: Params, batch: Batch, where: str) -> Batch:
    """Check (x [B, H, W, C_in], y [B]) against the params: C_in, and H, W giving F5's inputs."""
    x = batch[0] if isinstance(batch, tuple | list) and len(batch) == 2 else None
    c_in, d5 = params["C1"]["F"].shape[2], params["F5"]["W"].shape[0]
    if x is not None and jnp.ndim(x) == 4 and jnp.shape(x)[3] == c_in:
        if feature_size(jnp.shape(x)[1:3]) != d5:
            raise ValueError(f"{where}: images {jnp.shape(x)[1:3]} give "
                             f"{feature_size(jnp.shape(x)[1:3])} inputs to F5, whose W expects "
                             f"{d5} (the images init was given)")
        return check_image_batch(batch, jnp.shape(x)[1:], params["F7"]["W"].shape[1], where)
    if x is not None:
        raise ValueError(f"{where}: x must have shape [B, H, W, {c_in}] (NHWC), got "
                         f"{jnp.shape(x)}")
    return check_image_batch(batch, (0, 0, c_in), params["F7"]["W"].shape[1], where)


def loss(params: Params, batch: Batch, **kwargs: str) -> Array:
    """Mean softmax cross-entropy. batch: (x [B, H, W, C_in], y [B] ints); kwargs as ``apply``."""
    x, y = _checked(params, batch, "lenet.loss")
    return jnp.mean(losses.softmax_cross_entropy(apply(params, x, **kwargs), y))


def metrics(params: Params, batch: Batch, **kwargs: str) -> dict[str, Array]:
    """{"loss": mean cross-entropy, "accuracy"} on one batch; kwargs as ``apply``."""
    x, y = _checked(params, batch, "lenet.metrics")
    return losses.classification_metrics(apply(params, x, **kwargs), y)
