"""Dense layer and GELU, batch-first: x [..., d_in] -> [..., d_out]."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

_lecun_normal = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def dense_init(key: Array, d_in: int, d_out: int, dtype=jnp.float32) -> dict[str, Array]:
    """LeCun-normal W [d_in, d_out] (variance 1/d_in), zero b [d_out]."""
    for name, v in (("d_in", d_in), ("d_out", d_out)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"dense_init: {name} must be a positive integer, got {v!r}")
    return {"W": _lecun_normal(key, (d_in, d_out), dtype), "b": jnp.zeros((d_out,), dtype)}


def dense(params: dict[str, Array], x: Array) -> Array:
    """y = x W + b.

    Args:
      params: {"W": [d_in, d_out], "b": [d_out]}.
      x: [..., d_in].
    Returns:
      y: [..., d_out].
    """
    d_in = params["W"].shape[0]
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != d_in:
        raise ValueError(f"dense: x must have shape [..., {d_in}] (W is {params['W'].shape}), "
                         f"got {jnp.shape(x)}")
    return x @ params["W"] + params["b"]


def gelu(x: Array) -> Array:
    """GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, the exact form (Hendrycks & Gimpel)."""
    return jax.nn.gelu(x, approximate=False)
