"""jaxnets.theory.convergence: gradient descent and Newton's method against closed forms derived
here (scalar recursions iterated in Python floats, (I - eta H)^k, the Newton map of exp(x) - 2x),
the logistic loss against its formula, argument checks; and every claim of the module passes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.theory import convergence as cv
from jaxnets.theory.convergence import CLAIMS


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured
    assert not outcome.differs  # the problem sets' convergence answers hold


def test_claim_names_are_unique():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)


# ---------------------------------------------------------------- problem set 000 Q5(a)


def _f(x: float) -> float:
    """The problem set's eq. 8 in plain Python."""
    if x > 1:
        return 0.75 * (1 - x) ** 2 - 2 * (1 - x)
    if x < -1:
        return 0.75 * (1 + x) ** 2 - 2 * (1 + x)
    return x * x - 1


def test_piecewise_f_values_and_shape(x64):
    xs = np.array([-7.5, -2.0, -1.0, -0.3, 0.0, 0.5, 1.0, 1.0 + 1e-12, 3.0, 40.0])
    np.testing.assert_allclose(cv.piecewise_f(jnp.asarray(xs)), [_f(x) for x in xs], rtol=1e-15,
                               atol=1e-15)
    np.testing.assert_array_equal(cv.piecewise_f(jnp.asarray(xs)), cv.piecewise_f(-jnp.asarray(xs)))
    assert cv.piecewise_f(jnp.zeros((2, 3))).shape == (2, 3)


def test_max_curvature(x64):
    assert float(cv.max_curvature(cv.piecewise_f, jnp.linspace(-3.0, 3.0, 101))) == 2.0
    assert float(cv.max_curvature(cv.piecewise_f, jnp.linspace(1.5, 3.0, 11))) == 1.5
    assert float(cv.max_curvature(jnp.cos, jnp.array([0.0, math.pi / 2]))) == 1.0


def test_gradient_descent_at_eta_one_matches_the_seeds_update(x64):
    """The problem set's update: x -> -x/2 - 1/2 for x > 1, -x/2 + 1/2 for x < -1, -x otherwise."""
    for x0 in (1.5, 7.0, 100.0, 0.3):
        x, want = x0, [x0]
        for _ in range(30):
            x = -x / 2 - 0.5 if x > 1 else (-x / 2 + 0.5 if x < -1 else -x)
            want.append(x)
        got = cv.gradient_descent(cv.piecewise_f, x0, 1.0, 30)
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_gradient_descent_on_a_quadratic_is_the_matrix_power(x64):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    H, w_star, w0 = A @ A.T / 5 + np.eye(5), rng.standard_normal(5), rng.standard_normal(5)
    eta = 0.9 / np.linalg.eigvalsh(H)[-1]
    ws = cv.gradient_descent(cv.quadratic_error, w0, eta, 25, (jnp.asarray(w_star), jnp.asarray(H)))
    assert ws.shape == (26, 5) and ws.dtype == jnp.float64
    for k in (0, 1, 7, 25):
        want = w_star + np.linalg.matrix_power(np.eye(5) - eta * H, k) @ (w0 - w_star)
        np.testing.assert_allclose(ws[k], want, rtol=1e-12, atol=1e-13)


def test_converged_and_step_threshold_on_a_parabola(x64):
    """F = 2 x^2 (L = 4): GD multiplies x by 1 - 4 eta, converging iff eta < 1/2."""
    etas = np.arange(1, 31) / 50  # 0.02 .. 0.60
    ok = cv.converged(lambda x: 2 * x ** 2, 0.0, jnp.array([-3.0, 0.5, 2.0]), etas, 2000)
    assert ok.shape == (30, 3)
    np.testing.assert_array_equal(ok.all(axis=1), etas < 0.5)
    assert cv.step_threshold(etas, ok) == (0.48, 0.5)


def test_piecewise_cycle_radius_is_where_gd_settles(x64):
    for eta in (1.05, 1.2):
        x = cv.gradient_descent(cv.piecewise_f, 2.5, eta, 400)[-1]
        np.testing.assert_allclose(abs(float(x)), eta / (4 - 3 * eta), rtol=1e-13)
    assert float(cv.piecewise_cycle_radius(1.0)) == 1.0
    with pytest.raises(ValueError, match="eta"):
        cv.piecewise_cycle_radius(1.5)


def test_argument_checks():
    with pytest.raises(ValueError, match="steps"):
        cv.gradient_descent(cv.piecewise_f, 1.0, 0.1, -1)
    with pytest.raises(ValueError, match="steps"):
        cv.gradient_descent(cv.piecewise_f, 1.0, 0.1, 2.5)
    with pytest.raises(ValueError, match="eta"):
        cv.gradient_descent(cv.piecewise_f, 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="w0"):
        cv.newton(cv.piecewise_f, 1.0, 3)
    with pytest.raises(ValueError, match="alpha"):
        cv.newton(lambda w: jnp.sum(w ** 2), jnp.ones(2), 3, alpha=-1.0)
    with pytest.raises(ValueError, match="etas"):
        cv.converged(cv.piecewise_f, 0.0, [1.0], [0.5, -0.1], 3)
    with pytest.raises(ValueError, match="increasing"):
        cv.step_threshold([0.2, 0.1], np.array([[True], [False]]))
    with pytest.raises(ValueError, match="start converging"):
        cv.step_threshold([0.1, 0.2], np.array([[True], [True]]))
    with pytest.raises(ValueError, match="errors"):
        cv.newton_ratios(jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="K"):
        cv.stationarity_bound(1.0, 2.0, 1.0, 0)
    with pytest.raises(ValueError, match="tau"):
        cv.eigen_components(0.1, jnp.ones(2), jnp.ones(2), 2.0)
    with pytest.raises(ValueError, match="tau"):
        cv.eigen_components(0.1, jnp.ones(2), jnp.ones(2), jnp.array([-1]))
    with pytest.raises(ValueError, match="x = rho eta_j"):
        cv.early_stopping_ratios(1.5, 3)
    with pytest.raises(ValueError, match="X"):
        cv.logistic_smoothness(jnp.ones(3))


# ---------------------------------------------------------------- problem set 000 Q5(b)


def test_logistic_loss_gradient_and_smoothness(x64):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((50, 3)), (rng.random(50) < 0.5).astype(float)
    w = rng.standard_normal(3)
    z = X @ w
    np.testing.assert_allclose(cv.logistic_loss(w, X, y), np.mean(np.logaddexp(0, z) - y * z),
                               rtol=1e-14)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(jax.grad(cv.logistic_loss)(jnp.asarray(w), X, y),
                               X.T @ (s - y) / 50, rtol=1e-12, atol=1e-15)
    L = float(cv.logistic_smoothness(X))
    np.testing.assert_allclose(L, np.linalg.eigvalsh(X.T @ X)[-1] / 200, rtol=1e-13)
    for v in (w, np.zeros(3) + 1e-3, 5 * w):  # the Hessian's top eigenvalue never exceeds L
        assert np.linalg.eigvalsh(jax.hessian(cv.logistic_loss)(jnp.asarray(v), X, y))[-1] <= L


def test_min_sq_grad_norm_is_a_running_minimum(x64):
    ws = jnp.array([[3.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.5, 0.0]])
    got = cv.min_sq_grad_norm(lambda w: jnp.sum(w ** 2) / 2, ws)  # grad = w
    np.testing.assert_array_equal(got, [9.0, 2.0, 2.0, 0.25])
    np.testing.assert_allclose(cv.stationarity_bound(2.0, 3.0, 1.0, jnp.arange(1, 4)),
                               [8.0, 4.0, 8 / 3], rtol=1e-15)


def test_descent_bound_holds_for_a_badly_conditioned_quadratic(x64):
    H = jnp.diag(jnp.array([1e-3, 0.1, 1.0]))
    w0 = jnp.array([1.0, 1.0, 1.0])
    F = lambda w: w @ H @ w / 2  # noqa: E731  (F* = 0, L = 1)
    ws = cv.gradient_descent(F, w0, 1.0, 199)
    lhs = cv.min_sq_grad_norm(F, ws)
    rhs = cv.stationarity_bound(1.0, F(w0), 0.0, jnp.arange(1, 201))
    assert bool(jnp.all(lhs <= rhs)) and float(lhs[-1]) < float(lhs[0])


# ---------------------------------------------------------------- problem set 004 Q12


def test_eigen_components_iterate_the_scalar_recursion(x64):
    """Along u_j, w <- w - rho eta_j (w - w_j*) from 0, iterated in Python floats."""
    rho, eta, w_star = 0.3, [0.01, 1.0, 3.0, 6.5], [2.0, -1.0, 0.5, 1.0]
    got = cv.eigen_components(rho, jnp.array(eta), jnp.array(w_star), jnp.arange(12))
    assert got.shape == (12, 4)
    for j in range(4):
        w = 0.0
        for tau in range(12):
            assert abs(float(got[tau, j]) - w) <= 1e-14 * max(1.0, abs(w))
            w -= rho * eta[j] * (w - w_star[j])
    np.testing.assert_allclose(cv.quadratic_error(jnp.array([1.0, 2.0]), jnp.zeros(2),
                                                  jnp.diag(jnp.array([2.0, 4.0])), 3.0), 12.0)


def test_early_stopping_ratios(x64):
    x = jnp.geomspace(1e-5, 1.0, 40)[:, None]
    big, small = cv.early_stopping_ratios(x, jnp.array([1, 3, 30, 3000]))
    assert bool(jnp.all(big <= 1)) and bool(jnp.all(small <= 1 + 1e-9))
    # small x tau: c ~ x tau (1 - (tau - 1) x / 2), so the second ratio -> (tau - 1) / tau
    np.testing.assert_allclose(cv.early_stopping_ratios(1e-4, 4)[1], 0.75, rtol=1e-3)
    # large x tau: 1 - c = (1 - x)^tau, exp(tau (log(1 - x) + x)) ~ exp(-tau x^2 / 2)
    np.testing.assert_allclose(cv.early_stopping_ratios(0.01, 1000)[0], math.exp(
        1000 * (math.log1p(-0.01) + 0.01)), rtol=1e-12)


# ---------------------------------------------------------------- problem set 004 Q11.2


def test_newton_one_step_on_a_quadratic(x64):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((6, 6))
    H, b = A @ A.T + 0.1 * np.eye(6), rng.standard_normal(6)
    ws = cv.newton(lambda w: w @ H @ w / 2 - b @ w, rng.standard_normal(6), 2)
    np.testing.assert_allclose(ws[1], np.linalg.solve(H, b), rtol=1e-10)
    half = cv.newton(lambda w: w @ H @ w / 2 - b @ w, np.zeros(6), 1, alpha=0.5)[1]
    np.testing.assert_allclose(half, np.linalg.solve(H, b) / 2, rtol=1e-10)


def test_newton_on_exp_minus_2x(x64):
    """F = e^x - 2x: Newton map x -> x - 1 + 2 e^-x; e_t+1 = e^2/2 - e^3/6 + .. (c2 = 1/2,
    c3 = 1/3 - 1/2 = -1/6 from F'' = F''' = F'''' = e^x)."""
    F = lambda w: jnp.sum(jnp.exp(w) - 2 * w)  # noqa: E731
    ws = cv.newton(F, jnp.array([1.0]), 5)[:, 0]
    x, want = 1.0, [1.0]
    for _ in range(5):
        x = x - 1 + 2 * math.exp(-x)
        want.append(x)
    np.testing.assert_allclose(ws, want, rtol=1e-15)
    c2, c3 = cv.newton_error_coefficients(lambda x: jnp.exp(x) - 2 * x, math.log(2))
    np.testing.assert_allclose([c2, c3], [0.5, -1 / 6], rtol=1e-14)
    e = np.asarray(ws) - math.log(2)
    r = np.asarray(cv.newton_ratios(e[:4]))
    assert np.all(np.abs(r[1:] - (0.5 - e[1:3] / 6)) <= 2 * e[1:3] ** 2)


def test_newton_ratios(x64):
    np.testing.assert_allclose(cv.newton_ratios(jnp.array([0.5, -0.25, -0.0625])), [-1, -1])
    v = jnp.array([[3.0, 4.0], [0.0, 10.0], [1.0, 0.0]])
    np.testing.assert_allclose(cv.newton_ratios(v), [10 / 25, 1 / 100])
