"""A GAN as pure functions: MLP generator and discriminator, three losses, and its training step.

Problem set 004 section 15. With D(x) = sigma(l(x)) (the discriminator outputs a logit l) and fakes
G(z), z ~ N(0, I):

    V(G, D) = E_x log D(x) + E_z log(1 - D(G(z)))                  (the game's value, ``value``)
    discriminator (BCE):     L_D = -V = E_x softplus(-l(x)) + E_z softplus(l(G(z)))
    generator, "minimax":    L_G = E_z log(1 - D(G(z))) = -E_z softplus(l(G(z)))     (saturating)
    generator, "nonsaturating": L_G = -E_z log D(G(z)) = E_z softplus(-l(G(z)))
    "wgan-gp" (Gulrajani et al. 2017; problem set 004 15.2.3), l is a critic f:
        L_D = E_z f(G(z)) - E_x f(x) + lambda E_xh (||grad_x f(xh)||_2 - 1)^2,
              xh = eps x + (1 - eps) G(z), eps ~ U[0, 1] per pair;     L_G = -E_z f(G(z))

Params: ``{"G": [layer, ...], "D": [layer, ...]}``, each layer ``{"W": [d_in, d_out], "b":
[d_out]}``; hidden layers use ReLU in G and leaky ReLU (slope 0.2) in D; G's output is linear,
sigmoid or tanh (``out``), D's is one logit.

``GanStep`` alternates k discriminator steps and one generator step (optax for both, at the
run's learning rate); it plugs into ``jaxnets.train.fit`` / ``sweep``, which run it in one
``lax.scan`` and sweep learning rates and seeds, with checkpoints and resume. A member whose
loss or params stop being finite is frozen and reports the step (``diverged_at``).

Seed errata (the code follows the corrected forms): 15.1.2 writes max_G min_D u_G, the reverse
of the game it then describes (D maximises V, G minimises it: min_G max_D V); 15.1.3
differentiates log D(x) + log(1 - D(G(z))) "with respect to D" at two different points; the
pointwise integrand is p_data(x) log D(x) + p_g(x) log(1 - D(x)), whose derivative
p_data / D - p_g / (1 - D) = 0 gives its (correct) D* = p_data / (p_data + p_g); 15.1.1's
generator payoff "maximise E log D(G(z))" is the non-saturating heuristic, not the minimax
game's; 15.2.3 contrasts Wasserstein with "KL divergence", but the original GAN with an optimal
D minimises the Jensen-Shannon divergence (V(G, D*) = -log 4 + 2 JSD, tests/test_gan.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxnets.layers.dense import dense, dense_init

Layers = list[dict[str, Array]]
Params = dict[str, Layers]
Variant = Literal["minimax", "nonsaturating", "wgan-gp"]
VARIANTS = ("minimax", "nonsaturating", "wgan-gp")
OUTPUTS = {"linear": lambda x: x, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
LEAK = 0.2


# ---------------------------------------------------------------------------------------------
# Networks

def mlp_init(key: Array, widths: Sequence[int], dtype=jnp.float32) -> Layers:
    """Dense layers widths[0] -> widths[1] -> ... -> widths[-1] (LeCun-normal W, zero b)."""
    keys = jax.random.split(key, len(widths) - 1)
    return [dense_init(k, d_in, d_out, dtype)
            for k, d_in, d_out in zip(keys, widths[:-1], widths[1:], strict=True)]


def init(key: Array, d_z: int, d_x: int, *, g_hidden: Sequence[int] = (128, 128),
         d_hidden: Sequence[int] = (128, 128), dtype=jnp.float32) -> Params:
    """G: d_z -> g_hidden -> d_x, D: d_x -> d_hidden -> 1. Returns {"G": layers, "D": layers}."""
    for name, v in (("d_z", d_z), ("d_x", d_x), *(("g_hidden", h) for h in g_hidden),
                    *(("d_hidden", h) for h in d_hidden)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"gan.init: {name} must hold positive integers, got {v!r}")
    k_g, k_d = jax.random.split(key)
    return {"G": mlp_init(k_g, (d_z, *g_hidden, d_x), dtype),
            "D": mlp_init(k_d, (d_x, *d_hidden, 1), dtype)}


def sizes(params: Params) -> tuple[int, int]:
    """(d_z, d_x): the generator's input and output widths."""
    return params["G"][0]["W"].shape[0], params["G"][-1]["W"].shape[1]


def _check_last(where: str, name: str, a, d: int) -> None:
    if jnp.ndim(a) != 2 or jnp.shape(a)[1] != d:
        raise ValueError(f"{where}: {name} must have shape [B, {d}], got {jnp.shape(a)}")


def generator(G: Layers, z: Array, *, out: str = "linear") -> Array:
    """x = G(z): ReLU hidden layers, ``out`` on the last. z: [B, d_z] -> [B, d_x]."""
    if out not in OUTPUTS:
        raise ValueError(f"gan.generator: unknown out {out!r}; expected one of {sorted(OUTPUTS)}")
    _check_last("gan.generator", "z", z, G[0]["W"].shape[0])
    for layer in G[:-1]:
        z = jax.nn.relu(dense(layer, z))
    return OUTPUTS[out](dense(G[-1], z))


def discriminator(D: Layers, x: Array) -> Array:
    """The logit l(x) (D(x) = sigma(l(x)); the critic f(x) for WGAN-GP): leaky-ReLU hidden
    layers. x: [B, d_x] -> [B]."""
    _check_last("gan.discriminator", "x", x, D[0]["W"].shape[0])
    for layer in D[:-1]:
        x = jax.nn.leaky_relu(dense(layer, x), LEAK)
    return dense(D[-1], x)[:, 0]


# ---------------------------------------------------------------------------------------------
# Losses, as functions of logits (l_real = l(x), l_fake = l(G(z))); all means over the batch.

def d_loss_bce(l_real: Array, l_fake: Array) -> Array:
    """L_D = -E log D(x) - E log(1 - D(G(z))) = E softplus(-l_real) + E softplus(l_fake)."""
    return jnp.mean(jax.nn.softplus(-l_real)) + jnp.mean(jax.nn.softplus(l_fake))


def g_loss_minimax(l_fake: Array) -> Array:
    """L_G = E log(1 - D(G(z))) = -E softplus(l_fake). Its gradient in l is -D(G(z)): it
    vanishes when D rejects the fakes (saturation)."""
    return -jnp.mean(jax.nn.softplus(l_fake))


def g_loss_nonsaturating(l_fake: Array) -> Array:
    """L_G = -E log D(G(z)) = E softplus(-l_fake). Gradient in l: -(1 - D(G(z))), near -1 when
    D rejects the fakes."""
    return jnp.mean(jax.nn.softplus(-l_fake))


def gradient_penalty(D: Layers, x_real: Array, x_fake: Array, eps: Array) -> Array:
    """E (||grad_x f(xh)||_2 - 1)^2 at xh = eps x_real + (1 - eps) x_fake. eps: [B]."""
    xh = eps[:, None] * x_real + (1 - eps[:, None]) * x_fake
    grads = jax.vmap(jax.grad(lambda x: discriminator(D, x[None])[0]))(xh)  # [B, d_x]
    return jnp.mean((jnp.sqrt(jnp.sum(grads ** 2, axis=-1) + 1e-12) - 1) ** 2)


def value(params: Params, x_real: Array, z: Array, *, out: str = "linear") -> Array:
    """The game's value V(G, D) = E log D(x) + E log(1 - D(G(z))) (problem set 004 15.1), estimated
    on the batch. ``-value`` is the discriminator's BCE loss."""
    l_fake = discriminator(params["D"], generator(params["G"], z, out=out))
    return -d_loss_bce(discriminator(params["D"], x_real), l_fake)


def _check_variant(variant: str, where: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"{where}: unknown variant {variant!r}; expected one of {VARIANTS}")


def _check_config(variant: str, penalty: float, k: int, where: str) -> None:
    _check_variant(variant, where)
    if not penalty >= 0:
        raise ValueError(f"{where}: penalty weight lambda must be >= 0, got {penalty!r}")
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"{where}: k (discriminator steps per generator step) must be an "
                         f"integer >= 1, got {k!r}")


def discriminator_loss(D: Layers, x_real: Array, x_fake: Array, eps: Array | None = None, *,
                       variant: Variant = "nonsaturating", penalty: float = 10.0) -> Array:
    """L_D of ``variant`` (BCE for minimax and nonsaturating; critic + penalty for wgan-gp,
    which needs eps [B] ~ U[0, 1])."""
    _check_variant(variant, "gan.discriminator_loss")
    if variant == "wgan-gp" and eps is None:
        raise ValueError("gan.discriminator_loss: wgan-gp needs eps [B] (the interpolation "
                         "weights)")
    l_real, l_fake = discriminator(D, x_real), discriminator(D, x_fake)
    if variant != "wgan-gp":
        return d_loss_bce(l_real, l_fake)
    return (jnp.mean(l_fake) - jnp.mean(l_real)
            + penalty * gradient_penalty(D, x_real, x_fake, eps))


def generator_loss(G: Layers, D: Layers, z: Array, *, variant: Variant = "nonsaturating",
                   out: str = "linear") -> Array:
    """L_G of ``variant`` at the fakes G(z)."""
    _check_variant(variant, "gan.generator_loss")
    l_fake = discriminator(D, generator(G, z, out=out))
    return {"minimax": g_loss_minimax, "nonsaturating": g_loss_nonsaturating,
            "wgan-gp": lambda l: -jnp.mean(l)}[variant](l_fake)


def loss(params: Params, batch: tuple[Array, Array], *, variant: Variant = "nonsaturating",
         penalty: float = 10.0, out: str = "linear", eps: Array | None = None
         ) -> tuple[Array, Array]:
    """(L_D, L_G) on batch = (x_real [B, d_x], z [B, d_z]); eps [B] for wgan-gp."""
    x_real, z = batch
    check_batch(params, x_real, z, "gan.loss")
    _check_config(variant, penalty, 1, "gan.loss")
    if variant == "wgan-gp" and eps is None:
        raise ValueError("gan.loss: wgan-gp needs eps [B] (the interpolation weights)")
    x_fake = generator(params["G"], z, out=out)
    return (discriminator_loss(params["D"], x_real, x_fake, eps, variant=variant,
                               penalty=penalty),
            generator_loss(params["G"], params["D"], z, variant=variant, out=out))


def check_batch(params: Params, x_real, z, where: str) -> None:
    """x_real: [B, d_x] and z: [B', d_z] with the generator's d_z, d_x."""
    d_z, d_x = sizes(params)
    if params["D"][0]["W"].shape[0] != d_x:
        raise ValueError(f"{where}: D reads {params['D'][0]['W'].shape[0]} features but G "
                         f"writes {d_x}")
    _check_last(where, "x_real", x_real, d_x)
    _check_last(where, "z", z, d_z)


# ---------------------------------------------------------------------------------------------
# Training: k discriminator steps, then one generator step, all in one lax.scan.

SampleFn = Callable[[Array, int, Any], Array]  # (key, n, data) -> x_real [n, d_x]


class GanState(NamedTuple):
    """What a run carries from step to step."""

    params: Params
    opt_D: optax.OptState
    opt_G: optax.OptState
    key: Array
    step: Array  # int32 [], generator steps taken
    diverged_at: Array  # int32 [], the step whose losses or params were not finite; -1 if none


def adam(learning_rate: Array | float) -> optax.GradientTransformation:
    """Adam with b1 = 0.5, b2 = 0.9, the GAN default (Gulrajani et al. 2017)."""
    return optax.adam(learning_rate, b1=0.5, b2=0.9)


OptimizerFactory = Callable[[Array | float], optax.GradientTransformation]


class GanSetup(NamedTuple):
    """The static part of a run (hashable: it goes into jit as a static argument).

    ``d_optimizer`` and ``g_optimizer`` are factories, learning rate -> optax transform: the
    learning rate is the run's (traced) hyperparameter, so a sweep varies it without
    recompiling.
    """

    sample_real: SampleFn
    d_z: int
    variant: str = "nonsaturating"
    k: int = 1
    batch_size: int = 64
    penalty: float = 10.0
    out: str = "linear"
    d_optimizer: OptimizerFactory = adam
    g_optimizer: OptimizerFactory = adam


def init_state(key: Array, params: Params, setup: GanSetup) -> GanState:
    """Fresh optimizer states for D and G; the run's own key."""
    return GanState(params, setup.d_optimizer(0.0).init(params["D"]),
                    setup.g_optimizer(0.0).init(params["G"]), key, jnp.zeros((), jnp.int32),
                    jnp.full((), -1, jnp.int32))


def _finite(tree) -> Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(tree)]))


def _d_step(setup: GanSetup, d_optimizer: optax.GradientTransformation, G: Layers, carry,
            key: Array, data):
    D, opt = carry
    k_x, k_z, k_e = jax.random.split(key, 3)
    x_real = setup.sample_real(k_x, setup.batch_size, data)
    x_fake = generator(G, jax.random.normal(k_z, (setup.batch_size, setup.d_z),
                                            x_real.dtype), out=setup.out)
    eps = jax.random.uniform(k_e, (setup.batch_size,), x_real.dtype)
    L, g = jax.value_and_grad(discriminator_loss)(D, x_real, x_fake, eps,
                                                  variant=setup.variant, penalty=setup.penalty)
    updates, opt = d_optimizer.update(g, opt, D)
    return (optax.apply_updates(D, updates), opt), L


def train_step(state: GanState, learning_rate: Array | float, data, setup: GanSetup
               ) -> tuple[GanState, tuple[Array, Array]]:
    """k discriminator steps (fresh real and fake batches each), then one generator step, both
    players at ``learning_rate``. Returns the new state and (L_D of the last D step, L_G)."""
    key = jax.random.fold_in(state.key, state.step)
    k_d, k_g = jax.random.split(key)
    G = state.params["G"]
    d_optimizer = setup.d_optimizer(learning_rate)
    (D, opt_D), L_D = jax.lax.scan(lambda c, kk: _d_step(setup, d_optimizer, G, c, kk, data),
                                   (state.params["D"], state.opt_D),
                                   jax.random.split(k_d, setup.k))
    z = jax.random.normal(k_g, (setup.batch_size, setup.d_z), jax.tree.leaves(G)[0].dtype)
    L_G, g = jax.value_and_grad(generator_loss)(G, D, z, variant=setup.variant, out=setup.out)
    updates, opt_G = setup.g_optimizer(learning_rate).update(g, state.opt_G, G)
    params = {"G": optax.apply_updates(G, updates), "D": D}
    healthy = state.diverged_at < 0
    ok = jnp.isfinite(L_D[-1]) & jnp.isfinite(L_G) & _finite(params)
    keep = healthy & ok
    params, opt_D, opt_G = jax.tree.map(lambda n, o: jnp.where(keep, n, o), (params, opt_D, opt_G),
                                        (state.params, state.opt_D, state.opt_G))
    diverged_at = jnp.where(healthy & ~ok, state.step, state.diverged_at)
    nan = jnp.asarray(jnp.nan, L_G.dtype)
    return (GanState(params, opt_D, opt_G, state.key, state.step + 1, diverged_at),
            (jnp.where(keep, L_D[-1], nan), jnp.where(keep, L_G, nan)))


def validate(params: Params, data, setup: GanSetup, where: str = "gan") -> None:
    """Clear errors before tracing: the variant, lambda >= 0, k >= 1, batch size, and that the
    real samples and the generator agree on d_x (and z on d_z). ``params`` may be abstract."""
    _check_config(setup.variant, setup.penalty, setup.k, where)
    if not (isinstance(setup.batch_size, int) and setup.batch_size >= 1):
        raise ValueError(f"{where}: batch_size must be a positive integer, got "
                         f"{setup.batch_size!r}")
    if setup.out not in OUTPUTS:
        raise ValueError(f"{where}: unknown out {setup.out!r}; expected one of {sorted(OUTPUTS)}")
    d_z, d_x = sizes(params)
    if setup.d_z != d_z:
        raise ValueError(f"{where}: the latent dimension d_z = {setup.d_z} does not match the "
                         f"generator's input width {d_z}")
    x = jax.eval_shape(lambda d: setup.sample_real(jax.random.key(0), 2, d), data)
    check_batch(params, jax.ShapeDtypeStruct(x.shape, x.dtype),
                jax.ShapeDtypeStruct((2, d_z), x.dtype), where)


@dataclasses.dataclass(frozen=True)
class GanStep:
    """The GAN's training step for ``jaxnets.train.fit`` / ``sweep``: k discriminator steps,
    then one generator step (``train_step``), at the run's learning rate.

    ``init``: key -> params ({"G", "D"}, e.g. ``partial(gan.init, d_z=2, d_x=2)``); a run's
    key initialises the params and drives its noise (the state keeps it; fold_in per step).
    The step's aux is (L_D [steps], L_G [steps]); ``data`` is what ``setup.sample_real`` reads
    (None for the ring).
    """

    setup: GanSetup
    init: Callable[[Array], Params]
    state_bytes_fields = ("params", "opt_D", "opt_G")

    def init_state(self, key: Array) -> GanState:
        return init_state(key, self.init(key), self.setup)

    def schedule(self, state: GanState, num_steps: int, data) -> None:
        return None

    def __call__(self, state: GanState, hparams: dict, data, x: None
                 ) -> tuple[GanState, tuple[Array, Array]]:
        return train_step(state, hparams["learning_rate"], data, self.setup)

    def validate(self, key: Array, hparams: dict, data, where: str) -> None:
        if hparams:
            raise ValueError(f"{where}: the GAN's step takes only a learning rate, got "
                             f"hyperparameters {sorted(hparams)}")
        validate(jax.eval_shape(self.init, key), data, self.setup, where)


@partial(jax.jit, static_argnames=("sample_real", "sample_fake", "steps", "batch_size",
                                   "optimizer"))
def train_discriminator(key: Array, D: Layers, sample_real: Callable[[Array, int], Array],
                        sample_fake: Callable[[Array, int], Array], *, steps: int,
                        batch_size: int, optimizer: optax.GradientTransformation,
                        opt_state: optax.OptState | None = None
                        ) -> tuple[Layers, optax.OptState, Array]:
    """D alone against a fixed fake distribution (problem set 004 15.1.3): ``steps`` optax steps on
    the BCE loss, fresh batches from ``sample_real(key, n)`` and ``sample_fake(key, n)`` each step.
    Pass the returned opt_state back to continue. Returns (D, opt_state, L_D [steps])."""
    opt_state = optimizer.init(D) if opt_state is None else opt_state

    def step(carry, k):
        D, opt = carry
        k_r, k_f = jax.random.split(k)
        L, g = jax.value_and_grad(discriminator_loss)(D, sample_real(k_r, batch_size),
                                                      sample_fake(k_f, batch_size))
        updates, opt = optimizer.update(g, opt, D)
        return (optax.apply_updates(D, updates), opt), L

    (D, opt_state), L = jax.lax.scan(step, (D, opt_state), jax.random.split(key, steps))
    return D, opt_state, L

# ---------------------------------------------------------------------------------------------
# The 2-D ring of Gaussians (Metz et al. 2017) and its mode-collapse metrics.

def ring_centers(modes: int = 8, radius: float = 2.0) -> Array:
    """The modes' centres, evenly spaced on a circle: [modes, 2]."""
    angle = 2 * jnp.pi * jnp.arange(modes) / modes
    return radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def sample_ring(key: Array, n: int, data=None, *, modes: int = 8, radius: float = 2.0,
                sigma: float = 0.02) -> Array:
    """n points of the equal mixture of N(centre_m, sigma^2 I), m < modes. Returns [n, 2].
    (``data`` is unused: the signature of ``GanSetup.sample_real``.)"""
    k_m, k_e = jax.random.split(key)
    m = jax.random.randint(k_m, (n,), 0, modes)
    return ring_centers(modes, radius)[m] + sigma * jax.random.normal(k_e, (n, 2))


def ring_density(x: Array, *, modes: int = 8, radius: float = 2.0, sigma: float = 0.02
                 ) -> Array:
    """p(x) of the ring mixture. x: [..., 2] -> [...]."""
    d2 = jnp.sum((x[..., None, :] - ring_centers(modes, radius)) ** 2, axis=-1)
    return jnp.mean(jnp.exp(-d2 / (2 * sigma ** 2)), axis=-1) / (2 * jnp.pi * sigma ** 2)


class Coverage(NamedTuple):
    """Mode-collapse metrics of a set of samples."""

    modes_covered: Array  # int [], modes holding at least min_share of the samples
    high_quality: Array  # [], share of samples within 3 sigma of some mode
    per_mode: Array  # [modes], share of samples within 3 sigma of each mode


def coverage(samples: Array, centers: Array, sigma: float, min_share: float = 0.01) -> Coverage:
    """A sample is high quality when it lies within 3 sigma of its nearest mode; a mode is
    covered when at least ``min_share`` of all samples are high quality and nearest to it.
    samples: [n, 2]; centers: [modes, 2].

    Counts are compared as integers with ceil(min_share n) (less 1e-3, so that float rounding of
    min_share n, in float32 or float64, never moves the threshold by a whole sample)."""
    n = samples.shape[0]
    d = jnp.sqrt(jnp.sum((samples[:, None, :] - centers) ** 2, axis=-1))  # [n, modes]
    near = jnp.argmin(d, axis=1)
    good = jnp.min(d, axis=1) <= 3 * sigma
    counts = jnp.sum(good[:, None] & (near[:, None] == jnp.arange(len(centers))), axis=0)
    need = jnp.ceil(min_share * n - 1e-3)
    return Coverage(jnp.sum(counts >= need), jnp.mean(good), counts / n)
