"""jaxnets.theory.linalg: moments and the points that realise them, the trace problem over
orthonormal frames (eigenvectors vs brute force on the sphere, random frames, Stiefel descent),
QR, projectors and the Riemannian gradient (against autodiff), against numpy in float64; argument
checks; and every claim of the module passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.theory import linalg as la
from jaxnets.theory.linalg import CLAIMS


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured


def test_claim_names_are_unique_and_the_seed_flagged_only_in_q4a():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)
    assert [c.question for c in CLAIMS if c.check().differs] == ["Q4(a)"]


def _spd(rng, m, rank=None):
    A = rng.standard_normal((m, rank or m))
    return A @ A.T / m


def test_sample_moments_match_numpy(x64):
    X = np.random.default_rng(0).standard_normal((30, 4))
    mu, Sigma = la.sample_moments(X)
    np.testing.assert_allclose(mu, X.mean(0), rtol=1e-14)
    np.testing.assert_allclose(Sigma, np.cov(X.T, bias=True), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("rank", [5, 2])
def test_points_with_moments_reproduce_them(x64, rank):
    rng = np.random.default_rng(rank)
    Sigma, mu = _spd(rng, 5, rank), rng.standard_normal(5)
    X = la.points_with_moments(mu, Sigma)
    assert X.shape == (10, 5)
    m, S = la.sample_moments(X)
    np.testing.assert_allclose(m, mu, rtol=0, atol=1e-14)
    np.testing.assert_allclose(S, Sigma, rtol=0, atol=1e-14)


def test_problem_set_points_have_covariance_about_mu_but_not_mean_mu(x64):
    rng = np.random.default_rng(3)
    Sigma, mu = _spd(rng, 4), rng.standard_normal(4)
    X = np.asarray(la.seed_points(mu, Sigma))
    lam = np.linalg.eigvalsh(Sigma)
    np.testing.assert_allclose((X - mu).T @ (X - mu) / 4, Sigma, atol=1e-14)  # the set's step
    # row i is mu + sqrt(n lambda_i) u_i, u_i a unit eigenvector (its sign is eigh's choice,
    # which differs between LAPACK and GPU solvers), so the mean is off mu by their sum / n
    D = X - mu
    np.testing.assert_allclose(D @ Sigma, lam[:, None] * D, atol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), np.sqrt(4 * lam), atol=1e-14)
    offset = X.mean(0) - mu  # sum_i sqrt(lambda_i) u_i / sqrt(n), n = 4
    # whatever the signs, |offset|^2 = sum_i lambda_i / n = tr(Sigma) / n (u_i orthonormal), so
    # the sample covariance about the mean, Sigma - offset offset^T, is never Sigma
    np.testing.assert_allclose(offset @ offset, np.trace(Sigma) / 4, rtol=1e-13)
    assert np.linalg.norm(offset) > 0.1


def test_trace_objective_batched(x64):
    rng = np.random.default_rng(4)
    Sigma, Phi = _spd(rng, 5), rng.standard_normal((7, 5, 2))
    want = [np.trace(P.T @ Sigma @ P) for P in Phi]
    np.testing.assert_allclose(la.trace_objective(Phi, Sigma), want, rtol=1e-13)


def test_min_trace_frame_against_the_sphere(x64):
    """k = 1 in R^3: the minimum of u^T Sigma u over a fine grid of unit vectors."""
    rng = np.random.default_rng(5)
    Sigma = _spd(rng, 3)
    th, ph = np.meshgrid(np.linspace(0, np.pi, 721), np.linspace(0, 2 * np.pi, 1441))
    u = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    brute = np.einsum("ni,ij,nj->n", u, Sigma, u)
    Phi, value = la.min_trace_frame(Sigma, 1)
    assert float(value) <= brute.min() <= float(value) + 1e-4
    np.testing.assert_allclose(float(value), np.linalg.eigvalsh(Sigma)[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(Sigma @ Phi[:, 0], float(value) * Phi[:, 0], atol=1e-14)
    assert float(la.trace_objective(la.min_trace_frame(Sigma, 3)[0], Sigma)) == pytest.approx(
        np.trace(Sigma), rel=1e-14)


def test_qf_is_the_qr_factor_with_positive_diagonal(x64):
    A = np.random.default_rng(6).standard_normal((3, 5, 2))
    Q = np.asarray(la.qf(A))
    np.testing.assert_allclose(np.swapaxes(Q, 1, 2) @ Q, np.broadcast_to(np.eye(2), (3, 2, 2)),
                               atol=1e-15)
    R = np.swapaxes(Q, 1, 2) @ A
    np.testing.assert_allclose(R[:, 1, 0], 0, atol=1e-14)
    assert np.all(np.diagonal(R, axis1=1, axis2=2) > 0)
    np.testing.assert_allclose(Q @ R, A, atol=1e-14)


def test_random_frames_are_orthonormal_and_isotropic(x64):
    frames = la.random_frames(jax.random.key(0), 4, 2, 4000)
    assert frames.shape == (4000, 4, 2)
    gram = jnp.swapaxes(frames, 1, 2) @ frames
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(2), (4000, 2, 2)), atol=1e-14)
    # Haar: E[P] = (k / m) I; the sample mean of 4000 projectors within a few standard errors
    np.testing.assert_allclose(la.projector(frames).mean(0), np.eye(4) / 2, atol=0.03)


def test_projector_and_subspace_distance(x64):
    rng = np.random.default_rng(7)
    Phi = np.asarray(la.qf(rng.standard_normal((5, 2))))
    P = np.asarray(la.projector(Phi))
    np.testing.assert_allclose(P @ P, P, atol=1e-15)
    np.testing.assert_allclose(P, P.T, atol=0)
    R = np.linalg.qr(rng.standard_normal((2, 2)))[0]  # rotate and reflect within the span
    assert float(la.subspace_distance(Phi, Phi @ R)) < 1e-14
    other = np.asarray(la.qf(rng.standard_normal((5, 2))))
    # ||P - Q||_F^2 = 2k - 2 ||Phi^T Psi||_F^2
    np.testing.assert_allclose(la.subspace_distance(Phi, other) ** 2,
                               4 - 2 * np.sum((Phi.T @ other) ** 2), rtol=1e-12)


def test_riemannian_grad_is_tangent_and_matches_autodiff(x64):
    rng = np.random.default_rng(8)
    Sigma = jnp.asarray(_spd(rng, 5))
    Phi = la.qf(jnp.asarray(rng.standard_normal((5, 2))))
    xi = la.riemannian_grad(Phi, Sigma)
    np.testing.assert_allclose(Phi.T @ xi + xi.T @ Phi, 0, atol=1e-14)  # tangent to Stiefel
    Z = jnp.asarray(rng.standard_normal((5, 2)))
    Z = Z - Phi @ (Phi.T @ Z + Z.T @ Phi) / 2  # a tangent direction
    _, dF = jax.jvp(lambda P: la.trace_objective(P, Sigma), (Phi,), (Z,))
    np.testing.assert_allclose(dF, jnp.sum(xi * Z), rtol=1e-12)
    U = jnp.linalg.eigh(Sigma)[1]
    for cols in ([0, 1], [1, 4], [3, 2]):  # zero at any eigenvector frame, not only the bottom one
        np.testing.assert_allclose(la.riemannian_grad(U[:, cols], Sigma), 0, atol=1e-14)


def test_stiefel_descent_finds_the_bottom_subspace(x64):
    rng = np.random.default_rng(9)
    lam = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    U = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    Sigma = (U * lam) @ U.T
    Sigma = (Sigma + Sigma.T) / 2
    Phi0 = la.random_frames(jax.random.key(1), 5, 2, 1)[0]
    Phi, values = la.stiefel_descent(Sigma, Phi0, 1 / 6, 600)
    assert values.shape == (601,)
    np.testing.assert_allclose(values[-1], 0.6, rtol=1e-13)
    assert float(la.subspace_distance(Phi, U[:, :2])) < 1e-10
    assert bool(jnp.all(jnp.diff(values) <= 1e-14))


def test_argument_checks():
    with pytest.raises(ValueError, match="square"):
        la.min_trace_frame(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="symmetric"):
        la.min_trace_frame(np.array([[1.0, 2.0], [0.0, 1.0]]), 1)
    for k in (0, 3, 1.0, True):
        with pytest.raises(ValueError, match="k must"):
            la.min_trace_frame(np.eye(2), k)
    with pytest.raises(ValueError, match="semi-definite"):
        la.points_with_moments(np.zeros(2), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="mu"):
        la.points_with_moments(np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="X"):
        la.sample_moments(np.ones(3))
    with pytest.raises(ValueError, match="n must"):
        la.random_frames(jax.random.key(0), 3, 2, 0)
    with pytest.raises(ValueError, match="orthonormal"):
        la.stiefel_descent(np.eye(3), np.ones((3, 1)), 0.1, 5)
    with pytest.raises(ValueError, match="Phi0"):
        la.stiefel_descent(np.eye(3), np.eye(2), 0.1, 5)
    with pytest.raises(ValueError, match="lr"):
        la.stiefel_descent(np.eye(3), np.eye(3)[:, :1], 0.0, 5)
    with pytest.raises(ValueError, match="steps"):
        la.stiefel_descent(np.eye(3), np.eye(3)[:, :1], 0.1, -1)
