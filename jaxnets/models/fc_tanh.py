"""A fully connected tanh network with the squared-error loss: Cohen et al.'s (2021) fc-tanh.

    h_0 = x,  h_l = tanh(W_l h_{l-1} + b_l)  (l = 1..L),  f(x) = W_{L+1} h_L + b_{L+1},
    loss = (1/B) sum_i 1/2 ||f(x_i) - onehot(y_i)||^2.

Params are a list of layers ``[{"W": [d_out, d_in], "b": [d_out]}, ...]``, the last one
linear. A batch is ``(x: [B, d], y: [B] int labels in [0, m))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import Array

from jaxnets._checks import check_batch

Params = list[dict[str, Array]]
Batch = tuple[Array, Array]

_init_weight = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2)


def init(key: Array, widths: Sequence[int], dtype=jnp.float32) -> Params:
    """LeCun-normal weights (variance 1/fan_in) and zero biases for widths (d, d_1, ..., m),
    e.g. (64, 200, 200, 10): two hidden layers of 200 tanh units."""
    widths = tuple(widths)
    if len(widths) < 2 or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"fc_tanh.init: widths must be at least two positive integers, got "
                         f"{widths!r}")
    keys = jax.random.split(key, len(widths) - 1)
    return [{"W": _init_weight(k, (d_out, d_in), dtype), "b": jnp.zeros((d_out,), dtype)}
            for k, d_in, d_out in zip(keys, widths[:-1], widths[1:], strict=True)]


def apply(params: Params, x: Array) -> Array:
    """Outputs f(x): [..., m] for x: [..., d]."""
    d = params[0]["W"].shape[1]
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != d:
        raise ValueError(f"fc_tanh: x must have shape [..., {d}], got {jnp.shape(x)}")
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["W"].T + layer["b"])
    return x @ params[-1]["W"].T + params[-1]["b"]


def _checked(params: Params, batch: Batch, where: str) -> Batch:
    return check_batch(batch, params[0]["W"].shape[1], params[-1]["W"].shape[0], where)


def _half_sq_error(f: Array, y: Array) -> Array:
    return 0.5 * jnp.mean(jnp.sum((f - jax.nn.one_hot(y, f.shape[-1], dtype=f.dtype)) ** 2, -1))


def loss(params: Params, batch: Batch) -> Array:
    """(1/B) sum_i 1/2 ||f(x_i) - onehot(y_i)||^2: a scalar."""
    x, y = _checked(params, batch, "fc_tanh.loss")
    return _half_sq_error(apply(params, x), y)


def metrics(params: Params, batch: Batch) -> dict[str, Array]:
    """{"loss": ``loss``, "accuracy": fraction of argmax f(x) == y}."""
    x, y = _checked(params, batch, "fc_tanh.metrics")
    f = apply(params, x)
    return {"loss": _half_sq_error(f, y), "accuracy": jnp.mean(jnp.argmax(f, axis=-1) == y)}
