"""XLA:CPU fast paths of ``layers.max_pool_manual`` and ``layers.max_pool_backward``.

- ``max_and_winner``: the window maxima and their arg-max (the winners) from one variadic
  reduction, so that under jax.grad the forward is one reduction and the winners, not x, are
  kept for the backward (the maths computes the maxima with ``reduce_window`` and the arg-max
  again from x).
- ``route_tiled``: for non-overlapping windows (``tiles``), dy routed to the winners by
  repeating dy and the winner over each window, one compare and select per element, instead of
  kh kw interior-padded pads (the maths' transposed window views).

Both give the values of the maths in jaxnets.layers.pool (tests/test_pool.py). The geometry
``g`` is layers.pool's: window, strides, pads, out_hw, x_shape, and ``views`` / ``lowest``.
Measurements: the README's speed notes and experiments/benchmark_lenet.py.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax


def tiles(g) -> bool:
    """Non-overlapping windows (strides == window): ``route_tiled`` applies."""
    return g.strides == g.window


def max_and_winner(x: Array, g) -> tuple[Array, Array]:
    """x [B, H, W, C] -> (y, winner), both [B, H_out, W_out, C]: y the window maxima (as
    ``max_pool``), winner the row-major offset i kw + j of each window's first maximum."""
    return _max_and_winner(x, g)


def _first_max(a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
    """Reducer of (value, window offset) pairs: the larger value, NaN counting as largest; on
    equal values the smaller offset. The offset is chosen as by ``jnp.argmax``'s reducer
    (jax._src.lax), so the winner is the window's first maximum (between two NaNs, whichever
    XLA's reduction keeps, as there), and the value is the winner's, bit for bit (``max_pool``'s
    ``reduce_window`` may differ in the sign of a zero maximum). A stricter order that also
    ranks NaNs by offset was slower (the reduction is not vectorised)."""
    (a_val, a_k), (b_val, b_k) = a, b
    pick_a = (a_val > b_val) | (a_val != a_val) | ((a_val == b_val) & (a_k < b_k))
    return lax.select(pick_a, a_val, b_val), lax.select(pick_a, a_k, b_k)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_and_winner(x: Array, g) -> tuple[Array, Array]:
    """One variadic reduction over the stacked window views [kh kw, B, H_out, W_out, C] with
    their offsets, so the maxima come with the arg-max. Its derivative (below) lets
    higher-order derivatives through: JAX has no JVP for a reduction with an integer operand.
    """
    views = g.views(x, g.lowest(x.dtype))
    offsets = lax.broadcasted_iota(jnp.int32, views.shape, 0)
    return lax.reduce((views, offsets), (g.lowest(x.dtype), np.int32(0)), _first_max, (0,))


@_max_and_winner.defjvp
def _max_and_winner_jvp(g, primals, tangents):
    """dy = the tangent of each window's winner; the winners are piecewise constant (no
    tangent)."""
    (x,), (x_dot,) = primals, tangents
    y, winner = _max_and_winner(x, g)
    views_dot = g.views(x_dot, 0)
    y_dot = jnp.take_along_axis(views_dot, winner[None], axis=0)[0]
    return (y, winner), (y_dot, np.zeros(winner.shape, jax.dtypes.float0))


def route_tiled(dy: Array, winner: Array, g) -> Array:
    """``max_pool_backward`` for non-overlapping windows (strides == window): dy and the
    winner repeated over each window (a broadcast), kept where the element's offset in its
    window is the winner; the padding cropped, rows and columns no window reads get 0.
    The same values as the maths' transposed window views (``layers.pool._scatter_views``).
    """
    (kh, kw), (ho, wo) = g.window, g.out_hw
    (lo_h, hi_h), (lo_w, hi_w) = g.pads
    b, h, w, c = g.x_shape

    def repeat(a: Array) -> Array:  # [B, Ho, Wo, C] -> [B, Ho kh, Wo kw, C]
        return jnp.broadcast_to(a[:, :, None, :, None, :], (b, ho, kh, wo, kw, c)).reshape(
            b, ho * kh, wo * kw, c)

    offset = (np.arange(ho * kh) % kh)[:, None] * kw + (np.arange(wo * kw) % kw)[None, :]
    dxp = jnp.where(repeat(winner) == offset[None, :, :, None], repeat(dy),
                    jnp.zeros((), dy.dtype))  # padded coordinates, the windows' rows only
    dxp = lax.pad(dxp, jnp.zeros((), dy.dtype), ((0, 0, 0), (0, h + lo_h + hi_h - ho * kh, 0),
                                                  (0, w + lo_w + hi_w - wo * kw, 0), (0, 0, 0)))
    return lax.slice(dxp, (0, lo_h, lo_w, 0), (b, lo_h + h, lo_w + w, c))
