"""Activations, softmax, and their closed-form derivatives, Jacobians and O(n) VJPs.

Every function is elementwise or acts on the last axis, so it is batch-first, jittable and
vmappable as written. Derivatives follow seed 001 Q1 and seed 002 Q1-Q2.

Seed errata (checked against ``jax.jacobian`` in tests/test_functional.py):
- seed 002 Q2.1 states dS_i/dx_j = S_i (delta_ij S_j); the minus sign is missing: it is
  S_i (delta_ij - S_j), as the worked answer then derives.
- seed 002 Q2.2, case table (4): the signs are wrong (it gives +S_i S_j off the diagonal and
  S_i^2 - S_i on it); the entries are -S_i S_j and S_i - S_i^2. The matrix form
  diag(S) - S S^T that follows is right.
- seed 002 Q2.4 multiplies by "sigma(x) - 1" where it means 1 - sigma(x).
- seed 003 Q3(a) boxes dS_i/dz_j = s_i (s_j - s_i); the correct form is s_i (delta_ij - s_j).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid sigma(x) = 1 / (1 + exp(-x)), stable for large |x|."""
    return jax.nn.sigmoid(x)


def sigmoid_grad(x: Array) -> Array:
    """sigma'(x) = sigma(x) (1 - sigma(x))  (seed 001 Q1(b))."""
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def tanh_grad(x: Array) -> Array:
    """tanh'(x) = 1 - tanh(x)^2."""
    return 1 - jnp.tanh(x) ** 2


def softplus(x: Array) -> Array:
    """softplus(x) = ln(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|))."""
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def softplus_grad(x: Array) -> Array:
    """softplus'(x) = sigma(x)."""
    return sigmoid(x)


def relu(x: Array) -> Array:
    """Rectifier max(0, x)  (seed 001 Q1(a))."""
    return jnp.maximum(x, 0)


def heaviside(x: Array) -> Array:
    """Heaviside step: 1 for x > 0, 0 for x < 0, 1/2 at 0  (seed 001 Q1)."""
    return jnp.heaviside(x, jnp.asarray(0.5, dtype=jnp.result_type(x, float)))


def relu_grad(x: Array) -> Array:
    """relu'(x) = H(x) away from 0.

    At 0 relu has no derivative; this returns H(0) = 1/2 (the midpoint of the subdifferential),
    whereas ``jax.grad(jax.nn.relu)(0.)`` returns 0. Both are valid subgradients.
    """
    return heaviside(x)


def sign(x: Array) -> Array:
    """sign(x): +1 for x > 0, -1 for x < 0, 0 at 0."""
    return jnp.sign(x)


def softmax(x: Array) -> Array:
    """Softmax over the last axis, S(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x).

    Subtracting max x (translation invariance, seed 001 Q1(j)) keeps exp finite for logits of any
    magnitude. Args: x: [..., n]. Returns: [..., n].
    """
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def log_softmax(x: Array) -> Array:
    """log S(x) = (x - max x) - log sum_j exp(x_j - max x), over the last axis. x: [..., n]."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


def softmax_jacobian(x: Array) -> Array:
    """dS/dx = diag(S) - S S^T  (seed 001 Q1(l)). x: [..., n]. Returns [..., n, n]."""
    s = softmax(x)
    return s[..., :, None] * jnp.eye(s.shape[-1], dtype=s.dtype) - s[..., :, None] * s[..., None, :]


def sigmoid_vjp(x: Array, g: Array) -> Array:
    """(dsigma/dx)^T g = sigma(x) (1 - sigma(x)) * g in O(n)  (seed 001 Q1(m), seed 002 Q2.4).

    The Jacobian diag(sigma (1 - sigma)) is diagonal, so its product is elementwise.
    Args: x, g: [..., n]. Returns [..., n].
    """
    return sigmoid_grad(x) * g


def softmax_vjp(x: Array, g: Array) -> Array:
    """(dS/dx)^T g = S * (g - <S, g>) in O(n)  (seed 001 Q1(m), seed 002 Q2.4).

    From (diag(S) - S S^T)^T g = S * g - S (S^T g): one elementwise product and one dot product,
    never an n x n matrix. Args: x, g: [..., n]. Returns [..., n].
    """
    s = softmax(x)
    return s * (g - jnp.sum(s * g, axis=-1, keepdims=True))
