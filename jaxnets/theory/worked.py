"""Worked examples by hand and by autodiff: a chain-rule Jacobian (problem set 004 Q3) and one step
of backprop on a 2-2-1 sigmoid network (problem set 004 Q4).

Q3. f1(x) = (sin(pi x2) / pi, e^(x1 - 1) x2^2, x1 x2), f2(y) = (y1 + y2 + y3, y1^2 + y2^2 +
y3^2); J_{f2 o f1}(x) = J_f2(f1(x)) J_f1(x).

Q4. h = sigma(x W1 + b1), yhat = sigma(h W2 + b2), L = (y - yhat)^2 / 2 (the loss whose
gradient the problem set's deltas are). Deltas delta = -dL/dz at each pre-activation z:
delta_out = yhat (1 - yhat) (y - yhat), delta_h = h (1 - h) (W2 delta_out); gradient descent
W <- W + lr * (input of W) delta. Params are dense layers (``jaxnets.layers.dense``): W1[i, j]
joins x_i to h_j. The problem set's network: W_h1x1 = 2.5, W_h1x2 = 1, W_h1b = 1.5, W_h2x1 = -1.5,
W_h2x2 = -0.3, W_h2b = 2, W_yh1 = 1, W_yh2 = 0.5, W_yb = -1; x = (0, 1), y = 1, lr = 0.1.

Errata in the problem sets (each number compared at the decimals the problem set prints):
- Q3: the problem set's J_f1(1, 2) = [[0, 1], [4, 4], [2, 1]] and J_f2(0, 4, 2) = [[1, 1, 1], [0,
8, 4]]
  are right, but their product is [[6, 6], [40, 36]], not the [[4, 6], [32, 36]] it states.
- Q4: delta_yhat = 0.5859 (1 - 0.5859)^2 = 0.1005, not 0.0993, so delta_h1 = 0.0070 (seed
  0.0069; 0.0070 even from its own 0.0993) and delta_h2 = 0.0066 (problem set: 0.0065), and the
  updated W_yh1 = 1.0093, W_yh2 = 0.5085, W_yb = -0.9900, W_h2x2 = -0.2993 (problem set: 1.0092,
  0.5084,
  -0.9901, -0.2994). Its pre-activation 0.34685 comes from the rounded h1, h2; it is 0.34691.
  The other forward values and the weights W_h1x1, W_h1x2, W_h1b, W_h2x1, W_h2b agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from jaxnets.functional import sigmoid
from jaxnets.layers.dense import dense
from jaxnets.theory.claim import Claim, Outcome, within

Params = list[dict[str, Array]]


def _shape(where: str, name: str, a, shape: tuple[int, ...]) -> Array:
    a = jnp.asarray(a, jnp.result_type(float))
    if a.shape != shape:
        raise ValueError(f"{where}: {name} must have shape {shape}, got {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------
# Q3: the chain rule

def f1(x: Array) -> Array:
    """f1(x) = (sin(pi x2) / pi, e^(x1 - 1) x2^2, x1 x2). x: [2]. Returns [3]."""
    x1, x2 = _shape("f1", "x", x, (2,))
    return jnp.stack([jnp.sin(jnp.pi * x2) / jnp.pi, jnp.exp(x1 - 1) * x2**2, x1 * x2])


def f2(y: Array) -> Array:
    """f2(y) = (y1 + y2 + y3, y1^2 + y2^2 + y3^2). y: [3]. Returns [2]."""
    y = _shape("f2", "y", y, (3,))
    return jnp.stack([jnp.sum(y), jnp.sum(y**2)])


def jacobian_f1(x: Array) -> Array:
    """J_f1 = [[0, cos(pi x2)], [e^(x1-1) x2^2, 2 e^(x1-1) x2], [x2, x1]]. x: [2]. Returns
    [3, 2]."""
    x1, x2 = _shape("jacobian_f1", "x", x, (2,))
    e = jnp.exp(x1 - 1)
    return jnp.array([[0.0, jnp.cos(jnp.pi * x2)], [e * x2**2, 2 * e * x2], [x2, x1]])


def jacobian_f2(y: Array) -> Array:
    """J_f2 = [[1, 1, 1], [2 y1, 2 y2, 2 y3]]. y: [3]. Returns [2, 3]."""
    y = _shape("jacobian_f2", "y", y, (3,))
    return jnp.stack([jnp.ones_like(y), 2 * y])


def jacobian_chain(x: Array) -> Array:
    """J_{f2 o f1}(x) = J_f2(f1(x)) J_f1(x), by hand. x: [2]. Returns [2, 2]."""
    return jacobian_f2(f1(x)) @ jacobian_f1(x)


# ---------------------------------------------------------------------------------------------
# Q4: backprop on a one-hidden-layer sigmoid network

class Forward(NamedTuple):
    """Pre-activations and activations of ``forward``."""

    z1: Array  # [H] hidden pre-activations x W1 + b1
    h: Array  # [H] sigma(z1)
    z2: Array  # [m] output pre-activations h W2 + b2
    yhat: Array  # [m] sigma(z2)


def _check_params(where: str, params: Params) -> None:
    if not (isinstance(params, list | tuple) and len(params) == 2):
        raise ValueError(f"{where}: params must be two dense layers, got {type(params).__name__}"
                         f" of length {len(params) if hasattr(params, '__len__') else '?'}")
    if params[0]["W"].shape[1] != params[1]["W"].shape[0]:
        raise ValueError(f"{where}: layer shapes {params[0]['W'].shape} and "
                         f"{params[1]['W'].shape} do not chain")


def forward(params: Params, x: Array) -> Forward:
    """h = sigma(x W1 + b1), yhat = sigma(h W2 + b2). x: [d] (one example)."""
    _check_params("forward", params)
    z1 = dense(params[0], jnp.asarray(x, params[0]["W"].dtype))
    h = sigmoid(z1)
    z2 = dense(params[1], h)
    return Forward(z1, h, z2, sigmoid(z2))


def half_squared_error(params: Params, x: Array, y: Array) -> Array:
    """L = sum_j (y_j - yhat_j)^2 / 2. x: [d], y: [m]. Returns []."""
    yhat = forward(params, x).yhat
    y = _shape("half_squared_error", "y", y, yhat.shape)
    return jnp.sum((y - yhat) ** 2) / 2


def deltas(params: Params, x: Array, y: Array) -> tuple[Array, Array]:
    """(delta_out [m], delta_h [H]) = -dL/dz2, -dL/dz1, by hand:
    delta_out = yhat (1 - yhat) (y - yhat), delta_h = h (1 - h) (W2 delta_out)."""
    fw = forward(params, x)
    y = _shape("deltas", "y", y, fw.yhat.shape)
    delta_out = fw.yhat * (1 - fw.yhat) * (y - fw.yhat)
    return delta_out, fw.h * (1 - fw.h) * (params[1]["W"] @ delta_out)


def backprop_step(params: Params, x: Array, y: Array, lr: float) -> Params:
    """One gradient-descent step by hand: W <- W + lr outer(input, delta), b <- b + lr delta."""
    delta_out, delta_h = deltas(params, x, y)
    inputs = (jnp.asarray(x, params[0]["W"].dtype), forward(params, x).h)
    return [{"W": layer["W"] + lr * jnp.outer(a, d), "b": layer["b"] + lr * d}
            for layer, a, d in zip(params, inputs, (delta_h, delta_out), strict=True)]


def gradient_step(params: Params, x: Array, y: Array, lr: float) -> Params:
    """One step of ``optax.sgd(lr)`` on jax.grad of ``half_squared_error``."""
    grads = jax.grad(half_squared_error)(params, x, y)
    opt = optax.sgd(lr)
    updates, _ = opt.update(grads, opt.init(params), params)
    return optax.apply_updates(params, updates)


def seed_network() -> Params:
    """Problem set 004 Q4's weights as dense layers: W1 [2, 2], b1 [2], W2 [2, 1], b2 [1]."""
    return [{"W": jnp.array([[2.5, -1.5], [1.0, -0.3]]), "b": jnp.array([1.5, 2.0])},
            {"W": jnp.array([[1.0], [0.5]]), "b": jnp.array([-1.0])}]


# The problem set's names for the nine weights: (layer, "W" or "b", index).
WEIGHT_NAMES = {"W_h1x1": (0, "W", (0, 0)), "W_h1x2": (0, "W", (1, 0)), "W_h1b": (0, "b", (0,)),
                "W_h2x1": (0, "W", (0, 1)), "W_h2x2": (0, "W", (1, 1)), "W_h2b": (0, "b", (1,)),
                "W_yh1": (1, "W", (0, 0)), "W_yh2": (1, "W", (1, 0)), "W_yb": (1, "b", (0,))}


def named_weights(params: Params) -> dict[str, float]:
    """The nine weights under the problem set's names."""
    _check_params("named_weights", params)
    return {k: float(params[i][w][idx]) for k, (i, w, idx) in WEIGHT_NAMES.items()}


# ---------------------------------------------------------------------------------------------
# Claims

X, Y, LR, POINT = (0.0, 1.0), (1.0,), 0.1, (1.0, 2.0)
SEED_FORWARD = {"h1": "0.9241", "h2": "0.8455", "z_out": "0.34685", "yhat": "0.5859"}
SEED_DELTAS = {"delta_yhat": "0.0993", "delta_h1": "0.0069", "delta_h2": "0.0065"}
SEED_WEIGHTS = {"W_yh1": "1.0092", "W_yh2": "0.5084", "W_yb": "-0.9901", "W_h1x1": "2.5",
                "W_h1x2": "1.0007", "W_h1b": "1.5007", "W_h2x1": "-1.5", "W_h2x2": "-0.2994",
                "W_h2b": "2.0007"}
SEED_JACOBIANS = {"f1": [0, 4, 2], "J_f1": [[0, 1], [4, 4], [2, 1]],
                  "J_f2": [[1, 1, 1], [0, 8, 4]]}
SEED_JACOBIAN = [[4, 6], [32, 36]]
JACOBIAN = [[6, 6], [40, 36]]  # [[0 + 4 + 2, 1 + 4 + 1], [0 + 32 + 8, 0 + 32 + 4]]


def at_decimals(value: float, stated: str) -> str:
    """value printed with as many decimals as the stated string has ("0.0993": 4)."""
    d = len(stated.partition(".")[2])
    s = f"{value:.{d}f}"
    return s[1:] if float(s) == 0 and s.startswith("-") else s


def _compare(stated: Mapping[str, str], values: Mapping[str, float], err: float,
             what: str) -> Outcome:
    """Passed when err <= 1e-12; the stated numbers beside the computed ones at their decimals."""
    computed = {k: at_decimals(values[k], v) for k, v in stated.items()}
    differ = [k for k in stated if computed[k] != stated[k]]
    return Outcome(bool(err <= 1e-12), f"{what} max |err| {err:.2g} (tol 1e-12); the problem set "
                   "differs at "
                   f"{', '.join(differ) or 'none'}",
                   ", ".join(f"{k} {v}" for k, v in stated.items()),
                   ", ".join(f"{k} {v}" for k, v in computed.items()))


def _matrix(a) -> str:
    """A (nested) list printed as "[[6, 6], [40, 36]]", entries rounded to 1e-9."""
    a = np.asarray(a, float)
    if a.ndim == 0:
        return f"{round(float(a), 9) + 0.0:g}"
    return "[" + ", ".join(_matrix(r) for r in a) + "]"


@jax.jit
def _jacobians(x: Array) -> tuple[dict[str, Array], dict[str, Array]]:
    """(hand, jax.jacobian) of f1 at x and f2 at f1(x), with f1(x) itself in both."""
    y = f1(x)
    return ({"f1": y, "J_f1": jacobian_f1(x), "J_f2": jacobian_f2(y)},
            {"f1": y, "J_f1": jax.jacobian(f1)(x), "J_f2": jax.jacobian(f2)(y)})


def _max_abs_diff(a, b) -> float:
    """max |a - b| over all leaves of two pytrees of the same structure."""
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _check_jacobians() -> Outcome:
    hand, auto = _jacobians(jnp.array(POINT))
    err = _max_abs_diff(hand, auto)
    out = within(err, 1e-12, "hand vs jax.jacobian max |err|")
    return Outcome(out.passed, out.measured,
                   "; ".join(f"{k} {_matrix(v)}" for k, v in SEED_JACOBIANS.items()),
                   "; ".join(f"{k} {_matrix(hand[k])}" for k in SEED_JACOBIANS))


def _check_chain() -> Outcome:
    x = jnp.array(POINT)
    hand, auto = jax.jit(lambda x: (jacobian_chain(x), jax.jacobian(lambda x: f2(f1(x)))(x)))(x)
    err = max(_max_abs_diff(hand, auto), _max_abs_diff(hand, jnp.array(JACOBIAN)))
    out = within(err, 1e-12, "hand, jax.jacobian, [[6, 6], [40, 36]] max |err|")
    return Outcome(out.passed, out.measured, _matrix(SEED_JACOBIAN), _matrix(hand))


def _check_forward() -> Outcome:
    params, (x1, x2) = seed_network(), X
    fw = jax.jit(forward)(params, jnp.array(X))
    h1 = 1 / (1 + np.exp(-(2.5 * x1 + 1.0 * x2 + 1.5)))
    h2 = 1 / (1 + np.exp(-(-1.5 * x1 - 0.3 * x2 + 2.0)))
    z = 1.0 * h1 + 0.5 * h2 - 1.0
    hand = {"h1": h1, "h2": h2, "z_out": z, "yhat": 1 / (1 + np.exp(-z))}
    net = {"h1": fw.h[0], "h2": fw.h[1], "z_out": fw.z2[0], "yhat": fw.yhat[0]}
    err = max(abs(float(net[k]) - float(hand[k])) for k in hand)
    return _compare(SEED_FORWARD, hand, err, "scalar formulas vs dense layers")


def _check_deltas() -> Outcome:
    params, x, y = seed_network(), jnp.array(X), jnp.array(Y)
    (delta_out, delta_h), g = jax.jit(lambda p: (deltas(p, x, y), jax.grad(half_squared_error)(
        p, x, y)))(params)
    err = _max_abs_diff((delta_out, delta_h), (-g[1]["b"], -g[0]["b"]))  # delta = -dL/dz = -dL/db
    values = {"delta_yhat": float(delta_out[0]), "delta_h1": float(delta_h[0]),
              "delta_h2": float(delta_h[1])}
    return _compare(SEED_DELTAS, values, err, "hand deltas vs -jax.grad")


def _check_weights() -> Outcome:
    params, x, y = seed_network(), jnp.array(X), jnp.array(Y)
    steps = jax.jit(lambda p: (backprop_step(p, x, y, LR), gradient_step(p, x, y, LR)))(params)
    hand, auto = map(named_weights, steps)
    err = max(abs(hand[k] - auto[k]) for k in hand)
    return _compare(SEED_WEIGHTS, hand, err, "hand step vs optax.sgd on jax.grad")


def _x64(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
    """fn run in float64."""
    def check() -> Outcome:
        with jax.enable_x64(True):
            return fn()
    return check


CLAIMS: list[Claim] = [
    Claim("004", "Q3", "At x = (1, 2): f1 = (0, 4, 2), J_f1 = [[0, 1], [4, 4], [2, 1]], "
          "J_f2(f1(x)) = [[1, 1, 1], [0, 8, 4]]",
          "hand-written Jacobians vs jax.jacobian, float64", _x64(_check_jacobians)),
    Claim("004", "Q3", "J_{f2 o f1}(1, 2) = J_f2(f1(x)) J_f1(x) = [[6, 6], [40, 36]] (problem set: "
          "[[4, 6], [32, 36]])",
          "hand chain rule vs jax.jacobian of the composition, float64", _x64(_check_chain)),
    Claim("004", "Q4", "Forward pass at x = (0, 1): h1 = 0.9241, h2 = 0.8455, z_out = 0.34691, "
          "yhat = 0.5859",
          "scalar formulas vs the dense-layer network, float64", _x64(_check_forward)),
    Claim("004", "Q4", "Deltas for L = (y - yhat)^2 / 2, y = 1: delta_yhat = 0.1005, delta_h1 = "
          "0.0070, delta_h2 = 0.0066",
          "hand backprop vs -jax.grad of L w.r.t. the biases, float64", _x64(_check_deltas)),
    Claim("004", "Q4", "One gradient step, lr 0.1: W_yh1 = 1.0093, W_yh2 = 0.5085, W_yb = "
          "-0.9900, W_h2x2 = -0.2993; the other five as the problem set states",
          "hand update vs optax.sgd on jax.grad, float64", _x64(_check_weights)),
]
