"""Problem set 004 Q3-Q4 worked examples: hand Jacobians and hand backprop against jax autodiff."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.theory import worked as wk

# ---------------------------------------------------------------- Q3: the chain rule


def test_values_at_the_seed_point(x64):
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(wk.f1(x), [math.sin(2 * math.pi) / math.pi, 4.0, 2.0], atol=1e-15)
    np.testing.assert_allclose(wk.f2(jnp.array([0.0, 4.0, 2.0])), [6.0, 20.0], rtol=0)
    # J_f2(0, 4, 2) J_f1(1, 2) = [[1, 1, 1], [0, 8, 4]] [[0, 1], [4, 4], [2, 1]], by hand
    np.testing.assert_allclose(wk.jacobian_chain(x), [[0 + 4 + 2, 1 + 4 + 1],
                                                      [0 + 32 + 8, 0 + 32 + 4]], atol=1e-14)


@jax.jit
def _hand_and_auto(x):
    y = wk.f1(x)
    return ((wk.jacobian_f1(x), jax.jacobian(wk.f1)(x)),
            (wk.jacobian_f2(y), jax.jacobian(wk.f2)(y)),
            (wk.jacobian_chain(x), jax.jacobian(lambda x: wk.f2(wk.f1(x)))(x)))


def test_jacobians_match_autodiff(x64):
    for x in jax.random.normal(jax.random.key(0), (6, 2), jnp.float64):
        for hand, auto in _hand_and_auto(x):
            np.testing.assert_allclose(hand, auto, rtol=1e-13, atol=1e-15)


def test_chain_matches_central_differences(x64):
    x, h = jnp.array([0.3, -0.7]), 1e-6
    f = lambda x: wk.f2(wk.f1(x))  # noqa: E731
    fd = jnp.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in jnp.eye(2)], axis=1)
    np.testing.assert_allclose(wk.jacobian_chain(x), fd, rtol=1e-8)


# ---------------------------------------------------------------- Q4: backprop


def _random_net(key, d, hidden, m):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = lambda k, s: jax.random.normal(k, s, jnp.float64)  # noqa: E731
    return [{"W": n(k1, (d, hidden)), "b": n(k2, (hidden,))},
            {"W": n(k3, (hidden, m)), "b": n(k4, (m,))}]


def test_problem_set_network_forward_by_scalars(x64):
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    fw = wk.forward(wk.seed_network(), jnp.array([0.0, 1.0]))
    h1, h2 = s(2.5), s(1.7)  # the problem set's pre-activations 1 + 1.5 and -0.3 + 2 are right
    np.testing.assert_allclose(fw.h, [h1, h2], rtol=1e-15)
    np.testing.assert_allclose(fw.yhat, [s(h1 + 0.5 * h2 - 1)], rtol=1e-15)
    w = wk.named_weights(wk.seed_network())
    assert w == {"W_h1x1": 2.5, "W_h1x2": 1.0, "W_h1b": 1.5, "W_h2x1": -1.5, "W_h2x2": -0.3,
                 "W_h2b": 2.0, "W_yh1": 1.0, "W_yh2": 0.5, "W_yb": -1.0}


def test_deltas_are_minus_dloss_dz(x64):
    x, y = jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 0.0])
    run = jax.jit(lambda p: (wk.deltas(p, x, y), jax.grad(wk.half_squared_error)(p, x, y),
                             wk.forward(p, x).h))
    for i in range(3):
        (d_out, d_h), g, h = run(_random_net(jax.random.key(i), 3, 4, 2))
        np.testing.assert_allclose(d_out, -g[1]["b"], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(d_h, -g[0]["b"], rtol=1e-13, atol=1e-16)
        # and dL/dW = outer(input, -delta)
        np.testing.assert_allclose(g[1]["W"], -jnp.outer(h, d_out), rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(g[0]["W"], -jnp.outer(x, d_h), rtol=1e-13, atol=1e-16)


def test_hand_step_equals_sgd_and_lowers_the_loss(x64):
    params = _random_net(jax.random.key(7), 2, 3, 1)
    x, y = jnp.array([0.2, 0.9]), jnp.array([1.0])
    hand, auto, before, after = jax.jit(lambda p: (
        wk.backprop_step(p, x, y, 0.05), wk.gradient_step(p, x, y, 0.05),
        wk.half_squared_error(p, x, y),
        wk.half_squared_error(wk.backprop_step(p, x, y, 0.05), x, y)))(params)
    for a, b in zip(jax.tree.leaves(hand), jax.tree.leaves(auto), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)
    assert after < before


def test_at_decimals():
    assert wk.at_decimals(0.10047951, "0.0993") == "0.1005"
    assert wk.at_decimals(2.5, "2.5") == "2.5"
    assert wk.at_decimals(-0.00001, "0.00") == "0.00"
    assert wk.at_decimals(-0.98995204, "-0.9901") == "-0.9900"


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"x must have shape \(2,\)"):
        wk.f1(jnp.ones(3))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        wk.jacobian_f2(jnp.ones(2))
    with pytest.raises(ValueError, match="two dense layers"):
        wk.forward(wk.seed_network()[:1], jnp.ones(2))
    with pytest.raises(ValueError, match="do not chain"):
        wk.forward([wk.seed_network()[0], {"W": jnp.ones((3, 1)), "b": jnp.ones(1)}],
                   jnp.ones(2))
    with pytest.raises(ValueError, match="shape"):
        wk.deltas(wk.seed_network(), jnp.ones(2), jnp.ones(2))
    with pytest.raises(ValueError, match="x must have shape"):
        wk.forward(wk.seed_network(), jnp.ones(3))


# ---------------------------------------------------------------- claims

SEED_ERRS = {"Q3": [False, True], "Q4": [True, True, True]}  # z_out from rounded h counts


@pytest.mark.parametrize("i", range(len(wk.CLAIMS)), ids=lambda i: wk.CLAIMS[i].name)
def test_claim(i):
    claim = wk.CLAIMS[i]
    out = claim.check()
    assert out.passed, out.measured
    q = claim.question
    assert out.differs == SEED_ERRS[q][sum(c.question == q for c in wk.CLAIMS[:i])]
    for token in claim.statement.replace(",", " ").replace(";", " ").split():
        if token.lstrip("-").replace(".", "").isdigit() and "." in token and q == "Q4":
            assert token in out.computed  # every decimal stated is the one computed
