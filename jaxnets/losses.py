"""Losses and information measures, per example (no reduction), batch-first.

Integer labels index the last axis of logits; distributions lie along the last axis.
0 log 0 is taken as 0 (``xlogy``), so distributions with zeros are handled exactly.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.scipy.special import xlogy

from jaxnets.functional import log_softmax, softmax, softplus


def _pick(values: Array, labels: Array) -> Array:
    """values[..., labels] along the last axis. values: [..., m], labels: [...] -> [...]."""
    return jnp.take_along_axis(values, labels[..., None], axis=-1)[..., 0]


def nll(log_probs: Array, labels: Array) -> Array:
    """Negative log-likelihood -log p_y. log_probs: [..., m], labels: [...] ints. Returns [...]."""
    return -_pick(log_probs, labels)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Cross-entropy from logits, L = -log S(o)_y = logsumexp(o) - o_y  (problem set 001 Q2(d)).

    Stable for logits of any magnitude. logits: [..., m], labels: [...] ints. Returns [...].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnets import losses
        >>> o, y = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0])
        >>> bool(jnp.allclose(jax.grad(lambda o: losses.softmax_cross_entropy(o, y).sum())(o),
        ...                   losses.softmax_cross_entropy_grad(o, y)))  # dL/do = S(o) - onehot
        True
    """
    return nll(log_softmax(logits), labels)


def softmax_cross_entropy_grad(logits: Array, labels: Array) -> Array:
    """dL/do = S(o) - onehot(y)  (problem sets 001 Q2(g), 003 Q3(b)). Returns [..., m]."""
    return softmax(logits) - jnp.eye(logits.shape[-1], dtype=logits.dtype)[labels]


def binary_cross_entropy(logits: Array, targets: Array) -> Array:
    """BCE from a logit z and a target t in [0, 1]: -t log sigma(z) - (1 - t) log(1 - sigma(z)).

    Uses -log sigma(z) = softplus(-z) (problem set 001 Q1(d)), so it equals softplus(z) - t z
    exactly and never takes log 0. Shapes broadcast; returns the elementwise loss.
    """
    return softplus(logits) - targets * logits


def mse(predictions: Array, targets: Array) -> Array:
    """Mean squared error over the last axis: mean_i (p_i - t_i)^2. Returns [...]."""
    return jnp.mean((predictions - targets) ** 2, axis=-1)


def entropy(p: Array) -> Array:
    """Shannon entropy H(p) = -sum_i p_i log p_i (nats). p: [..., n]. Returns [...]."""
    return -jnp.sum(xlogy(p, p), axis=-1)


def cross_entropy(p: Array, q: Array) -> Array:
    """H(p, q) = -sum_i p_i log q_i (nats). p, q: [..., n]. Returns [...]."""
    return -jnp.sum(xlogy(p, q), axis=-1)


def kl_divergence(p: Array, q: Array) -> Array:
    """KL(p || q) = sum_i p_i (log p_i - log q_i). p, q: [..., n]. Returns [...]."""
    return jnp.sum(xlogy(p, p) - xlogy(p, q), axis=-1)


def classification_metrics(logits: Array, labels: Array) -> dict[str, Array]:
    """{"loss": mean softmax cross-entropy, "accuracy": fraction of argmax logits == label}.

    logits: [B, m], labels: [B] ints. Returns two scalars.
    """
    return {
        "loss": jnp.mean(softmax_cross_entropy(logits, labels)),
        "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels),
    }
