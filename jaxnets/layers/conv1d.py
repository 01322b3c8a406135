"""1-D convolution (kernel flipped, as numpy.convolve) and cross-correlation (as numpy.correlate).

Problem set 002 Q6 asks for the "full", "valid" and "same" convolution *with kernel flipping* of
[1, 2, 3, 4] * [1, 0, 2]; the phrase separates true convolution, (x * w)[t] = sum_i x[i] w[t - i],
from the cross-correlation that deep-learning "conv" layers compute, c[t] = sum_i x[i + t] w[i].
Both are here, for x [..., n] (any leading batch axes) and one kernel w [k]:

- ``conv1d(x, w, mode)`` equals ``numpy.convolve(x, w, mode)`` row by row;
- ``correlate1d(x, w, mode)`` equals ``numpy.correlate(x, w, mode)`` row by row.

Modes, with m = max(n, k), s = min(n, k) and F the full output of length n + k - 1:
- "full": all of F, every shift with any overlap (x zero-padded by k - 1 on each side).
- "valid": the m - s + 1 shifts where the shorter sequence lies inside the longer one.
- "same": m outputs, F[o : o + m] with o = (s - 1) // 2 (for k = 3: one zero each side).

Both follow numpy when k > n instead of raising: the roles of x and w swap, so "valid" has
k - n + 1 outputs and "same" has k. For convolution this is no choice at all (x * w = w * x).
For correlation numpy computes correlate(w, x) reversed, and in "same" mode with k > n that
moves the window to o = s // 2: it differs from ``conv1d(x, w[::-1], "same")`` by one position
when n is even (k > n). ``correlate1d`` matches numpy here too; the tests pin both facts.

Floats and complex numbers take one ``lax.conv_general_dilated`` (which cross-correlates) of x,
zero-padded by (k - 1 - o, o + len - n), with w (correlation) or w reversed (convolution), never
swapping arguments: the padding alone selects F[o : o + len]. Integers and booleans take k
shifted multiply-adds of the same padded x (exact; cuDNN has no such integer convolution).

Problem set 002 Q6's worked answers, recomputed with numpy in tests/test_conv1d.py, are right:
full [1, 2, 5, 8, 6, 8], valid [5, 8], same [2, 5, 8, 6]. (No errata for Q6.)
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jax import Array, lax

Mode = Literal["full", "valid", "same"]
_MODES = ("full", "valid", "same")


def _window(n: int, k: int, mode: str, centre: str) -> tuple[int, int]:
    """(o, length) of the slice of the full output F (length n + k - 1) kept by `mode`."""
    m, s = max(n, k), min(n, k)
    if mode == "full":
        return 0, n + k - 1
    if mode == "valid":
        return s - 1, m - s + 1
    return (s // 2 if centre == "late" else (s - 1) // 2), m  # "same"


def _check(fn: str, x: Array, w: Array, mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{fn}: mode must be one of {_MODES}, got {mode!r}")
    if jnp.ndim(w) != 1:
        raise ValueError(f"{fn}: w must be 1-D [k], got shape {jnp.shape(w)}")
    if jnp.ndim(x) < 1:
        raise ValueError(f"{fn}: x must be [..., n] with ndim >= 1, got shape {jnp.shape(x)}")
    if jnp.shape(x)[-1] == 0 or jnp.shape(w)[0] == 0:
        raise ValueError(f"{fn}: x and w must be non-empty, got n = {jnp.shape(x)[-1]}, "
                         f"k = {jnp.shape(w)[0]}")


def _correlate_window(x: Array, kernel: Array, start: int, length: int) -> Array:
    """F[start : start + length] of the full cross-correlation of each row of x with kernel.

    F[t] = sum_i xpad[t + i] kernel[i], xpad = x with k - 1 zeros each side; cutting the
    padding to (k - 1 - start, start + length - n) keeps exactly the requested outputs.
    Integers and booleans: k shifted multiply-adds, exact (cuDNN has no such integer
    convolution, so lax's fails on GPUs); floats and complex: one lax convolution.
    """
    n, k = x.shape[-1], kernel.shape[0]
    dtype = jnp.result_type(x, kernel)
    batch = x.shape[:-1]
    if not jnp.issubdtype(dtype, jnp.inexact):
        xpad = jnp.pad(x.astype(dtype), [(0, 0)] * len(batch) + [(k - 1, k - 1)])
        terms = [xpad[..., start + i:start + i + length] * kernel[i].astype(dtype)
                 for i in range(k)]
        return sum(terms[1:], terms[0])
    lhs = jnp.reshape(x.astype(dtype), (-1, 1, n))  # [..., n] -> [B, C=1, n]
    rhs = jnp.reshape(kernel.astype(dtype), (1, 1, k))  # [k] -> [O=1, I=1, k]
    out = lax.conv_general_dilated(
        lhs, rhs, window_strides=(1,), padding=[(k - 1 - start, start + length - n)],
        dimension_numbers=("NCH", "OIH", "NCH"), precision=lax.Precision.HIGHEST)
    return jnp.reshape(out, (*batch, length))  # [B, 1, length] -> [..., length]


def conv1d(x: Array, w: Array, mode: Mode = "full") -> Array:
    """True 1-D convolution (x * w)[t] = sum_i x[i] w[t - i], kernel flipped (problem set 002 Q6).

    Equals ``numpy.convolve(x, w, mode)`` for each row, for every n and k (k > n included).

    Args:
      x: [..., n] signals (leading axes are batch).
      w: [k] kernel.
      mode: "full" (n + k - 1 outputs), "valid" (max - min + 1) or "same" (max(n, k)).
    Returns:
      y: [..., L] with L as above.
    """
    _check("conv1d", x, w, mode)
    start, length = _window(jnp.shape(x)[-1], jnp.shape(w)[0], mode, centre="early")
    return _correlate_window(jnp.asarray(x), jnp.flip(w), start, length)


def correlate1d(x: Array, w: Array, mode: Mode = "valid") -> Array:
    """1-D cross-correlation c[t] = sum_i x[i + t] conj(w[i]), no kernel flip.

    Equals ``numpy.correlate(x, w, mode)`` for each row (default mode "valid" as numpy's),
    including numpy's "same" centring when k > n (see the module docstring).

    Args:
      x: [..., n] signals (leading axes are batch).
      w: [k] kernel.
      mode: "full", "valid" or "same", output lengths as for ``conv1d``.
    Returns:
      c: [..., L].
    """
    _check("correlate1d", x, w, mode)
    n, k = jnp.shape(x)[-1], jnp.shape(w)[0]
    start, length = _window(n, k, mode, centre="late" if k > n else "early")
    return _correlate_window(jnp.asarray(x), jnp.conj(w), start, length)
