"""Curvature of a loss: Hessian-vector products, the top Hessian eigenvalues ("sharpness"), the
trace, Adam's preconditioned sharpness, and a tracker that records them inside ``train.fit`` /
``train.sweep``.

The tracker warm-starts each measurement from the previous one's top eigenvector (its carry,
kept in the run's state): in the edge-of-stability sweep, 3 Lanczos iterations then agree with 20
to 7e-5 (median) and cost 14 % of the run's time.

Nothing here forms the P x P Hessian: every method only calls ``hvp``, H v by
forward-over-reverse differentiation (``jax.jvp`` of ``jax.grad``), which costs about as much
as two or three gradients. Everything jits and vmaps (fixed iteration counts, no Python
branches on values).

Why it matters (problem set 004 Q12): gradient descent w <- w - eta grad E on a quadratic with
Hessian H converges if and only if |1 - eta lambda_j| < 1 for every eigenvalue, i.e.
eta < 2 / lambda_max. Cohen et al. (ICLR 2021) found that on neural networks full-batch gradient
descent drives lambda_max up until it reaches 2 / eta and then hovers there ("the edge of
stability"); ``experiments.edge_of_stability`` reproduces it with ``sharpness`` below.

Accuracy against ``iters`` (float64; ``experiments.benchmark_curvature``, the sin-MLP 64-40-10
on digits, P = 3,010): the top eigenvalue's relative error after 5 / 10 / 20 / 40 iterations is
4e-2 / 4e-5 / 2e-16 / 6e-16 with Lanczos, 5e-2 / 2e-2 / 2e-3 / 1.5e-5 with power iteration
(which converges as (lambda_2 / lambda_1)^iters). With ``iters`` >= P, Lanczos is exact to
rounding (the tests compare the top three eigenpairs with ``eigh`` to 1e-8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.flatten_util import ravel_pytree

PyTree = Any
LossFn = Callable[[PyTree, Any], Array]
Method = Literal["lanczos", "power"]


def hvp(loss: LossFn, params: PyTree, batch: Any, v: PyTree) -> PyTree:
    """H v, H = d^2 loss(params, batch) / d params^2, for v shaped like params (forward over
    reverse: the JVP of ``jax.grad``). Never forms H."""
    return jax.jvp(lambda p: jax.grad(loss)(p, batch), (params,), (v,))[1]


def _operator(loss: LossFn, params: PyTree, batch: Any
              ) -> tuple[Array, Callable[[Array], PyTree], Callable[[Array], Array]]:
    """(params flattened [P], unflatten, u [P] -> H u [P]); the gradient is linearised once, so
    each product reuses the forward pass's residuals."""
    flat, unravel = ravel_pytree(params)
    _, jvp = jax.linearize(lambda f: ravel_pytree(jax.grad(loss)(unravel(f), batch))[0], flat)
    return flat, unravel, jvp


def lanczos(matvec: Callable[[Array], Array], v0: Array, iters: int, key: Array
            ) -> tuple[Array, Array]:
    """Ritz pairs of a symmetric operator after ``iters`` Lanczos steps from v0 [n], with full
    reorthogonalisation (each new vector made orthogonal to all earlier ones, twice).

    Builds Q [m, n] orthonormal, m = min(iters, n), and the tridiagonal T = Q A Q^T
    (alpha_i = q_i . A q_i on the diagonal, beta_i = ||r_i|| beside it). If the Krylov space
    is exhausted (beta_i ~ 0) the next vector is a random one made orthogonal to Q, with
    beta_i = 0. Returns (Ritz values [m] ascending, Ritz vectors [m, n] = Y^T Q).
    """
    n = v0.shape[0]
    m = min(iters, n)
    tiny = jnp.sqrt(jnp.finfo(v0.dtype).eps)

    def orthogonalise(Q, w):
        for _ in range(2):  # twice is enough (Kahan's "twice is enough")
            w = w - Q.T @ (Q @ w)
        return w

    def body(i, carry):
        Q, alpha, beta = carry
        w = matvec(Q[i])
        a = jnp.vdot(Q[i], w)
        r = orthogonalise(Q, w)
        b = jnp.linalg.norm(r)
        restart = b <= tiny * jnp.linalg.norm(w)
        fresh = orthogonalise(Q, jax.random.normal(jax.random.fold_in(key, i), (n,), v0.dtype))
        q = jnp.where(restart, fresh / jnp.linalg.norm(fresh), r / jnp.where(restart, 1, b))
        Q = Q.at[i + 1].set(q, mode="drop")
        return Q, alpha.at[i].set(a), beta.at[i].set(jnp.where(restart, 0, b))

    Q0 = jnp.zeros((m, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    zeros = jnp.zeros((m,), v0.dtype)
    Q, alpha, beta = jax.lax.fori_loop(0, m, body, (Q0, zeros, zeros))
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, Y = jnp.linalg.eigh(T)
    return theta, Y.T @ Q


def subspace_iteration(matvec: Callable[[Array], Array], V0: Array, iters: int
                       ) -> tuple[Array, Array]:
    """Power iteration on k vectors V0 [k, n] at once: V <- orth(A V), ``iters`` times, then
    Rayleigh-Ritz (eigh of V A V^T). Finds the k eigenvalues largest in magnitude.
    Returns (values [k] ascending, vectors [k, n])."""
    def orth(V):
        return jnp.linalg.qr(V.T)[0].T

    V = jax.lax.fori_loop(0, iters, lambda _, V: orth(jax.vmap(matvec)(V)), orth(V0))
    AV = jax.vmap(matvec)(V)
    theta, Y = jnp.linalg.eigh((V @ AV.T + AV @ V.T) / 2)
    return theta, Y.T @ V


def _top(matvec: Callable[[Array], Array], n: int, dtype, *, k: int, iters: int, key: Array,
         method: Method, start: Array | None = None) -> tuple[Array, Array]:
    """The k largest eigenvalues [k] (descending) and their vectors [k, n] of a symmetric
    operator on R^n, from a random start (or ``start`` [n] as the first vector)."""
    if not (isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"k must be an integer in [1, {n}] (the parameter count), got {k!r}")
    if not (isinstance(iters, int) and iters >= k):
        raise ValueError(f"iters must be an integer >= k = {k}, got {iters!r}")
    k_start, k_restart = jax.random.split(key)
    V0 = jax.random.normal(k_start, (k, n), dtype)
    if start is not None:
        V0 = V0.at[0].set(start)
    if method == "lanczos":
        theta, vecs = lanczos(matvec, V0[0], iters, k_restart)
    elif method == "power":
        theta, vecs = subspace_iteration(matvec, V0, iters)
    else:
        raise ValueError(f"unknown method {method!r}; expected 'lanczos' or 'power'")
    return theta[::-1][:k], vecs[::-1][:k]


def top_eigenvalues(loss: LossFn, params: PyTree, batch: Any, *, k: int = 1, iters: int = 20,
                    key: Array | None = None, method: Method = "lanczos",
                    start: PyTree | None = None) -> tuple[Array, PyTree]:
    """The k largest eigenvalues of the Hessian of ``loss(params, batch)`` w.r.t. params.

    method: "lanczos" (``lanczos``, ``iters`` Hessian-vector products, full
    reorthogonalisation) or "power" (``subspace_iteration`` on k vectors, ``iters`` x k
    products; finds the eigenvalues largest in magnitude, which are the largest ones when the
    Hessian's top eigenvalues dominate its negative ones). key: the random start (default
    ``jax.random.key(0)``). start: a first vector like params instead (e.g. the previous top
    eigenvector: a warm start needs far fewer iterations while the Hessian changes slowly).
    Returns (eigenvalues [k] descending, eigenvectors: a pytree like params with a leading axis
    k, unit norm over all leaves).
    """
    flat, unravel, matvec = _operator(loss, params, batch)
    key = jax.random.key(0) if key is None else key
    values, vecs = _top(matvec, flat.shape[0], flat.dtype, k=k, iters=iters, key=key,
                        method=method, start=None if start is None else ravel_pytree(start)[0])
    return values, jax.vmap(unravel)(vecs)


def hutchinson_trace(loss: LossFn, params: PyTree, batch: Any, *, samples: int, key: Array
                     ) -> Array:
    """Hutchinson's estimate of tr H: the mean of v^T H v over ``samples`` Rademacher vectors v
    (entries +-1). Unbiased; its variance per sample is 2 sum_{i != j} H_ij^2, so it is exact
    for a diagonal H."""
    flat, _, matvec = _operator(loss, params, batch)
    V = jax.random.rademacher(key, (samples, flat.shape[0]), flat.dtype)
    return jnp.mean(jnp.sum(V * jax.vmap(matvec)(V), axis=1))


def adam_preconditioner(opt_state: optax.OptState, *, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8) -> PyTree:
    """Adam's diagonal preconditioner after t = count steps, as in Cohen et al. (2022):
    P = (1 - b1^t) (sqrt(nu / (1 - b2^t)) + eps), read from the ``optax.scale_by_adam`` state
    in ``opt_state`` (a pytree like params; its update is -eta P^-1 m-ish)."""
    nu = optax.tree_utils.tree_get(opt_state, "nu")
    count = optax.tree_utils.tree_get(opt_state, "count")
    if nu is None or count is None:
        raise ValueError("adam_preconditioner: opt_state holds no optax.scale_by_adam state "
                         "(nu and count)")
    t = jnp.maximum(count, 1).astype(jax.tree.leaves(nu)[0].dtype)
    return jax.tree.map(lambda v: (1 - b1**t) * (jnp.sqrt(v / (1 - b2**t)) + eps), nu)


def preconditioned_top_eigenvalue(loss: LossFn, params: PyTree, batch: Any,
                                  opt_state: optax.OptState, *, b1: float = 0.9,
                                  b2: float = 0.999, eps: float = 1e-8, iters: int = 20,
                                  key: Array | None = None, method: Method = "lanczos") -> Array:
    """The top eigenvalue of P^-1/2 H P^-1/2 (= that of P^-1 H), P = ``adam_preconditioner``.
    Adam is stable on a quadratic while it is below (2 + 2 b1) / ((1 - b1) eta): 38 / eta at
    b1 = 0.9 (Cohen et al. 2022)."""
    key = jax.random.key(0) if key is None else key
    return _preconditioned_top(loss, params, batch, opt_state, b1, b2, eps, iters, key, method,
                               None)[0][0]


def _preconditioned_top(loss, params, batch, opt_state, b1, b2, eps, iters, key, method, start):
    """(values [1], vectors [1, P]) of P^-1/2 H P^-1/2, flat."""
    flat, _, matvec = _operator(loss, params, batch)
    s = ravel_pytree(adam_preconditioner(opt_state, b1=b1, b2=b2, eps=eps))[0] ** -0.5
    return _top(lambda u: s * matvec(s * u), flat.shape[0], flat.dtype, k=1, iters=iters,
                key=key, method=method, start=start)


# ----------------------------------------------------------------------------------------------
# Trackers: measured inside the compiled run (``train.fit(..., track=...)``).

@dataclasses.dataclass(frozen=True)
class Sharpness:
    """A tracker: the top-k Hessian eigenvalues of ``loss`` on the training data, every
    ``every`` steps, inside the compiled run. ``examples``: the first that many training
    examples (default: all, full batch). ``preconditioned``: Adam's preconditioned sharpness
    instead (k = 1; b1, b2, eps must be the optimizer's). Values {"sharpness": [k]} per
    measurement.

    Warm start: the run's first top eigenvector is found with ``init_iters`` iterations from a
    fixed random vector (``jax.random.key(0)``: runs repeat exactly); every measurement then
    starts from the previous one's top eigenvector (the tracker's carry, kept in the run's
    state), so a few ``iters`` suffice while the Hessian changes slowly between measurements.
    """

    loss: LossFn
    every: int
    k: int = 1
    iters: int = 20
    method: Method = "lanczos"
    examples: int | None = None
    preconditioned: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    init_iters: int = 20

    def batch(self, data: Any) -> Any:
        return data if self.examples is None else jax.tree.map(lambda a: a[:self.examples], data)

    def _top(self, state: Any, data: Any, iters: int, start: Array | None
             ) -> tuple[Array, Array]:
        """(values [k], flat vectors [k, P]) at the state's params."""
        batch, key = self.batch(data), jax.random.key(0)
        if self.preconditioned:
            return _preconditioned_top(self.loss, state.params, batch, state.opt_state, self.b1,
                                       self.b2, self.eps, iters, key, self.method, start)
        flat, _, matvec = _operator(self.loss, state.params, batch)
        return _top(matvec, flat.shape[0], flat.dtype, k=self.k, iters=iters, key=key,
                    method=self.method, start=start)

    def init(self, state: Any, data: Any) -> Array:
        """The first start vector [P]: the top eigenvector at the initial params."""
        return self._top(state, data, max(self.init_iters, self.k), None)[1][0]

    def __call__(self, state: Any, hparams: dict, data: Any, carry: Array
                 ) -> tuple[dict[str, Array], Array]:
        values, vectors = self._top(state, data, self.iters, carry)
        return {"sharpness": values}, vectors[0]

    def validate(self, params: PyTree, data: Any, where: str) -> None:
        """Clear errors before compiling: the counts, and that the batch and k fit."""
        for name in ("every", "iters", "init_iters"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"{where}: track's {name} must be a positive integer, got {v!r}")
        if self.method not in ("lanczos", "power"):
            raise ValueError(f"{where}: track's method must be 'lanczos' or 'power', got "
                             f"{self.method!r}")
        n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        if not (isinstance(self.k, int) and 1 <= self.k <= min(n, self.iters)):
            raise ValueError(f"{where}: track's k must be in [1, min(P = {n}, iters = "
                             f"{self.iters})], got {self.k!r}")
        if self.preconditioned and self.k != 1:
            raise ValueError(f"{where}: the preconditioned sharpness is tracked with k = 1")
        if self.examples is not None:
            have = jax.tree.leaves(data)[0].shape[0]
            if not (isinstance(self.examples, int) and 1 <= self.examples <= have):
                raise ValueError(f"{where}: track's examples must be in [1, {have}], got "
                                 f"{self.examples!r}")


def sharpness(loss: LossFn, *, every: int, k: int = 1, iters: int = 20,
              method: Method = "lanczos", examples: int | None = None,
              init_iters: int = 20) -> Sharpness:
    """Track the top-k Hessian eigenvalues every ``every`` steps: ``train.fit(..., track=
    curvature.sharpness(loss, every=50))``; the result's ``tracked["sharpness"]`` is
    [..., steps // every, k]. Each measurement warm-starts from the last (``Sharpness``)."""
    return Sharpness(loss, every, k, iters, method, examples, init_iters=init_iters)


def preconditioned_sharpness(loss: LossFn, *, every: int, b1: float = 0.9, b2: float = 0.999,
                             eps: float = 1e-8, iters: int = 20, method: Method = "lanczos",
                             examples: int | None = None, init_iters: int = 20) -> Sharpness:
    """Track Adam's preconditioned sharpness (``preconditioned_top_eigenvalue``) every
    ``every`` steps; b1, b2, eps as the optimizer's. ``tracked["sharpness"]``: [..., steps //
    every, 1]."""
    return Sharpness(loss, every, 1, iters, method, examples, True, b1, b2, eps, init_iters)
