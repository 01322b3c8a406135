"""Constructions: one network rewritten as another that computes the same function.

- sigmoid -> tanh (problem set 002 Q4). sigma(z) = (1 + tanh(z / 2)) / 2, so a sigmoid hidden layer
  h = sigma(z) is h = (1 + g) / 2 with g = tanh(z / 2). Layer by layer (x W + b convention):
      first layer     W' = W / 2,  b' = b / 2
      hidden l >= 2   W' = W / 4,  b' = b / 2 + 1^T W / 4      (its input h = (1 + g) / 2)
      output (linear) W' = W / 2,  b' = b + 1^T W / 2
- interpolation of N points with N - 1 hidden units (problem set 002 Q5). With every hidden unit
  reading the same projection t = w^T x, sorted t_1 > ... > t_N, and unit j centred at c_j,
  y(x_i) = sum_{j<N} W2_j phi(t_i - c_j) + b2 for all i is M [W2; b2] = F with
  M_ij = phi(t_i - c_j) (j < N) and M_iN = 1.
    ReLU (Q5.3): c_j = t_j - eps, 0 < eps <= min gap delta: M is upper triangular with diagonal
    (eps, ..., eps, 1), so the solve is exact.
    sigmoid (Q5.4): w = lambda u, c_j = t_j: M(lambda)_ij = sigma(lambda (t_i - t_j)) tends to
    M_inf_ij = H(t_i - t_j) (H(0) = 1/2), upper triangular with diagonal (1/2, ..., 1/2, 1), and
    max |M(lambda) - M_inf| = sigma(-lambda delta).
- a conv layer as a dense layer (problem set 004 Q7): conv2d is linear in x, and its matrix on the
  flattened input (h, w, c order) has, for output (i, j, o) and tap (a, b, c), the entry
  F[a, b, c, o] at input pixel (s_h i + d_h a - p_top, s_w j + d_w b - p_left) when that pixel
  is inside the image (taps on padding have no entry).

Errata in the problem sets:
- problem set 002 Q4's entrywise answer is right (and is what ``sigmoid_to_tanh`` gives for one
hidden
  layer), but its compact form Theta' = Theta / 2 + (Z, w2 B) / 2 takes B "of the same
  dimensions as w2^T", (M+1) x K, so w2 B is K x K, not the K x (M+1) of w2; B must be
  (M+1) x (M+1) with a first column of ones. Its B~ ((M+D+2) x (K+M)) multiplies a Theta that
  has no matrix shape. (The problem set treats one hidden layer; deeper hidden layers are
  quartered.)
- problem set 002 Q5.4 concludes that M [W2; b2] = F "can be solved using the inverse of the limit
  matrix". The limit weights M_inf^-1 F interpolate only as lambda -> infinity (error at most
  sigma(-lambda delta) ||W2||_1; 3e-4 at lambda delta = 10 for 8 random points). The exact
  argument: det M(lambda) -> phi(0)^(N-1) (2^-(N-1) for sigma), so M(lambda) is invertible for
  large lambda and M(lambda)^-1 F interpolates exactly; this needs phi bounded, not that
  phi(+inf) exists.
  The problem set's other claims (N - 1 units, eps = min gap, the triangular M) are right.
- problem set 004 Q7 says an equivalent MLP exists "under certain circumstances". A conv layer is
  always exactly a dense layer, and the problem set gives no sizes or counts; ``param_counts``
  supplies them for its Q6 (6x6 input, 3x3 filter) and Q9 (205x205x10 -> 66x66x96) layers.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.linalg import solve_triangular

from jaxnets._checks import is_concrete
from jaxnets.functional import heaviside, relu, sigmoid
from jaxnets.layers import conv2d, conv_config, dense
from jaxnets.layers.conv import ConvConfig, Padding
from jaxnets.theory.claim import Claim, Outcome, within
from jaxnets.theory.conv_arith import conv_params

Layers = list[dict[str, Array]]


# ---------------------------------------------------------------------------------------------
# MLPs and sigmoid -> tanh (problem set 002 Q4)

def _check_layers(layers: Sequence[dict], where: str) -> None:
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"{where}: layers must be a non-empty list of {{'W', 'b'}} dicts")
    d_in = None
    for n, layer in enumerate(layers):
        if not (isinstance(layer, dict) and {"W", "b"} <= layer.keys()):
            raise ValueError(f"{where}: layer {n} must be a dict with 'W' and 'b'")
        W, b = jnp.shape(layer["W"]), jnp.shape(layer["b"])
        if len(W) != 2 or b != W[1:]:
            raise ValueError(f"{where}: layer {n} needs W [d_in, d_out] and b [d_out], got W {W}"
                             f" and b {b}")
        if d_in is not None and W[0] != d_in:
            raise ValueError(f"{where}: layer {n} takes {W[0]} inputs, the previous gives {d_in}")
        d_in = W[1]


def mlp(layers: Layers, x: Array, activation: Callable[[Array], Array]) -> Array:
    """y = h_{L-1} W_L + b_L, h_l = activation(h_{l-1} W_l + b_l), h_0 = x (linear output).

    Args: layers: [{"W": [d_{l-1}, d_l], "b": [d_l]}] * L. x: [..., d_0]. Returns [..., d_L].
    """
    _check_layers(layers, "mlp")
    return _mlp(layers, x, activation)


@partial(jax.jit, static_argnums=2)
def _mlp(layers: Layers, x: Array, activation: Callable[[Array], Array]) -> Array:
    for layer in layers[:-1]:
        x = activation(dense(layer, x))
    return dense(layers[-1], x)


def sigmoid_to_tanh(layers: Layers) -> Layers:
    """Parameters of the tanh MLP equal to the sigmoid MLP ``layers`` (any depth and widths).

    mlp(sigmoid_to_tanh(layers), x, tanh) = mlp(layers, x, sigmoid): each sigmoid output
    h = (1 + g) / 2 with g the tanh unit, so a layer reading h reads g W / 2 + 1^T W / 2 + b, and
    a hidden layer's pre-activation is halved for tanh(z / 2) (table in the module docstring).
    """
    _check_layers(layers, "sigmoid_to_tanh")
    out = []
    for n, layer in enumerate(layers):
        W, b = layer["W"], layer["b"]
        if n > 0:  # the input is (1 + g) / 2
            W, b = W / 2, b + jnp.sum(W, axis=0) / 2
        if n < len(layers) - 1:  # sigma(z) = (1 + tanh(z / 2)) / 2
            W, b = W / 2, b / 2
        out.append({"W": W, "b": b})
    return out


# ---------------------------------------------------------------------------------------------
# Interpolating N points with N - 1 hidden units (problem set 002 Q5)

def interpolation_matrix(t: Array, centers: Array, phi: Callable[[Array], Array]) -> Array:
    """M [N, N]: M_ij = phi(t_i - c_j) for j < N, M_iN = 1. t: [N]; centers: [N - 1]."""
    t, centers = jnp.asarray(t), jnp.asarray(centers)
    if t.ndim != 1 or centers.shape != (t.shape[0] - 1,):
        raise ValueError(f"interpolation_matrix: need t [N] and centers [N - 1], got "
                         f"{t.shape} and {centers.shape}")
    return jnp.concatenate([phi(t[:, None] - centers[None, :]), jnp.ones((t.shape[0], 1),
                                                                         t.dtype)], axis=1)


@jax.jit
def _sort(x: Array, f: Array, w: Array) -> tuple[Array, Array, Array]:
    t = x @ w
    order = jnp.argsort(-t)
    return t[order], f[order], jnp.min(t[order][:-1] - t[order][1:])


def sorted_projection(x: Array, f: Array, w: Array, where: str = "sorted_projection"
                      ) -> tuple[Array, Array, Array]:
    """(t, F, delta): t = x w [N] sorted decreasing, F = f [N, m] in that order, delta = min gap.

    Raises ValueError for bad shapes, N < 2 or (when the values are concrete) delta <= 0.
    """
    x, f, w = jnp.asarray(x), jnp.asarray(f), jnp.asarray(w)
    if x.ndim != 2 or f.ndim != 2 or w.shape != x.shape[1:] or f.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: need x [N, n], f [N, m], w [n], got {x.shape}, {f.shape}, "
                         f"{w.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{where}: need N >= 2 points, got {x.shape[0]}")
    t, F, delta = _sort(x, f, w)
    if is_concrete(delta) and not delta > 0:
        raise ValueError(f"{where}: the projections w^T x_i must be distinct (min gap "
                         f"{float(delta)})")
    return t, F, delta


def _two_layer(w: Array, centers: Array, scale, Wt: Array) -> Layers:
    """Hidden unit j: phi(scale (w^T x - c_j)); output [W2; b2] = Wt [N, m]."""
    W1 = scale * jnp.broadcast_to(w[:, None], (w.shape[0], centers.shape[0]))
    return [{"W": W1, "b": -scale * centers}, {"W": Wt[:-1], "b": Wt[-1]}]


@jax.jit
def _relu_fit(t: Array, F: Array, w: Array, eps: Array) -> Layers:
    centers = t[:-1] - eps
    Wt = solve_triangular(interpolation_matrix(t, centers, relu), F, lower=False)
    return _two_layer(w, centers, 1.0, Wt)


def relu_interpolant(x: Array, f: Array, w: Array, eps: float | None = None) -> Layers:
    """Two-layer ReLU net with N - 1 hidden units through N points (problem set 002 Q5.3).

    Units at the N - 1 largest t_j = w^T x_j, b_j = -t_j + eps; M is upper triangular with
    diagonal (eps, ..., eps, 1) when 0 < eps <= delta = min gap, and [W2; b2] = M^-1 F.
    Args: x: [N, n] distinct points; f: [N, m] values; w: [n] with distinct w^T x_i;
      eps: in (0, delta], default delta (the problem set's choice).
    Returns: layers for ``mlp(layers, x, relu)``.
    """
    t, F, delta = sorted_projection(x, f, w, "relu_interpolant")
    eps = delta if eps is None else eps
    if is_concrete(eps) and is_concrete(delta) and not 0 < eps <= delta:
        raise ValueError(f"relu_interpolant: eps must be in (0, min gap {float(delta)}], got "
                         f"{eps}")
    return _relu_fit(t, F, jnp.asarray(w), jnp.asarray(eps, t.dtype))


@partial(jax.jit, static_argnames="limit")
def _sigmoid_fit(t: Array, F: Array, u: Array, lam: Array, limit: bool) -> Layers:
    centers = t[:-1]
    if limit:
        Wt = solve_triangular(interpolation_matrix(t, centers, heaviside), F, lower=False)
    else:
        Wt = jnp.linalg.solve(interpolation_matrix(t, centers, lambda s: sigmoid(lam * s)), F)
    return _two_layer(u, centers, lam, Wt)


def sigmoid_interpolant(x: Array, f: Array, u: Array, lam: float, *, limit: bool = False
                        ) -> Layers:
    """Two-layer sigmoid net with N - 1 hidden units, w = lambda u (problem set 002 Q5.4).

    Units at the N - 1 largest t_j = u^T x_j, b_j = -lambda t_j. [W2; b2] = M(lambda)^-1 F, which
    interpolates exactly; or, with ``limit``, the problem set's M_inf^-1 F, whose error at the
    points is at most sigma(-lambda delta) ||W2||_1 (delta = min gap of t).
    Args: x: [N, n]; f: [N, m]; u: [n] with distinct u^T x_i; lam: lambda > 0.
    Returns: layers for ``mlp(layers, x, sigmoid)``.
    """
    t, F, _ = sorted_projection(x, f, u, "sigmoid_interpolant")
    if is_concrete(lam) and not lam > 0:
        raise ValueError(f"sigmoid_interpolant: lambda must be > 0, got {lam}")
    return _sigmoid_fit(t, F, jnp.asarray(u), jnp.asarray(lam, t.dtype), bool(limit))


# ---------------------------------------------------------------------------------------------
# A conv layer as a dense layer (problem set 004 Q7)

def _hw(in_hw, where: str) -> tuple[int, int]:
    try:
        h, w = (operator.index(v) for v in in_hw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: in_hw must be a pair of ints (H, W), got {in_hw!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{where}: in_hw must be positive, got {in_hw!r}")
    return h, w


def conv_as_dense(F: Array, b: Array | None, in_hw: tuple[int, int], *, stride=1,
                  padding: Padding = "VALID", dilation=1) -> dict[str, Array]:
    """The dense layer equal to ``conv2d(x, F, b, ...)`` on images x [B, H, W, C_in].

    dense(params, x.reshape(B, -1)).reshape(B, H_o, W_o, C_out) = conv2d(x, F, b, ...).
    Args: F: [k_h, k_w, C_in, C_out]; b: [C_out] or None; in_hw: (H, W); stride, padding,
      dilation as ``conv2d`` takes them.
    Returns: {"W": [H W C_in, H_o W_o C_out], "b": [H_o W_o C_out]} (rows and columns in
      (h, w, c) order); W has one entry per tap that lands inside the image.
    """
    F = jnp.asarray(F)
    h, w = _hw(in_hw, "conv_as_dense")
    if F.ndim != 4:
        raise ValueError(f"conv_as_dense: F must be [k_h, k_w, C_in, C_out], got {F.shape}")
    c_out = F.shape[3]
    cfg = conv_config((1, h, w, F.shape[2]), F.shape, stride, padding, dilation, "conv_as_dense")
    if b is None:
        b = jnp.zeros((c_out,), F.dtype)
    elif jnp.shape(b) != (c_out,):
        raise ValueError(f"conv_as_dense: b must have shape ({c_out},), got {jnp.shape(b)}")
    return _conv_matrix(F, jnp.asarray(b), (h, w), cfg)


@partial(jax.jit, static_argnums=(2, 3))
def _conv_matrix(F: Array, b: Array, hw: tuple[int, int], cfg: ConvConfig) -> dict[str, Array]:
    (h, w), (kh, kw, c_in, c_out) = hw, F.shape
    (sh, sw), ((ph, _), (pw, _)), (dh, dw), (oh, ow) = (cfg.stride, cfg.padding, cfg.dilation,
                                                        cfg.out_hw)
    r = (sh * jnp.arange(oh)[:, None] + dh * jnp.arange(kh) - ph)[:, None, :, None]  # [oh,1,kh,1]
    q = (sw * jnp.arange(ow)[:, None] + dw * jnp.arange(kw) - pw)[None, :, None, :]  # [1,ow,1,kw]
    inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)  # [oh, ow, kh, kw]
    rows = jnp.where(inside, r * w + q, 0)[..., None] * c_in + jnp.arange(c_in)  # ... [c_in]
    cols = jnp.arange(oh * ow).reshape(oh, ow, 1, 1, 1, 1) * c_out + jnp.arange(c_out)
    vals = jnp.where(inside[..., None, None], F, 0)  # [oh, ow, kh, kw, c_in, c_out]
    W = jnp.zeros((h * w * c_in, oh * ow * c_out), F.dtype).at[rows[..., None], cols].add(vals)
    return {"W": W, "b": jnp.tile(b, oh * ow)}


class ParamCounts(NamedTuple):
    """Parameters (weights + biases) of a conv layer and of two unshared layers computing the
    same kind of map: locally connected (same connections) and fully connected."""

    shared: int  # the conv: k_h k_w C_in C_out + C_out
    local: int  # locally connected, a weight per in-image tap: nnz(conv_as_dense W) + H_o W_o C_out
    dense: int  # fully connected: H W C_in H_o W_o C_out + H_o W_o C_out


def param_counts(in_shape: tuple[int, int, int], kernel_shape: tuple[int, int, int, int], *,
                 stride=1, padding: Padding = "VALID", dilation=1) -> ParamCounts:
    """Shared (conv), locally connected and fully connected parameter counts, with biases.

    The in-image taps factor over the axes: n_h n_w C_in C_out, n = #{(i, a): 0 <= s i + d a -
    p_lo < size}; without padding n_h n_w = H_o W_o k_h k_w.
    Args: in_shape: (H, W, C_in); kernel_shape: (k_h, k_w, C_in, C_out).
    """
    if len(in_shape) != 3 or len(kernel_shape) != 4:
        raise ValueError(f"param_counts: need in_shape (H, W, C_in) and kernel_shape (k_h, k_w, "
                         f"C_in, C_out), got {in_shape!r} and {kernel_shape!r}")
    h, w = _hw(in_shape[:2], "param_counts")
    cfg = conv_config((1, h, w, in_shape[2]), kernel_shape, stride, padding, dilation,
                      "param_counts")
    kh, kw, c_in, c_out = (operator.index(v) for v in kernel_shape)
    taps = 1
    for size, k, s, (lo, _), d, o in zip((h, w), (kh, kw), cfg.stride, cfg.padding, cfg.dilation,
                                         cfg.out_hw, strict=True):
        taps *= sum(0 <= s * i + d * a - lo < size for i in range(o) for a in range(k))
    units = cfg.out_hw[0] * cfg.out_hw[1] * c_out
    return ParamCounts(conv_params((kh, kw), c_in, c_out), taps * c_in * c_out + units,
                       h * w * c_in * units + units)


# ---------------------------------------------------------------------------------------------
# Claims

_POOL = 4096


def _draws(seed: int, *shapes: tuple[int, ...]) -> list[Array]:
    """Independent float64 N(0, 1) arrays of these shapes, cut from one draw of _POOL values
    (one compiled threefry kernel for every check)."""
    z = np.asarray(jax.random.normal(jax.random.key(seed), (_POOL,), jnp.float64))
    ends = list(itertools.accumulate(math.prod(s) for s in shapes))
    if ends[-1] > _POOL:
        raise ValueError(f"_draws: {ends[-1]} values asked for, the pool holds {_POOL}")
    return [jnp.asarray(z[e - math.prod(s):e].reshape(s)) for s, e in zip(shapes, ends,
                                                                         strict=True)]


def _random_net(seed: int, widths: Sequence[int], batch: int) -> tuple[Layers, Array]:
    """A random MLP (W ~ N(0, 4), b ~ N(0, 1)) with ``widths`` and inputs x [batch, d_0]."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    z = _draws(seed, (batch, widths[0]), *[s for a, b in pairs for s in ((a, b), (b,))])
    return [{"W": 2 * W, "b": b} for W, b in zip(z[1::2], z[2::2], strict=True)], z[0]


@jax.jit
def _tanh_errors(nets: list[tuple[Layers, Array]]) -> Array:
    """max |y_tanh - y_sigmoid| / max |y_sigmoid| per (layers, x)."""
    errs = []
    for layers, x in nets:
        ys = mlp(layers, x, sigmoid)
        errs.append(jnp.max(jnp.abs(mlp(sigmoid_to_tanh(layers), x, jnp.tanh) - ys))
                    / jnp.max(jnp.abs(ys)))
    return jnp.stack(errs)


def _q002_4() -> Outcome:
    with jax.enable_x64(True):
        nets = [_random_net(n, widths, 64)
                for n, widths in enumerate([(3, 5, 2), (4, 7, 6, 3), (2, 8, 8, 8, 1)])]
        return within(float(jnp.max(_tanh_errors(nets))), 1e-13,
                      "max rel |err| over depths 1, 2, 3")


def _relative_miss(layers: Layers, x: Array, f: Array, activation) -> Array:
    """max_i |y(x_i) - f_i| / max_i (|W2|^T |h(x_i)| + |b2|): the miss in units of the size of
    the sum that forms y, so rounding alone gives about 1e-16 however large W2 is."""
    h = jnp.abs(activation(dense(layers[0], x)))
    scale = h @ jnp.abs(layers[1]["W"]) + jnp.abs(layers[1]["b"])
    return jnp.max(jnp.abs(mlp(layers, x, activation) - f)) / jnp.max(scale)


@jax.jit
def _relu_case(x: Array, f: Array, w: Array) -> tuple[Array, Array, Array]:
    """(relative miss, strict lower triangle of M all 0, max |diag M - (delta.., 1)| / delta)
    for the ReLU interpolant with eps = delta."""
    t, _, delta = sorted_projection(x, f, w)
    M = interpolation_matrix(t, t[:-1] - delta, relu)
    diag = jnp.concatenate([jnp.full(x.shape[0] - 1, delta), jnp.ones(1)])
    miss = _relative_miss(relu_interpolant(x, f, w), x, f, relu)
    return miss, jnp.all(jnp.tril(M, -1) == 0), jnp.max(jnp.abs(jnp.diag(M) - diag)) / delta


def _q002_5_3() -> Outcome:
    with jax.enable_x64(True):
        cases = [_relu_case(*_draws(N, (N, n), (N, 2), (n,))) for N, n in ((2, 1), (12, 1),
                                                                            (9, 3))]
        err = max(float(c[0]) for c in cases)
        triangular = all(bool(c[1]) and float(c[2]) < 1e-12 for c in cases)
        out = within(err, 1e-14, "max |y - f| / max (|W2|^T |h| + |b2|)")
        return Outcome(out.passed and triangular, out.measured + "; M upper triangular with "
                       f"diag (eps, ..., eps, 1): {triangular}")


_LAMBDA_DELTA = np.linspace(2.0, 26.0, 13)


@jax.jit
def _sigmoid_errors(x: Array, f: Array, lam: Array) -> tuple[Array, Array, Array]:
    """Per lambda: relative miss of the exact weights, max |y(x_i) - f_i| of the limit weights,
    and ||W2_limit||_1."""
    u = jnp.ones(1, x.dtype)

    def one(lam):
        exact, limit = (sigmoid_interpolant(x, f, u, lam, limit=b) for b in (False, True))
        return (_relative_miss(exact, x, f, sigmoid),
                jnp.max(jnp.abs(mlp(limit, x, sigmoid) - f)), jnp.sum(jnp.abs(limit[1]["W"])))

    return jax.vmap(one)(lam)


def _sigmoid_check(N: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact-weight relative misses, limit-weight errors, their bounds), lambda delta 2..26."""
    x, f = _draws(7, (N, 1), (N, 1))
    delta = float(sorted_projection(x, f, jnp.ones(1))[2])
    exact, limit, norm = map(np.asarray, _sigmoid_errors(x, f, _LAMBDA_DELTA / delta))
    return exact, limit, np.asarray(sigmoid(-_LAMBDA_DELTA)) * norm


def _q002_5_4_exact() -> Outcome:
    with jax.enable_x64(True):
        exact, *_ = _sigmoid_check()
        return within(float(np.max(exact)), 1e-13, "max |y - f| / max (|W2|^T |h| + |b2|) "
                      "over lambda delta in 2..26")


def _q002_5_4_limit() -> Outcome:
    with jax.enable_x64(True):
        _, limit, bound = _sigmoid_check()
        under = bool(np.all(limit <= bound * (1 + 1e-9)))
        tail = _LAMBDA_DELTA >= 10
        slope = float(np.polyfit(_LAMBDA_DELTA[tail], np.log(limit[tail]), 1)[0])
        return Outcome(under and abs(slope + 1) < 0.02, f"error {float(limit[0]):.1e} at "
                       f"lambda delta = 2, {float(limit[-1]):.1e} at 26; d log err / d(lambda "
                       f"delta) = {slope:.3f} (want -1 +- 0.02); under sigma(-lambda delta) "
                       f"||W2||_1: {under}")


_CONV_CASES = [  # (H, W, k_h, k_w, C_in, C_out, stride, padding, dilation)
    (6, 6, 3, 3, 1, 1, 1, "VALID", 1),  # problem set 004 Q6's layer
    (7, 9, 3, 2, 2, 3, (2, 1), "SAME", 1),
    (8, 7, 3, 3, 3, 2, 2, 1, (2, 1)),
    (5, 6, 2, 3, 2, 4, (1, 3), ((2, 0), (1, 2)), 2),
]


def _q004_7_dense() -> Outcome:
    with jax.enable_x64(True):
        worst = 0.0
        for n, (h, w, kh, kw, ci, co, s, p, d) in enumerate(_CONV_CASES):
            x, F, b = _draws(n, (4, h, w, ci), (kh, kw, ci, co), (co,))
            ref = conv2d(x, F, b, stride=s, padding=p, dilation=d)
            out = dense(conv_as_dense(F, b, (h, w), stride=s, padding=p, dilation=d),
                        x.reshape(4, -1)).reshape(ref.shape)
            worst = max(worst, float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref))))
        return within(worst, 1e-14, "max rel |dense - conv2d| over 4 configs")


def _q004_7_counts() -> Outcome:
    with jax.enable_x64(True):
        q6 = param_counts((6, 6, 1), (3, 3, 1, 1))
        W = conv_as_dense(*_draws(0, (3, 3, 1, 1)), None, (6, 6))["W"]
        nnz_ok = int(jnp.count_nonzero(W)) + 16 == q6.local and W.size + 16 == q6.dense
        q9 = param_counts((205, 205, 10), (10, 10, 10, 96), stride=3)
        ok = nnz_ok and q6 == (10, 160, 592) and q9.shared == 96096
        return Outcome(ok, f"Q6 6x6 * 3x3: shared {q6.shared}, local {q6.local}, dense "
                       f"{q6.dense} (nnz of the matrix agrees: {nnz_ok}); Q9 205x205x10 -> "
                       f"66x66x96: shared {q9.shared:,}, local {q9.local:,}, dense "
                       f"{q9.dense:.3g}")


CLAIMS = [
    Claim("002", "Q4", "sigmoid MLP = tanh MLP with W1/2, b1/2; hidden W/4, b/2 + 1^T W/4; "
          "output W/2, b + 1^T W/2 (any depth)", "mlp outputs, random nets of depth 1-3, "
          "float64", _q002_4),
    Claim("002", "Q5.3", "N - 1 ReLU units with b_j = eps - t_j (eps = min gap) make M upper "
          "triangular and interpolate N points exactly", "relu_interpolant at N = 2, 5, 12 "
          "(1-D) and 9 (3-D), float64", _q002_5_3),
    Claim("002", "Q5.4", "N - 1 sigmoid units at the points, w = lambda u: M(lambda)^-1 F "
          "interpolates exactly (the problem set uses the limit matrix's inverse)",
          "sigmoid_interpolant, N = 8, lambda delta = 2..26", _q002_5_4_exact),
    Claim("002", "Q5.4", "the problem set's limit weights M_inf^-1 F miss by <= sigma(-lambda "
          "delta) "
          "||W2||_1: error ~ exp(-lambda delta)", "sigmoid_interpolant(limit=True), log-error "
          "slope for lambda delta in 10..26", _q002_5_4_limit),
    Claim("004", "Q7", "a conv layer is exactly a dense layer on the flattened input",
          "conv_as_dense vs conv2d: strides, SAME/explicit padding, dilation, channels",
          _q004_7_dense),
    Claim("004", "Q7", "unsharing a conv's weights: Q6's 10 params become 160 (local) or 592 "
          "(dense); Q9's 96,096 become 4.2e8 or 1.8e11", "param_counts, checked against the "
          "nonzeros of conv_as_dense", _q004_7_counts),
]
