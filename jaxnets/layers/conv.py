"""2-D convolution (NHWC, HWIO) and its hand-derived backward, written as convolutions.

Forward (cross-correlation, the deep-learning convention; problem set 004 Q5 with stride s, padding,
dilation d and channels):

    O[n, i, j, o] = b[o] + sum_{a, b, c} X_pad[n, s i + d a, s j + d b, c] F[a, b, c, o]

Backward (problem set 004 Q5, generalised), each term one ``lax.conv_general_dilated`` call in
``conv2d_backward`` (``conv2d_manual`` by default computes them with the fast paths of
jaxnets.kernels.conv_rows where those pay, see its ``impl``):

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
from jax import Array, lax

from jaxnets.kernels import conv_rows

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


IMPLS = ("xla", "rows")  # conv2d_manual's impl: None (the default) or one of these


def conv2d_manual(x: Array, F: Array, b: Array | None = None, *, stride=1,
                  padding: Padding = "VALID", dilation=1, impl: str | None = None) -> Array:
    """``conv2d`` differentiated by the hand-derived gradients (a ``jax.custom_vjp``).

    Same values as ``conv2d``; under jax.grad the hand-derived gradients run instead of
    autodiff's (the LeNet model uses it). Not differentiated (evaluation) it is lax's
    convolution, like ``conv2d``. Reverse mode only (custom_vjp): no jax.jvp / jacfwd through it.

    Args:
      x, F, b, stride, padding, dilation: as ``conv2d``.
      impl: how the gradients (and the forward under jax.grad) are computed.
        "xla": the convolutions of ``conv2d_backward``, forward lax's convolution, dL/db by
        autodiff's sum. "rows" (stride 1, no dilation only): jaxnets.kernels.conv_rows, dL/dF
        and dL/dX as matrix products over image rows (a non-finite dL/dO then spreads along its
        block's columns of dL/dX), the forward a row product too, or for C_in = 1 k_h k_w
        shifted multiply-adds, dL/db summed in two stages. None (the default, on every
        platform): each pass as "rows" where ``conv_rows.plan``'s thresholds say it pays (for
        C_in = 1 the shifted forward always), else as "xla"; dL/db in two stages.
    """
    cfg = conv_config(x.shape, F.shape, stride, padding, dilation)
    if x.dtype != F.dtype:
        raise TypeError(f"conv2d_manual: x and F must have one dtype, got {x.dtype} and "
                        f"{F.dtype}")
    if b is not None and b.shape != F.shape[3:]:
        raise ValueError(f"conv2d: b must have shape {F.shape[3:]}, got {b.shape}")
    out = _conv_manual(cfg, _plan(impl, cfg, F.shape), x, F)
    if b is None:
        return out
    dtype = jnp.result_type(out, b)  # conv2d's O + b promotion
    out, b = out.astype(dtype), b.astype(dtype)
    return out + b if impl == "xla" else conv_rows.add_bias(out, b)


def _plan(impl: str | None, cfg: ConvConfig, F_shape) -> tuple[str, str]:
    """(forward, backward) of ``_conv_manual`` under jax.grad for ``conv2d_manual``'s impl."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"conv2d_manual: impl must be None or one of {IMPLS}, got {impl!r}")
    if impl == "xla":
        return "xla", "xla"
    if impl == "rows" and not conv_rows.supports(cfg):
        raise ValueError(f"conv2d_manual: impl='rows' needs stride 1 and no dilation, got "
                         f"stride {cfg.stride}, dilation {cfg.dilation}")
    return conv_rows.plan(cfg, F_shape, always=impl == "rows")


def _lax_conv(x: Array, F: Array, cfg: ConvConfig) -> Array:
    return lax.conv_general_dilated(x, F, cfg.stride, cfg.padding, rhs_dilation=cfg.dilation,
                                    dimension_numbers=_NHWC)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _conv_manual(cfg: ConvConfig, plan: tuple[str, str], x: Array, F: Array) -> Array:
    """Not differentiated (evaluation): lax's convolution, whatever the plan."""
    return _lax_conv(x, F, cfg)


def _conv_manual_fwd(cfg: ConvConfig, plan: tuple[str, str], x: Array, F: Array):
    if plan[0] == "xla":
        return _lax_conv(x, F, cfg), (x, F)
    return conv_rows.forward(plan[0], x, F, cfg)  # residuals (x, F) or (R, F)


def _conv_manual_bwd(cfg: ConvConfig, plan: tuple[str, str], residuals, dO: Array):
    if plan[1] == "xla":
        x, F = residuals
        return _input_grad(dO, F, x.shape, cfg), _filter_grad(dO, x, F.shape, cfg)
    return conv_rows.backward(residuals, dO, cfg, from_rows=plan[0] == "rows")


_conv_manual.defvjp(_conv_manual_fwd, _conv_manual_bwd)


def conv2d_backward(dO: Array, x: Array, F: Array, *, stride=1, padding: Padding = "VALID",
                    dilation=1) -> ConvGrads:
    """Hand-derived gradients of ``conv2d`` as convolutions (problem set 004 Q5, generalised).

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
    convolution non-canonical inside a while loop, i.e. inside lax.scan, where it runs slowly
    (../shared/bench/scan_conv_repro.py; experiments/benchmark_lenet.py).
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
