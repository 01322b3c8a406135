"""Normalisation layers: layer norm, and batch norm with its hand-derived backward.

Batch norm (training mode) follows problem set 003 Q2. Features are on the last axis; statistics are
taken over every other axis (the batch for [B, C], batch and space for NHWC [B, H, W, C]).

Seed errata (the code is checked against ``jax.vjp`` in float64, tests/test_layers.py):
- problem set 003 Q2 boxes dl/dx_i = 1/(m sqrt(var + eps)) (m dl/dy_i gamma - sum_j dl/dx_j
  - x^_i sum_j x^_j dl/dx_j). The two sums must run over dl/dx^_j = gamma dl/dy_j, not dl/dx_j
  (which is what is being solved for).
- problem set 003 Q2 boxes dl/dgamma = sum_i dl/dy_i gamma; it is sum_i dl/dy_i x^_i, since
  y_i = gamma x^_i + beta.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class BatchNormGrads(NamedTuple):
    """Gradients of a loss through batch norm: dx [..., C], dgamma [C], dbeta [C]."""

    dx: Array
    dgamma: Array
    dbeta: Array


def _check_bn(x: Array, **per_feature: Array) -> None:
    if x.ndim < 2:
        raise ValueError(f"batch_norm: x must be [B, ..., C] with ndim >= 2, got shape {x.shape}")
    for name, v in per_feature.items():
        if v.shape != x.shape[-1:]:
            raise ValueError(
                f"batch_norm: {name} must have shape {x.shape[-1:]} (the feature axis of x "
                f"{x.shape}), got {v.shape}"
            )


def _normalise(x: Array, eps: float) -> tuple[Array, Array]:
    """x^ = (x - mu_B) / sqrt(var_B + eps) over all axes but the last; returns (x^, 1/sqrt(..))."""
    axes = tuple(range(x.ndim - 1))
    mu = jnp.mean(x, axis=axes)  # [C]
    var = jnp.mean((x - mu) ** 2, axis=axes)  # [C], biased (1/m), as in the problem set
    inv_std = jax.lax.rsqrt(var + eps)
    return (x - mu) * inv_std, inv_std


def batch_norm(x: Array, gamma: Array, beta: Array, eps: float = 1e-5) -> Array:
    """Training-mode batch norm y = gamma x^ + beta, x^ = (x - mu_B) / sqrt(var_B + eps).

    Args:
      x: [B, ..., C]; statistics over all axes but C.
      gamma, beta: [C].
    Returns:
      y: same shape as x.
    """
    _check_bn(x, gamma=gamma, beta=beta)
    x_hat, _ = _normalise(x, eps)
    return gamma * x_hat + beta


def batch_norm_backward(dy: Array, x: Array, gamma: Array, eps: float = 1e-5) -> BatchNormGrads:
    """Hand-derived backward of ``batch_norm`` (problem set 003 Q2, corrected).

    With m the number of elements per feature and dx^ = gamma dy:
      dx_i   = 1 / (m sqrt(var + eps)) (m dx^_i - sum_j dx^_j - x^_i sum_j x^_j dx^_j)
      dgamma = sum_i dy_i x^_i
      dbeta  = sum_i dy_i
    Args:
      dy: [B, ..., C] upstream gradient dl/dy.
      x, gamma, eps: as given to ``batch_norm`` (the gradients do not depend on beta).
    """
    _check_bn(x, gamma=gamma)
    if dy.shape != x.shape:
        raise ValueError(f"batch_norm_backward: dy must have x's shape {x.shape}, got {dy.shape}")
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    x_hat, inv_std = _normalise(x, eps)
    dx_hat = gamma * dy
    dx = (inv_std / m) * (
        m * dx_hat
        - jnp.sum(dx_hat, axis=axes)
        - x_hat * jnp.sum(dx_hat * x_hat, axis=axes)
    )
    return BatchNormGrads(dx, dgamma=jnp.sum(dy * x_hat, axis=axes), dbeta=jnp.sum(dy, axis=axes))


def layer_norm(x: Array, gamma: Array, beta: Array, eps: float = 1e-6) -> Array:
    """y = gamma (x - mu) / sqrt(var + eps) + beta, statistics over the last axis of each row.

    Args:
      x: [..., C]. gamma, beta: [C].
    Returns:
      y: same shape as x.
    """
    if jnp.ndim(x) < 1 or gamma.shape != x.shape[-1:] or beta.shape != x.shape[-1:]:
        raise ValueError(f"layer_norm: gamma {gamma.shape} and beta {beta.shape} must match the "
                         f"last axis of x {jnp.shape(x)}")
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return gamma * (x - mu) * jax.lax.rsqrt(var + eps) + beta
