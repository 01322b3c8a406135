"""Points with a given mean and covariance, and trace minimisation over orthonormal frames
(problem set 003 Q4).

  moments        mu = (1/n) sum_i x_i,  Sigma = (1/n) sum_i (x_i - mu)(x_i - mu)^T    [m, m]
  trace problem  min tr(Phi^T Sigma Phi)  s.t.  Phi^T Phi = I_k,  Phi: [m, k]
                 = lambda_1 + .. + lambda_k (the k smallest eigenvalues, ascending), attained by
                 their eigenvectors (Ky Fan); the k largest give the maximum (PCA).
  Stiefel descent  Phi <- qf(Phi - lr grad_R), grad_R = G - Phi sym(Phi^T G), G = 2 Sigma Phi,
                 qf = the Q factor of a QR decomposition with diag(R) > 0 (QR retraction).

Problem set 003 Q4 errata:
- (a) builds x_i = mu + sqrt(n lambda_i) u_i, i = 1..n, from Sigma = U diag(lambda) U^T (so
  n = m). These points have covariance Sigma about mu, but mu is defined as their mean, and
  their mean is mu + sum_i sqrt(lambda_i) u_i / sqrt(n), not mu (unless Sigma = 0); about
  their own mean the covariance is Sigma minus the outer product of that offset. The 2m points
  mu +- sqrt(m lambda_i) u_i (``points_with_moments``) have mean mu and covariance Sigma.
- (b) answers with the eigenvectors of the smallest eigenvalues ("the opposite concept with
  PCA"), which is right, but writes Phi_opt = [phi_N, .., phi_{N-m+1}], m columns indexed from
  an undefined N, for a Phi with k columns out of m eigenvectors; and it orders the vectors
  ("phi_1 >= phi_2 >= ..") where the eigenvalues are meant.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxnets.theory.claim import Claim, Outcome


def _concrete(x) -> bool:
    """True when x holds values, i.e. value checks can run (not under jit)."""
    return not isinstance(x, jax.core.Tracer)


def _symmetric(where: str, Sigma) -> Array:
    """Sigma as a float array, or a ValueError if it is not square (or, outside jit, symmetric)."""
    if jnp.ndim(Sigma) != 2 or jnp.shape(Sigma)[0] != jnp.shape(Sigma)[1]:
        raise ValueError(f"{where}: Sigma must be a square matrix [m, m], got {jnp.shape(Sigma)}")
    if _concrete(Sigma):
        S = np.asarray(Sigma, float)
        if not np.allclose(S, S.T, rtol=1e-6, atol=1e-9 * np.abs(S).max()):
            raise ValueError(f"{where}: Sigma must be symmetric")
    return jnp.asarray(Sigma, float)


def _k(where: str, k, m: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m:
        raise ValueError(f"{where}: k must be an int in [1, {m}], got {k!r}")
    return k


def sample_moments(X) -> tuple[Array, Array]:
    """(mu [m], Sigma [m, m]) of the rows of X [n, m]: the mean and the 1/n covariance."""
    X = jnp.asarray(X, float)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"sample_moments: X must be [n, m] with n >= 1, got {X.shape}")
    mu = X.mean(axis=0)
    return mu, (X - mu).T @ (X - mu) / X.shape[0]


def points_with_moments(mu, Sigma) -> Array:
    """2m points mu +- sqrt(m lambda_i) u_i [2m, m] whose ``sample_moments`` are (mu, Sigma).
    mu: [m]; Sigma: [m, m] symmetric positive semi-definite, = U diag(lambda) U^T."""
    Sigma = _symmetric("points_with_moments", Sigma)
    mu = jnp.asarray(mu, float)
    if mu.shape != Sigma.shape[:1]:
        raise ValueError(f"points_with_moments: mu must be [{Sigma.shape[0]}], got {mu.shape}")
    lam, U = jnp.linalg.eigh(Sigma)
    if _concrete(lam) and float(lam[0]) < -1e-12 * max(float(lam[-1]), 1.0):
        raise ValueError(f"points_with_moments: Sigma must be positive semi-definite, "
                         f"smallest eigenvalue {float(lam[0]):.3g}")
    D = (U * jnp.sqrt(len(mu) * jnp.clip(lam, 0))).T  # rows sqrt(m lambda_i) u_i^T
    return jnp.concatenate([mu + D, mu - D])


def seed_points(mu, Sigma) -> Array:
    """The problem set's construction x_i = mu + sqrt(n lambda_i) u_i, i = 1..n = m. [m, m]. Their
    mean is not mu (see the module docstring)."""
    Sigma = _symmetric("seed_points", Sigma)
    lam, U = jnp.linalg.eigh(Sigma)
    return jnp.asarray(mu, float) + (U * jnp.sqrt(len(lam) * jnp.clip(lam, 0))).T


def trace_objective(Phi: Array, Sigma: Array) -> Array:
    """tr(Phi^T Sigma Phi). Phi: [..., m, k], Sigma: [m, m]. Returns [...]."""
    return jnp.einsum("...ik,ij,...jk->...", Phi, Sigma, Phi)


def min_trace_frame(Sigma, k: int) -> tuple[Array, Array]:
    """(Phi [m, k], value): the eigenvectors of the k smallest eigenvalues of Sigma, and the
    minimum of tr(Phi^T Sigma Phi) over Phi^T Phi = I_k, their sum."""
    Sigma = _symmetric("min_trace_frame", Sigma)
    k = _k("min_trace_frame", k, Sigma.shape[0])
    lam, U = jnp.linalg.eigh(Sigma)  # ascending
    return U[:, :k], jnp.sum(lam[:k])


def qf(A: Array) -> Array:
    """The Q factor of A = QR with diag(R) > 0 (unique for full column rank). A: [..., m, k]."""
    Q, R = jnp.linalg.qr(A)
    return Q * jnp.where(jnp.diagonal(R, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[..., None, :]


def random_frames(key: Array, m: int, k: int, n: int) -> Array:
    """n Haar-random orthonormal frames [n, m, k]: qf of standard Gaussian matrices."""
    k = _k("random_frames", k, m)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"random_frames: n must be an int >= 1, got {n!r}")
    return qf(jax.random.normal(key, (n, m, k)))


def projector(Phi: Array) -> Array:
    """P = Phi Phi^T [..., m, m], the orthogonal projector onto span(Phi) (Phi orthonormal)."""
    return Phi @ jnp.swapaxes(Phi, -1, -2)


def subspace_distance(Phi: Array, Psi: Array) -> Array:
    """||P_Phi - P_Psi||_F: 0 iff the frames span the same subspace (signs, rotations aside)."""
    return jnp.linalg.norm(projector(Phi) - projector(Psi), axis=(-2, -1))


def riemannian_grad(Phi: Array, Sigma: Array) -> Array:
    """Gradient of tr(Phi^T Sigma Phi) on the Stiefel manifold (embedded metric):
    G - Phi sym(Phi^T G), G = 2 Sigma Phi. Zero at any frame of eigenvectors. [m, k]."""
    G = 2 * Sigma @ Phi
    S = Phi.T @ G
    return G - Phi @ (S + S.T) / 2


@partial(jax.jit, static_argnames="steps")
def _stiefel_descent(Sigma: Array, Phi0: Array, lr: Array, steps: int) -> tuple[Array, Array]:
    def step(Phi, _):
        Phi = qf(Phi - lr * riemannian_grad(Phi, Sigma))
        return Phi, trace_objective(Phi, Sigma)

    Phi, values = jax.lax.scan(step, Phi0, None, length=steps)
    return Phi, jnp.concatenate([trace_objective(Phi0, Sigma)[None], values])


def stiefel_descent(Sigma, Phi0, lr, steps: int) -> tuple[Array, Array]:
    """Riemannian gradient descent with the QR retraction on min tr(Phi^T Sigma Phi),
    Phi^T Phi = I_k. Sigma: [m, m]; Phi0: [m, k] orthonormal; lr > 0 (about 1 / (2 lambda_max)).
    Returns (Phi_steps, the objective at steps 0..steps [steps + 1])."""
    Sigma = _symmetric("stiefel_descent", Sigma)
    Phi0 = jnp.asarray(Phi0, float)
    m = Sigma.shape[0]
    if Phi0.ndim != 2 or Phi0.shape[0] != m or not 1 <= Phi0.shape[1] <= m:
        raise ValueError(f"stiefel_descent: Phi0 must be [{m}, k], k <= {m}, got {Phi0.shape}")
    if _concrete(Phi0) and not np.allclose(np.asarray(Phi0).T @ np.asarray(Phi0),
                                           np.eye(Phi0.shape[1]), atol=1e-6):
        raise ValueError("stiefel_descent: Phi0 must have orthonormal columns")
    if _concrete(lr) and not float(lr) > 0:
        raise ValueError(f"stiefel_descent: lr must be > 0, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"stiefel_descent: steps must be an int >= 0, got {steps!r}")
    return _stiefel_descent(Sigma, Phi0, jnp.asarray(lr, Sigma.dtype), steps)


# The problem set's claims (rows of the report; tests/test_theory_linalg.py tests the functions).
# Each check computes in one jitted function (few compilations) and compares on the host.

def _example_points() -> np.ndarray:
    """40 Gaussian points in R^6 with scales 1..6 (host numpy: threefry compiles slowly)."""
    return np.random.default_rng(0).standard_normal((40, 6)) * np.arange(1.0, 7.0)


@jax.jit
def _moment_facts(X: Array) -> tuple[Array, ...]:
    """For (mu, Sigma) = sample_moments(X): |mean - mu| and |Sigma_hat - Sigma| / max |Sigma| of
    ``points_with_moments`` and of ``seed_points``."""
    mu, Sigma = sample_moments(X)

    def errors(P):
        m, S = sample_moments(P)
        return jnp.abs(m - mu).max(), jnp.abs(S - Sigma).max() / jnp.abs(Sigma).max()

    return (*errors(points_with_moments(mu, Sigma)), *errors(seed_points(mu, Sigma)))


def _moments() -> Outcome:
    with jax.enable_x64(True):
        ours_mu, ours_S, seed_mu, seed_S = map(float, _moment_facts(_example_points()))
    ok = max(ours_mu, ours_S) < 1e-12 and min(seed_mu, seed_S) > 1e-3
    return Outcome(ok, f"mu +- sqrt(m lambda_i) u_i: |mean - mu| {ours_mu:.1g}, |Sigma_hat - "
                   f"Sigma| / max|Sigma| {ours_S:.1g}; the problem set's points: {seed_mu:.3g}, "
                   f"{seed_S:.3g}", stated_value="x_i = mu + sqrt(n lambda_i) u_i, n = m",
                   computed="x = mu +- sqrt(m lambda_i) u_i, n = 2m")


@jax.jit
def _trace_facts(X: Array, frames: Array) -> tuple[Array, ...]:
    """Sigma = the covariance of X [n, m]; frames [N, m, m] orthogonal, whose first k columns
    are Haar frames for each k. Per k = 1..m-1: |tr at the bottom-k eigenvectors - sum of k
    smallest eigenvalues| + |Phi^T Phi - I|, min over frames of tr minus that sum, max over
    frames of tr minus the sum of the k largest. Then the Stiefel descent (k = 3, from the
    first frame, lr = 1/(2 lambda_max), 2000 steps): |value - optimum| / optimum, ||P - P_eig||,
    |Phi^T Phi - I|, max increase of the objective, lambda_4 - lambda_3."""
    Sigma = sample_moments(X)[1]
    lam, m = jnp.linalg.eigvalsh(Sigma), Sigma.shape[0]
    err, below, above = [], [], []
    for k in range(1, m):
        Phi, value = min_trace_frame(Sigma, k)
        vals = trace_objective(frames[:, :, :k], Sigma)
        err.append(jnp.abs(trace_objective(Phi, Sigma) - lam[:k].sum())
                   + jnp.abs(Phi.T @ Phi - jnp.eye(k)).max())
        below.append(vals.min() - value)
        above.append(vals.max() - lam[-k:].sum())
    Phi_eig, value = min_trace_frame(Sigma, 3)
    Phi, values = stiefel_descent(Sigma, frames[0, :, :3], 1 / (2 * lam[-1]), 2000)
    return (jnp.stack(err), jnp.stack(below), jnp.stack(above),
            jnp.abs(values[-1] - value) / value, subspace_distance(Phi, Phi_eig),
            jnp.abs(Phi.T @ Phi - jnp.eye(3)).max(), jnp.max(jnp.diff(values)), lam[3] - lam[2])


def _trace_example() -> tuple:
    with jax.enable_x64(True):
        frames = random_frames(jax.random.key(0), 6, 6, 1000)
        return jax.device_get(_trace_facts(_example_points(), frames))


def _min_trace() -> Outcome:
    err, below, above = _trace_example()[:3]
    ok = err.max() < 1e-12 and below.min() > 0 and above.max() < 0
    return Outcome(bool(ok), f"k = 1..5: tr at the bottom-k eigenvectors = sum of the k smallest "
                   f"eigenvalues to {err.max():.1g}; 1,000 random frames: min tr - that sum >= "
                   f"{below.min():.3g} > 0, max tr - sum of the k largest <= {above.max():.3g} < 0",
                   stated_value="eigenvectors of the k smallest eigenvalues",
                   computed="eigenvectors of the k smallest eigenvalues")


def _manifold_descent() -> Outcome:
    dv, dist, feas, rise, gap = map(float, _trace_example()[3:])
    ok = dv < 1e-12 and dist < 1e-8 and feas < 1e-12 and rise <= 1e-12
    return Outcome(ok, f"m = 6, k = 3, 2000 steps from a random frame: |value - sum of 3 smallest"
                   f"| / value {dv:.1g}; ||P_Phi - P_eig||_F {dist:.1g}; |Phi^T Phi - I| "
                   f"{feas:.1g}; objective non-increasing up to rounding (max rise {rise:.1g}); "
                   f"lambda_4 - lambda_3 = {gap:.3g}")


CLAIMS = [
    Claim("003", "Q4(a)", "the 2m points mu +- sqrt(m lambda_i) u_i have mean mu and covariance "
          "Sigma; the problem set's m points mu + sqrt(n lambda_i) u_i do not (their mean is off)",
          "sample_moments of both constructions for a 6 x 6 sample covariance, float64", _moments),
    Claim("003", "Q4(b)", "min tr(Phi^T Sigma Phi) s.t. Phi^T Phi = I_k = sum of the k smallest "
          "eigenvalues, at their eigenvectors", "eigh vs 1,000 Haar-random frames (QR of "
          "Gaussians) for each k = 1..5 of m = 6", _min_trace),
    Claim("003", "Q4(b)", "Riemannian gradient descent on the Stiefel manifold finds the same "
          "minimum and the same subspace as the eigenvectors", "QR retraction, lr = "
          "1/(2 lambda_max), from a random frame; value and ||P_Phi - P_eig||_F",
          _manifold_descent),
]
