"""Max and average pooling on NHWC batches, each with its hand-derived backward.

Forward passes are single ``jax.lax.reduce_window`` calls on x [B, H, W, C]. The backward passes
are written out, not taken from autodiff: a pooling window at offset (i, j) of output (p, q)
reads padded-input element (p s_h + i, q s_w + j), so the window's view of the input is the
strided slice ``xp[:, i::s_h, j::s_w, :]`` (cut to [B, H_out, W_out, C]) and the gradient flows
back through the transpose of that slice, ``lax.pad`` with interior padding s - 1. Summing the
kh * kw transposed slices adds the contributions of overlapping windows (stride < window).
``max_pool_manual`` and ``max_pool_backward`` by default take the fast paths of
jaxnets.kernels.pool (the maxima and their arg-max from one reduction, non-overlapping windows
routed by tiling), see their ``impl``.

Geometry. ``window`` and ``strides`` are an int or an (h, w) pair of positive ints; ``strides``
defaults to ``window`` (non-overlapping windows). ``padding`` is "VALID" (none), "SAME"
(H_out = ceil(H / s_h), the extra row/column going to the bottom/right, as
``lax.padtype_to_pads``) or explicit ((lo_h, hi_h), (lo_w, hi_w)) with 0 <= pad < window, so
that every window holds at least one real element. With padded height H_p = H + lo_h + hi_h,
H_out = floor((H_p - kh) / s_h) + 1, the formula of problem set 002 Q7-Q8 (there with p per side).

Padding conventions:
- max pool pads with the dtype's lowest value (-inf for floats), so padding never wins against
  a finite input.
- avg pool pads with zeros, and by default (``count_include_pad=True``) the padded zeros count
  in the divisor: every output is (window sum) / (kh kw), as ``flax.linen.avg_pool`` and
  ``torch.nn.AvgPool2d`` do by default. With ``count_include_pad=False`` each output is divided
  by the number of real (unpadded) elements in its window (TensorFlow's "SAME" average).

Seed errata (checked in tests/test_pool.py):
- problem set 002 Q7.1 computes the 5 x 5 non-overlapping max pool of the 125 x 125 map as
  floor((125 + 2*0 - 5) / 1) + 1 = 25. The stride of a non-overlapping 5 x 5 pool is 5:
  floor((125 - 5) / 5) + 1 = 25; with stride 1 the formula gives 121. The boxed 25 is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from jaxnets.kernels import pool as pool_kernels

Pair = tuple[int, int]
Padding = str | tuple[Pair, Pair]


def _lowest(dtype) -> np.ndarray:
    """The identity of max for dtype: -inf for floats, the minimum for ints."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.inexact):
        return np.array(-np.inf, dtype)
    return np.array(jnp.iinfo(dtype).min, dtype)


class _Geometry:
    """Normalised pooling geometry for one [B, H, W, C] input shape."""

    lowest = staticmethod(_lowest)  # max pooling's padding (jaxnets.kernels.pool reads it here)

    def __init__(self, fn: str, x_shape: Sequence[int], window, strides, padding) -> None:
        if len(x_shape) != 4:
            raise ValueError(f"{fn}: x must be 4-D [B, H, W, C], got shape {tuple(x_shape)}")
        self.x_shape = tuple(int(d) for d in x_shape)
        self.window = _pair(fn, "window", window)
        self.strides = self.window if strides is None else _pair(fn, "strides", strides)
        self.pads = _pads(fn, padding, self.x_shape[1:3], self.window, self.strides)
        out = []
        for axis, n, k, s, (lo, hi) in zip("HW", self.x_shape[1:3], self.window, self.strides,
                                          self.pads, strict=True):
            if n + lo + hi < k:
                raise ValueError(
                    f"{fn}: window {self.window} is larger than the padded input along {axis}: "
                    f"{n} + {lo} + {hi} = {n + lo + hi} < {k} (x shape {self.x_shape}, "
                    f"padding {self.pads})")
            out.append((n + lo + hi - k) // s + 1)
        self.out_hw: Pair = (out[0], out[1])

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        b, _, _, c = self.x_shape
        return (b, *self.out_hw, c)

    @property
    def lax_args(self) -> dict:
        """window_dimensions / window_strides / padding for lax.reduce_window on NHWC."""
        return dict(window_dimensions=(1, *self.window, 1), window_strides=(1, *self.strides, 1),
                    padding=((0, 0), *self.pads, (0, 0)))

    def views(self, x: Array, fill) -> Array:
        """[kh kw, B, H_out, W_out, C]: x padded with fill, the elements each window offset
        i kw + j reads (``_window_views``)."""
        return jnp.stack(_window_views(_pad_input(x, self, fill), self))


def _pair(fn: str, name: str, v) -> Pair:
    vs = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(vs) != 2 or not all(isinstance(u, (int, np.integer)) and not isinstance(u, bool)
                               and u >= 1 for u in vs):
        raise ValueError(f"{fn}: {name} must be a positive int or a pair (h, w) of positive "
                         f"ints, got {v!r}")
    return (int(vs[0]), int(vs[1]))


def _pads(fn: str, padding, in_hw: Pair, window: Pair, strides: Pair) -> tuple[Pair, Pair]:
    if isinstance(padding, str):
        if padding.upper() not in ("VALID", "SAME"):
            raise ValueError(f"{fn}: padding must be 'VALID', 'SAME' or ((lo_h, hi_h), "
                             f"(lo_w, hi_w)), got {padding!r}")
        (ph, pw) = lax.padtype_to_pads(in_hw, window, strides, padding.upper())
        return ((int(ph[0]), int(ph[1])), (int(pw[0]), int(pw[1])))
    try:
        (lo_h, hi_h), (lo_w, hi_w) = padding
        pads = ((int(lo_h), int(hi_h)), (int(lo_w), int(hi_w)))
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: padding must be 'VALID', 'SAME' or ((lo_h, hi_h), "
                         f"(lo_w, hi_w)), got {padding!r}") from None
    for axis, (lo, hi), k in zip("HW", pads, window, strict=True):
        if not (0 <= lo < k and 0 <= hi < k):
            raise ValueError(f"{fn}: explicit padding along {axis} must satisfy 0 <= pad < "
                             f"window {k}, got (lo, hi) = ({lo}, {hi})")
    return pads


def _pad_input(x: Array, g: _Geometry, value) -> Array:
    """[B, H, W, C] -> [B, H_p, W_p, C] with `value` in the padding."""
    (lo_h, hi_h), (lo_w, hi_w) = g.pads
    return lax.pad(x, jnp.asarray(value, x.dtype),
                   ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))


def _window_views(xp: Array, g: _Geometry) -> list[Array]:
    """For each window offset (i, j), row-major, the elements it reads: [B, H_out, W_out, C].

    views[i * kw + j][b, p, q, c] = xp[b, p s_h + i, q s_w + j, c].
    """
    (kh, kw), (sh, sw), (ho, wo) = g.window, g.strides, g.out_hw
    b, _, _, c = xp.shape
    return [lax.slice(xp, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                      (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def _scatter_views(parts: Sequence[Array], g: _Geometry) -> Array:
    """Transpose of ``_window_views`` followed by cropping the padding: -> dx [B, H, W, C].

    Each part [B, H_out, W_out, C] is put back where its view came from (lax.pad with interior
    s - 1 is the transpose of the strided slice); parts landing on one element add up.
    """
    kw, (sh, sw), (ho, wo) = g.window[1], g.strides, g.out_hw
    (lo_h, hi_h), (lo_w, hi_w) = g.pads
    b, h, w, c = g.x_shape
    hp, wp = h + lo_h + hi_h, w + lo_w + hi_w
    zero = jnp.zeros((), parts[0].dtype)
    dxp = jnp.zeros((b, hp, wp, c), parts[0].dtype)
    for k, part in enumerate(parts):
        i, j = divmod(k, kw)
        dxp = dxp + lax.pad(part, zero, (
            (0, 0, 0),
            (i, hp - (i + sh * (ho - 1) + 1), sh - 1),
            (j, wp - (j + sw * (wo - 1) + 1), sw - 1),
            (0, 0, 0)))
    return lax.slice(dxp, (0, lo_h, lo_w, 0), (b, lo_h + h, lo_w + w, c))  # crop the padding


def _check_dy(fn: str, dy: Array, g: _Geometry) -> None:
    if tuple(jnp.shape(dy)) != g.out_shape:
        raise ValueError(f"{fn}: dy must have the pooled shape {g.out_shape} (x {g.x_shape}, "
                         f"window {g.window}, strides {g.strides}, padding {g.pads}), "
                         f"got {tuple(jnp.shape(dy))}")


def _real_counts(g: _Geometry) -> np.ndarray:
    """Number of unpadded elements in each window: [1, H_out, W_out, 1] (static numpy)."""
    per_axis = []
    for n, k, s, (lo, _), n_out in zip(g.x_shape[1:3], g.window, g.strides, g.pads, g.out_hw,
                                       strict=True):
        start = np.arange(n_out) * s - lo  # first input index of each window (may be < 0)
        per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return np.outer(*per_axis)[None, :, :, None]


def _divisor(g: _Geometry, count_include_pad: bool):
    return g.window[0] * g.window[1] if count_include_pad else _real_counts(g)


def max_pool(x: Array, window: int | Pair, strides: int | Pair | None = None,
             padding: Padding = "VALID") -> Array:
    """y[b, p, q, c] = max over the window at (p s_h - lo_h, q s_w - lo_w) of x[b, ., ., c].

    Args:
      x: [B, H, W, C].
      window, strides, padding: see the module docstring; strides defaults to window.
    Returns:
      y: [B, H_out, W_out, C].
    """
    return _window_max(x, _Geometry("max_pool", jnp.shape(x), window, strides, padding))


def _window_max(x: Array, g: _Geometry) -> Array:
    return lax.reduce_window(x, _lowest(jnp.result_type(x)), lax.max, **g.lax_args)


IMPLS = ("xla", "fused")  # max_pool_manual's and max_pool_backward's impl: None or one of these


def max_pool_manual(x: Array, window: int | Pair, strides: int | Pair | None = None,
                    padding: Padding = "VALID", *, impl: str | None = None) -> Array:
    """``max_pool`` whose derivative is ``max_pool_backward`` (a ``jax.custom_vjp``).

    Same values and same gradients (ties included) as ``max_pool`` on inputs without NaN (a
    window holding NaN sends its gradient to the NaN here, to the largest number in autodiff);
    under jax.grad the hand-derived routing runs instead of autodiff's SelectAndScatter. The
    LeNet model uses it. Reverse mode only (custom_vjp): no jax.jvp / jacfwd through it;
    reverse over reverse (e.g. a gradient penalty) works.

    impl: "xla": under jax.grad the forward is ``max_pool``'s reduce_window, x is kept and the
    backward is ``max_pool_backward``'s maths. "fused" (jaxnets.kernels.pool): the forward is
    one reduction giving the maxima with their winners, which are all the backward keeps (a
    zero maximum may then differ from ``max_pool``'s in sign), and non-overlapping windows are
    routed by tiling. None (the default, on every platform): "fused".
    """
    g = _Geometry("max_pool", jnp.shape(x), window, strides, padding)
    return _max_pool_manual(g, _impl("max_pool_manual", impl), x)


def _impl(fn: str, impl: str | None) -> str:
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"{fn}: impl must be None or one of {IMPLS}, got {impl!r}")
    return "fused" if impl is None else impl


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _max_pool_manual(g: _Geometry, impl: str, x: Array) -> Array:
    return _window_max(x, g)


def _max_pool_manual_fwd(g: _Geometry, impl: str, x: Array):
    if impl == "xla":
        return _window_max(x, g), x
    return pool_kernels.max_and_winner(x, g)  # residual: the winners, not x


def _max_pool_manual_bwd(g: _Geometry, impl: str, x_or_winner: Array, dy: Array):
    winner = _winners(x_or_winner, g) if impl == "xla" else x_or_winner
    return (_route(impl, dy, winner, g),)


_max_pool_manual.defvjp(_max_pool_manual_fwd, _max_pool_manual_bwd)


def avg_pool(x: Array, window: int | Pair, strides: int | Pair | None = None,
             padding: Padding = "VALID", count_include_pad: bool = True) -> Array:
    """y[b, p, q, c] = (sum of x[b, ., ., c] over the window) / divisor.

    Args:
      x: [B, H, W, C], floating.
      window, strides, padding: see the module docstring; strides defaults to window.
      count_include_pad: divisor kh kw (padded zeros count, the default) or the number of
        real elements in each window.
    Returns:
      y: [B, H_out, W_out, C].
    """
    g = _Geometry("avg_pool", jnp.shape(x), window, strides, padding)
    sums = lax.reduce_window(x, np.array(0, jnp.result_type(x)), lax.add, **g.lax_args)
    return sums / jnp.asarray(_divisor(g, count_include_pad), sums.dtype)


def max_pool_backward(dy: Array, x: Array, window: int | Pair, strides: int | Pair | None = None,
                      padding: Padding = "VALID", *, impl: str | None = None) -> Array:
    """Hand-derived backward of ``max_pool``: dx = sum over windows of dy routed to the arg-max.

    dl/dx[b, h, w, c] = sum_{(p, q)} dy[b, p, q, c] 1{(h, w) = argmax of window (p, q)}, so each
    output's gradient goes to one element of its window, and an element that is the arg-max of
    several overlapping windows receives the sum of their gradients.

    Ties: the gradient goes to the FIRST maximal element of the window in row-major window
    order (smallest row offset, then smallest column offset), and to no other. This is what
    ``jax.grad``/``jax.vjp`` of ``lax.reduce_window`` max does (its transpose is XLA's
    SelectAndScatter with a ``>=`` select, which keeps the earliest maximum); tests check it on
    inputs full of ties. Padding holds -inf, so it never takes the gradient from a finite x;
    where x is -inf the padding ties with it and, if it comes first in the window, the gradient
    is dropped, again as in JAX. A window holding one NaN sends its gradient to the NaN.

    Args:
      dy: [B, H_out, W_out, C] upstream gradient dl/dy.
      x, window, strides, padding: as given to ``max_pool``.
      impl: "xla", the maths below; "fused" or None (the default), the winners from
        jaxnets.kernels.pool's one reduction and non-overlapping windows routed by tiling.
    Returns:
      dx: [B, H, W, C].
    """
    g = _Geometry("max_pool_backward", jnp.shape(x), window, strides, padding)
    _check_dy("max_pool_backward", dy, g)
    impl = _impl("max_pool_backward", impl)
    winner = _winners(x, g) if impl == "xla" else pool_kernels.max_and_winner(x, g)[1]
    return _route(impl, dy, winner, g)


def _winners(x: Array, g: _Geometry) -> Array:
    """winner[b, p, q, c]: the row-major offset i kw + j of window (p, q)'s first maximum (NaN
    counting as largest), [B, H_out, W_out, C]."""
    return jnp.argmax(g.views(x, _lowest(x.dtype)), axis=0)


def _route(impl: str, dy: Array, winner: Array, g: _Geometry) -> Array:
    """dy [B, H_out, W_out, C] to the winners' places, dx [B, H, W, C]: window offset k's part
    of dy, [winner = k] dy, put back through the transposed view (``_scatter_views``)."""
    if impl == "fused" and pool_kernels.tiles(g):
        return pool_kernels.route_tiled(dy, winner, g)
    zero = jnp.zeros((), dy.dtype)
    return _scatter_views([jnp.where(winner == k, dy, zero)
                           for k in range(g.window[0] * g.window[1])], g)


def avg_pool_backward(dy: Array, x_shape: Sequence[int], window: int | Pair,
                      strides: int | Pair | None = None, padding: Padding = "VALID",
                      count_include_pad: bool = True) -> Array:
    """Hand-derived backward of ``avg_pool``: each dy spread evenly over its window.

    dl/dx[b, h, w, c] = sum_{(p, q) : (h, w) in window (p, q)} dy[b, p, q, c] / divisor(p, q),
    divisor = kh kw (count_include_pad) or the number of real elements in window (p, q); the
    share that falls on padding is dropped. Overlapping windows add.

    Args:
      dy: [B, H_out, W_out, C] upstream gradient dl/dy.
      x_shape: (B, H, W, C), the shape of the pooled input (the gradient does not depend on x).
      window, strides, padding, count_include_pad: as given to ``avg_pool``.
    Returns:
      dx: [B, H, W, C].
    """
    g = _Geometry("avg_pool_backward", tuple(x_shape), window, strides, padding)
    _check_dy("avg_pool_backward", dy, g)
    share = dy / jnp.asarray(_divisor(g, count_include_pad), jnp.result_type(dy))
    return _scatter_views([share] * (g.window[0] * g.window[1]), g)
