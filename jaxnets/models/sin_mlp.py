"""One-hidden-layer MLP with sin activation and softmax output (problem set 001 Q2).

    h_a = W1 x + b1,  h_s = sin(h_a),  o_a = W2 h_s + b2,  o_s = softmax(o_a),
    L(x, y) = -log o_s[y].

Params are ``{"W1": [d_h, d], "b1": [d_h], "W2": [m, d_h], "b2": [m]}``. A batch is a pair
``(x: [B, d] floats, y: [B] int labels in [0, m))``; the loss is the mean over the batch.
``apply`` also takes a single example x: [d], so it can be vmapped as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxnets import functional as F
from jaxnets import losses
from jaxnets._checks import check_batch
from jaxnets.functional import softmax

Params = dict[str, Array]
Batch = tuple[Array, Array]

_init_weight = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2
)


def init(key: Array, d: int, d_h: int, m: int, dtype=jnp.float32) -> Params:
    """LeCun-normal weights (variance 1/fan_in), zero biases.

    Args:
      key: a PRNG key. d: input size. d_h: hidden units. m: classes.
    Returns:
      {"W1": [d_h, d], "b1": [d_h], "W2": [m, d_h], "b2": [m]}.
    """
    for name, v in (("d", d), ("d_h", d_h), ("m", m)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"sin_mlp.init: {name} must be a positive integer, got {v!r}")
    k1, k2 = jax.random.split(key)
    return {
        "W1": _init_weight(k1, (d_h, d), dtype),
        "b1": jnp.zeros((d_h,), dtype),
        "W2": _init_weight(k2, (m, d_h), dtype),
        "b2": jnp.zeros((m,), dtype),
    }


def sizes(params: Params) -> tuple[int, int, int]:
    """(d, d_h, m) read from the parameter shapes."""
    d_h, d = params["W1"].shape
    return d, d_h, params["W2"].shape[0]


def _two_layer(params: Params, x: Array, phi: Callable[[Array], Array]) -> Array:
    """W2 phi(W1 x + b1) + b2 on x: [..., d_in]; the architecture shared by forward and Q2(p)."""
    return phi(x @ params["W1"].T + params["b1"]) @ params["W2"].T + params["b2"]


class Activations(NamedTuple):
    """The forward pass's intermediate values, each [..., size]."""

    h_a: Array  # [..., d_h] hidden pre-activation
    h_s: Array  # [..., d_h] sin(h_a)
    o_a: Array  # [..., m]   logits
    o_s: Array  # [..., m]   softmax(o_a)


def forward(params: Params, x: Array) -> Activations:
    """All intermediate values of the forward pass for x: [..., d]."""
    d = sizes(params)[0]
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != d:
        raise ValueError(f"sin_mlp: x must have shape [..., {d}], got {jnp.shape(x)}")
    h_a = x @ params["W1"].T + params["b1"]
    h_s = F.sin(h_a)
    o_a = h_s @ params["W2"].T + params["b2"]
    return Activations(h_a, h_s, o_a, softmax(o_a))


def apply(params: Params, x: Array) -> Array:
    """Logits o_a = W2 sin(W1 x + b1) + b2. x: [..., d]. Returns [..., m]."""
    return forward(params, x).o_a


def _checked(params: Params, batch: Batch, where: str) -> Batch:
    d, _, m = sizes(params)
    return check_batch(batch, d, m, where)


def loss(params: Params, batch: Batch) -> Array:
    """Mean NLL (1/B) sum_i -log o_s(x_i)[y_i]. batch: (x: [B, d], y: [B]). Returns a scalar."""
    x, y = _checked(params, batch, "sin_mlp.loss")
    return jnp.mean(losses.softmax_cross_entropy(apply(params, x), y))


def metrics(params: Params, batch: Batch) -> dict[str, Array]:
    """{"loss": mean NLL, "accuracy": fraction of argmax o_a == y} on one batch."""
    x, y = _checked(params, batch, "sin_mlp.metrics")
    return losses.classification_metrics(apply(params, x), y)


def manual_grads(params: Params, batch: Batch) -> Params:
    """Backpropagation written out as in problem set 001 Q2(g)-(o), averaged over the batch.

    Per example (column vectors), then (1/B) sum over the batch (rows below are examples):
      dL/do_a = o_s - onehot_m(y)                       (g)    [m]
      dL/dW2  = dL/do_a h_s^T,  dL/db2 = dL/do_a        (h-i)  [m, d_h], [m]
      dL/dh_s = W2^T dL/do_a                            (j-k)  [d_h]
      dL/dh_a = dL/dh_s * phi'(h_a),  phi' = cos        (l-m)  [d_h]
      dL/dW1  = dL/dh_a x^T,    dL/db1 = dL/dh_a        (n-o)  [d_h, d], [d_h]
    Returns the same tree as ``jax.grad(loss)(params, batch)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnets.models import sin_mlp
        >>> params = sin_mlp.init(jax.random.key(0), d=4, d_h=8, m=3)
        >>> batch = (jax.random.normal(jax.random.key(1), (5, 4)), jnp.array([0, 1, 2, 1, 0]))
        >>> manual = sin_mlp.manual_grads(params, batch)
        >>> auto = jax.grad(sin_mlp.loss)(params, batch)
        >>> all(bool(jnp.allclose(manual[k], auto[k], atol=1e-6)) for k in auto)
        True
    """
    x, y = _checked(params, batch, "sin_mlp.manual_grads")
    h_a, h_s, _, o_s = forward(params, x)
    m = o_s.shape[-1]
    do_a = (o_s - jax.nn.one_hot(y, m, dtype=o_s.dtype)) / x.shape[0]  # [B, m], 1/B folded in
    dh_s = do_a @ params["W2"]  # [B, d_h]: row i is W2^T dL/do_a(i)
    dh_a = dh_s * F.cos(h_a)  # [B, d_h]
    return {
        "W1": dh_a.T @ x,  # [d_h, d] = sum_i dL/dh_a(i) x(i)^T
        "b1": jnp.sum(dh_a, axis=0),
        "W2": do_a.T @ h_s,  # [m, d_h] = sum_i dL/do_a(i) h_s(i)^T
        "b2": jnp.sum(do_a, axis=0),
    }


def input_grads(params: Params, batch: Batch) -> Array:
    """dL(x_i, y_i)/dx_i for each example, as a forward pass of the same architecture (Q2(p)).

    dL/dx = W1^T (cos(h_a) * (W2^T (o_s - onehot(y)))) is ``W2' phi'(W1' u + b1') + b2'`` with
      input u = o_s - onehot(y)   [m]       (computed by the ordinary forward pass),
      W1' = W2^T  [d_h, m],  b1' = 0,
      phi'(v) = cos(h_a) * v      (elementwise, like sin, but a gate fixed by this example),
      W2' = W1^T  [d, d_h],  b2' = 0,  and no softmax on the output:
    the network run backwards, transposed weights, no biases, cos(h_a) gating the hidden units.
    Returns [B, d] (per-example gradients, not divided by B).
    """
    x, y = _checked(params, batch, "sin_mlp.input_grads")
    h_a, _, _, o_s = forward(params, x)
    d, d_h, m = sizes(params)
    u = o_s - jax.nn.one_hot(y, m, dtype=o_s.dtype)  # [B, m]
    backward_params = {
        "W1": params["W2"].T,
        "b1": jnp.zeros((d_h,), u.dtype),
        "W2": params["W1"].T,
        "b2": jnp.zeros((d,), u.dtype),
    }
    return _two_layer(backward_params, u, phi=lambda v: F.cos(h_a) * v)


def manual_hvp(params: Params, batch: Batch, v: Params) -> Params:
    """H v, the Hessian of ``loss`` times v, by Pearlmutter's R-operator R{.} = d/dr (.)(params
    + r v) at r = 0, applied to the forward pass and to ``manual_grads`` line by line.

    R-forward (rows are examples; V1, c1, V2, c2 = v's W1, b1, W2, b2):
      R{h_a} = x V1^T + c1                                   [B, d_h]
      R{h_s} = cos(h_a) * R{h_a}
      R{o_a} = R{h_s} W2^T + h_s V2^T + c2                   [B, m]
      R{o_s} = o_s * (R{o_a} - sum_j o_s_j R{o_a}_j)         (softmax's JVP)
    R-backward (d. = dL/d., 1/B folded into do_a = (o_s - onehot(y)) / B):
      R{do_a} = R{o_s} / B
      R{dW2} = R{do_a}^T h_s + do_a^T R{h_s},   R{db2} = sum_i R{do_a}
      R{dh_s} = R{do_a} W2 + do_a V2
      R{dh_a} = R{dh_s} * cos(h_a) - dh_s * sin(h_a) * R{h_a}
      R{dW1} = R{dh_a}^T x,                     R{db1} = sum_i R{dh_a}
    Returns a tree like params, equal to ``curvature.hvp(loss, params, batch, v)``.
    """
    x, y = _checked(params, batch, "sin_mlp.manual_hvp")
    h_a, h_s, _, o_s = forward(params, x)
    m = o_s.shape[-1]
    do_a = (o_s - jax.nn.one_hot(y, m, dtype=o_s.dtype)) / x.shape[0]
    dh_s = do_a @ params["W2"]
    cos_h, sin_h = F.cos(h_a), F.sin(h_a)
    R_h_a = x @ v["W1"].T + v["b1"]
    R_h_s = cos_h * R_h_a
    R_o_a = R_h_s @ params["W2"].T + h_s @ v["W2"].T + v["b2"]
    R_do_a = o_s * (R_o_a - jnp.sum(o_s * R_o_a, axis=-1, keepdims=True)) / x.shape[0]
    R_dh_s = R_do_a @ params["W2"] + do_a @ v["W2"]
    R_dh_a = R_dh_s * cos_h - dh_s * sin_h * R_h_a
    return {
        "W1": R_dh_a.T @ x,
        "b1": jnp.sum(R_dh_a, axis=0),
        "W2": R_do_a.T @ h_s + do_a.T @ R_h_s,
        "b2": jnp.sum(R_do_a, axis=0),
    }
