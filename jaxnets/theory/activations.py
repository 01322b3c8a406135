"""Activations: derivative bounds, identities, softmax invariances and limits, the step function
as a limit and as a distributional derivative (problem set 000 Q1; problem set 001 Q1; problem set
002 Q1, Q3).

The activations themselves (sigma, tanh, softplus, relu, H, sign, softmax) are
``jaxnets.functional``'s; this module holds the rewritings the problem sets ask for and the tools
the checks use: gradient ascent with optax, a smooth compactly supported bump phi, and the
distributional derivative F'[phi] = -integral F phi' dx by quadrature.

  sigma'(x) = sigma (1 - sigma) <= 1/4,  tanh'(x) = 1 - tanh^2 <= 1   (equality at x = 0 only)
  sigma(x) = (tanh(x/2) + 1)/2,  ln sigma(x) = -softplus(-x),  softplus(x) - softplus(-x) = x
  sign(x) = 1[x > 0] - 1[x < 0],  grad ||x||_2^2 = 2x,  grad ||x||_1 = sign(x)  (no x_i = 0)
  S(x + c) = S(x);  S(cx) -> 1/n as c -> 0 (rate c max|x - mean x| / n);  S(cx) -> uniform on
  argmax x as c -> oo (rate e^{-c gap});  S([x1, x2]) = [sigma(z), 1 - sigma(z)], z = x1 - x2;
  S(x) = S([0, x_2 - x_1, ..., x_K - x_1]) and every p in the open simplex is S([0, y]) for
  y_i = log p_{i+1} - log p_1
  relu' = H (x != 0),  relu(x) = x H(x) = integral_{-oo}^x H,  |sigma(kx) - H(x)| = sigma(-k|x|)
  H'[phi] = -integral H phi' = phi(0)

Errata in the problem sets:
- problem set 002 Q3.2 evaluates S(x)_1 = e / (e + 1) ~ 0.71 for x = (1, 0); it is 0.731 (its
  S(2x)_1 = e^2 / (e^2 + 1) ~ 0.88 is right).
- problem set 001 Q1 defines rect(x) = max(0, x) = 1_{x>0}(x): the last form is the step H away from
  0, not the rectifier; rect(x) = x 1_{x>0}(x).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from jaxnets.functional import (
    heaviside,
    relu,
    sigmoid,
    sigmoid_grad,
    sign,
    softmax,
    softplus,
    tanh_grad,
)
from jaxnets.theory.claim import Claim, Outcome, within


def indicator(condition: Array) -> Array:
    """1_S(x): 1.0 where the boolean array ``condition`` holds, 0.0 elsewhere (same shape)."""
    return jnp.where(condition, 1.0, 0.0)


def sign_by_indicators(x: Array) -> Array:
    """sign(x) = 1[x > 0] - 1[x < 0], elementwise (0 at 0)  (problem set 001 Q1(f))."""
    return indicator(x > 0) - indicator(x < 0)


def sigmoid_by_tanh(x: Array) -> Array:
    """sigma(x) = (tanh(x / 2) + 1) / 2, elementwise  (problem set 001 Q1(c)). Accurate to ~1e-16
    absolutely, not relatively for x << 0, where tanh(x / 2) + 1 cancels."""
    return (jnp.tanh(x / 2) + 1) / 2


def log_sigmoid_by_softplus(x: Array) -> Array:
    """ln sigma(x) = -softplus(-x), elementwise  (problem set 001 Q1(d))."""
    return -softplus(-x)


def squared_l2_grad(x: Array) -> Array:
    """grad_x ||x||_2^2 = 2x. x: [n]  (problem set 001 Q1(g))."""
    return 2 * x


def l1_grad(x: Array) -> Array:
    """grad_x ||x||_1 = sign(x), where no x_i = 0 (there |.| has only subgradients [-1, 1]).
    x: [n]  (problem set 001 Q1(h))."""
    return sign(x)


def argmax_uniform(x: Array) -> Array:
    """lim_{c -> oo} S(c x): 1/k on the k entries equal to max x, 0 elsewhere. x: [..., n]."""
    top = indicator(x == jnp.max(x, axis=-1, keepdims=True))
    return top / jnp.sum(top, axis=-1, keepdims=True)


def two_class_softmax(x: Array) -> Array:
    """S(x) for x [..., 2] as [sigma(z), 1 - sigma(z)] with z = x_1 - x_2  (problem set 002 Q3.3).

    1 - sigma(z) is computed as sigma(-z), which is equal and keeps its relative accuracy where
    sigma(z) is near 1.
    """
    if jnp.shape(x)[-1:] != (2,):
        raise ValueError(f"two_class_softmax: x must have last axis 2, got shape {jnp.shape(x)}")
    z = x[..., 0] - x[..., 1]
    return jnp.stack([sigmoid(z), sigmoid(-z)], axis=-1)


def _check_k(where: str, x: Array) -> None:
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] < 2:
        raise ValueError(f"{where}: need a last axis of K >= 2, got shape {jnp.shape(x)}")


def reduced_logits(x: Array) -> Array:
    """The K - 1 parameters y_i = x_{i+1} - x_1, so that S(x) = S([0, y]). x: [..., K] ->
    [..., K - 1]  (problem set 002 Q3.4)."""
    _check_k("reduced_logits", x)
    return x[..., 1:] - x[..., :1]


def logits_of(p: Array) -> Array:
    """y with S([0, y]) = p for p in the open simplex: y_i = log p_{i+1} - log p_1.
    p: [..., K] (all p_i > 0) -> [..., K - 1]. So the K - 1 parametrisation reaches every
    softmax output."""
    _check_k("logits_of", p)
    return jnp.log(p[..., 1:]) - jnp.log(p[..., :1])


def softmax_zero_first(y: Array) -> Array:
    """S([0, y]): softmax with the first logit fixed to 0. y: [..., K - 1] -> [..., K]."""
    return softmax(jnp.concatenate([jnp.zeros_like(y[..., :1]), y], axis=-1))


def integral_of_heaviside(x: Array) -> Array:
    """integral_{-oo}^{x_i} H(t) dt on an increasing grid x [n] that starts left of 0, by the
    cumulative trapezoid rule. Exact up to rounding when 0 is a cell midpoint (the cell across
    0 gets h/2, its integral); when 0 is a grid point, only the value at 0 is off (by h/4)
    (problem set 002 Q1.2)."""
    h = heaviside(x)
    cells = (h[1:] + h[:-1]) / 2 * jnp.diff(x)
    return jnp.concatenate([jnp.zeros_like(x[:1]), jnp.cumsum(cells)])


def bump(x: Array, center: float = 0.0, width: float = 1.0) -> Array:
    """The smooth compactly supported test function phi(x) = exp(-1 / (1 - u^2)) for
    |u| < 1, u = (x - center) / width, and 0 elsewhere (phi(center) = 1/e). Elementwise; every
    derivative is finite and vanishes at the edge of the support."""
    if not width > 0:
        raise ValueError(f"bump: width must be > 0, got {width}")
    u = (x - center) / width
    inside = jnp.abs(u) < 1
    safe = jnp.where(inside, 1 - u * u, 1.0)  # no 1/0 in the value or its derivatives
    return jnp.where(inside, jnp.exp(-1 / safe), 0.0)


def distributional_derivative(F, phi, x: Array) -> Array:
    """F'[phi] = -integral F(x) phi'(x) dx, phi' by ``jax.grad``, on the grid x [n] (trapezoid
    rule). F, phi: elementwise functions; phi must vanish outside the grid. When F is
    differentiable it equals integral F'(x) phi(x) dx (integration by parts)  (problem set 002
    Q1.4)."""
    return -jnp.trapezoid(F(x) * jax.vmap(jax.grad(phi))(x), x)


def maximize(f, starts: Array, *, steps: int = 400, learning_rate: float = 0.3):
    """Gradient ascent on a scalar function f: R -> R from each start: Adam on -f, the step
    decaying from ``learning_rate`` to 0 (cosine). starts: [m]. Returns (x* [m], f(x*) [m])."""
    starts = jnp.asarray(starts)
    if starts.ndim != 1 or starts.size == 0 or not jnp.issubdtype(starts.dtype, jnp.floating):
        raise ValueError(f"maximize: starts must be a non-empty 1-D float array, got "
                         f"{starts.dtype} {starts.shape}")
    if steps < 1 or not learning_rate > 0:
        raise ValueError(f"maximize: need steps >= 1, learning_rate > 0, got {steps}, "
                         f"{learning_rate}")
    return _ascend(f, starts, steps, learning_rate)


@partial(jax.jit, static_argnums=(0, 2))
def _ascend(f, starts: Array, steps: int, learning_rate: float):
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    grad = jax.grad(lambda x: -f(x))

    def run(x0):
        def step(carry, _):
            x, state = carry
            updates, state = opt.update(grad(x), state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        return x

    xs = jax.vmap(run)(starts)
    return xs, jax.vmap(f)(xs)


# ------------------------------------------------------------------------------ claims
# Each check computes in one jitted float64 function (one compile instead of one per op).

_STARTS = (-4.0, -1.5, 0.7, 3.0)
_BUMPS = ((0.0, 1.0), (0.3, 1.0), (-0.5, 2.0), (-0.2, 0.5), (1.5, 1.0))  # (center, width)
_EPS = 2.3e-16  # float64 rounding of a difference of two numbers in [0, 1]


def _grid(half: float, n: int) -> Array:
    """h * [-n, ..., n] with h = half / n: 0 is a grid point exactly."""
    return jnp.arange(-n, n + 1) * (half / n)


def _x64(fn, *args):
    """Run the jitted ``fn(*args)`` with float64 on; its outputs as Python floats / bools."""
    with jax.enable_x64(True):
        out = jax.jit(fn)(*args)
        return jax.tree.map(lambda a: a.item() if a.ndim == 0 else a.tolist(), out)


def _normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Fixed standard normal float64 samples (numpy: no jax.random compile per shape)."""
    return np.random.default_rng(seed).standard_normal(shape)


def _all(parts: list[tuple[bool, str]], **seed) -> Outcome:
    return Outcome(all(ok for ok, _ in parts), "; ".join(m for _, m in parts), **seed)


def _derivative_errors():
    x = _grid(20.0, 2000)
    return jnp.max(jnp.array([jnp.max(jnp.abs(jax.vmap(jax.grad(f))(x) - df(x)))
                              for f, df in ((sigmoid, sigmoid_grad), (jnp.tanh, tanh_grad))]))


def _check_derivatives() -> Outcome:
    return within(_x64(_derivative_errors), 1e-15, "max |formula - jax.grad|")


def _grid_maxima():
    x = _grid(20.0, 20_000)
    out = []
    for df, bound in ((sigmoid_grad, 0.25), (tanh_grad, 1.0)):
        v = df(x)
        out.append((jnp.max(v), x[jnp.argmax(v)], jnp.all(jnp.where(x != 0, v < bound, True))))
    return out


def _check_bounds_grid() -> Outcome:
    found = _x64(_grid_maxima)
    parts = [(top == bound and at == 0.0 and strict,
              f"max {top:g} at x = {at:g}, < {bound:g} elsewhere: {strict}")
             for (top, at, strict), bound in zip(found, (0.25, 1.0), strict=True)]
    return _all(parts, stated_value="0.25, 1", computed=", ".join(f"{f[0]:g}" for f in found))


def _check_bounds_ascent() -> Outcome:
    with jax.enable_x64(True):
        parts, found = [], []
        for df, bound in ((sigmoid_grad, 0.25), (tanh_grad, 1.0)):
            xs, vs = maximize(df, jnp.array(_STARTS))
            dx, dv = float(jnp.max(jnp.abs(xs))), float(jnp.max(jnp.abs(vs - bound)))
            parts.append((dx < 1e-4 and dv < 1e-9, f"max |x*| {dx:.1g}, |f* - {bound}| {dv:.1g}"))
            found.append(f"{float(jnp.min(vs)):.10g}")
        return _all(parts, stated_value="0.25, 1", computed=", ".join(found))


def _identity_errors():
    x = _grid(40.0, 4000)
    ls = jnp.log(sigmoid(x))
    return (jnp.max(jnp.abs(sigmoid(x) - sigmoid_by_tanh(x))),
            jnp.max(jnp.abs(ls - log_sigmoid_by_softplus(x)) / (1 + jnp.abs(ls))),
            jnp.max(jnp.abs(softplus(x) - softplus(-x) - x)))


def _check_tanh_identity() -> Outcome:
    return within(_x64(_identity_errors)[0], 1e-15)


def _check_log_sigmoid() -> Outcome:
    return within(_x64(_identity_errors)[1], 1e-15, "max |err| / (1 + |ln sigma|)")


def _check_softplus_difference() -> Outcome:
    return within(_x64(_identity_errors)[2], 1e-14)


def _check_sign() -> Outcome:
    same = _x64(lambda: jnp.all(sign_by_indicators(_grid(3.0, 30)) == jnp.sign(_grid(3.0, 30))))
    return Outcome(same, f"equal to jnp.sign at all 61 points of [-3, 3] incl. 0: {same}")


def _norm_grad_error(x):
    l2 = jax.vmap(jax.grad(lambda v: jnp.sum(v ** 2)))(x)
    l1 = jax.vmap(jax.grad(lambda v: jnp.sum(jnp.abs(v))))(x)
    return jnp.maximum(jnp.max(jnp.abs(l2 - squared_l2_grad(x))),
                       jnp.max(jnp.abs(l1 - l1_grad(x))))


def _check_norm_grads() -> Outcome:
    return within(_x64(_norm_grad_error, _normal(0, (64, 10))), 1e-15,
                  "max |formula - jax.grad| (both norms)")


def _translation_error(x, c):
    return jnp.max(jnp.abs(softmax(x + c) - softmax(x)))


def _check_translation() -> Outcome:
    c = np.random.default_rng(1).uniform(-50, 50, (256, 1))
    return within(_x64(_translation_error, _normal(1, (256, 7)), c), 1e-14)


def _scale_effects(xs):
    x = jnp.array([1.0, 0.0])
    c = jnp.array([0.5, 2.0, 3.0])[:, None, None]
    gap = jnp.min(jnp.max(jnp.abs(softmax(c * xs) - softmax(xs)), axis=-1))
    return softmax(2 * x)[0], softmax(x)[0], gap


def _check_scale() -> Outcome:
    s2, s1, gap = _x64(_scale_effects, _normal(2, (256, 5)))
    return Outcome(s2 != s1 and gap > 0,
                   f"S(2x)_1 = {s2:.4f}, S(x)_1 = {s1:.4f}; min over 768 random (x, c != 1) "
                   f"of max|S(cx) - S(x)| = {gap:.2g}",
                   stated_value="0.88, 0.71", computed=f"{s2:.2f}, {s1:.2f}")


def _scale_limits():
    x = jnp.array([0.3, -1.2, 2.0, 1.1, -0.4, 1.6])  # no tie; gap max - second = 0.4
    n, r, gap = x.size, jnp.max(x) - jnp.min(x), 0.4
    small = 10.0 ** -jnp.arange(1.0, 8.0)
    e0 = jnp.max(jnp.abs(softmax(small[:, None] * x) - 1 / n), axis=-1)
    ok0 = jnp.all(e0 <= (jnp.exp(small * r) - 1) / n)
    rate = e0[-1] / small[-1] / (jnp.max(jnp.abs(x - jnp.mean(x))) / n)
    large = jnp.array([1.0, 3.0, 10.0, 30.0, 100.0])
    e1 = jnp.max(jnp.abs(softmax(large[:, None] * x) - argmax_uniform(x)), axis=-1)
    ok1 = jnp.all((e1 <= (n - 1) * jnp.exp(-large * gap) + _EPS)
                  & (e1 >= jnp.exp(-large * gap) / n - _EPS))
    tied = jnp.array([1.0, 3.0, 0.0, 3.0, -2.0])
    e_tie = jnp.max(jnp.abs(softmax(100 * tied) - jnp.array([0, 0.5, 0, 0.5, 0])))
    return ok0, rate, ok1, e1[-1], e_tie


def _check_scale_limits() -> Outcome:
    ok0, rate, ok1, e_last, e_tie = _x64(_scale_limits)
    return _all([(ok0 and abs(rate - 1) < 1e-6,
                  f"c -> 0: max|S - 1/n| <= (e^(c range) - 1)/n, / c -> max|x - mean x| / n "
                  f"(ratio {rate:.8f})"),
                 (ok1 and e_last < 1e-15, f"c -> oo: e^(-c gap)/n <= max|S - onehot| <= "
                                          f"(n-1) e^(-c gap), {e_last:.1g} at c = 100"),
                 (e_tie < 1e-15, f"tie of 2: max|S(100x) - [0, 1/2, 0, 1/2, 0]| {e_tie:.1g}")])


def _check_two_class() -> Outcome:
    def err(x):
        return jnp.max(jnp.abs(two_class_softmax(x) - softmax(x)))
    return within(_x64(err, 10 * _normal(3, (512, 2))), 1e-15)


def _k_minus_1_errors(x, p):
    return (jnp.max(jnp.abs(softmax_zero_first(reduced_logits(x)) - softmax(x))),
            jnp.max(jnp.abs(softmax_zero_first(logits_of(p)) - p) / p))


def _check_k_minus_1() -> Outcome:
    p = np.random.default_rng(4).dirichlet(np.ones(6), 256)  # uniform on the simplex
    e_fwd, e_onto = _x64(_k_minus_1_errors, 5 * _normal(4, (256, 6)), p)
    return _all([(e_fwd < 1e-15, f"max|S([0, y(x)]) - S(x)| {e_fwd:.1g}"),
                 (e_onto < 1e-13, f"max|S([0, y(p)]) - p| / p {e_onto:.1g} (tol 1e-13)")])


def _relu_grad_facts():
    x = _grid(5.0, 500)
    err = jnp.max(jnp.where(x != 0, jnp.abs(jax.vmap(jax.grad(relu))(x) - heaviside(x)), 0))
    eps = 10.0 ** -jnp.arange(1.0, 12.0)
    return err, jnp.all(jnp.abs(relu(eps) / eps - 1) <= _EPS) & jnp.all(relu(-eps) == 0)


def _check_relu_grad() -> Outcome:
    err, kink = _x64(_relu_grad_facts)
    return _all([(err == 0, f"x != 0: max|jax.grad(relu) - H| {err}"),
                 (kink, "at 0 the difference quotients are 1 (eps > 0) and 0 (eps < 0): "
                        "no derivative")])


def _relu_forms():
    x = (jnp.arange(-400, 400) + 0.5) * 0.01  # 0 is a cell midpoint
    return (jnp.max(jnp.abs(x * heaviside(x) - relu(x))),
            jnp.max(jnp.abs(integral_of_heaviside(x) - relu(x))))


def _check_relu_forms() -> Outcome:
    e_xh, e_int = _x64(_relu_forms)
    return _all([(e_xh == 0, f"max|x H(x) - relu| {e_xh}"),
                 (e_int < 1e-13, f"max|integral H - relu| {e_int:.1g}")])


def _rect_forms():
    x = _grid(3.0, 30)
    return (jnp.max(jnp.abs(x * indicator(x > 0) - relu(x))),
            jnp.max(jnp.abs(indicator(x > 0) - relu(x))))


def _check_rect_definition() -> Outcome:
    e_right, e_seed = _x64(_rect_forms)
    return Outcome(e_right == 0 and e_seed > 0,
                   f"max|x 1[x>0] - relu| {e_right}; max|1[x>0] - relu| {e_seed:g} on [-3, 3]",
                   stated_value="rect(x) = 1{x>0}(x)", computed="rect(x) = x 1{x>0}(x)")


def _sigmoid_limit():
    x = _grid(3.0, 300)
    k = jnp.array([1.0, 10.0, 100.0, 1000.0])[:, None]
    err = jnp.abs(sigmoid(k * x) - heaviside(x))
    bound = jnp.exp(-k * jnp.abs(x))
    rate = jnp.all(jnp.where(x != 0, (err <= bound + _EPS) & (err >= bound / 2 - _EPS), True))
    near = jnp.abs(sigmoid(k[:, 0] * (1 / k[:, 0])) - 1)  # at x = 1/k the error stays sigma(-1)
    return (rate, jnp.all(sigmoid(k * 0.0) == 0.5),
            jnp.max(jnp.abs(near - sigmoid(-1.0))), near[-1])


def _check_sigmoid_limit() -> Outcome:
    rate, at0, e_near, near = _x64(_sigmoid_limit)
    return _all([(rate, "x != 0: e^(-k|x|)/2 <= |sigma(kx) - H(x)| <= e^(-k|x|), k = 1 .. 1000"),
                 (at0, "sigma(k 0) = 1/2 = H(0)"),
                 (e_near < 1e-15, f"not uniform: error {near:.4f} at x = 1/k for every k")])


def _by_parts_error():
    x = _grid(4.0, 4000)
    errs = []
    for c, w in _BUMPS:
        phi = partial(bump, center=c, width=w)
        for F, dF in ((jnp.tanh, tanh_grad), (softplus, sigmoid)):
            errs.append(distributional_derivative(F, phi, x) - jnp.trapezoid(dF(x) * phi(x), x))
    return jnp.max(jnp.abs(jnp.array(errs)))


def _check_integration_by_parts() -> Outcome:
    return within(_x64(_by_parts_error), 1e-12,
                  "max |-int F phi' - int F' phi| (tanh, softplus, 5 bumps)")


def _heaviside_derivative_error():
    x = _grid(4.0, 40_000)
    return jnp.max(jnp.abs(jnp.array([
        distributional_derivative(heaviside, partial(bump, center=c, width=w), x)
        - bump(0.0, c, w) for c, w in _BUMPS])))


def _check_heaviside_derivative() -> Outcome:
    return within(_x64(_heaviside_derivative_error), 1e-8,
                  "max |H'[phi] - phi(0)| (5 bumps, one not covering 0)")


CLAIMS: list[Claim] = [
    Claim("000", "Q1(a-b)", "sigma' = sigma (1 - sigma) and tanh' = 1 - tanh^2",
          "against jax.grad on 4001 points of [-20, 20], float64", _check_derivatives),
    Claim("000", "Q1(c-d)", "sigma' <= 1/4 and tanh' <= 1, attained only at x = 0",
          "max and argmax on a grid of step 1e-3 over [-20, 20] containing 0",
          _check_bounds_grid),
    Claim("000", "Q1(c-d)", "gradient ascent on sigma' and tanh' converges to x = 0, values "
          "1/4 and 1", "optax Adam (cosine-decayed step) from x0 = -4, -1.5, 0.7, 3",
          _check_bounds_ascent),
    Claim("001", "Q1(c)", "sigma(x) = (tanh(x/2) + 1) / 2", "8001 points of [-40, 40]",
          _check_tanh_identity),
    Claim("001", "Q1(d)", "ln sigma(x) = -softplus(-x)", "8001 points of [-40, 40]",
          _check_log_sigmoid),
    Claim("001", "Q1(e)", "softplus(x) - softplus(-x) = x", "8001 points of [-40, 40]",
          _check_softplus_difference),
    Claim("001", "Q1(f)", "sign(x) = 1[x > 0] - 1[x < 0]", "exact equality with jnp.sign, incl. 0",
          _check_sign),
    Claim("001", "Q1(g-h)", "grad ||x||_2^2 = 2x and grad ||x||_1 = sign(x) (no x_i = 0)",
          "against jax.grad on 64 random x in R^10", _check_norm_grads),
    Claim("001", "Q1(a)", "rect(x) = max(0, x) = x 1[x > 0] (not 1[x > 0] as defined in the "
          "problem set)",
          "exact equality on a grid of [-3, 3]; the problem set's form differs",
          _check_rect_definition),
    Claim("002", "Q3.1", "softmax is translation invariant: S(x + c) = S(x)",
          "256 random x in R^7, c in [-50, 50]", _check_translation),
    Claim("002", "Q3.2", "softmax is not scale invariant: S(cx) != S(x) for c != 1 (x not const)",
          "the problem set's example x = (1, 0), c = 2, and 768 random (x, c)", _check_scale),
    Claim("002", "Q3.2", "S(cx) -> 1/n as c -> 0 and -> uniform on argmax x as c -> oo",
          "errors over c = 1e-1 .. 1e-7 and 1 .. 100 against the derived rates",
          _check_scale_limits),
    Claim("002", "Q3.3", "S([x1, x2]) = [sigma(z), 1 - sigma(z)] with z = x1 - x2",
          "512 random x with |x| up to ~40", _check_two_class),
    Claim("002", "Q3.4", "S(x) = S([0, y]), y_i = x_{i+1} - x_1, and every p > 0 is some S([0, y])",
          "256 random x in R^6; y = log p_{2:} - log p_1 for 256 Dirichlet p", _check_k_minus_1),
    Claim("002", "Q1.1", "relu' = H for x != 0; relu has no derivative at 0",
          "jax.grad on a grid; one-sided difference quotients at 0", _check_relu_grad),
    Claim("002", "Q1.2", "relu(x) = x H(x) = integral_{-oo}^x H(t) dt",
          "exact on a grid; cumulative trapezoid with 0 a cell midpoint", _check_relu_forms),
    Claim("002", "Q1.3", "sigma(kx) -> H(x) pointwise as k -> oo, error sigma(-k|x|), = at x = 0",
          "k = 1 .. 1000 on a grid of [-3, 3]", _check_sigmoid_limit),
    Claim("002", "Q1.4", "F'[phi] = -integral F phi' = integral F' phi for differentiable F",
          "trapezoid, h = 1e-3, F = tanh, softplus (F' closed form), 5 shifted/scaled bumps",
          _check_integration_by_parts),
    Claim("002", "Q1.4", "H'[phi] = -integral H phi' = phi(0) (the Dirac delta)",
          "trapezoid, h = 1e-4, 0 a grid point, 5 shifted/scaled bumps",
          _check_heaviside_derivative),
]
