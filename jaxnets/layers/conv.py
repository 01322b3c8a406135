"""2-D convolution (NHWC, HWIO) and its hand-derived backward, written as convolutions.

Forward (cross-correlation, the deep-learning convention; seed 004 Q5 with stride s, padding,
dilation d and channels):

    O[n, i, j, o] = b[o] + sum_{a, b, c} X_pad[n, s i + d a, s j + d b, c] F[a, b, c, o]

Backward (seed 004 Q5, generalised), each term one ``lax.conv_general_dilated`` call in
``conv2d_backward`` (``conv2d_manual`` computes both as matrix products over image rows
instead where that is faster on XLA:CPU, see ``_rows_filter_grad`` and ``_rows_input_grad``):

    dL/dF = X * dL/dO    cross-correlation of the padded input with dL/dO, the batch axis
                         contracted; dL/dO's taps are spaced s apart (rhs dilation = stride) and
                         the window moves d at a time (window stride = dilation).
    dL/dX = F (x) dL/dO  full convolution: dL/dO dilated by s (lhs dilation = stride), padded by
                         d(k - 1) minus the forward padding, against F flipped in space with its
                         in/out channels swapped, taps d apart.
    dL/db = sum over n, i, j of dL/dO.

Tested against ``jax.vjp`` in float64 over drawn shapes, strides, paddings and dilations
(tests/test_conv.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

Padding = str | int | Sequence[tuple[int, int]]
_NHWC = ("NHWC", "HWIO", "NHWC")


class ConvGrads(NamedTuple):
    """dL/dX [B, H, W, C_in], dL/dF [k_h, k_w, C_in, C_out], dL/db [C_out]."""

    dx: Array
    dF: Array
    db: Array


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or not all(isinstance(u, int) and u >= 1 for u in pair):
        raise ValueError(f"conv2d: {name} must be a positive int or a pair of them, got {v!r}")
    return pair


def resolve_padding(padding: Padding, in_hw: Sequence[int], kernel_hw: Sequence[int],
                    stride: tuple[int, int], dilation: tuple[int, int]
                    ) -> tuple[tuple[int, int], ...]:
    """Explicit ((lo, hi), (lo, hi)) padding from "SAME", "VALID", an int p, or pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"conv2d: padding must be 'SAME', 'VALID', an int or pairs, "
                             f"got {padding!r}")
        eff = [d * (k - 1) + 1 for k, d in zip(kernel_hw, dilation, strict=True)]
        return tuple(lax.padtype_to_pads(tuple(in_hw), eff, stride, padding.upper()))
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    pads = tuple(tuple(p) for p in padding)
    if len(pads) != 2 or not all(len(p) == 2 and all(isinstance(u, int) and u >= 0 for u in p)
                                 for p in pads):
        raise ValueError(f"conv2d: explicit padding must be two (lo, hi) pairs of ints >= 0, "
                         f"got {padding!r}")
    return pads


class ConvConfig(NamedTuple):
    """A convolution's static configuration with padding made explicit."""

    stride: tuple[int, int]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]


def conv_config(x_shape: Sequence[int], F_shape: Sequence[int], stride=1,
                padding: Padding = "VALID", dilation=1, where: str = "conv2d") -> ConvConfig:
    """Check x [B, H, W, C_in] against F [k_h, k_w, C_in, C_out]; return the explicit config.

    Output size per axis: o = floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1; an impossible
    configuration (dilated kernel larger than the padded input) raises ValueError.
    """
    if len(x_shape) != 4:
        raise ValueError(f"{where}: x must be [B, H, W, C_in], got shape {tuple(x_shape)}")
    if len(F_shape) != 4:
        raise ValueError(f"{where}: F must be [k_h, k_w, C_in, C_out], got shape {tuple(F_shape)}")
    if x_shape[3] != F_shape[2]:
        raise ValueError(f"{where}: x has {x_shape[3]} channels but F {tuple(F_shape)} expects "
                         f"C_in = {F_shape[2]}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = resolve_padding(padding, x_shape[1:3], F_shape[:2], stride, dilation)
    out = []
    for axis, i, k, s, (lo, hi), d in zip("HW", x_shape[1:3], F_shape[:2], stride, pads, dilation,
                                          strict=True):
        span = d * (k - 1) + 1
        if span > i + lo + hi:
            raise ValueError(f"{where}: dilated kernel {span} (k={k}, d={d}) exceeds the padded "
                             f"input {i + lo + hi} (i={i}, padding {lo}+{hi}) along {axis}")
        out.append((i + lo + hi - span) // s + 1)
    return ConvConfig(stride, pads, dilation, tuple(out))


def conv2d(x: Array, F: Array, b: Array | None = None, *, stride=1, padding: Padding = "VALID",
           dilation=1) -> Array:
    """O = X * F + b (cross-correlation), batched NHWC.

    Args:
      x: [B, H, W, C_in]. F: [k_h, k_w, C_in, C_out]. b: [C_out] or None.
      stride, dilation: int or (h, w). padding: "SAME", "VALID", int, or ((lo, hi), (lo, hi)).
    Returns:
      O: [B, H_o, W_o, C_out], H_o = floor((H + p_lo + p_hi - d (k_h - 1) - 1) / s) + 1.
    """
    cfg = conv_config(x.shape, F.shape, stride, padding, dilation)
    if b is not None and b.shape != F.shape[3:]:
        raise ValueError(f"conv2d: b must have shape {F.shape[3:]}, got {b.shape}")
    out = lax.conv_general_dilated(x, F, cfg.stride, cfg.padding, rhs_dilation=cfg.dilation,
                                   dimension_numbers=_NHWC)
    return out if b is None else out + b


def conv2d_manual(x: Array, F: Array, b: Array | None = None, *, stride=1,
                  padding: Padding = "VALID", dilation=1) -> Array:
    """``conv2d`` differentiated by the hand-derived gradients (a ``jax.custom_vjp``).

    Same values as ``conv2d``; under jax.grad the hand-derived gradients run instead of
    autodiff's. On XLA:CPU that is what keeps a conv net's training step fast inside lax.scan
    (see ``_nhwc_conv``); the LeNet model uses it. Stride 1, no dilation, few channels and a
    narrow input or C_in = 1 (``_rows_pay``, LeNet's C1 and C3): dL/dF and dL/dX are each one
    matrix product over image rows, the output columns in blocks (``_row_slab``, ``_band``,
    ``_rows_filter_grad``, ``_rows_input_grad``; a non-finite dL/dO spreads along its block's
    columns of dL/dX there), else the convolutions of ``conv2d_backward``. The forward under
    jax.grad: for C_in = 1 (stride 1, no dilation) k_h k_w shifted multiply-adds
    (``_shifted_conv``), else where the row products pay one too. Not differentiated
    (evaluation) it is lax's convolution, like ``conv2d``. Reverse mode only (custom_vjp): no
    jax.jvp / jacfwd through it.
    """
    cfg = conv_config(x.shape, F.shape, stride, padding, dilation)
    if x.dtype != F.dtype:
        raise TypeError(f"conv2d_manual: x and F must have one dtype, got {x.dtype} and "
                        f"{F.dtype}")
    if b is not None and b.shape != F.shape[3:]:
        raise ValueError(f"conv2d: b must have shape {F.shape[3:]}, got {b.shape}")
    out = _conv_manual(cfg, x, F)
    if b is None:
        return out
    dtype = jnp.result_type(out, b)  # conv2d's O + b promotion
    return _add_bias(out.astype(dtype), b.astype(dtype))


@jax.custom_vjp
def _add_bias(O: Array, b: Array) -> Array:
    """O [B, H_o, W_o, C_out] + b [C_out]; dL/db summed in two stages (``_add_bias_bwd``)."""
    return O + b


def _add_bias_fwd(O: Array, b: Array):
    return O + b, None


def _add_bias_bwd(_, dO: Array):
    """dL/dO passes through; dL/db = sum_{n, i, j} dO[n, i, j, :], first over the rows (n, i) of
    dO viewed as [B H_o, W_o C_out], then over j. XLA:CPU's one reduction to C_out sums is slow
    for few channels (LeNet's C1: 0.27 ms of a 5 ms step); LeNet's step in lax.scan 0.94-0.96x
    the time with the two stages (interleaved A/B, development CPU)."""
    n, h, w, c = dO.shape
    return dO, dO.reshape(n * h, w * c).sum(0).reshape(w, c).sum(0)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def _lax_conv(x: Array, F: Array, cfg: ConvConfig) -> Array:
    return lax.conv_general_dilated(x, F, cfg.stride, cfg.padding, rhs_dilation=cfg.dilation,
                                    dimension_numbers=_NHWC)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv_manual(cfg: ConvConfig, x: Array, F: Array) -> Array:
    """Not differentiated (evaluation): lax's convolution. XLA:CPU fuses the single-channel
    shifted form into its consumers (activation, pooling) and recomputes it there: LeNet's
    forward on 2,000 images took 1.44x as long with it (interleaved A/B, development CPU)."""
    return _lax_conv(x, F, cfg)


def _conv_manual_fwd(cfg: ConvConfig, x: Array, F: Array):
    """Under jax.grad: for C_in = 1 the shifted form, stored once (``_materialised``); else,
    where the row products pay, one too, O = R T^T (``_row_slab``, ``_band``), R kept for
    dL/dF (LeNet's C3 alone 0.76x lax's convolution's time, the step 0.82x with the blocked
    gradients, interleaved in lax.scan on the development CPU; for C1 a row product forward
    made the step 1.10x slower than the shifted form); else lax's convolution."""
    if _single_channel(cfg, F.shape):
        return _materialised(lambda x, F: _shifted_conv(x, F, cfg), x, F), (x, F)
    if _rows_pay(cfg, F.shape):
        J = _row_block(cfg.out_hw[1], F.shape[3])
        R = _row_slab(x, F.shape, cfg, J)
        O = (R @ _band(F, J).T).reshape(x.shape[0], *cfg.out_hw, F.shape[3])
        return O, (R, F)
    return _lax_conv(x, F, cfg), (x, F)


def _conv_manual_bwd(cfg: ConvConfig, residuals, dO: Array):
    x_or_R, F = residuals  # R where the forward was a row product
    if _rows_pay(cfg, F.shape):
        J = _row_block(cfg.out_hw[1], F.shape[3])
        R = _row_slab(x_or_R, F.shape, cfg, J) if _single_channel(cfg, F.shape) else x_or_R
        return (_rows_input_grad(dO, _band(F, J), F.shape, cfg, J),
                _rows_filter_grad(dO, R, F.shape, J))
    return _input_grad(dO, F, x_or_R.shape, cfg), _filter_grad(dO, x_or_R, F.shape, cfg)


# The row products do (J + k_w - 1) / k_w times a convolution's work (J output columns per
# block, ``_row_block``; W_p / k_w with one block, W_p the padded input width); they are used
# while C_in C_out <= ROWS_MAX_CHANNELS and a block is at most ROWS_MAX_WIDTH kernels wide,
# where XLA:CPU's convolutions run slowest (5-30 GFLOP/s; 50-100 with more channels). With
# C_in > 1 the whole padded width W_p must be that narrow. Measured alone on the development
# CPU with one block, batch 128: LeNet's C1 (1 -> 6 channels, 32 wide) dF 1.3 against 4.3 ms;
# C3 (6 -> 16, 14 wide) dF 1.2 against 2.1 ms and dX 1.3 against 4.0 ms; 16 -> 16, 16 wide,
# 3x3 (not taken): 10.1 / 5.4 against 2.7 / 2.5 ms. With blocks, the whole gradient (forward
# and backward, interleaved in lax.scan), rows against convolutions: C_in = 1 at any width
# 0.26-0.99x (1 -> 6, 5x5, 64 wide 0.26x; 1 -> 16, 3x3, 64 wide 0.45x; 1 -> 32, 3x3, 28 wide
# 0.40x; 1 -> 6, 5x5, 48 wide 0.93x; 1 -> 8, 3x3, 28 wide 0.99-1.04x); C_in > 1 and wider than
# the rule: 4 -> 8 and 3 -> 16, 3x3, 28-32 wide 0.94-0.96x, but 8 -> 8, 3x3, 28 wide 1.37x and
# 3 -> 8, 7x7, 56 wide 1.11x, hence the W_p rule there. A heuristic from these timings; both
# forms give the same values (tests/test_conv.py).
ROWS_MAX_WIDTH, ROWS_MAX_CHANNELS = 8, 96
ROWS_MIN_COLUMNS = 40  # see _row_block


def _rows_pay(cfg: ConvConfig, F_shape) -> bool:
    """Stride 1, no dilation, C_in C_out <= ROWS_MAX_CHANNELS, and the width that one product
    reads (a block's J + k_w - 1 columns for C_in = 1, else W_p = W_o + k_w - 1) at most
    ROWS_MAX_WIDTH kernels."""
    _, k_w, c_in, c_out = F_shape
    if cfg.stride != (1, 1) or cfg.dilation != (1, 1) or c_in * c_out > ROWS_MAX_CHANNELS:
        return False
    columns = _row_block(cfg.out_hw[1], c_out) if c_in == 1 else cfg.out_hw[1]
    return columns + k_w - 1 <= ROWS_MAX_WIDTH * k_w


def _single_channel(cfg: ConvConfig, F_shape) -> bool:
    """C_in = 1, stride 1, no dilation: a grayscale network's first layer (LeNet's C1), where
    XLA:CPU's convolution kernels are slowest (experiments/benchmark_lenet.py)."""
    return F_shape[2] == 1 and cfg.stride == (1, 1) and cfg.dilation == (1, 1)


def _materialised(fn, *args):
    """fn(*args), computed once and stored, on XLA:CPU; elsewhere simply fn(*args).

    XLA:CPU fuses an elementwise producer such as ``_shifted_conv`` into every consumer and
    recomputes it in each (in LeNet's step: C1's 25 multiply-adds inside the relu mask, the
    pooling and its arg-max routing), and it drops ``lax.optimization_barrier`` before fusion.
    The result of a conditional is a fusion boundary, so on CPU fn runs as both branches of a
    ``lax.cond`` whose predicate (a NaN test on one element of args[0], which XLA cannot fold)
    therefore cannot change the value. LeNet's step in lax.scan: 0.84x the time (interleaved
    A/B, development CPU). Under a vmap that batches args[0] the cond becomes a select of two
    equal values and the boundary is lost (values unchanged). ``lax.platform_dependent`` keeps
    the cond off GPUs, where a conditional's predicate is read back by the host.
    """
    def on_cpu(*a):
        if not jnp.size(a[0]):  # nothing to read the predicate from (an empty batch)
            return fn(*a)
        return lax.cond(jnp.isnan(jnp.ravel(a[0])[0]), fn, fn, *a)
    return lax.platform_dependent(*args, cpu=on_cpu, default=fn)


def _pad(x: Array, cfg: ConvConfig) -> Array:
    """X_pad: x [B, H, W, C] with the configuration's zero padding."""
    (lo_h, hi_h), (lo_w, hi_w) = cfg.padding
    return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0),
                                               (0, 0, 0)))


def _shifted_conv(x: Array, F: Array, cfg: ConvConfig) -> Array:
    """O[n, i, j, o] = sum_{a, b} X_pad[n, i + a, j + b, 0] F[a, b, 0, o] for C_in = 1, stride 1:
    k_h k_w multiply-adds of shifted views, which XLA fuses into one loop (LeNet's C1 forward:
    0.5 ms against 3.7 ms for lax's convolution on the development CPU)."""
    xp, (ho, wo) = _pad(x, cfg), cfg.out_hw
    k_h, k_w = F.shape[:2]
    terms = [xp[:, a:a + ho, b:b + wo, :] * F[a, b, 0] for a in range(k_h) for b in range(k_w)]
    return sum(terms[1:], terms[0])


def _row_block(wo: int, c_out: int) -> int:
    """J, the output columns per block of the row products: the smallest divisor of W_o with
    J C_out >= ROWS_MIN_COLUMNS, else W_o (one block).

    A block of J output columns reads J + k_w - 1 input columns, so the products do
    (J + k_w - 1) / k_w times a convolution's multiply-adds: fewer with small J, but the
    matrices get thin (J C_out columns) and slow. Interleaved timings in lax.scan on the
    development CPU, batch 128, against one block: LeNet's C1 dL/dF with J = 7 (of 28) 0.51x
    (J = 4: 0.60x, J = 14: 0.83x); C3 with J = 5 (of 10) dL/dF 0.85x, dL/dX 0.81x (J = 2: 0.90x,
    1.39x); LeNet's step 0.93-0.95x.
    """
    return next((J for J in range(1, wo + 1) if wo % J == 0 and J * c_out >= ROWS_MIN_COLUMNS),
                wo)


def _row_slab(x: Array, F_shape, cfg: ConvConfig, J: int) -> Array:
    """The image rows each block of J output columns reads (stride 1, no dilation), one gather:

        R[(n, i, beta), (a, w, c)] = X_pad[n, i + a, beta J + w, c]
                                        [B H_o W_o / J, k_h (J + k_w - 1) C_in]
    """
    k_h, k_w, c_in, _ = F_shape
    xp = _pad(x, cfg)  # [B, H_p, W_p, C_in]
    (ho, wo), (n, hp, wp, _) = cfg.out_hw, xp.shape
    nb, wj = wo // J, J + k_w - 1
    i, beta, a, w, c = np.ix_(np.arange(ho), np.arange(nb), np.arange(k_h), np.arange(wj),
                              np.arange(c_in))
    index = (((i + a) * wp + beta * J + w) * c_in + c).reshape(ho, nb * k_h * wj * c_in)
    return xp.reshape(n, hp * wp * c_in)[:, index].reshape(n * ho * nb, k_h * wj * c_in)


def _band(F: Array, J: int) -> Array:
    """The banded (Toeplitz) kernel matrix of one block of J output columns:

        T[(j, o), (a, w, c)] = F[a, w - j, c, o]  where 0 <= w - j < k_w, else 0
                                        [J C_out, k_h (J + k_w - 1) C_in]

    so that O[n, i, beta J + j, o] = sum_{a, w, c} R[(n, i, beta), (a, w, c)] T[(j, o), (a, w, c)]
    (R from ``_row_slab``).
    """
    k_h, k_w, c_in, c_out = F.shape
    wj = J + k_w - 1
    tap = np.arange(wj)[None, :] - np.arange(J)[:, None]  # [J, wj]: the tap w - j
    band = jnp.transpose(F, (0, 1, 3, 2))[:, np.clip(tap, 0, k_w - 1)]  # [k_h, J, wj, O, C_in]
    band = jnp.where(((tap >= 0) & (tap < k_w))[None, :, :, None, None], band, 0)
    return band.transpose(1, 3, 0, 2, 4).reshape(J * c_out, k_h * wj * c_in)


def _rows_filter_grad(dO: Array, R: Array, F_shape, J: int) -> Array:
    """dF = X * dO for stride 1, no dilation, as one matrix product with the row slab R:

        M[(a, w, c), (j, o)] = sum_{n, i, beta} R[(n, i, beta), (a, w, c)] dO[n, i, beta J + j, o]
                                        [k_h (J + k_w - 1) C_in, J C_out]
        dF[a, b, c, o]       = sum_j M[(a, j + b, c), (j, o)]
    """
    k_h, k_w, c_in, c_out = F_shape
    M = R.T @ dO.reshape(R.shape[0], J * c_out)
    M = M.reshape(k_h, J + k_w - 1, c_in, J, c_out).transpose(0, 1, 3, 2, 4)  # [k_h, wj, J, ...]
    j = np.arange(J)
    return M[:, j + np.arange(k_w)[:, None], j].sum(axis=2)  # [k_h, k_w, C_in, C_out]


def _rows_input_grad(dO: Array, T: Array, F_shape, cfg: ConvConfig, J: int) -> Array:
    """dX for stride 1, no dilation, as one matrix product with the banded matrix T (``_band``):

        Y[n, i, beta, a, (w, c)]  = sum_{j, o} dO[n, i, beta J + j, o] T[(j, o), (a, w, c)]
        dX_pad[n, h, w, c]        = sum_{a, beta} Y[n, h - a, beta, a, w - beta J, c]
                                                                        then crop the padding

    A non-finite dO[n, i, j, o] makes the J + k_w - 1 columns of row (n, i + a) that its block
    reaches non-finite (its zeros in T still multiply it), where the convolution keeps it to
    the k_w columns it reaches.
    """
    k_h, k_w, c_in, c_out = F_shape
    n, ho, wo, _ = dO.shape
    hp, wp = ho + k_h - 1, wo + k_w - 1
    nb, wj = wo // J, J + k_w - 1
    Y = (dO.reshape(n * ho * nb, J * c_out) @ T).reshape(n, ho, nb, k_h, wj, c_in)
    shifted = [jnp.pad(Y[:, :, beta, a], ((0, 0), (a, k_h - 1 - a),
                                          (beta * J, wp - beta * J - wj), (0, 0)))
               for a in range(k_h) for beta in range(nb)]
    dX_pad = sum(shifted[1:], shifted[0])  # [B, H_p, W_p, C_in]
    (lo_h, hi_h), (lo_w, hi_w) = cfg.padding
    return dX_pad[:, lo_h:hp - hi_h, lo_w:wp - hi_w]


_conv_manual.defvjp(_conv_manual_fwd, _conv_manual_bwd)


def conv2d_backward(dO: Array, x: Array, F: Array, *, stride=1, padding: Padding = "VALID",
                    dilation=1) -> ConvGrads:
    """Hand-derived gradients of ``conv2d`` as convolutions (seed 004 Q5, generalised).

    Args:
      dO: [B, H_o, W_o, C_out], dL/dO. x, F and the configuration: as given to ``conv2d``.
    Returns:
      ConvGrads(dx = F (x) dO, dF = X * dO, db = sum dO).
    """
    cfg = conv_config(x.shape, F.shape, stride, padding, dilation, where="conv2d_backward")
    if dO.shape != (x.shape[0], *cfg.out_hw, F.shape[3]):
        raise ValueError(f"conv2d_backward: dO must have shape "
                         f"{(x.shape[0], *cfg.out_hw, F.shape[3])}, got {dO.shape}")
    return ConvGrads(_input_grad(dO, F, x.shape, cfg), _filter_grad(dO, x, F.shape, cfg),
                     jnp.sum(dO, axis=(0, 1, 2)))


def _nhwc_conv(lhs: Array, rhs: Array, **kwargs) -> Array:
    """lax.conv_general_dilated in XLA:CPU's canonical layout, lhs NHWC, rhs HWIO, out NHWC.

    The backward passes below transpose their operands into this form explicitly. Written
    with other dimension numbers (as autodiff writes the filter gradient), XLA:CPU keeps the
    convolution non-canonical inside a while loop, i.e. inside lax.scan, and runs it several
    times slower (../shared/bench/scan_conv_repro.py; experiments/benchmark_lenet.py).
    """
    return lax.conv_general_dilated(lhs, rhs, dimension_numbers=_NHWC, **kwargs)


def _filter_grad(dO: Array, x: Array, F_shape, cfg: ConvConfig) -> Array:
    """dF[a, b, c, o] = sum_{n,i,j} X_pad[n, s i + d a, s j + d b, c] dO[n, i, j, o]."""
    # The batch axis n is contracted, so it plays the feature role and C_in the batch role;
    # dO's taps sit s apart (rhs dilation) and the window moves d at a time.
    dF = _nhwc_conv(
        jnp.transpose(x, (3, 1, 2, 0)),  # [B, H, W, C_in] -> [C_in, H, W, B]
        jnp.transpose(dO, (1, 2, 0, 3)),  # [B, H_o, W_o, C_out] -> [H_o, W_o, B, C_out]
        window_strides=cfg.dilation, padding=cfg.padding, rhs_dilation=cfg.stride,
    )  # [C_in, k_h', k_w', C_out], k' >= k where the last padded rows are never read
    return jnp.transpose(dF[:, : F_shape[0], : F_shape[1]], (1, 2, 0, 3))  # [k_h, k_w, C_in, C_out]


def _input_grad(dO: Array, F: Array, x_shape, cfg: ConvConfig) -> Array:
    """dX = full convolution of dO (dilated by s) with F flipped, in/out channels swapped."""
    config = [(0, 0, 0)]
    for i, k, s, (lo, hi), d, o in zip(x_shape[1:3], F.shape[:2], cfg.stride, cfg.padding,
                                       cfg.dilation, cfg.out_hw, strict=True):
        span = d * (k - 1)
        unread = i + lo + hi - (s * (o - 1) + span + 1)  # trailing padded rows no window reads
        config.append((span - lo, span - hi + unread, s - 1))  # negative edges crop
    config.append((0, 0, 0))
    # dO dilated by s (s - 1 zeros between rows) and padded, as one lax.pad: lax's lhs_dilation
    # here crashes XLA:CPU's algebraic simplifier (jax 0.10.2) in some configurations, as
    # jax.grad of lax.conv_general_dilated itself does, e.g. x [1, 3, 4, 3], F [3, 2, 3, 2],
    # stride (3, 2), padding 1, dilation (2, 1) (tests/test_conv.py).
    dO_full = lax.pad(dO, jnp.zeros((), dO.dtype), config)  # [B, H + d_h (k_h - 1), ..., C_out]
    F_flip = jnp.transpose(jnp.flip(F, axis=(0, 1)), (0, 1, 3, 2))  # [k_h, k_w, C_out, C_in]
    return _nhwc_conv(dO_full, F_flip, window_strides=(1, 1), padding="VALID",
                      rhs_dilation=cfg.dilation)
