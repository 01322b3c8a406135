"""The optimal discriminator and the Jensen-Shannon divergence, by quadrature (problem set 004
15.1.3).

For a fixed generator with density p_g, V(D) = integral p_data log D + p_g log(1 - D) dx is
maximised pointwise by D*(x) = p_data(x) / (p_data(x) + p_g(x)), and there
V(D*) = -log 4 + 2 JSD(p_data || p_g) (Goodfellow et al. 2014, Theorem 1).

1-D densities are sampled on a uniform grid x [n] and integrated with the trapezoid rule.
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.scipy.stats import norm

from jaxnets.models import gan
from jaxnets.theory.claim import Claim, Outcome, within


def gaussian_mixture_pdf(x: Array, means, stds, weights) -> Array:
    """p(x) = sum_m w_m N(x; mu_m, s_m^2). x: [...]; means, stds, weights: [M] (weights sum 1)."""
    means, stds, weights = (jnp.asarray(a) for a in (means, stds, weights))
    return jnp.sum(weights * norm.pdf(x[..., None], means, stds), axis=-1)


def optimal_discriminator(p_data: Array, p_g: Array) -> Array:
    """D*(x) = p_data / (p_data + p_g), elementwise on density values (NaN where both are 0)."""
    return p_data / (p_data + p_g)


def _xlogy(x: Array, y: Array) -> Array:
    """x log y with 0 log 0 = 0."""
    return jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, y, 1.0)), 0.0)


def value(D: Array, p_data: Array, p_g: Array, x: Array) -> Array:
    """V(D) = integral p_data log D + p_g log(1 - D) dx on the grid x (trapezoid rule)."""
    return jnp.trapezoid(_xlogy(p_data, D) + _xlogy(p_g, 1 - D), x)


def kl(p: Array, q: Array, x: Array) -> Array:
    """KL(p || q) = integral p log(p / q) dx."""
    return jnp.trapezoid(_xlogy(p, p) - _xlogy(p, q), x)


def jsd(p: Array, q: Array, x: Array) -> Array:
    """JSD(p || q) = KL(p || m) / 2 + KL(q || m) / 2, m = (p + q) / 2; in [0, log 2]."""
    m = (p + q) / 2
    return (kl(p, m, x) + kl(q, m, x)) / 2


def expected_d_loss(D, x: Array, p_data: Array, p_g: Array) -> Array:
    """The discriminator's BCE under the true densities, -V(D) = integral p_data softplus(-l)
    + p_g softplus(l) dx, with l = ``models.gan.discriminator(D, x)`` on the grid x [n]."""
    l = gan.discriminator(D, x[:, None])
    return jnp.trapezoid(p_data * jax.nn.softplus(-l) + p_g * jax.nn.softplus(l), x)


@partial(jax.jit, static_argnames=("widths", "steps"))
def fit_discriminator(key: Array, x: Array, p_data: Array, p_g: Array, *,
                      widths: tuple[int, ...] = (64, 64), steps: int = 10_000,
                      learning_rate: float = 1e-2) -> tuple[list, Array]:
    """Train a 1-D discriminator (``models.gan`` MLP) alone on ``expected_d_loss``: full-batch
    Adam with a cosine decay to learning_rate / 1000. Integrating against the densities instead
    of sampling them removes the minibatch noise, so D approaches D* as far as the network can.
    Returns (D, -V(D) at each step [steps])."""
    D = gan.mlp_init(key, (1, *widths, 1), x.dtype)
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-3))

    def step(carry, _):
        D, state = carry
        L, g = jax.value_and_grad(expected_d_loss)(D, x, p_data, p_g)
        updates, state = opt.update(g, state, D)
        return (optax.apply_updates(D, updates), state), L

    (D, _), losses = jax.lax.scan(step, (D, opt.init(D)), None, length=steps)
    return D, losses


# ---------------------------------------------------------------------------------------------
# The problem set's claims (rows of the report; tests/test_gan.py checks the same in more detail).

# p_data: a two-Gaussian mixture; p_g: one wider Gaussian; the grid covers both to 1e-13.
MIXTURE = dict(means=(-2.0, 1.5), stds=(0.5, 0.8), weights=(0.4, 0.6))
GENERATOR = dict(means=(0.0,), stds=(1.5,), weights=(1.0,))


def example_densities() -> tuple[Array, Array, Array]:
    """(x [1601] on [-8, 8], p_data(x), p_g(x)) of the report's 1-D example (float64 if on)."""
    x = jnp.linspace(-8.0, 8.0, 1601)
    return x, gaussian_mixture_pdf(x, **MIXTURE), gaussian_mixture_pdf(x, **GENERATOR)


def _value_at_optimum() -> Outcome:
    with jax.enable_x64(True):
        x, p, q = example_densities()
        v, target = value(optimal_discriminator(p, q), p, q, x), -jnp.log(4.0) + 2 * jsd(p, q, x)
        return within(float(abs(v - target)), 1e-6, "|V(D*) - (-log 4 + 2 JSD)|")


@functools.cache
def example_fit() -> tuple[list, Array]:
    """``fit_discriminator`` on ``example_densities`` (float64, key 0), computed once."""
    with jax.enable_x64(True):
        return fit_discriminator(jax.random.key(0), *example_densities())


def _trained_discriminator() -> Outcome:
    with jax.enable_x64(True):
        x, p, q = example_densities()
        D, losses = example_fit()
        s = jax.nn.sigmoid(gan.discriminator(D, x[:, None]))
        err = float(jnp.max(jnp.where(jnp.maximum(p, q) > 1e-3,
                                      jnp.abs(s - optimal_discriminator(p, q)), 0)))
        gap = float(abs(value(s, p, q, x) + jnp.log(4.0) - 2 * jsd(p, q, x)))
        still = float(losses[-1001] - losses[-1])
        return Outcome(err <= 0.02 and gap <= 1e-3 and still < 1e-6,
                       f"max |D - D*| {err:.2g} (tol 0.02) where p_data or p_g > 1e-3; "
                       f"|V(D) - (-log 4 + 2 JSD)| {gap:.2g} (tol 1e-3); last 1000 steps "
                       f"gained {still:.1g}")


def _saturation() -> Outcome:
    with jax.enable_x64(True):
        p = gan.init(jax.random.key(0), 2, 2, g_hidden=(16,), d_hidden=(16,), dtype=jnp.float64)
        z = jax.random.normal(jax.random.key(2), (256, 2), jnp.float64)
        D, _, _ = gan.train_discriminator(
            jax.random.key(1), p["D"],
            lambda k, n: 6.0 + 0.5 * jax.random.normal(k, (n, 2), jnp.float64),
            lambda k, n: gan.generator(p["G"], jax.random.normal(k, (n, 2), jnp.float64)),
            steps=500, batch_size=64, optimizer=optax.adam(1e-2))
        norms = [optax.tree.norm(jax.grad(gan.generator_loss)(p["G"], D, z, variant=v))
                 for v in ("minimax", "nonsaturating")]
        d_fake = float(jnp.mean(jax.nn.sigmoid(gan.discriminator(D, gan.generator(p["G"], z)))))
        ratio = float(norms[0] / norms[1])
        return Outcome(ratio < 1e-2 and d_fake < 1e-2,
                       f"mean D(G(z)) {d_fake:.1g}: |grad_G| minimax {float(norms[0]):.2g}, "
                       f"non-saturating {float(norms[1]):.2g}, ratio {ratio:.1g} (< 1e-2)")


CLAIMS = [
    Claim("004", "15.1.3", "V(D*) = -log 4 + 2 JSD(p_data || p_g) at D* = p_data / (p_data + p_g)",
          "quadrature of V(D*) and of the JSD on a 1,601-point grid", _value_at_optimum),
    Claim("004", "15.1.3", "D trained alone until it stops improving is D* = p_data / (p_data + "
          "p_g)", "fit_discriminator (MLP, expected BCE, 10,000 Adam steps) vs D*",
          _trained_discriminator),
    Claim("004", "15.2.1", "when D rejects the fakes, the minimax generator gradient vanishes and "
          "the non-saturating one does not", "D trained 500 steps against fixed fakes; "
          "global norms of both G-gradients", _saturation),
]
