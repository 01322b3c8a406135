"""Activations, softmax, and their closed-form derivatives, Jacobians and O(n) VJPs.

Every function is elementwise or acts on the last axis, so it is batch-first, jittable and
vmappable as written. Derivatives follow problem set 001 Q1 and problem set 002 Q1-Q2.

Seed errata (checked against ``jax.jacobian`` in tests/test_functional.py):
- problem set 002 Q2.1 states dS_i/dx_j = S_i (delta_ij S_j); the minus sign is missing: it is
  S_i (delta_ij - S_j), as the worked answer then derives.
- problem set 002 Q2.2, case table (4): the signs are wrong (it gives +S_i S_j off the diagonal and
  S_i^2 - S_i on it); the entries are -S_i S_j and S_i - S_i^2. The matrix form
  diag(S) - S S^T that follows is right.
- problem set 002 Q2.4 multiplies by "sigma(x) - 1" where it means 1 - sigma(x).
- problem set 003 Q3(a) boxes dS_i/dz_j = s_i (s_j - s_i); the correct form is s_i (delta_ij - s_j).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

# Cody-Waite split of pi/2 (Cephes): C1 + C2 + C3 = pi/2 to about 1e-24; C1 and C2 have few
# enough significant bits that k * C1 and k * C2 are exact in float32 for |k| < 2**12.
_PIO2_C1, _PIO2_C2, _PIO2_C3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8
# Minimax polynomials for sin and cos on [-pi/4, pi/4] (Cephes sinf/cosf).
_SIN_P = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
_COS_P = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)


def _sincos_f32(x: Array) -> tuple[Array, Array]:
    """(sin x, cos x) in float32 by quadrant reduction and two short polynomials.

    x = k pi/2 + r with |r| <= pi/4; sin and cos of r by polynomial, then the quadrant k mod 4
    picks and signs them. About 0.3 ns per element on a 2-core Xeon against about 4.5 ns for
    XLA CPU's jnp.sin (measured in experiments/benchmark_sweep.py); max abs error 1e-7 against
    float64 sin (tests/test_functional.py); non-finite x gives NaN.
    """
    k = jnp.round(x * jnp.float32(2 / jnp.pi))
    r = ((x - k * _PIO2_C1) - k * _PIO2_C2) - k * _PIO2_C3
    z = r * r
    s = r + r * z * (_SIN_P[0] + z * (_SIN_P[1] + z * _SIN_P[2]))
    c = 1 - 0.5 * z + z * z * (_COS_P[0] + z * (_COS_P[1] + z * _COS_P[2]))
    q = jnp.where(jnp.isfinite(k), k, 0).astype(jnp.int32)
    # quadrant q mod 4 = 0, 1, 2, 3: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s); bit tests
    # rather than jnp.select, which XLA CPU lowers to an arg-max over the stacked conditions
    odd = (q & 1) == 1
    sin = jnp.where(odd, c, s)
    cos = jnp.where(odd, s, c)
    return jnp.where((q & 2) == 2, -sin, sin), jnp.where(((q + 1) & 2) == 2, -cos, cos)


def _fast(x: Array) -> bool:
    """Use the polynomial for float32 and narrower floats; float64 keeps the exact jnp.sin."""
    return jnp.result_type(x) != jnp.float64


@jax.custom_jvp
def sin(x: Array) -> Array:
    """sin x: exact ``jnp.sin`` in float64; in float32 a polynomial, |error| <= 1.2e-7.

    Its derivative is ``cos`` below, computed by the same scheme, so in float32 a hand-derived
    gradient using ``cos`` equals ``jax.grad`` to rounding, and in float64 both are exact.
    """
    if _fast(x):
        return _sincos_f32(jnp.asarray(x, jnp.float32))[0].astype(jnp.result_type(x))
    return jnp.sin(x)


@sin.defjvp
def _sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    if _fast(x):
        s, c = _sincos_f32(jnp.asarray(x, jnp.float32))
        return s.astype(jnp.result_type(x)), c.astype(jnp.result_type(x)) * t
    return jnp.sin(x), jnp.cos(x) * t


def cos(x: Array) -> Array:
    """cos x = sin'(x), by the same scheme as ``sin`` (exact in float64)."""
    if _fast(x):
        return _sincos_f32(jnp.asarray(x, jnp.float32))[1].astype(jnp.result_type(x))
    return jnp.cos(x)


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid sigma(x) = 1 / (1 + exp(-x)), stable for large |x|."""
    return jax.nn.sigmoid(x)


def sigmoid_grad(x: Array) -> Array:
    """sigma'(x) = sigma(x) (1 - sigma(x))  (problem set 001 Q1(b))."""
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def tanh_grad(x: Array) -> Array:
    """tanh'(x) = 1 - tanh(x)^2."""
    return 1 - jnp.tanh(x) ** 2


def softplus(x: Array) -> Array:
    """softplus(x) = ln(1 + exp(x)) = logaddexp(x, 0), stable for large |x|. (The form
    max(x, 0) + log1p(exp(-|x|)) has the same values but autodiff gives it slope 0 at x = 0,
    where the halves' one-sided choices cancel; softplus'(0) = 1/2.)"""
    return jnp.logaddexp(x, 0.0)


def softplus_grad(x: Array) -> Array:
    """softplus'(x) = sigma(x)."""
    return sigmoid(x)


def relu(x: Array) -> Array:
    """Rectifier max(0, x)  (problem set 001 Q1(a))."""
    return jnp.maximum(x, 0)


def heaviside(x: Array) -> Array:
    """Heaviside step: 1 for x > 0, 0 for x < 0, 1/2 at 0  (problem set 001 Q1)."""
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

    Subtracting max x (translation invariance, problem set 001 Q1(j)) keeps exp finite for logits
    of any magnitude. Args: x: [..., n]. Returns: [..., n].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxnets import functional as F
        >>> F.softmax(jnp.array([1e4, 1e4, 0.0])).tolist()  # no overflow
        [0.5, 0.5, 0.0]
    """
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def log_softmax(x: Array) -> Array:
    """log S(x) = (x - max x) - log sum_j exp(x_j - max x), over the last axis. x: [..., n]."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


def softmax_jacobian(x: Array) -> Array:
    """dS/dx = diag(S) - S S^T  (problem set 001 Q1(l)). x: [..., n]. Returns [..., n, n]."""
    s = softmax(x)
    return s[..., :, None] * jnp.eye(s.shape[-1], dtype=s.dtype) - s[..., :, None] * s[..., None, :]


def sigmoid_vjp(x: Array, g: Array) -> Array:
    """(dsigma/dx)^T g = sigma(x) (1 - sigma(x)) * g in O(n)  (problem set 001 Q1(m), problem set
    002 Q2.4).

    The Jacobian diag(sigma (1 - sigma)) is diagonal, so its product is elementwise.
    Args: x, g: [..., n]. Returns [..., n].
    """
    return sigmoid_grad(x) * g


def softmax_vjp(x: Array, g: Array) -> Array:
    """(dS/dx)^T g = S * (g - S . g) in O(n)  (problem set 001 Q1(m), problem set 002 Q2.4).

    From (diag(S) - S S^T)^T g = S * g - S (S^T g): one elementwise product and one dot product,
    never an n x n matrix. Args: x, g: [..., n]. Returns [..., n].
    """
    s = softmax(x)
    return s * (g - jnp.sum(s * g, axis=-1, keepdims=True))
