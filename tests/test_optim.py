"""jaxnets.optim: each optimizer against its rule from problem set 004 section 11, written out in
numpy.

Every check runs >= 20 steps in float64 on f(t) = sum sin(t) + 0.1 t^4 (not quadratic, so a
look-ahead point changes the gradient); optax gets jax.grad(f), numpy the analytic gradient.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rel_err

from jaxnets import optim

THETA0 = np.array([1.0, -2.0, 0.5, 3.0])
STEPS = 25
TIGHT = dict(rtol=1e-12, atol=1e-14)


def _f(theta):
    return jnp.sum(jnp.sin(theta) + 0.1 * theta ** 4)


def _grad(theta):
    """grad f, by hand."""
    return np.cos(theta) + 0.4 * theta ** 3


def _optax_run(opt, steps=STEPS):
    """[(params, opt_state)] after each of ``steps`` updates, the gradient taken at the params."""
    params = jnp.asarray(THETA0)
    state = opt.init(params)
    out = []
    for _ in range(steps):
        updates, state = opt.update(jax.grad(_f)(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append((params, state))
    return out


def _numpy_run(rule, state, steps=STEPS):
    """[(theta, state)] after each of ``steps`` applications of ``rule(theta, state)``."""
    theta, out = THETA0.copy(), []
    for _ in range(steps):
        theta, state = rule(theta, state)
        out.append((theta, state))
    return out


def _seed_sgd(theta, state, alpha):
    return theta - alpha * _grad(theta), state


def _seed_momentum(theta, v, alpha, beta):
    v = beta * v + (1 - beta) * _grad(theta)
    return theta - alpha * v, v


def _look_ahead_momentum(theta, v, alpha, beta, reach):
    """v <- beta v + (1 - beta) grad f(theta - reach v), theta <- theta - alpha v.

    reach = alpha is the problem set's Nesterov (004 11.1.1), reach = alpha beta Sutskever's.
    """
    v = beta * v + (1 - beta) * _grad(theta - reach * v)
    return theta - alpha * v, v


def _seed_adagrad(theta, G, alpha, eps=1e-7):
    g = _grad(theta)
    G = G + g ** 2
    return theta - alpha * g / np.sqrt(G + eps), G


def _seed_adam(theta, state, alpha, b1=0.9, b2=0.999, eps=1e-8):
    m, v, t = state
    g = _grad(theta)
    t += 1
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return theta - alpha * m_hat / (np.sqrt(v_hat) + eps), (m, v, t)


ZERO = np.zeros_like(THETA0)


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'; expected one of"):
        optim.get("adamw")


@pytest.mark.parametrize("name, alpha, seed_rule, state0", [
    ("sgd", 0.02, _seed_sgd, None),
    ("momentum", 0.05, partial(_seed_momentum, beta=0.9), ZERO),
    ("adagrad", 0.3, _seed_adagrad, ZERO),
    ("adam", 0.1, _seed_adam, (ZERO, ZERO, 0)),
])
def test_optimizer_follows_the_seed_rule_step_by_step(x64, name, alpha, seed_rule, state0):
    """problem set 004 section 11, written out in numpy, against the registered optax version."""
    got = _optax_run(optim.get(name)(alpha))
    want = _numpy_run(partial(seed_rule, alpha=alpha), state0)
    for (params, _), (theta, _) in zip(got, want, strict=True):
        np.testing.assert_allclose(params, theta, **TIGHT)


@pytest.mark.parametrize("beta", [0.5, 0.8, 0.95])
def test_problem_set_momentum_is_optax_sgd_with_learning_rate_times_one_minus_beta(x64, beta):
    """v <- beta v + (1 - beta) g, theta <- theta - alpha v is optax.sgd(alpha (1 - beta), beta)."""
    alpha = 0.05
    got = _optax_run(optax.sgd(alpha * (1 - beta), momentum=beta))
    want = _numpy_run(partial(_seed_momentum, alpha=alpha, beta=beta), ZERO)
    for (params, state), (theta, v) in zip(got, want, strict=True):
        np.testing.assert_allclose(params, theta, **TIGHT)
        np.testing.assert_allclose(state[0].trace, v / (1 - beta), **TIGHT)


@pytest.mark.parametrize("alpha, beta", [(0.05, 0.9), (0.05, 0.5), (0.02, 0.99), (0.1, 0.3)])
def test_nesterov_holds_the_seeds_look_ahead_point(x64, alpha, beta):
    """The params are theta_t - alpha v_t (problem set 004 11.1.1); nesterov_theta gives theta_t."""
    got = _optax_run(optim.get("nesterov")(alpha, beta=beta))
    want = _numpy_run(partial(_look_ahead_momentum, alpha=alpha, beta=beta, reach=alpha), ZERO)
    for (params, state), (theta, v) in zip(got, want, strict=True):
        np.testing.assert_allclose(params, theta - alpha * v, **TIGHT)
        np.testing.assert_allclose(state[0].v, v, **TIGHT)
        np.testing.assert_allclose(optim.nesterov_theta(params, state, alpha), theta, **TIGHT)


def test_problem_set_nesterov_at_beta_one_half_is_gradient_descent_on_the_look_ahead_point(x64):
    """beta = 1/2: 2 v_{t+1} - v_t = g_t, so phi <- phi - alpha grad f(phi)."""
    got = _optax_run(optim.nesterov(0.05, beta=0.5))
    want = _numpy_run(partial(_seed_sgd, alpha=0.05), None)
    for (params, _), (theta, _) in zip(got, want, strict=True):
        np.testing.assert_allclose(params, theta, **TIGHT)


@pytest.mark.parametrize("beta", [0.3, 0.8, 0.9])
def test_optax_nesterov_looks_ahead_by_the_momentum_part_only(x64, beta):
    """optax.sgd(alpha (1 - beta), beta, nesterov=True) holds theta - alpha beta v of the rule
    with the gradient at theta - alpha beta v, and differs from the problem set's (at alpha v)
    rule."""
    alpha = 0.05
    got = _optax_run(optax.sgd(alpha * (1 - beta), momentum=beta, nesterov=True))
    sutskever = _numpy_run(
        partial(_look_ahead_momentum, alpha=alpha, beta=beta, reach=alpha * beta), ZERO)
    seed = _numpy_run(partial(_look_ahead_momentum, alpha=alpha, beta=beta, reach=alpha), ZERO)
    gaps = []
    for (params, state), (theta, v), (theta_seed, v_seed) in zip(got, sutskever, seed, strict=True):
        np.testing.assert_allclose(params, theta - alpha * beta * v, **TIGHT)
        np.testing.assert_allclose(state[0].trace, v / (1 - beta), **TIGHT)
        assert rel_err(params, theta_seed) > 1e-4
        gaps.append(rel_err(params, theta_seed - alpha * v_seed))
    assert min(gaps) > 1e-4 and gaps[-1] > 5e-3  # from step 1 on, 1e8 times the tolerance above


def test_nesterov_rejects_a_schedule():
    with pytest.raises(TypeError, match="constant learning rate"):
        optim.nesterov(optax.constant_schedule(0.1))


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_learning_rate_and_beta_may_be_traced_and_vmapped(x64, name):
    """The factory is called inside jit(vmap) with traced alpha and beta, as a sweep does."""
    factory = optim.get(name)

    def run(alpha, beta):
        opt = factory(alpha, beta=beta)

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(jax.grad(_f)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        params = jnp.asarray(THETA0)
        (params, state), _ = jax.lax.scan(step, (params, opt.init(params)), length=STEPS)
        return params, state

    alphas, betas = jnp.array([0.01, 0.05, 0.05]), jnp.array([0.5, 0.8, 0.95])
    swept = jax.jit(jax.vmap(run))(alphas, betas)
    for i in range(3):
        alone = run(float(alphas[i]), float(betas[i]))
        for s, a in zip(jax.tree.leaves(swept), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(s[i], a, **TIGHT)
