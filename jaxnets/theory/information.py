"""Cross-entropy as a likelihood, its split into entropy and KL, and maximum entropy, discrete and
continuous (problem set 000 Q2).

  Bernoulli likelihood P(x | p) = p^x (1 - p)^(1 - x), x in {0, 1}:
    -log P(x | p) = CE(p, x) = -x log p - (1 - x) log(1 - p) = H(Bern(x), Bern(p)),
    and -log prod_i P(x_i | p) = sum_i CE(p, x_i) is minimised at p = mean(x) (the MLE)
  H(p, q) = H(p) + KL(p || q); for a soft label x in (0, 1), CE(p, x) = H(Bern(x)) +
    KL(Bern(x) || Bern(p)) >= H(Bern(x)), with equality only at p = x
  H(p) <= log n on the simplex, with equality only at p = 1/n; H is concave
  at equal variance s^2 (differential entropies, nats):
    Gaussian  log(2 pi e s^2) / 2          logistic  log(s sqrt(3) / pi) + 2
    Laplace   1 + log(2 s / sqrt(2))       uniform   log(s sqrt(12))
  and the Gaussian's is the largest; over the generalized normal family
  p(x) ~ exp(-|x / alpha|^beta) at fixed variance, h is maximal at beta = 2 (the Gaussian).

Distributions lie along the last axis (``jaxnets.losses`` conventions, nats, 0 log 0 = 0).
Densities are of mean 0, parametrised by their variance; integrals are trapezoid sums on a grid.

Errata in the problem sets:
- problem set 000 Q2(c) calls the entropy convex, H(l p + (1 - l) q) <= l H(p) + (1 - l) H(q). It is
  concave: the inequality is reversed (its Hessian is -diag(1 / p)). Its bound H <= log n with
  equality at the uniform distribution is right.
- problem set 000 Q2(d) writes L(f) = integral f log f + l0 (integral f - 1) + l1 (integral (x -
mu)^2 f
  - s^2) and dL/df = -log f - 1 + l0 + l1 (x - mu)^2. The derivative of that L is
  log f + 1 + l0 + l1 (x - mu)^2 (the problem set's is that of the L with -integral f log f). Either
  way the stationary f is Gaussian; its C = 1 / (s sqrt(2 pi)) and beta = 1 / (2 s^2) are right.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.scipy.special import gammaln, xlogy
from jax.scipy.stats import gennorm, laplace, logistic, norm, uniform

from jaxnets.losses import binary_cross_entropy, cross_entropy, entropy, kl_divergence
from jaxnets.theory.claim import Claim, Outcome, within


def bernoulli(p: Array) -> Array:
    """The distribution (p, 1 - p) on the outcomes (1, 0). p: [...] -> [..., 2]."""
    return jnp.stack([p, 1 - p], axis=-1)


def bernoulli_likelihood(p: Array, x: Array) -> Array:
    """P(x | p) = p^x (1 - p)^(1 - x) for x in {0, 1}. Shapes broadcast."""
    return p ** x * (1 - p) ** (1 - x)


def bernoulli_cross_entropy(p: Array, x: Array) -> Array:
    """CE(p, x) = -x log p - (1 - x) log(1 - p) = H(Bern(x), Bern(p)), x in [0, 1]."""
    return cross_entropy(bernoulli(x), bernoulli(p))


def project_simplex(v: Array) -> Array:
    """Euclidean projection onto the probability simplex, along the last axis.

    argmin_{p >= 0, sum p = 1} ||p - v|| = max(v - tau, 0), where tau = (sum_{i <= r} u_i - 1) / r
    for u = v sorted decreasingly and r the largest k with u_k > (sum_{i <= k} u_i - 1) / k
    (Held, Wolfe and Crowder 1974). v: [..., n], n >= 1. Returns [..., n].
    """
    if jnp.ndim(v) < 1 or jnp.shape(v)[-1] < 1:
        raise ValueError(f"project_simplex: v needs a non-empty last axis, got {jnp.shape(v)}")
    u = -jnp.sort(-v, axis=-1)
    k = jnp.arange(1, u.shape[-1] + 1, dtype=u.dtype)
    thresholds = (jnp.cumsum(u, axis=-1) - 1) / k
    r = jnp.sum(u > thresholds, axis=-1, keepdims=True)  # u_k > t_k holds exactly for k <= r
    tau = jnp.take_along_axis(thresholds, r - 1, axis=-1)
    return jnp.maximum(v - tau, 0)


def maximize_entropy(p0: Array, *, steps: int = 100, learning_rate: float | None = None) -> Array:
    """Projected gradient ascent on H(p) = -sum p log p over the simplex from each start.

    Each step is optax.sgd on -H followed by ``project_simplex``. H's gradient -(log p + 1) is
    unbounded near the faces, so it is taken at max(p, 1/(2n)): the gradient of a concave
    surrogate equal to H wherever every p_i >= 1/(2n) (around the uniform p, its unique
    maximiser too) and 2n-Lipschitz, so the default step 1/(2n) = 1/L converges from every
    start, halving the distance to the uniform p per step near it (H's Hessian on the simplex
    is -n I there). p0: [m, n] starts in the simplex. Returns p [m, n] after ``steps`` steps.
    """
    p0 = jnp.asarray(p0)
    if p0.ndim != 2 or p0.shape[0] == 0 or p0.shape[1] < 1:
        raise ValueError(f"maximize_entropy: p0 must be [m, n] with m, n >= 1, got {p0.shape}")
    if steps < 1:
        raise ValueError(f"maximize_entropy: steps must be >= 1, got {steps}")
    lr = 1 / (2 * p0.shape[1]) if learning_rate is None else learning_rate
    if not lr > 0:
        raise ValueError(f"maximize_entropy: learning_rate must be > 0, got {lr}")
    return _ascend_entropy(p0, steps, lr)


@partial(jax.jit, static_argnums=(1,))
def _ascend_entropy(p0: Array, steps: int, learning_rate) -> Array:
    opt = optax.sgd(learning_rate)
    floor = 1 / (2 * p0.shape[1])
    grad = jax.grad(lambda p: -entropy(p))

    def step(carry, _):
        p, state = carry
        updates, state = opt.update(grad(jnp.maximum(p, floor)), state, p)
        return (project_simplex(optax.apply_updates(p, updates)), state), None

    def run(p):
        return jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[0][0]

    return jax.vmap(run)(p0)


def _positive(where: str, **values) -> None:
    """ValueError unless every concrete value is > 0 (traced values are not checked)."""
    for name, v in values.items():
        if not isinstance(v, jax.core.Tracer) and not np.all(np.asarray(v) > 0):
            raise ValueError(f"{where}: {name} must be > 0, got {v}")


def gaussian_pdf(x: Array, var) -> Array:
    """N(0, var) density."""
    _positive("gaussian_pdf", var=var)
    return norm.pdf(x, 0, jnp.sqrt(var))


def laplace_pdf(x: Array, var) -> Array:
    """Laplace density exp(-|x| / b) / (2b) with b = sqrt(var / 2) (variance 2 b^2 = var)."""
    _positive("laplace_pdf", var=var)
    return laplace.pdf(x, 0, jnp.sqrt(var / 2))


def uniform_pdf(x: Array, var) -> Array:
    """Uniform density on [-w/2, w/2] with w = sqrt(12 var) (variance w^2 / 12 = var)."""
    _positive("uniform_pdf", var=var)
    w = jnp.sqrt(12 * var)
    return uniform.pdf(x, -w / 2, w)


def logistic_pdf(x: Array, var) -> Array:
    """Logistic density of scale s = sqrt(3 var) / pi (variance s^2 pi^2 / 3 = var)."""
    _positive("logistic_pdf", var=var)
    return logistic.pdf(x, 0, jnp.sqrt(3 * var) / jnp.pi)


def gaussian_entropy(var) -> Array:
    """h(N(0, var)) = log(2 pi e var) / 2."""
    _positive("gaussian_entropy", var=var)
    return jnp.log(2 * jnp.pi * jnp.e * var) / 2


def laplace_entropy(var) -> Array:
    """h = 1 + log(2b), b = sqrt(var / 2)."""
    _positive("laplace_entropy", var=var)
    return 1 + jnp.log(2 * jnp.sqrt(var / 2))


def uniform_entropy(var) -> Array:
    """h = log w, w = sqrt(12 var)."""
    _positive("uniform_entropy", var=var)
    return jnp.log(jnp.sqrt(12 * var))


def logistic_entropy(var) -> Array:
    """h = log s + 2, s = sqrt(3 var) / pi."""
    _positive("logistic_entropy", var=var)
    return jnp.log(jnp.sqrt(3 * var) / jnp.pi) + 2


def _gennorm_scale(beta, var):
    """alpha with variance alpha^2 Gamma(3 / beta) / Gamma(1 / beta) = var."""
    return jnp.sqrt(var * jnp.exp(gammaln(1 / beta) - gammaln(3 / beta)))


def generalized_normal_pdf(x: Array, beta, var) -> Array:
    """beta / (2 alpha Gamma(1 / beta)) exp(-|x / alpha|^beta), alpha fixing the variance to var
    (beta = 1: Laplace, 2: Gaussian, -> oo: uniform)."""
    _positive("generalized_normal_pdf", beta=beta, var=var)
    alpha = _gennorm_scale(beta, var)
    return gennorm.pdf(x / alpha, beta) / alpha


def generalized_normal_entropy(beta, var) -> Array:
    """h = 1 / beta - log(beta / (2 alpha Gamma(1 / beta))) for the density above."""
    _positive("generalized_normal_entropy", beta=beta, var=var)
    return 1 / beta - jnp.log(beta / (2 * _gennorm_scale(beta, var))) + gammaln(1 / beta)


def differential_entropy(p: Array, x: Array) -> Array:
    """h = -integral p log p dx: trapezoid rule on the grid x [n], density values p [n]."""
    return -jnp.trapezoid(xlogy(p, p), x)


def entropy_lagrangian(f: Array, x: Array, mu, var, lam0, lam1) -> Array:
    """L(f) = integral f log f + lam0 (integral f - 1) + lam1 (integral (x - mu)^2 f - var), on
    the grid x [n] by the trapezoid rule; f [n] density values. Its gradient divided by the
    trapezoid weights is the functional derivative log f + 1 + lam0 + lam1 (x - mu)^2."""
    return (jnp.trapezoid(xlogy(f, f), x) + lam0 * (jnp.trapezoid(f, x) - 1)
            + lam1 * (jnp.trapezoid((x - mu) ** 2 * f, x) - var))


def trapezoid_weights(x: Array) -> Array:
    """w with sum_i w_i f_i = jnp.trapezoid(f, x) for the grid x [n], n >= 2."""
    d = jnp.diff(x) / 2
    return jnp.concatenate([d, jnp.zeros_like(d[:1])]) + jnp.concatenate([jnp.zeros_like(d[:1]), d])


# ------------------------------------------------------------------------------ claims
# Each check computes in one jitted float64 function (one compile instead of one per op).

_DENSITIES = {  # name: (pdf(x, var), entropy(var))
    "Gaussian": (gaussian_pdf, gaussian_entropy),
    "logistic": (logistic_pdf, logistic_entropy),
    "Laplace": (laplace_pdf, laplace_entropy),
    "uniform": (uniform_pdf, uniform_entropy),
}


def _x64(fn, *args):
    """Run the jitted ``fn(*args)`` with float64 on; its outputs as Python floats / bools."""
    with jax.enable_x64(True):
        out = jax.jit(fn)(*args)
        return jax.tree.map(lambda a: a.item() if a.ndim == 0 else a.tolist(), out)


def _all(parts: list[tuple[bool, str]], **seed) -> Outcome:
    return Outcome(all(ok for ok, _ in parts), "; ".join(m for _, m in parts), **seed)


def _bernoulli_nll_errors():
    p = jnp.linspace(0.001, 0.999, 999)[:, None]
    x = jnp.array([0.0, 1.0])
    nll = -jnp.log(bernoulli_likelihood(p, x))
    ce = -x * jnp.log(p) - (1 - x) * jnp.log(1 - p)
    return (jnp.max(jnp.abs(nll - ce)), jnp.max(jnp.abs(bernoulli_cross_entropy(p, x) - ce)),
            jnp.max(jnp.abs(binary_cross_entropy(jnp.log(p / (1 - p)), x) - ce)))


def _check_bernoulli_nll() -> Outcome:
    return within(max(_x64(_bernoulli_nll_errors)), 1e-14,
                  "max |err| of -log P(x|p), H(Bern x, Bern p), losses.bce(logit p) vs CE")


def _mle(xs):
    def nll(p, x):
        return jnp.sum(bernoulli_cross_entropy(p, x))

    p_hat = jnp.mean(xs, axis=-1)
    grads = jax.vmap(jax.grad(nll))(p_hat, xs)
    grid = jnp.linspace(0.005, 0.995, 199)
    worse = jax.vmap(lambda x: jax.vmap(lambda p: nll(p, x))(grid))(xs)
    best = jax.vmap(nll)(p_hat, xs)
    return jnp.max(jnp.abs(grads)), jnp.all(worse >= best[:, None] - 1e-12)


def _check_mle() -> Outcome:
    ones = np.array([5, 15, 25, 30, 40, 47])  # of 50 draws; the order does not matter
    xs = (np.arange(50) < ones[:, None]).astype(float)
    g, below = _x64(_mle, xs)
    return _all([(g < 1e-11, f"|d/dp sum CE| at p = mean(x): {g:.1g}"),
                 (below, "sum CE at mean(x) <= at 199 grid p, 6 data sets of 50 draws")])


def _decomposition(p, q, x, t):
    e_pq = jnp.abs(cross_entropy(p, q) - entropy(p) - kl_divergence(p, q))
    bx, bp = bernoulli(x), bernoulli(t)
    e_soft = jnp.abs(bernoulli_cross_entropy(t, x) - entropy(bx) - kl_divergence(bx, bp))
    grid = jnp.linspace(0.001, 0.999, 999)
    argmin = grid[jnp.argmin(bernoulli_cross_entropy(grid[:, None], x), axis=0)]
    return jnp.max(e_pq), jnp.max(e_soft), jnp.max(jnp.abs(argmin - x))


def _decomposition_errors():
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.ones(8), 500)
    p[:100, :3] = 0  # zeros in p: 0 log 0 = 0
    p /= p.sum(-1, keepdims=True)
    q = rng.dirichlet(np.ones(8), 500)
    x = np.round(rng.uniform(0.05, 0.95, 20), 3)  # soft labels on the p grid of _decomposition
    return _x64(_decomposition, p, q, x, rng.uniform(0.01, 0.99, 20))


def _check_decomposition() -> Outcome:
    e_pq = _decomposition_errors()[0]
    return within(e_pq, 1e-14, "max|H(p, q) - H(p) - KL(p || q)|")


def _check_soft_labels() -> Outcome:
    _, e_soft, e_arg = _decomposition_errors()
    return _all([(e_soft < 1e-14, f"max|CE - H(Bern x) - KL| {e_soft:.1g}"),
                 (e_arg < 1e-12, f"argmin_p CE over 999 p = x (max |diff| {e_arg:.1g})")])


def _max_entropy_errors(p0s):
    out = []
    for p0 in p0s:
        n = p0.shape[-1]
        p = maximize_entropy(p0)
        out.append((jnp.max(jnp.abs(p - 1 / n)), jnp.max(jnp.abs(entropy(p) - jnp.log(n))),
                    jnp.max(entropy(p0)) <= jnp.log(n)))
    return out


def _check_max_entropy() -> Outcome:
    rng = np.random.default_rng(12)
    sizes = (2, 3, 5, 10)
    starts = [np.concatenate([rng.dirichlet(np.full(n, a), 4) for a in (0.1, 1.0)] + [np.eye(n)])
              for n in sizes]  # spread, near-face and vertex starts
    found = _x64(_max_entropy_errors, starts)
    dp, dh = max(f[0] for f in found), max(f[1] for f in found)
    below = all(f[2] for f in found)
    return _all([(dp < 1e-12 and dh < 1e-12,
                  f"n = {', '.join(map(str, sizes))}, 8 random + n vertex starts each: "
                  f"max|p - 1/n| {dp:.1g}, "
                  f"max|H - log n| {dh:.1g}"),
                 (below, "every start has H < log n")])


def _concavity(p, q, lam):
    mix = lam * p + (1 - lam) * q
    gap = entropy(mix) - lam[:, 0] * entropy(p) - (1 - lam[:, 0]) * entropy(q)
    top_eig = jnp.max(jax.vmap(lambda r: jnp.linalg.eigvalsh(jax.hessian(entropy)(r)))(p))
    return jnp.min(gap), top_eig


def _check_concavity() -> Outcome:
    rng = np.random.default_rng(13)
    p, q = rng.dirichlet(np.ones(6), 500), rng.dirichlet(np.ones(6), 500)
    gap, top = _x64(_concavity, p, q, rng.uniform(0.01, 0.99, (500, 1)))
    return Outcome(gap > 0 and top < 0,
                   f"min of H(mix) - mix of H over 500 (p, q, l): {gap:.2g} > 0; largest Hessian "
                   f"eigenvalue {top:.3g} < 0", stated_value="convex", computed="concave")


def _entropies(var):
    out = {}
    for name, (pdf, h) in _DENSITIES.items():
        if name == "uniform":
            w = jnp.sqrt(12 * var)
            x = jnp.linspace(-w / 2, w / 2, 200_001)  # the support: p log p is constant
        else:
            x = jnp.arange(-300_000, 300_001) * (1e-4 * jnp.sqrt(var))  # +-30 s, 0 a grid point
        p = pdf(x, var)
        out[name] = (h(var), differential_entropy(p, x), jnp.trapezoid(x * x * p, x))
    return out


def _check_max_entropy_continuous() -> Outcome:
    parts, found = [], []
    for var in (1.0, 2.5):
        r = _x64(_entropies, var)
        e_h = max(abs(a - b) for a, b, _ in r.values())
        e_var = max(abs(v - var) for _, _, v in r.values())
        top = max(r, key=lambda k: r[k][0])
        found.append(top)
        order = " > ".join(f"{k} {r[k][0]:.4f}" for k in sorted(r, key=lambda k: -r[k][0]))
        parts.append((e_h < 1e-8 and e_var < 1e-8 and top == "Gaussian",
                      f"var {var}: {order}; max|closed form - quadrature| {e_h:.1g}, "
                      f"max|variance - {var}| {e_var:.1g}"))
    return _all(parts, stated_value="Gaussian", computed=", ".join(sorted(set(found))))


def _generalized_normal():
    var = 1.7
    betas = jnp.linspace(0.5, 10.0, 9501)  # step 1e-3; 2.0 is a grid point
    h = generalized_normal_entropy(betas, var)
    dh = jax.grad(generalized_normal_entropy)(2.0, var)
    d2h = jax.grad(jax.grad(generalized_normal_entropy))(2.0, var)
    x = jnp.arange(-300_000, 300_001) * (1e-4 * jnp.sqrt(var))
    quad = jnp.array([differential_entropy(generalized_normal_pdf(x, b, var), x) -
                      generalized_normal_entropy(b, var) for b in (1.0, 1.5, 2.0, 3.0)])
    special = jnp.array([generalized_normal_entropy(1.0, var) - laplace_entropy(var),
                         generalized_normal_entropy(2.0, var) - gaussian_entropy(var)])
    return (betas[jnp.argmax(h)], dh, d2h, jnp.max(jnp.abs(quad)), jnp.max(jnp.abs(special)),
            h[-1] - uniform_entropy(var))


def _check_generalized_normal() -> Outcome:
    arg, dh, d2h, e_quad, e_special, gap_uniform = _x64(_generalized_normal)
    return _all([(abs(arg - 2) < 1e-9 and abs(dh) < 1e-14 and d2h < 0,
                  f"argmax over beta in [0.5, 10] (step 1e-3) {arg:g}; h'(2) {dh:.1g}, "
                  f"h''(2) {d2h:.3g}"),
                 (e_quad < 1e-8 and e_special < 1e-14,
                  f"closed form vs quadrature (beta = 1, 1.5, 2, 3) {e_quad:.1g}; = Laplace, "
                  f"Gaussian at beta = 1, 2 ({e_special:.1g})"),
                 (0 < gap_uniform < 0.1, f"h(beta = 10) - h(uniform) {gap_uniform:.3g}")])


def _lagrangian(mu, var):
    x = mu + jnp.linspace(-10.0, 10.0, 4001) * jnp.sqrt(var)
    f = norm.pdf(x, mu, jnp.sqrt(var))
    lam0, lam1 = jnp.log(jnp.sqrt(2 * jnp.pi * var)) - 1, 1 / (2 * var)
    auto = jax.grad(entropy_lagrangian)(f, x, mu, var, lam0, lam1) / trapezoid_weights(x)
    formula = jnp.log(f) + 1 + lam0 + lam1 * (x - mu) ** 2
    seed = -jnp.log(f) - 1 + lam0 + lam1 * (x - mu) ** 2
    return (jnp.max(jnp.abs(auto - formula) / (1 + jnp.abs(formula))), jnp.max(jnp.abs(formula)),
            jnp.max(jnp.abs(auto - seed)))


def _check_lagrangian() -> Outcome:
    e_formula, stationary, e_seed = _x64(_lagrangian, 0.7, 2.0)
    return _all([(e_formula < 1e-13, f"jax.grad / weights vs log f + 1 + l0 + l1 (x - mu)^2: "
                                     f"rel err {e_formula:.1g}"),
                 (stationary < 1e-13, f"= 0 at N(mu, s^2), l1 = 1/(2 s^2), l0 = log(s sqrt(2 pi))"
                                      f" - 1: max {stationary:.1g}"),
                 (e_seed > 1, f"the problem set's -log f - 1 + ... is off by up to {e_seed:.3g}")],
                stated_value="dL/df = -log f - 1 + l0 + l1 (x - mu)^2",
                computed="dL/df = log f + 1 + l0 + l1 (x - mu)^2")


CLAIMS: list[Claim] = [
    Claim("000", "Q2(a)", "-log P(x | p) = CE(p, x) for x in {0, 1}, P the Bernoulli likelihood",
          "999 p in (0, 1); also via losses.cross_entropy and losses.binary_cross_entropy(logit p)",
          _check_bernoulli_nll),
    Claim("000", "Q2(a)", "-log prod_i P(x_i | p) = sum_i CE(p, x_i) is minimised at p = mean(x)",
          "jax.grad at mean(x) and a grid of p, 6 random data sets", _check_mle),
    Claim("000", "Q2(b)", "H(p, q) = H(p) + KL(p || q)",
          "500 random pairs on 8 outcomes (100 with p_i = 0), jaxnets.losses",
          _check_decomposition),
    Claim("000", "Q2(b)", "soft label x in (0, 1): CE(p, x) = H(Bern x) + KL(Bern x || Bern p), "
          "minimal at p = x", "20 random (x, p); argmin over a grid of p", _check_soft_labels),
    Claim("000", "Q2(c)", "max entropy on n outcomes: p = 1/n, H = log n",
          "projected (onto the simplex) gradient ascent with optax.sgd from random starts",
          _check_max_entropy),
    Claim("000", "Q2(c)", "H is concave: H(l p + (1 - l) q) >= l H(p) + (1 - l) H(q)",
          "500 random (p, q, l); eigenvalues of jax.hessian(entropy)", _check_concavity),
    Claim("000", "Q2(d)", "at equal variance h(Gaussian) > h(logistic) > h(Laplace) > h(uniform)",
          "closed forms against -integral p log p and integral x^2 p (trapezoid)",
          _check_max_entropy_continuous),
    Claim("000", "Q2(d)", "generalized normal, fixed variance: h is maximal at beta = 2 (Gaussian)",
          "closed form on a beta grid, jax.grad at 2, quadrature at 4 betas",
          _check_generalized_normal),
    Claim("000", "Q2(d)", "dL/df = log f + 1 + l0 + l1 (x - mu)^2, zero at the Gaussian",
          "jax.grad of the discretised Lagrangian / trapezoid weights", _check_lagrangian),
]
