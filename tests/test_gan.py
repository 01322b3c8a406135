"""GAN (problem set 004 section 15): networks against numpy, the losses against their log forms, the
gradient penalty against an independent Jacobian, the generator's gradient of V (15.2.1), the
saturation of the minimax loss, the optimal discriminator and V(D*) = -log 4 + 2 JSD (15.1.3),
whole runs under vmap (seeds side by side, one member diverging), argument checks, and the ring
of Gaussians with its coverage metrics.

Test inputs come from numpy and the JAX work of a test is mostly one jitted function: run eagerly,
every op compiles once per shape, and that, not the arithmetic, is what costs time here."""

import math
import re
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxnets import train
from jaxnets.models import gan
from jaxnets.theory import gan as tgan
from jaxnets.train import driver

LOG4 = math.log(4.0)


def _rand(seed, shape, uniform=False):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(size=shape) if uniform else rng.normal(size=shape))


def _layers(widths, seed):
    """Dense layers in float64 (under x64) with Var W = 1/fan_in and non-zero biases, so every
    term of the forward pass is exercised."""
    rng = np.random.default_rng(seed)
    return [{"W": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a)),
             "b": jnp.asarray(0.3 * rng.normal(size=b))}
            for a, b in zip(widths[:-1], widths[1:], strict=True)]


def _params64(seed):
    """d_z = 3, d_x = 2; G 3 -> 8 -> 6 -> 2, D 2 -> 7 -> 5 -> 1."""
    return {"G": _layers((3, 8, 6, 2), seed), "D": _layers((2, 7, 5, 1), seed + 1000)}


def _np_mlp(layers, x, hidden, last):
    """numpy float64 forward of a list of dense layers."""
    x = np.asarray(x, np.float64)
    for n, layer in enumerate(layers):
        x = x @ np.asarray(layer["W"], np.float64) + np.asarray(layer["b"], np.float64)
        x = hidden(x) if n < len(layers) - 1 else last(x)
    return x


def _np_sigmoid(a):
    return 1 / (1 + np.exp(-a))


NP_OUT = {"linear": lambda a: a, "sigmoid": _np_sigmoid, "tanh": np.tanh}


def _global_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2)
                             for v in jax.tree.leaves(tree))))


_init_small = jax.jit(partial(gan.init, d_z=2, d_x=2, g_hidden=(16, 16), d_hidden=(16, 16)),
                      static_argnames="dtype")


def _small32(seed):
    """G 2 -> 16 -> 16 -> 2, D 2 -> 16 -> 16 -> 1, float32."""
    return _init_small(jax.random.key(seed))


# ---------------------------------------------------------------------------------------------
# 1. Parameters and networks

def test_init_structure_parameter_count_and_sizes(x64):
    d_z, d_x, g_hidden, d_hidden = 3, 2, (5, 7), (4,)
    p = jax.jit(lambda k: gan.init(k, d_z, d_x, g_hidden=g_hidden, d_hidden=d_hidden,
                                   dtype=jnp.float64))(jax.random.key(0))
    assert set(p) == {"G", "D"}
    assert jax.tree.map(jnp.shape, p) == {
        "G": [{"W": (3, 5), "b": (5,)}, {"W": (5, 7), "b": (7,)}, {"W": (7, 2), "b": (2,)}],
        "D": [{"W": (2, 4), "b": (4,)}, {"W": (4, 1), "b": (1,)}]}
    assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(p))
    assert all(np.all(np.asarray(l["b"]) == 0) for l in p["G"] + p["D"])
    assert all(np.any(np.asarray(l["W"]) != 0) for l in p["G"] + p["D"])
    # G: (3+1)5 + (5+1)7 + (7+1)2 = 78; D: (2+1)4 + (4+1)1 = 17
    assert sum(v.size for v in jax.tree.leaves(p)) == 78 + 17
    assert gan.sizes(p) == (d_z, d_x)
    # the defaults: two hidden layers of 128 in both nets, float32
    q = jax.eval_shape(lambda k: gan.init(k, 4, 3), jax.random.key(1))
    widths = ((4, 128, 128, 3), (3, 128, 128, 1))
    want = sum((a + 1) * b for w in widths for a, b in zip(w[:-1], w[1:], strict=True))
    assert sum(v.size for v in jax.tree.leaves(q)) == want
    assert gan.sizes(q) == (4, 3)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(q))
    # G and D draw from different keys: their 16 x 16 middle layers differ
    r = _small32(0)
    assert not np.allclose(r["G"][1]["W"], r["D"][1]["W"])


def test_generator_and_discriminator_equal_numpy(x64):
    p, z, x = _params64(0), _rand(1, (9, 3)), _rand(2, (9, 2))

    @jax.jit
    def forward(p, z, x):
        return ({out: gan.generator(p["G"], z, out=out) for out in NP_OUT},
                gan.discriminator(p["D"], x))

    gs, l = forward(p, z, x)
    for out, g in gs.items():
        chex.assert_shape(g, (9, 2))
        want = _np_mlp(p["G"], z, lambda a: np.maximum(a, 0.0), NP_OUT[out])
        np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-15)
        if out == "sigmoid":
            assert np.all((np.asarray(g) > 0) & (np.asarray(g) < 1))
        if out == "tanh":
            assert np.all((np.asarray(g) > -1) & (np.asarray(g) < 1))
    assert np.max(np.abs(gs["linear"])) > 1  # the linear output is not squashed
    chex.assert_shape(l, (9,))
    leaky = lambda a: np.where(a >= 0, a, 0.2 * a)  # noqa: E731
    np.testing.assert_allclose(l, _np_mlp(p["D"], x, leaky, lambda a: a)[:, 0],
                               rtol=1e-13, atol=1e-15)
    # unjitted, the same numbers
    np.testing.assert_allclose(gan.discriminator(p["D"], x), l, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# 2. Losses

def _log_forms(l_r, l_f):
    s_r, s_f = jax.nn.sigmoid(l_r), jax.nn.sigmoid(l_f)
    return (-(jnp.mean(jnp.log(s_r)) + jnp.mean(jnp.log(1 - s_f))),  # d_loss_bce
            jnp.mean(jnp.log(1 - s_f)),  # g_loss_minimax
            -jnp.mean(jnp.log(s_f)))  # g_loss_nonsaturating


@jax.jit
def _losses(l_r, l_f):
    return gan.d_loss_bce(l_r, l_f), gan.g_loss_minimax(l_f), gan.g_loss_nonsaturating(l_f)


def test_losses_equal_their_log_forms(x64):
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 5.0):
        l_r, l_f = (jnp.asarray(scale * rng.normal(size=n)) for n in (17, 11))
        np.testing.assert_allclose(_losses(l_r, l_f), jax.jit(_log_forms)(l_r, l_f),
                                   rtol=1e-12, atol=1e-15)


def test_losses_are_stable_at_large_logits():
    """float32, l = +-100: the log forms give log(0) = -inf; softplus keeps every loss and
    gradient finite and right (softplus(100) = 100 + log1p(e^-100), softplus(-100) = e^-100)."""
    big, small = jnp.full(4, 100.0), jnp.full(4, -100.0)

    @jax.jit
    def all_losses(l_r, l_f):
        return jax.value_and_grad(lambda a, b: jnp.stack(_losses(a, b)) @ jnp.ones(3),
                                  argnums=(0, 1))(l_r, l_f), _losses(l_r, l_f)

    for l_r, l_f, want in ((big, small, (0.0, 0.0, 100.0)), (small, big, (200.0, -100.0, 0.0))):
        (total, grads), values = all_losses(l_r, l_f)
        np.testing.assert_allclose(values, want, atol=1e-6)
        assert np.isfinite(total) and all(np.all(np.isfinite(g)) for g in grads)
    # what the stable forms guard against: the naive log form is not finite there
    assert not np.isfinite(_log_forms(small, big)[0])


def test_value_is_minus_the_bce_of_the_logits(x64):
    p, x, z = _params64(1), _rand(0, (12, 2)), _rand(1, (10, 3))

    @partial(jax.jit, static_argnames="out")
    def both(p, x, z, out):
        l_r = gan.discriminator(p["D"], x)
        l_f = gan.discriminator(p["D"], gan.generator(p["G"], z, out=out))
        return (gan.value(p, x, z, out=out), -gan.d_loss_bce(l_r, l_f),
                jnp.mean(jnp.log(jax.nn.sigmoid(l_r))) + jnp.mean(jnp.log(1 - jax.nn.sigmoid(l_f))))

    for out in ("linear", "tanh"):
        v, minus_bce, log_form = both(p, x, z, out)
        np.testing.assert_allclose(v, minus_bce, rtol=1e-14)
        np.testing.assert_allclose(v, log_form, rtol=1e-12)  # E log D(x) + E log(1 - D(G(z)))


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_loss_is_discriminator_loss_and_generator_loss(x64, variant):
    p, x, z, eps = _params64(2), _rand(0, (8, 2)), _rand(1, (8, 3)), _rand(2, (8,), uniform=True)
    kw = {"eps": eps} if variant == "wgan-gp" else {}

    @jax.jit
    def pieces(p):
        x_fake = gan.generator(p["G"], z, out="tanh")
        l_r, l_f = gan.discriminator(p["D"], x), gan.discriminator(p["D"], x_fake)
        return (gan.loss(p, (x, z), variant=variant, penalty=3.0, out="tanh", **kw),
                gan.loss(p, (x, z), variant=variant, penalty=0.0, out="tanh", **kw),
                (gan.discriminator_loss(p["D"], x, x_fake, eps, variant=variant, penalty=3.0),
                 gan.generator_loss(p["G"], p["D"], z, variant=variant, out="tanh")),
                l_r, l_f, gan.gradient_penalty(p["D"], x, x_fake, eps))

    (L_D, L_G), (L_D0, L_G0), parts, l_r, l_f, gp = pieces(p)
    np.testing.assert_allclose((L_D, L_G), parts, rtol=1e-14)
    # each against its definition from the logits
    if variant == "wgan-gp":
        want = (jnp.mean(l_f) - jnp.mean(l_r) + 3.0 * gp, -jnp.mean(l_f))
        assert gp > 1e-3
        np.testing.assert_allclose(L_D - L_D0, 3.0 * gp, rtol=1e-12)
    else:
        g_loss = gan.g_loss_minimax if variant == "minimax" else gan.g_loss_nonsaturating
        want = (gan.d_loss_bce(l_r, l_f), g_loss(l_f))
        assert L_D == L_D0  # the penalty weight is not used
    assert L_G == L_G0
    np.testing.assert_allclose((L_D, L_G), want, rtol=1e-13, atol=1e-15)


def test_loss_wgan_gp_without_eps_is_a_clear_error():
    p = _small32(0)
    with pytest.raises(ValueError, match=r"gan.loss: wgan-gp needs eps \[B\]"):
        gan.loss(p, (jnp.zeros((3, 2)), jnp.zeros((3, 2))), variant="wgan-gp")


# ---------------------------------------------------------------------------------------------
# 3. Gradient penalty

_gp = jax.jit(gan.gradient_penalty)


@pytest.mark.parametrize("w", [[3.0, 4.0], [0.6, 0.8], [0.1, -0.2, 0.05], [-2.0, 0.0, 1.0]])
def test_gradient_penalty_of_an_affine_critic_is_norm_minus_one_squared(x64, w):
    """One layer: f(x) = x.w + b, grad_x f = w everywhere, so the penalty is (||w|| - 1)^2 for
    any x_real, x_fake and eps."""
    D = [{"W": jnp.asarray(w)[:, None], "b": jnp.array([0.7])}]
    rng = np.random.default_rng(len(w))
    x_r, x_f = (jnp.asarray(rng.normal(size=(5, len(w))) * 3) for _ in range(2))
    want = (math.sqrt(sum(v * v for v in w)) - 1) ** 2
    for eps in (jnp.asarray(rng.uniform(size=5)), jnp.zeros(5), jnp.ones(5)):
        np.testing.assert_allclose(_gp(D, x_r, x_f, eps), want, rtol=1e-10, atol=1e-12)


def test_gradient_penalty_equals_per_sample_jacobian_norms(x64):
    D = _layers((3, 16, 8, 1), 0)
    x_r, x_f = _rand(1, (6, 3)) + 1.0, _rand(2, (6, 3)) - 1.0
    eps = _rand(3, (6,), uniform=True)
    xh = np.asarray(eps)[:, None] * np.asarray(x_r) + (1 - np.asarray(eps))[:, None] * x_f
    J = np.asarray(jax.jit(jax.jacobian(lambda X: gan.discriminator(D, X)))(jnp.asarray(xh)))
    chex.assert_shape(J, (6, 6, 3))  # d f(xh_i) / d xh_j
    assert np.all(J * (1 - np.eye(6))[:, :, None] == 0)  # f(xh_i) depends on xh_i alone
    norms = np.linalg.norm(J[np.arange(6), np.arange(6)], axis=-1)
    assert np.ptp(norms) > 1e-3  # the critic is not affine: norms differ sample to sample
    np.testing.assert_allclose(_gp(D, x_r, x_f, eps), np.mean((norms - 1) ** 2), rtol=1e-10)


def test_gradient_penalty_second_order_gradient(x64):
    D = _layers((2, 8, 8, 1), 7)
    x_r, x_f, eps = _rand(3, (4, 2)), _rand(4, (4, 2)), _rand(5, (4,), uniform=True)
    f = jax.jit(lambda D: gan.gradient_penalty(D, x_r, x_f, eps))
    g = jax.jit(jax.grad(f))(D)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(g))
    assert _global_norm(g) > 1e-3
    check_grads(f, (D,), order=1, modes=("rev",))


# ---------------------------------------------------------------------------------------------
# 4. Problem set 004 15.2.1: only the fake term of V reaches the generator

def test_generator_gradient_of_v_is_that_of_the_fake_term(x64):
    p, x, z = _params64(3), _rand(0, (16, 2)), _rand(1, (16, 3))

    def real_term(p):  # E log D(x) = -E softplus(-l(x))
        return -jnp.mean(jax.nn.softplus(-gan.discriminator(p["D"], x)))

    def fake_term(p):  # E log(1 - D(G(z))) = -E softplus(l(G(z)))
        return -jnp.mean(jax.nn.softplus(gan.discriminator(p["D"], gan.generator(p["G"], z))))

    def log_fake_term(p):  # the same in its log form
        l_f = gan.discriminator(p["D"], gan.generator(p["G"], z))
        return jnp.mean(jnp.log(1 - jax.nn.sigmoid(l_f)))

    terms = jax.jit(lambda p: (real_term(p) + fake_term(p), gan.value(p, x, z)))(p)
    np.testing.assert_allclose(*terms, rtol=1e-14)
    g_full, g_real, g_fake, g_log = (jax.jit(jax.grad(f))(p) for f in (
        lambda p: gan.value(p, x, z), real_term, fake_term, log_fake_term))
    chex.assert_trees_all_equal(g_full["G"], g_fake["G"])
    chex.assert_trees_all_equal(g_real["G"], jax.tree.map(jnp.zeros_like, p["G"]))
    assert _global_norm(g_fake["G"]) > 1e-3  # and it is not zero itself
    assert _global_norm(g_real["D"]) > 1e-3  # the real term does move D
    chex.assert_trees_all_close(g_log["G"], g_fake["G"], rtol=1e-11, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 5. Saturation of the minimax generator loss

def test_loss_gradients_in_the_logit(x64):
    """d/dl of mean(-softplus(l)) is -sigma(l) / B, of mean(softplus(-l)) is -(1 - sigma(l)) / B
    = -sigma(-l) / B. Reference: numpy's 1 / (1 + e^-l), accurate in both tails (XLA's float64
    logistic is not: on CPU jax.nn.sigmoid(-30.) is off by 1e-3 relative)."""
    l = np.linspace(-30.0, 30.0, 13)
    B = l.shape[0]
    grads = jax.jit(lambda l: (jax.grad(gan.g_loss_minimax)(l),
                               jax.grad(gan.g_loss_nonsaturating)(l)))(jnp.asarray(l))
    np.testing.assert_allclose(grads[0], -1 / (1 + np.exp(-l)) / B, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(grads[1], -1 / (1 + np.exp(l)) / B, rtol=1e-13, atol=1e-300)


def test_minimax_generator_gradient_vanishes_when_d_rejects_the_fakes(x64):
    p = _init_small(jax.random.key(0), dtype=jnp.float64)
    G = p["G"]

    def sample_real(k, n):  # far from G's fakes, which sit near the origin
        return jnp.array([6.0, 6.0]) + 0.5 * jax.random.normal(k, (n, 2), jnp.float64)

    def sample_fake(k, n):
        return gan.generator(G, jax.random.normal(k, (n, 2), jnp.float64))

    z = _rand(2, (256, 2))

    @jax.jit
    def probe(D):
        """mean D(G(z)) and the G-gradients of both generator losses."""
        grads = [jax.grad(gan.generator_loss)(G, D, z, variant=v)
                 for v in ("minimax", "nonsaturating")]
        return jnp.mean(jax.nn.sigmoid(gan.discriminator(D, gan.generator(G, z)))), grads

    d_fake, grads = probe(p["D"])
    before = [_global_norm(g) for g in grads]
    assert d_fake > 0.1  # an untrained D does not reject them yet
    D, _, L = gan.train_discriminator(jax.random.key(1), p["D"], sample_real, sample_fake,
                                      steps=200, batch_size=64, optimizer=optax.adam(1e-2))
    chex.assert_shape(L, (200,))
    assert L[-1] < 0.01 * L[0]
    d_fake, grads = probe(D)
    assert d_fake < 1e-2
    mm, ns = (_global_norm(g) for g in grads)
    print(f"|grad_G| before training D: minimax {before[0]:.3g}, nonsaturating "
          f"{before[1]:.3g}; after (mean D(G(z)) = {d_fake:.2g}): minimax {mm:.3g}, "
          f"nonsaturating {ns:.3g}, ratio {mm / ns:.3g}")
    assert mm / ns < 1e-2
    assert ns > 1e-2  # the non-saturating gradient is alive
    assert before[0] / before[1] > 0.1  # the gap came from training D


# ---------------------------------------------------------------------------------------------
# 6. The optimal discriminator and the Jensen-Shannon divergence (theory)

X_GRID = np.linspace(-8.0, 8.0, 1601)
_pdf = jax.jit(tgan.gaussian_mixture_pdf)
_value, _kl, _jsd = (jax.jit(f) for f in (tgan.value, tgan.kl, tgan.jsd))


def _densities():
    """p_data = 0.4 N(-2, 0.5^2) + 0.6 N(1.5, 0.8^2), p_g = N(0, 1.5^2) on the grid."""
    x = jnp.asarray(X_GRID)
    return (x, _pdf(x, jnp.array([-2.0, 1.5]), jnp.array([0.5, 0.8]), jnp.array([0.4, 0.6])),
            _normal(x, 0.0, 1.5))


def _normal(x, m, s):
    return _pdf(x, jnp.array([m]), jnp.array([s]), jnp.array([1.0]))


def _np_normal(x, m, s):
    return np.exp(-(x - m) ** 2 / (2 * s ** 2)) / (s * np.sqrt(2 * np.pi))


def test_gaussian_mixture_pdf(x64):
    x, p, q = _densities()
    np.testing.assert_allclose(
        p, 0.4 * _np_normal(X_GRID, -2, 0.5) + 0.6 * _np_normal(X_GRID, 1.5, 0.8),
        rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(q, _np_normal(X_GRID, 0, 1.5), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose([np.trapezoid(p, X_GRID), np.trapezoid(q, X_GRID)], [1, 1],
                               atol=1e-9)


def test_value_of_the_optimal_discriminator_is_minus_log4_plus_2jsd(x64):
    x, p, q = _densities()
    D_star = tgan.optimal_discriminator(p, q)
    np.testing.assert_allclose(D_star, np.asarray(p) / np.asarray(p + q), rtol=1e-15)
    v_star, j = _value(D_star, p, q, x), _jsd(p, q, x)
    assert 0.05 < j < math.log(2) - 0.05  # neither equal nor disjoint
    np.testing.assert_allclose(v_star, -LOG4 + 2 * j, atol=1e-6)
    # D* is the pointwise maximiser: any other D scores lower on the same grid
    for other in (jnp.full_like(p, 0.5), jnp.clip(D_star + 0.05, 0, 0.999),
                  jnp.clip(D_star - 0.05, 0.001, 1)):
        assert _value(other, p, q, x) < v_star
    # at D = 1/2: V = -log 4 whatever the densities
    np.testing.assert_allclose(_value(jnp.full_like(p, 0.5), p, q, x), -LOG4, atol=1e-8)


def test_fit_discriminator_approaches_the_optimal_one(x64):
    x, p, q = _densities()
    for mine, theirs in zip((x, p, q), tgan.example_densities(), strict=True):
        np.testing.assert_allclose(theirs, mine, rtol=1e-13, atol=1e-15)  # what example_fit used
    D, losses = tgan.example_fit()  # fit_discriminator(key 0) on them, cached
    chex.assert_shape(losses, (10_000,))

    @jax.jit
    def check(D):
        s = jax.nn.sigmoid(gan.discriminator(D, x[:, None]))
        return s, _value(s, p, q, x), tgan.expected_d_loss(D, x, p, q)

    s, v_fit, expected_loss = check(D)
    D_star = tgan.optimal_discriminator(p, q)
    region = np.asarray(jnp.maximum(p, q) > 1e-3)
    err = float(np.max(np.abs(np.asarray(s - D_star))[region]))
    v_star = _value(D_star, p, q, x)
    target = -LOG4 + 2 * _jsd(p, q, x)
    print(f"max |D - D*| = {err:.3g}; V(D) = {v_fit:.9f}, V(D*) = {v_star:.9f}, "
          f"-log 4 + 2 JSD = {target:.9f}; "
          f"decrease over the last 1000 steps {losses[-1001] - losses[-1]:.3g}")
    assert err <= 0.02
    assert losses[-1001] - losses[-1] < 1e-6  # converged
    assert losses[0] - losses[-1] > 0.01  # and it did train
    np.testing.assert_allclose(-losses[-1], v_fit, atol=1e-6)  # its loss is -V
    np.testing.assert_allclose(expected_loss, -v_fit, rtol=1e-10)  # softplus form of -V
    assert abs(v_fit - target) < 1e-3
    assert v_fit <= v_star + 1e-12  # D* maximises the trapezoid sum too


def test_jsd_and_kl(x64):
    x, p, q = _densities()
    assert abs(_jsd(p, p, x)) < 1e-15  # zero up to rounding (XLA's fused logs may differ)
    assert abs(_kl(p, p, x)) < 1e-15
    for a, b in ((p, q), (q, p)):
        assert 0 < _jsd(a, b, x) < math.log(2)
        assert _kl(a, b, x) > 0
    np.testing.assert_allclose(_jsd(p, q, x), _jsd(q, p, x), rtol=1e-14)
    # two far-apart Gaussians (16.7 sigma apart from the midpoint, 10 sigma inside the grid)
    a, b = _normal(x, -5.0, 0.3), _normal(x, 5.0, 0.3)
    assert abs(_jsd(a, b, x) - math.log(2)) < 1e-6
    # KL between Gaussians in closed form
    for m1, s1, m2, s2 in ((0.3, 0.7, -0.5, 1.3), (1.0, 1.2, 0.0, 1.5), (0.5, 0.6, -1.0, 2.0),
                           (0.0, 1.0, 0.0, 1.0)):
        want = math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
        np.testing.assert_allclose(_kl(_normal(x, m1, s1), _normal(x, m2, s2), x), want,
                                   atol=1e-9)


# ---------------------------------------------------------------------------------------------
# 7. Whole runs: ``train.fit`` of a ``gan.GanStep``. Setups and steps are static jit arguments:
# built once here (the optimizer a module-level factory, so equal setups hash equal), so runs
# share compilations. All in float64 (x64), where a vmapped member and its solo run agree to
# rounding (in float32 Adam's m / sqrt(v) turns rounding differences in near-zero gradients into
# updates of ~lr).

RING = partial(gan.sample_ring, modes=8, radius=2.0, sigma=0.02)
LR = 1e-3
STEPS = 30
INIT64 = partial(_init_small, dtype=jnp.float64)  # the run's key -> its params, float64


def _opt(learning_rate):
    """Adam with b1 = 0.5 at the run's learning rate (a module-level factory: one compile)."""
    return optax.adam(learning_rate, b1=0.5)


def _setup(**kw):
    return gan.GanSetup(**{"sample_real": RING, "d_z": 2, "batch_size": 32,
                           "d_optimizer": _opt, "g_optimizer": _opt, **kw})


SETUP = _setup()
SETUPS = {"nonsaturating": SETUP, "minimax": _setup(variant="minimax"),
          "wgan-gp": _setup(variant="wgan-gp")}
SETUP_K3 = _setup(k=3)
SETUP_GP0 = _setup(variant="wgan-gp", penalty=0.0)
KEYS = jax.random.split(jax.random.key(42), 3)


def _fit(key, setup=SETUP, learning_rate=LR):
    """One run of STEPS steps; its params are INIT64(key), its noise drawn from key."""
    return train.fit(key, learning_rate, None, step=gan.GanStep(setup, INIT64), steps=STEPS)


def _member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


_vrun = jax.vmap(lambda k, lr: _fit(k, learning_rate=lr))  # members side by side
_cache = {}


def _runs():
    """The vmapped run of 3 seeds and each member run alone (computed once, under x64)."""
    if not _cache:
        _cache["params"] = [INIT64(KEYS[i]) for i in range(3)]
        _cache["vmapped"] = _vrun(KEYS, jnp.full(3, LR))
        _cache["solo"] = [_fit(KEYS[i]) for i in range(3)]
    return _cache


def test_vmapped_seeds_equal_each_run_alone(x64):
    runs = _runs()
    r = runs["vmapped"]
    d_loss, g_loss = r.train_loss
    chex.assert_shape([d_loss, g_loss, r.diverged_at], [(3, STEPS), (3, STEPS), (3,)])
    np.testing.assert_array_equal(r.diverged_at, [-1, -1, -1])
    for i, solo in enumerate(runs["solo"]):
        chex.assert_trees_all_equal_structs(solo.params, runs["params"][i])
        chex.assert_shape([*solo.train_loss, solo.diverged_at], [(STEPS,), (STEPS,), ()])
        chex.assert_trees_all_close(_member(r, i), solo, rtol=1e-10, atol=1e-12)
        assert all(np.all(np.isfinite(v)) for v in solo.train_loss)
        assert solo.diverged_at == -1
        for name in ("G", "D"):  # training moved both nets
            assert _global_norm(jax.tree.map(jnp.subtract, solo.params[name],
                                             runs["params"][i][name])) > 1e-3
    assert not np.allclose(d_loss[0], d_loss[1])  # members are not copies of one another


def test_same_key_is_bit_identical_and_another_key_differs(x64):
    runs = _runs()
    # a setup built the same way is equal and hashes the same, so the compiled run is reused
    assert _setup() == SETUP and hash(_setup()) == hash(SETUP)
    compiled = driver._chunks_jit._cache_size()
    again = _fit(KEYS[0], _setup())
    assert driver._chunks_jit._cache_size() == compiled
    chex.assert_trees_all_equal(again, runs["solo"][0])
    other = _fit(KEYS[1])
    assert not np.allclose(other.train_loss[0], runs["solo"][0].train_loss[0])


def test_k_discriminator_steps_change_the_run(x64):
    runs = _runs()
    r3 = _fit(KEYS[0], SETUP_K3)
    d_loss, g_loss = r3.train_loss
    chex.assert_shape([d_loss, g_loss], [(STEPS,), (STEPS,)])
    assert np.all(np.isfinite(d_loss)) and r3.diverged_at == -1
    assert not np.allclose(d_loss, runs["solo"][0].train_loss[0])
    assert not np.allclose(r3.params["D"][0]["W"], runs["solo"][0].params["D"][0]["W"])


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_each_variant_runs_with_finite_losses(x64, variant):
    r = _fit(KEYS[0], SETUPS[variant])
    d_loss, g_loss = r.train_loss
    chex.assert_shape([d_loss, g_loss], [(STEPS,), (STEPS,)])
    assert np.all(np.isfinite(d_loss)) and np.all(np.isfinite(g_loss))
    assert r.diverged_at == -1
    if variant != "wgan-gp":  # BCE: L_D = softplus terms > 0
        assert np.all(d_loss > 0)
    if variant == "minimax":  # L_G = -E softplus(l) < 0
        assert np.all(g_loss < 0)
    if variant == "nonsaturating":  # L_G = E softplus(-l) > 0
        assert np.all(g_loss > 0)


def test_wgan_gp_discriminator_loss_includes_the_penalty(x64):
    """Same key and init: step 0's D loss is computed on the same batches with the same
    critic, so L_D(10) - L_D(0) = 10 gp > 0 there; the runs then part."""
    L = {lam: _fit(KEYS[0], s).train_loss[0]
         for lam, s in ((0.0, SETUP_GP0), (10.0, SETUPS["wgan-gp"]))}
    assert L[10.0][0] - L[0.0][0] > 1e-3
    assert np.all(np.isfinite(L[0.0]))
    assert not np.allclose(L[10.0][1:], L[0.0][1:])


# ---------------------------------------------------------------------------------------------
# 8. Divergence of one member

def test_a_diverging_member_is_frozen_and_the_others_are_untouched(x64):
    runs = _runs()
    # member 1 at learning rate 1e300: Adam's first D update moves every weight by ~1e300, so
    # the generator's loss overflows float64 (1e600) through D's second layer at step 0
    r = _vrun(KEYS, jnp.array([LR, 1e300, LR]))
    d_loss, g_loss = r.train_loss
    t = int(r.diverged_at[1])
    assert t == 0
    assert np.all(np.isnan(d_loss[1, t:])) and np.all(np.isnan(g_loss[1, t:]))
    bad = _member(r.params, 1)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(bad))
    chex.assert_trees_all_equal(bad, runs["params"][1])  # frozen at the last finite params
    # the healthy members: exactly the run without the diverging neighbour, and the solo run
    for i in (0, 2):
        assert r.diverged_at[i] == -1
        chex.assert_trees_all_equal(_member(r, i), _member(runs["vmapped"], i))
        chex.assert_trees_all_close(_member(r, i), runs["solo"][i], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 9. Bad input: clear errors, raised before anything is traced

def _sample_3d(key, n, data=None):
    return jnp.zeros((n, 3))


def _no_tracing(monkeypatch) -> list:
    """Replace the driver's compiled functions by recorders: a list that stays empty if
    nothing was traced."""
    traced = []
    for name in ("_chunks_jit", "_init_jit"):
        monkeypatch.setattr(driver, name, lambda *a, **k: traced.append(1))
    return traced


@pytest.mark.parametrize("setup, match", [
    (_setup(d_z=3), r"the latent dimension d_z = 3 does not match the generator's input width 2"),
    (_setup(sample_real=_sample_3d), r"x_real must have shape \[B, 2\], got \(2, 3\)"),
    (_setup(penalty=-1.0), r"penalty weight lambda must be >= 0, got -1.0"),
    (_setup(penalty=float("nan")), r"penalty weight lambda must be >= 0, got nan"),
    (_setup(k=0), r"k \(discriminator steps per generator step\) must be an integer >= 1, got 0"),
    (_setup(k=1.5), r"k \(discriminator steps per generator step\) must be an integer >= 1"),
    (_setup(variant="wgan"), r"unknown variant 'wgan'; expected one of"),
    (_setup(out="relu"), r"unknown out 'relu'; expected one of"),
    (_setup(batch_size=0), r"batch_size must be a positive integer, got 0"),
    (_setup(batch_size=2.5), r"batch_size must be a positive integer, got 2.5"),
], ids=["d_z", "sample_real", "penalty", "penalty-nan", "k0", "k1.5", "variant", "out",
        "batch0", "batch-float"])
def test_bad_setups_are_clear_errors_before_tracing(monkeypatch, setup, match):
    traced = _no_tracing(monkeypatch)
    with pytest.raises(ValueError, match="fit: " + match):
        train.fit(jax.random.key(0), LR, None, step=gan.GanStep(setup, _init_small), steps=3)
    assert not traced


def _init_mismatched(key):
    """G 2 -> 16 -> 16 -> 2 but D reading 3 features."""
    return {"G": _init_small(key)["G"], "D": gan.mlp_init(jax.random.key(1), (3, 4, 1))}


def test_discriminator_reading_another_width_is_a_clear_error(monkeypatch):
    traced = _no_tracing(monkeypatch)
    msg = r"D reads 3 features but G writes 2"
    with pytest.raises(ValueError, match="fit: " + msg):
        train.fit(jax.random.key(0), LR, None, step=gan.GanStep(SETUP, _init_mismatched),
                  steps=3)
    assert not traced
    p = _init_mismatched(jax.random.key(0))
    with pytest.raises(ValueError, match="gan.loss: " + msg):
        gan.loss(p, (jnp.zeros((4, 2)), jnp.zeros((4, 2))))


def _re_shape(shape) -> str:
    return re.escape(str(tuple(shape)))


def test_bad_network_inputs_and_sizes_are_clear_errors():
    p = _small32(0)
    for z in (jnp.zeros(2), jnp.zeros((4, 3)), jnp.zeros((4, 2, 1))):
        with pytest.raises(ValueError, match=r"gan.generator: z must have shape \[B, 2\], got "
                                             + _re_shape(z.shape)):
            gan.generator(p["G"], z)
    for x in (jnp.zeros(2), jnp.zeros((4, 5)), jnp.zeros((1, 4, 2))):
        with pytest.raises(ValueError, match=r"gan.discriminator: x must have shape \[B, 2\], "
                                             r"got " + _re_shape(x.shape)):
            gan.discriminator(p["D"], x)
    with pytest.raises(ValueError, match=r"gan.generator: unknown out 'relu'; expected one of"):
        gan.generator(p["G"], jnp.zeros((4, 2)), out="relu")
    with pytest.raises(ValueError, match=r"gan.loss: x_real must have shape \[B, 2\]"):
        gan.loss(p, (jnp.zeros((4, 3)), jnp.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"gan.loss: z must have shape \[B, 2\]"):
        gan.loss(p, (jnp.zeros((4, 2)), jnp.zeros((4,))))
    with pytest.raises(ValueError, match=r"gan.loss: unknown variant 'gan'"):
        gan.loss(p, (jnp.zeros((4, 2)), jnp.zeros((4, 2))), variant="gan")
    with pytest.raises(ValueError, match=r"gan.loss: penalty weight lambda must be >= 0"):
        gan.loss(p, (jnp.zeros((4, 2)), jnp.zeros((4, 2))), variant="wgan-gp", penalty=-2.0,
                 eps=jnp.zeros(4))
    for args, name in (((0, 2), "d_z"), ((2, 0), "d_x"), ((2, 2.0), "d_x")):
        with pytest.raises(ValueError, match=f"gan.init: {name} must hold positive integers"):
            gan.init(jax.random.key(0), *args)
    with pytest.raises(ValueError, match=r"gan.init: g_hidden must hold positive integers, got 0"):
        gan.init(jax.random.key(0), 2, 2, g_hidden=(8, 0))
    with pytest.raises(ValueError, match=r"gan.init: d_hidden must hold positive integers"):
        gan.init(jax.random.key(0), 2, 2, d_hidden=(-1,))


def _d_and_batches():
    return _small32(0)["D"], jnp.zeros((4, 2)), jnp.ones((4, 2))


def test_discriminator_loss_rejects_an_unknown_variant():
    D, x_r, x_f = _d_and_batches()
    with pytest.raises(ValueError, match=r"unknown variant 'wgan'"):  # not silently the BCE
        gan.discriminator_loss(D, x_r, x_f, variant="wgan")


def test_generator_loss_rejects_an_unknown_variant_with_a_clear_error():
    p = _small32(0)
    with pytest.raises(ValueError, match=r"unknown variant 'wgan'"):
        gan.generator_loss(p["G"], p["D"], jnp.zeros((4, 2)), variant="wgan")


def test_discriminator_loss_wgan_gp_without_eps_is_a_clear_error():
    D, x_r, x_f = _d_and_batches()
    with pytest.raises(ValueError, match="eps"):
        gan.discriminator_loss(D, x_r, x_f, variant="wgan-gp")


# ---------------------------------------------------------------------------------------------
# 10. The ring of Gaussians and the coverage metrics

_coverage = jax.jit(gan.coverage)


def test_ring_centers_are_evenly_spaced_on_the_circle(x64):
    for modes, radius in ((8, 2.0), (5, 1.5), (3, 0.5)):
        c = np.asarray(gan.ring_centers(modes, radius))
        chex.assert_shape(c, (modes, 2))
        np.testing.assert_allclose(np.linalg.norm(c, axis=1), radius, rtol=1e-14)
        angle = np.arctan2(c[:, 1], c[:, 0])
        step = np.mod(np.diff(np.append(angle, angle[0])), 2 * np.pi)
        np.testing.assert_allclose(step, 2 * np.pi / modes, rtol=1e-12)
        # equal chords between neighbours: 2 r sin(pi / modes)
        chord = np.linalg.norm(c - np.roll(c, -1, axis=0), axis=1)
        np.testing.assert_allclose(chord, 2 * radius * np.sin(np.pi / modes), rtol=1e-12)


def test_sample_ring_modes_shares_and_spread(x64):
    n, sigma, modes = 80_000, 0.02, 8
    x = jax.jit(lambda k: gan.sample_ring(k, n, None, sigma=sigma))(jax.random.key(0))
    chex.assert_shape(x, (n, 2))
    c = np.asarray(gan.ring_centers(modes, 2.0))
    d2 = np.sum((np.asarray(x)[:, None] - c) ** 2, axis=-1)
    near, d2_min = np.argmin(d2, axis=1), np.min(d2, axis=1)
    # within 3 sigma in 2-D: P(r <= 3 sigma) = 1 - exp(-9/2) (Rayleigh)
    p_in = (1 - math.exp(-4.5)) / modes
    share = np.bincount(near[d2_min <= 9 * sigma ** 2], minlength=modes) / n
    np.testing.assert_allclose(share, p_in, atol=5 * math.sqrt(p_in * (1 - p_in) / n))
    # |x - c|^2 / sigma^2 ~ chi^2_2 (mean 2, sd 2): the mean over n within 5 standard errors
    assert abs(np.mean(d2_min) / (2 * sigma ** 2) - 1) < 5 / math.sqrt(n)
    # coverage on the same samples agrees
    cov = _coverage(x, jnp.asarray(c), sigma)
    np.testing.assert_allclose(cov.per_mode, share, atol=1e-12)
    assert cov.modes_covered == modes
    np.testing.assert_allclose(cov.high_quality, share.sum(), atol=1e-12)
    # another ring: 3 modes on radius 5, every sample within 6 sigma of the circle
    y = gan.sample_ring(jax.random.key(1), 100, modes=3, radius=5.0, sigma=0.1)
    chex.assert_shape(y, (100, 2))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 5.0, atol=0.6)


def test_ring_density_integrates_to_one_and_peaks_at_the_centres(x64):
    g = jnp.linspace(-3.5, 3.5, 561)  # sigma / 20 spacing; the box is 6 sigma past the modes

    @jax.jit
    def total(g):
        X, Y = jnp.meshgrid(g, g, indexing="ij")
        p = gan.ring_density(jnp.stack([X, Y], axis=-1), sigma=0.25)
        return p.shape, jnp.trapezoid(jnp.trapezoid(p, g, axis=1), g)

    shape, mass = total(g)
    assert shape == (561, 561)
    np.testing.assert_allclose(mass, 1.0, atol=1e-6)
    # at a centre with the default, well separated, sigma: 1 / (modes 2 pi sigma^2)
    s, c = 0.02, gan.ring_centers(8, 2.0)
    np.testing.assert_allclose(gan.ring_density(c, sigma=s), 1 / (8 * 2 * np.pi * s ** 2),
                               rtol=1e-12)
    np.testing.assert_allclose(gan.ring_density(jnp.zeros(2), sigma=s), 0.0, atol=1e-300)


def test_coverage_of_exact_collapsed_and_off_samples(x64):
    sigma, c = 0.02, np.asarray(gan.ring_centers(8, 2.0))
    cov = _coverage(jnp.asarray(np.repeat(c, 10, axis=0)), c, sigma)
    assert cov.modes_covered == 8 and cov.high_quality == 1
    np.testing.assert_allclose(cov.per_mode, np.full(8, 1 / 8))
    cov = _coverage(jnp.asarray(np.repeat(c[3:4], 80, axis=0)), c, sigma)  # mode collapse
    assert cov.modes_covered == 1 and cov.high_quality == 1
    np.testing.assert_array_equal(cov.per_mode, np.eye(8)[3])
    # 4 sigma out along the radius: nearest mode unchanged, but none is high quality
    cov = _coverage(jnp.asarray(c * (1 + 4 * sigma / 2.0)), c, sigma)
    assert cov.modes_covered == 0 and cov.high_quality == 0
    # 2.9 sigma out (sideways): still high quality
    side = c + 2.9 * sigma * np.stack([-c[:, 1], c[:, 0]], axis=1) / 2.0
    cov = _coverage(jnp.asarray(side), c, sigma)
    assert cov.modes_covered == 8 and cov.high_quality == 1


@pytest.mark.parametrize("count, covered", [(7, False), (8, True), (9, True)])
def test_coverage_min_share_threshold(x64, count, covered):
    """n = 1024, min_share = 8/1024: a mode needs at least 8 high-quality samples. Powers of two
    keep every share exact, so the boundary itself is tested."""
    c, n = np.asarray(gan.ring_centers(8, 2.0)), 1024
    samples = jnp.asarray(np.concatenate([
        np.repeat(c[0:1], count, axis=0), np.repeat(c[1:2], 512, axis=0),
        np.zeros((n - count - 512, 2))]))  # the origin: 2 = 100 sigma from every mode
    for cov in (gan.coverage(samples, c, 0.02, min_share=8 / 1024),
                _coverage(samples, c, 0.02, 8 / 1024)):
        assert cov.per_mode[0] == count / n
        assert cov.per_mode[1] == 0.5
        assert cov.high_quality == (count + 512) / n
        assert int(cov.modes_covered) == 1 + covered


def test_coverage_at_min_share_does_not_depend_on_its_type(x64):
    c = np.asarray(gan.ring_centers(8, 2.0))
    samples = jnp.asarray(np.concatenate([np.repeat(c[0:1], 3, axis=0), np.zeros((97, 2))]))
    for min_share in (0.03, np.float64(0.03), jnp.asarray(0.03, jnp.float64)):
        got = int(gan.coverage(samples, c, 0.02, min_share).modes_covered)
        assert got == 1, f"{type(min_share).__name__} min_share 0.03: {got} modes covered"
