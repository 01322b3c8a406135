"""Minibatch augmentations, ``(key, batch) -> batch``, for ``train.fit(..., augment=...)``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import Array

Batch = tuple[Array, Array]


def shift_image(x: Array, dy: Array, dx: Array, max_shift: int) -> Array:
    """x [H, W, C] moved by (dy, dx) pixels, |dy|, |dx| <= max_shift, zeros shifted in.

    out[i, j] = x[i - dy, j - dx] where that index is inside the image, else 0.
    """
    m = max_shift
    padded = jnp.pad(x, ((m, m), (m, m), (0, 0)))  # [H + 2m, W + 2m, C]
    return jax.lax.dynamic_slice(padded, (m - dy, m - dx, 0), x.shape)


def random_shift(key: Array, batch: Batch, max_shift: int = 2) -> Batch:
    """Each image of (x [B, H, W, C], y [B]) shifted by its own uniform (dy, dx) in
    {-max_shift, ..., max_shift}^2; labels unchanged."""
    if not (isinstance(max_shift, int) and max_shift >= 0):
        raise ValueError(f"random_shift: max_shift must be an int >= 0, got {max_shift!r}")
    x, y = batch
    if jnp.ndim(x) != 4:
        raise ValueError(f"random_shift: x must be images [B, H, W, C], got {jnp.shape(x)}")
    d = jax.random.randint(key, (x.shape[0], 2), -max_shift, max_shift + 1)  # [B, 2]
    x = jax.vmap(partial(shift_image, max_shift=max_shift))(x, d[:, 0], d[:, 1])
    return x, y
