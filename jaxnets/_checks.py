"""Argument checks run at the public boundary, before XLA sees a bad shape or value.

Shape checks are static and run under jit and vmap too; value checks (label ranges) run
whenever the values are concrete, i.e. outside jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when x holds values (a numpy or committed jax array), not a tracer."""
    return not isinstance(x, jax.core.Tracer)


def check_labels(y, num_classes: int, where: str) -> None:
    """Labels must be integers in [0, num_classes); the range is checked when y is concrete."""
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise TypeError(f"{where}: labels must be integers, got dtype {jnp.result_type(y)}")
    if is_concrete(y) and np.size(y):
        y = np.asarray(y)
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{where}: labels must be in [0, {num_classes}), got values in [{lo}, {hi}]"
            )


def check_xy(batch, trailing: tuple[int, ...], num_classes: int, where: str, layout: str = ""):
    """A classification batch is a pair (x: [B, *trailing] floats, y: [B] ints); returns (x, y)."""
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise TypeError(f"{where}: batch must be a pair (x, y), got {type(batch).__name__}")
    x, y = batch
    if jnp.ndim(x) != 1 + len(trailing) or tuple(jnp.shape(x)[1:]) != tuple(trailing):
        raise ValueError(f"{where}: x must have shape [B, {', '.join(map(str, trailing))}]"
                         f"{layout}, got {jnp.shape(x)}")
    if jnp.shape(y) != jnp.shape(x)[:1]:
        raise ValueError(
            f"{where}: y must have shape [B] = {jnp.shape(x)[:1]} to match x, got {jnp.shape(y)}"
        )
    check_labels(y, num_classes, where)
    return x, y


def check_batch(batch, d: int, num_classes: int, where: str):
    """A flat batch (x: [B, d] floats, y: [B] ints); returns (x, y)."""
    return check_xy(batch, (d,), num_classes, where)


def check_image_batch(batch, hwc: tuple[int, int, int], num_classes: int, where: str):
    """An image batch (x: [B, H, W, C] floats, y: [B] ints); returns (x, y)."""
    return check_xy(batch, hwc, num_classes, where, layout=" (NHWC)")
