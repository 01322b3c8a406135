"""Convergence of gradient descent and of Newton's method (problem set 000 Q5, problem set 004
Q11.2 and Q12).

  gradient descent   w_{k+1} = w_k - eta grad F(w_k)
  Newton             w_{k+1} = w_k - alpha H(w_k)^{-1} grad F(w_k)          (alpha = 1: pure)
  L-smooth descent   min_{k<K} ||grad F(w_k)||^2 <= 2 L (F(w_0) - F*) / K   at eta = 1 / L
  quadratic E = E_0 + (w - w*)^T H (w - w*) / 2, H u_j = eta_j u_j, w_0 = 0, learning rate rho:
                     w_j^tau = u_j^T w^tau = (1 - (1 - rho eta_j)^tau) w_j*

Problem set 000 Q5(a)'s f (``piecewise_f``) is convex and C^1 with f'' = 3/2 outside [-1, 1] and 2
inside, so L = 2. Gradient descent reaches its minimiser 0 from every start iff eta < 2 / L = 1:
inside [-1, 1] a step multiplies x by 1 - 2 eta; outside, for 2/3 < eta < 4/3, the steps
alternate sides and |x| is pulled to the 2-cycle |x| = eta / (4 - 3 eta)
(``piecewise_cycle_radius``), which lies inside [-1, 1] iff eta < 1. At the problem set's eta = 1,
|x_t| = 1 + (|x_0| - 1) / 2^t: the iterates alternate sides, never enter [-1, 1], and
|f'(x_t)| = 2 + 3 (|x_t| - 1) / 2 decreases to 2, never to 0. In float64 the rounded
iteration does the same: the gap halves down to an ulp and then settles into a 2-cycle at
|x| = 1 + 2^-51, still outside [-1, 1].

The problem set proves convexity from f'' >= 0 on each piece; that needs f' continuous at +-1, which
it is (both sides give +-2): f is C^1, not C^2.

Problem set 004 Q12 follows Bishop (Exercise 5.25): rho is the learning rate and eta_j are the
eigenvalues of H. The problem set uses the two letters consistently (only its typography varies:
w_j^tau, w_j^(tau), bold w_j), and so does this module. Its early-stopping regimes, for
0 < rho eta_j <= 1, are the bounds (``early_stopping_ratios``)
  |w_j^tau - w_j*| <= exp(-rho eta_j tau) |w_j*|                 w_j ~ w_j* when rho eta_j tau >> 1
  |w_j^tau - rho eta_j tau w_j*| <= (rho eta_j tau)^2 |w_j*| / 2  w_j ~ rho eta_j tau w_j* << w_j*
                                                                  when rho eta_j tau << 1.

Newton's error e_t = w_t - w* in one dimension obeys e_{t+1} = c2 e_t^2 + c3 e_t^3 + ..,
c2 = F'''/(2 F'') at w* (``newton_error_coefficients``); for F(x) = x - log x the Newton map is
x -> 2x - x^2, so e_{t+1} = -e_t^2 exactly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxnets.losses import binary_cross_entropy
from jaxnets.theory.claim import Claim, Outcome, within

Objective = Callable[..., Array]


def _concrete(x) -> bool:
    """True when x holds values, i.e. value checks can run (not under jit)."""
    return not isinstance(x, jax.core.Tracer)


def _steps(where: str, steps) -> int:
    if isinstance(steps, bool):
        raise ValueError(f"{where}: steps must be an int >= 0, got {steps!r}")
    try:
        steps = operator.index(steps)
    except TypeError:
        raise ValueError(f"{where}: steps must be an int >= 0, got {steps!r}") from None
    if steps < 0:
        raise ValueError(f"{where}: steps must be >= 0, got {steps}")
    return steps


def _positive(where: str, name: str, v) -> None:
    """v > 0 elementwise, checked when v holds values."""
    if _concrete(v) and not bool(np.all(np.asarray(v) > 0)):
        raise ValueError(f"{where}: {name} must be > 0, got {v!r}")


# Problem set 000 Q5(a): the piecewise function.

def piecewise_f(x: Array) -> Array:
    """f(x) = 3/4 (1 - x)^2 - 2 (1 - x) for x > 1, 3/4 (1 + x)^2 - 2 (1 + x) for x < -1,
    x^2 - 1 otherwise (problem set 000 eq. 8), elementwise."""
    return jnp.where(x > 1, 0.75 * (1 - x) ** 2 - 2 * (1 - x),
                     jnp.where(x < -1, 0.75 * (1 + x) ** 2 - 2 * (1 + x), x ** 2 - 1))


def piecewise_cycle_radius(eta) -> Array:
    """|x| = eta / (4 - 3 eta): the fixed point of |x| -> (3 eta / 2 - 1) |x| + eta / 2, the map
    that gradient descent on ``piecewise_f`` applies to |x| outside [-1, 1] for 2/3 < eta < 4/3.
    It is > 1 iff eta > 1 (the iterates then stay outside [-1, 1] and never converge)."""
    if _concrete(eta) and not bool(np.all((np.asarray(eta) > 2 / 3) & (np.asarray(eta) < 4 / 3))):
        raise ValueError(f"piecewise_cycle_radius: eta must be in (2/3, 4/3), got {eta!r}")
    return eta / (4 - 3 * jnp.asarray(eta))


def max_curvature(f: Objective, xs: Array) -> Array:
    """max_x |f''(x)| over the points xs [n] (autodiff; f: scalar -> scalar): the smoothness
    constant L of f on that grid."""
    return jnp.max(jnp.abs(jax.vmap(jax.grad(jax.grad(f)))(xs)))


# Gradient descent and Newton's method.

@partial(jax.jit, static_argnames=("F", "steps"))
def _gd(F: Objective, w0: Array, eta: Array, steps: int, args: tuple = ()) -> Array:
    def step(w, _):
        w = w - eta * jax.grad(F)(w, *args)
        return w, w

    return jnp.concatenate([w0[None], jax.lax.scan(step, w0, None, length=steps)[1]])


def gradient_descent(F: Objective, w0, eta, steps: int, args: tuple = ()) -> Array:
    """Iterates w_0 .. w_steps of w_{k+1} = w_k - eta grad F(w_k, *args). w0: [...] (scalar or
    array), F: (w, *args) -> scalar, eta > 0. Returns [steps + 1, *w0.shape]. Jitted with F
    static: pass data as ``args`` (traced) rather than closing over it, to compile once."""
    steps = _steps("gradient_descent", steps)
    _positive("gradient_descent", "eta", eta)
    w0 = jnp.asarray(w0, float)
    return _gd(F, w0, jnp.asarray(eta, w0.dtype), steps, tuple(args))


@partial(jax.jit, static_argnames=("F", "steps"))
def _newton(F: Objective, w0: Array, alpha: Array, steps: int, args: tuple = ()) -> Array:
    def step(w, _):
        w = w - alpha * jnp.linalg.solve(jax.hessian(F)(w, *args), jax.grad(F)(w, *args))
        return w, w

    return jnp.concatenate([w0[None], jax.lax.scan(step, w0, None, length=steps)[1]])


def newton(F: Objective, w0, steps: int, args: tuple = (), alpha=1.0) -> Array:
    """Iterates w_0 .. w_steps of Newton's method w_{k+1} = w_k - alpha H^{-1} grad F(w_k)
    (problem set 004 Q11.2), H the Hessian of F at w_k. w0: [d], F: (w, *args) -> scalar (static, as
    in ``gradient_descent``). Returns [steps + 1, d]."""
    steps = _steps("newton", steps)
    _positive("newton", "alpha", alpha)
    w0 = jnp.asarray(w0, float)
    if w0.ndim != 1:
        raise ValueError(f"newton: w0 must be a vector [d], got shape {w0.shape}")
    return _newton(F, w0, jnp.asarray(alpha, w0.dtype), steps, tuple(args))


@partial(jax.jit, static_argnames=("F", "steps"))
def _converged(F: Objective, x_star, x0s: Array, etas: Array, steps: int, tol) -> Array:
    final = jax.vmap(jax.vmap(lambda x0, eta: _gd(F, x0, eta, steps)[-1], (0, None)),
                     (None, 0))(x0s, etas)
    return jnp.abs(final - x_star) <= tol


def converged(F: Objective, x_star, x0s, etas, steps: int, tol: float = 1e-8) -> Array:
    """Whether gradient descent ends within tol of x* after ``steps`` steps, for each step size
    and start. x0s: [n], etas: [m] (> 0), F: scalar -> scalar. Returns bool [m, n]."""
    steps = _steps("converged", steps)
    _positive("converged", "etas", etas)
    x0s, etas = jnp.asarray(x0s, float), jnp.asarray(etas, float)
    if x0s.ndim != 1 or etas.ndim != 1:
        raise ValueError(f"converged: x0s and etas must be 1-D, got {x0s.shape}, {etas.shape}")
    return _converged(F, x_star, x0s, etas, steps, tol)


def step_threshold(etas, ok) -> tuple[float, float]:
    """(largest eta before the first failure, first failing eta): the bracket of the critical
    step size on a grid. etas: [m] increasing; ok: bool [m, n] (``converged``); a step size
    fails when some start does not converge. Host-side bookkeeping on small arrays."""
    etas, ok = np.asarray(etas), np.asarray(ok)
    if etas.ndim != 1 or ok.ndim != 2 or ok.shape[0] != etas.shape[0]:
        raise ValueError(f"step_threshold: need etas [m] and ok [m, n], got {etas.shape}, "
                         f"{ok.shape}")
    if not np.all(np.diff(etas) > 0):
        raise ValueError("step_threshold: etas must be increasing")
    fails = ~ok.all(axis=1)
    if not fails.any() or fails[0]:
        raise ValueError("step_threshold: the grid must start converging and end failing")
    i = int(np.argmax(fails))
    return float(etas[i - 1]), float(etas[i])


def newton_ratios(errors) -> Array:
    """r_t = e_{t+1} / e_t^2 (scalar errors [T] -> [T - 1]) or ||e_{t+1}|| / ||e_t||^2 (vector
    errors [T, d]): bounded under quadratic convergence, -> F'''/(2 F'') in 1-D."""
    e = jnp.asarray(errors)
    if e.ndim == 2:
        e = jnp.linalg.norm(e, axis=1)
    elif e.ndim != 1:
        raise ValueError(f"newton_ratios: errors must be [T] or [T, d], got shape {e.shape}")
    return e[1:] / e[:-1] ** 2


def newton_error_coefficients(F: Callable[[Array], Array], x_star) -> tuple[Array, Array]:
    """(c2, c3) with e_{t+1} = c2 e_t^2 + c3 e_t^3 + O(e_t^4) for Newton's method on a 1-D F
    near its minimiser x*: c2 = F'''/(2 F''), c3 = F''''/(3 F'') - F'''^2/(2 F''^2), the
    derivatives at x* by autodiff (F: scalar -> scalar). So e_{t+1}/e_t^2 - c2 ~ c3 e_t."""
    d = [F]
    for _ in range(4):
        d.append(jax.grad(d[-1]))
    f2, f3, f4 = (d[k](x_star) for k in (2, 3, 4))
    return f3 / (2 * f2), f4 / (3 * f2) - f3 ** 2 / (2 * f2 ** 2)


# Problem set 000 Q5(b): L-smooth descent.

def logistic_loss(w: Array, X: Array, y: Array) -> Array:
    """F(w) = mean_i BCE(x_i . w, y_i) (``losses.binary_cross_entropy``). w: [d], X: [n, d],
    y: [n] in {0, 1}. Its autodiff gradient is wrong where a logit is exactly 0 (e.g. at w = 0):
    ``functional.softplus`` has derivative 0 there, not 1/2; the checks start elsewhere."""
    return jnp.mean(binary_cross_entropy(X @ w, y))


def logistic_smoothness(X) -> Array:
    """L = ||X||_2^2 / (4 n), at least the largest eigenvalue of the logistic Hessian
    X^T diag(s (1 - s)) X / n as s (1 - s) <= 1/4. X: [n, d]."""
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"logistic_smoothness: X must be [n, d], got shape {X.shape}")
    return jnp.linalg.norm(X, 2) ** 2 / (4 * X.shape[0])


@partial(jax.jit, static_argnames="F")
def min_sq_grad_norm(F: Objective, ws: Array, args: tuple = ()) -> Array:
    """min_{k<K} ||grad F(w_k, *args)||^2 for K = 1 .. len(ws). ws: [K, ...] iterates.
    Returns [K]."""
    g = jax.vmap(lambda w: jax.grad(F)(w, *args))(ws)
    return jax.lax.cummin(jnp.sum(g.reshape(len(ws), -1) ** 2, axis=1))


def stationarity_bound(L, F0, F_star, K) -> Array:
    """2 L (F(w_0) - F*) / K, the set's bound on min_{k<K} ||grad F(w_k)||^2 at eta = 1/L."""
    _positive("stationarity_bound", "K", K)
    return 2 * L * (F0 - F_star) / jnp.asarray(K)


# Problem set 004 Q12: the quadratic error function.

def quadratic_error(w: Array, w_star: Array, H: Array, E0=0.0) -> Array:
    """E = E_0 + (w - w*)^T H (w - w*) / 2. w, w_star: [d], H: [d, d]."""
    r = w - w_star
    return E0 + r @ H @ r / 2


def eigen_components(rho, eta, w_star_j, tau) -> Array:
    """w_j^tau = (1 - (1 - rho eta_j)^tau) w_j*: the eigen-components u_j^T w^tau of gradient
    descent with learning rate rho from w_0 = 0 on ``quadratic_error`` (eta_j: eigenvalues of
    H). eta, w_star_j: [d]; tau: ints >= 0 [...]. Returns [..., d]."""
    tau = jnp.asarray(tau)
    if not jnp.issubdtype(tau.dtype, jnp.integer) or (_concrete(tau) and bool(np.any(
            np.asarray(tau) < 0))):
        raise ValueError(f"eigen_components: tau must be ints >= 0, got {tau!r}")
    return (1 - (1 - rho * jnp.asarray(eta)) ** tau[..., None]) * jnp.asarray(w_star_j)


def early_stopping_ratios(x, tau) -> tuple[Array, Array]:
    """The two early-stopping regimes as ratios of error to bound, both <= 1, for
    x = rho eta_j in (0, 1] and w_j^tau = c w_j*, c = 1 - (1 - x)^tau:
    |1 - c| / exp(-x tau) (w_j ~ w_j* once x tau >> 1) and |c - x tau| / ((x tau)^2 / 2)
    (w_j ~ x tau w_j* << w_j* while x tau << 1). The first is computed as
    exp(tau log(1 - x) + x tau), finite where both terms underflow. x, tau broadcast."""
    if _concrete(x) and not bool(np.all((np.asarray(x) > 0) & (np.asarray(x) <= 1))):
        raise ValueError(f"early_stopping_ratios: x = rho eta_j must be in (0, 1], got {x!r}")
    x, tau = jnp.asarray(x), jnp.asarray(tau)
    c = 1 - (1 - x) ** tau
    return jnp.exp(tau * jnp.log1p(-x) + x * tau), jnp.abs(c - x * tau) / ((x * tau) ** 2 / 2)


# The problem set's claims (rows of the report; tests/test_theory_convergence.py tests the
# functions). Each check computes in one jitted function (few compilations) and compares on the
# host.

def _piecewise_sum(xs: Array) -> Array:
    """sum_i f(x_i): gradient descent on it runs one independent descent per start x_i."""
    return jnp.sum(piecewise_f(xs))


@jax.jit
def _piecewise_facts() -> tuple[Array, ...]:
    """On a grid of [-5, 5] with 0 on it: max |autodiff f' - problem set's eq. 11|, the jump of f'
    across +-1, min f'', argmin f and min f."""
    xs = jnp.arange(-2000, 2001) / 400
    d1, d2 = jax.vmap(jax.grad(piecewise_f)), jax.vmap(jax.grad(jax.grad(piecewise_f)))
    seed_grad = jnp.where(xs > 1, 1.5 * (xs - 1) + 2,
                          jnp.where(xs < -1, 1.5 * (xs + 1) - 2, 2 * xs))
    edges = jnp.array([1.0, -1.0])
    jump = jnp.max(jnp.abs(d1(edges + 1e-9) - d1(edges - 1e-9)))
    f = piecewise_f(xs)
    return jnp.max(jnp.abs(d1(xs) - seed_grad)), jump, jnp.min(d2(xs)), xs[jnp.argmin(f)], f.min()


def _piecewise_convex() -> Outcome:
    with jax.enable_x64(True):
        err, jump, curv, x_min, f_min = map(float, _piecewise_facts())
    ok = err < 1e-12 and jump < 1e-8 and curv > 0 and x_min == 0.0 and f_min == -1.0
    return Outcome(ok, f"autodiff f' = eq. 11 to {err:.1g}; jump of f' at +-1 {jump:.1g}; "
                   f"min f'' {curv:g} > 0; grid argmin {x_min:g}",
                   stated_value="x* = 0, f(x*) = -1", computed=f"x* = {x_min:g}, f(x*) = {f_min:g}")


@jax.jit
def _unit_step_facts() -> tuple[Array, ...]:
    """GD with eta = 1 for 2000 steps from 20 x0 in [1.5, 1000]: (sides alternate, min |x_t| - 1,
    max rel. error of |x_t| = 1 + (|x0| - 1)/2^t over t <= 40, min and max |f'(x_t)|, max
    |x_2000| - 1)."""
    x0s = jnp.linspace(1.5, 1000.0, 20)
    xs = gradient_descent(_piecewise_sum, x0s, 1.0, 2000)  # [2001, 20]
    closed = 1 + (x0s - 1) / 2.0 ** jnp.arange(41)[:, None]
    g = jnp.abs(jax.vmap(jax.grad(_piecewise_sum))(xs))
    return (jnp.all(jnp.sign(xs[1:]) == -jnp.sign(xs[:-1])), jnp.min(jnp.abs(xs)) - 1,
            jnp.max(jnp.abs(jnp.abs(xs[:41]) - closed) / closed), g.min(), g.max(),
            jnp.max(jnp.abs(xs[-1])) - 1)


def _unit_step_oscillates() -> Outcome:
    with jax.enable_x64(True):
        alternates, gap, err, g_min, g_max, last = map(float, _unit_step_facts())
    ok = alternates == 1 and gap > 0 and err < 1e-14 and g_min > 2
    return Outcome(ok, f"2000 steps from 20 x0 in [1.5, 1000]: sides alternate {alternates == 1}"
                   f"; min |x_t| - 1 = {gap:.2g} > 0, at t = 2000 {last:.2g} (2^-51); |x_t| = "
                   f"1 + (|x0| - 1)/2^t to {err:.1g} for t <= 40; |f'(x_t)| in [{g_min!r}, "
                   f"{g_max:.4g}]")


ETAS = np.arange(1, 66) / 50  # 0.02 .. 1.30, 1.0 exactly on the grid


@jax.jit
def _threshold_facts() -> tuple[Array, Array, Array]:
    """(converged [65, 40] after 3000 steps, L = max f'' on [-10, 10], max | |x_t| - cycle radius|
    over the last two steps at eta = 1.3)."""
    x0s = jnp.linspace(-10.0, 10.0, 40)
    ok = converged(piecewise_f, 0.0, x0s, jnp.asarray(ETAS), 3000)
    L = max_curvature(piecewise_f, jnp.arange(-4000, 4001) / 400)
    tail = gradient_descent(_piecewise_sum, x0s, 1.3, 3000)[-2:]
    return ok, L, jnp.max(jnp.abs(jnp.abs(tail) - piecewise_cycle_radius(1.3)))


def _step_threshold() -> Outcome:
    with jax.enable_x64(True):
        ok, L, cycle = jax.device_get(_threshold_facts())
    lo, hi = step_threshold(ETAS, ok)
    below, above = bool(ok[ETAS < 1].all()), bool((~ok[ETAS >= 1]).all())
    passed = lo < 2 / L <= hi and below and above and cycle < 1e-12
    return Outcome(passed, f"65 steps x 40 starts in [-10, 10]: all converge for eta < 1 {below},"
                   f" none for eta >= 1 {above}; L = {L:g}; at eta = 1.3 |x_t| -> 13 = "
                   f"eta/(4 - 3 eta) to {cycle:.1g}",
                   computed=f"eta* in ({lo:g}, {hi:g}], 2/L = {2 / L:g}")


def _random_spd(rng: np.random.Generator, d: int, lo: float = 0.01,
                hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(H [d, d], U [d, d]): H = U diag(geomspace(lo, hi, d)) U^T, U Haar-random orthogonal.
    The checks' example data is drawn on the host (numpy): threefry under jit compiles slowly."""
    U = np.linalg.qr(rng.standard_normal((d, d)))[0]
    H = (U * np.geomspace(lo, hi, d)) @ U.T
    return (H + H.T) / 2, U


def _quadratic(w, H, b):
    """F(w) = w^T H w / 2 - b^T w."""
    return w @ H @ w / 2 - b @ w


def _logistic_problem(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """X [n, d]: Gaussian features and a bias column; y [n]: fair-coin labels (not separable)."""
    X = np.concatenate([rng.standard_normal((n, d - 1)), np.ones((n, 1))], axis=1)
    return X, (rng.random(n) < 0.5).astype(float)


def _bound_ratio(F, args, L, F_star, w0, K: int = 500) -> Array:
    """max over K' = 1..K of min_{k<K'} ||grad F(w_k)||^2 / (2 L (F(w0) - F*) / K'), GD at 1/L."""
    ws = gradient_descent(F, w0, 1 / L, K - 1, args)
    bound = stationarity_bound(L, F(w0, *args), F_star, jnp.arange(1, K + 1))
    return jnp.max(min_sq_grad_norm(F, ws, args) / bound)


@jax.jit
def _descent_bound_facts(H: Array, b: Array, X: Array, y: Array) -> tuple[Array, Array]:
    """``_bound_ratio`` of quadratics H [q, d, d], b [q, d] (L = max eig, F* = -b^T H^-1 b / 2)
    and of logistic regressions X [p, n, d], y [p, n] (L = ||X||^2/4n, F* by 20 Newton steps)."""
    def quadratic(H, b):
        return _bound_ratio(_quadratic, (H, b), jnp.linalg.eigvalsh(H)[-1],
                            -b @ jnp.linalg.solve(H, b) / 2, jnp.zeros_like(b))

    def logistic(X, y):
        w0 = jnp.full(X.shape[1], 0.5)
        F_star = logistic_loss(newton(logistic_loss, w0, 20, (X, y))[-1], X, y)
        return _bound_ratio(logistic_loss, (X, y), logistic_smoothness(X), F_star, w0)

    return jax.vmap(quadratic)(H, b), jax.vmap(logistic)(X, y)


def _descent_bound() -> Outcome:
    rng = np.random.default_rng(0)
    H = np.stack([_random_spd(rng, 10)[0] for _ in range(3)])
    b = rng.standard_normal((3, 10))
    pairs = [_logistic_problem(rng, 200, 5) for _ in range(2)]
    X, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    with jax.enable_x64(True):
        quad, logi = (float(r.max()) for r in _descent_bound_facts(H, b, X, y))
    return Outcome(max(quad, logi) <= 1, f"max over K = 1..500 of min_k<K ||grad||^2 / "
                   f"(2L(F0 - F*)/K): 3 quadratics (d = 10) {quad:.3g}, 2 logistic regressions "
                   f"(n = 200, d = 5) {logi:.3g} (<= 1)")


@jax.jit
def _eigen_facts(H: Array, U: Array, eta: Array, w_star: Array, H2: Array) -> tuple[Array, Array]:
    """For H = U diag(eta) U^T: max |u_j^T w^tau - closed form| over 300 steps at rho = 0.9; for
    H2 (eigenvalues in [0.01, 1]): ||w^5000 - w*|| at rho = 1.9 and 2.1."""
    ws = gradient_descent(quadratic_error, jnp.zeros_like(w_star), 0.9, 300, (w_star, H, 1.0))
    closed = eigen_components(0.9, eta, U.T @ w_star, jnp.arange(301))
    final = jax.vmap(lambda r: _gd(quadratic_error, jnp.zeros_like(w_star), r, 5000,
                                   (w_star, H2))[-1])(jnp.array([1.9, 2.1]))
    return jnp.max(jnp.abs(ws @ U - closed)), jnp.linalg.norm(final - w_star, axis=1)


def _eigen_example() -> tuple[Array, Array]:
    rng = np.random.default_rng(3)
    H, U = _random_spd(rng, 8, 1e-3, 1.0)
    w_star, H2 = rng.standard_normal(8), _random_spd(rng, 8)[0]
    with jax.enable_x64(True):
        return jax.device_get(_eigen_facts(H, U, np.geomspace(1e-3, 1.0, 8), w_star, H2))


def _eigen_components() -> Outcome:
    return within(float(_eigen_example()[0]), 1e-12, "300 steps, d = 8, rho = 0.9, eta_j in "
                  "[1e-3, 1]: max_tau,j |u_j^T w^tau - closed form|")


def _limit() -> Outcome:
    inside, outside = _eigen_example()[1]
    return Outcome(inside < 1e-9 and outside > 1e6, f"eta_max = 1: after 5000 steps ||w - w*|| = "
                   f"{inside:.1g} at rho = 1.9, {outside:.1g} at rho = 2.1")


@jax.jit
def _regime_facts() -> tuple[Array, ...]:
    """Max error/bound ratios of both regimes on rho eta in [1e-6, 1] x tau in [1, 1e4], and
    w_j/w_j* at rho eta tau = 10 and 1e-4."""
    big, small = early_stopping_ratios(jnp.geomspace(1e-6, 1.0, 61)[:, None],
                                       jnp.array([1, 2, 5, 10, 100, 1000, 10_000]))
    one = jnp.ones(1)
    return (big.max(), small.max(), eigen_components(1e-2, one, one, 1000)[0],
            eigen_components(1e-2, 1e-4 * one, one, 100)[0])


def _regimes() -> Outcome:
    with jax.enable_x64(True):
        big, small, c_big, c_small = map(float, _regime_facts())
    return Outcome(big <= 1 and small <= 1, f"error / bound <= {big:.3g}, {small:.3g} (<= 1); "
                   f"rho eta tau = 10: w_j/w_j* = {c_big:.6f}; rho eta tau = 1e-4: w_j/w_j* = "
                   f"{c_small:.6g}")


@jax.jit
def _newton_quadratic_facts(H: Array, b: Array, w0: Array) -> Array:
    """||w_1 - w*|| / ||w*|| after one Newton step on w^T H w / 2 - b^T w from w0."""
    w_star = jnp.linalg.solve(H, b)
    return jnp.linalg.norm(newton(_quadratic, w0, 1, (H, b))[1] - w_star) / jnp.linalg.norm(w_star)


def _newton_quadratic() -> Outcome:
    rng = np.random.default_rng(7)
    H = _random_spd(rng, 10)[0]
    with jax.enable_x64(True):
        err = float(_newton_quadratic_facts(H, rng.standard_normal(10), rng.standard_normal(10)))
    return within(err, 1e-12, "d = 10, cond(H) = 100: ||w_1 - w*|| / ||w*||")


def _x_minus_log_x(x):
    """F(x) = sum x - log x; minimiser 1, Newton map x -> 2x - x^2."""
    return jnp.sum(x - jnp.log(x))


def _logistic_1d(w, x, y):
    """Regularised 1-D logistic loss mean_i BCE(w x_i, y_i) + 0.05 w^2 / 2. w: [1]."""
    return logistic_loss(w, x[:, None], y) + 0.025 * jnp.sum(w ** 2)


@jax.jit
def _newton_rate_facts(x: Array, y: Array) -> tuple[Array, ...]:
    """Newton errors for x - log x from 0.5 [5], and for ``_logistic_1d`` on (x, y) from w = 1
    [21] (w* = w_20) with its c2, c3 and |F'(w*)|."""
    e1 = newton(_x_minus_log_x, jnp.array([0.5]), 4)[:, 0] - 1
    ws = newton(_logistic_1d, jnp.ones(1), 20, (x, y))[:, 0]
    F = lambda w: _logistic_1d(w[None], x, y)  # noqa: E731
    return (e1, ws - ws[-1], *newton_error_coefficients(F, ws[-1]),
            jnp.abs(jax.grad(F)(ws[-1])))


def _newton_quadratic_rate() -> Outcome:
    rng = np.random.default_rng(13)  # x_i ~ N(1, 1), y_i ~ Bernoulli(0.85), n = 100
    x, y = rng.standard_normal(100) + 1, (rng.random(100) < 0.85).astype(float)
    with jax.enable_x64(True):
        e1, e2, c2, c3, g = jax.device_get(_newton_rate_facts(x, y))
    r1 = e1[1:] / e1[:-1] ** 2
    e2 = e2[: int(np.argmax(np.abs(e2) < 1e-12))]  # e_t+1 resolvable above the ulp of w*
    r2 = e2[1:] / e2[:-1] ** 2
    # r_t = c2 + c3 e_t + O(e_t^2), plus the rounding of e_t+1 (ulp(w*) / e_t^2)
    tol = 2 * abs(c3) * np.abs(e2[:-1]) + 4 * np.finfo(float).eps / e2[:-1] ** 2
    dev1 = float(np.max(np.abs(r1 + 1)))
    ok = dev1 < 1e-9 and bool(np.all(np.abs(r2 - c2) <= tol)) and g < 1e-15

    def seq(e):
        return ", ".join(f"{v:.3g}" for v in e)

    return Outcome(ok, f"x - log x: e_t = {seq(e1)}, e_t+1/e_t^2 = -1 to {dev1:.1g}; logistic "
                   f"1-D: e_t = {seq(e2)}, e_t+1/e_t^2 = {seq(r2)} -> F'''/2F'' = {c2:.5g}, each "
                   f"within 2 |c3 e_t| + rounding (c3 = {c3:.3g})")


CLAIMS = [
    Claim("000", "Q5(a)", "f (eq. 8) is convex and C^1 with f' as in eq. 11; unique minimiser 0, "
          "f(0) = -1", "autodiff f', f'' on a 4,001-point grid of [-5, 5]; jump of f' at +-1",
          _piecewise_convex),
    Claim("000", "Q5(a)", "GD with eta = 1 from x0 > 1 alternates sides outside [-1, 1], "
          "|x_t| -> 1 and |f'(x_t)| -> 2: no stationary point",
          "2,000 float64 steps from 20 starts; |x_t| = 1 + (|x0| - 1)/2^t for t <= 40",
          _unit_step_oscillates),
    Claim("000", "Q5(a)", "GD on f converges from every start iff eta < 2/L = 1 (L = max f'' = 2); "
          "for 1 <= eta < 4/3 it cycles at |x| = eta/(4 - 3 eta)",
          "3,000 steps for eta = 0.02..1.30 x 40 starts in [-10, 10]; L by autodiff",
          _step_threshold),
    Claim("000", "Q5(b)", "GD with eta = 1/L on L-smooth F: min_{k<K} ||grad F(w_k)||^2 <= "
          "2L(F(w0) - F*)/K", "quadratics (L = max eig, closed-form F*) and logistic regression "
          "(L = ||X||_2^2/4n, F* by Newton), K = 1..500", _descent_bound),
    Claim("004", "Q12", "GD on E = E0 + (w - w*)^T H (w - w*)/2 from 0: u_j^T w^tau = "
          "(1 - (1 - rho eta_j)^tau) w_j*", "iterated updates vs the closed form, float64",
          _eigen_components),
    Claim("004", "Q12", "w^tau -> w* iff |1 - rho eta_j| < 1 for all j",
          "5,000 steps at rho = 1.9/eta_max and 2.1/eta_max", _limit),
    Claim("004", "Q12", "early stopping: w_j ~ w_j* when rho eta_j tau >> 1, w_j ~ rho eta_j tau "
          "w_j* << w_j* when << 1", "bounds exp(-rho eta tau) and (rho eta tau)^2/2 on a grid of "
          "rho eta in [1e-6, 1], tau in [1, 1e4]", _regimes),
    Claim("004", "Q11.2", "one Newton step (alpha = 1) reaches the minimum of a quadratic",
          "random SPD quadratic, d = 10, vs the solve H^-1 b", _newton_quadratic),
    Claim("004", "Q11.2", "Newton converges quadratically: e_t+1/e_t^2 bounded, -> "
          "F'''/(2F'') at the optimum", "x - log x (e_t+1 = -e_t^2 exactly) and a 1-D "
          "regularised logistic loss (F''' by autodiff)", _newton_quadratic_rate),
]
