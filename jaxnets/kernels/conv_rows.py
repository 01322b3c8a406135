"""XLA:CPU fast paths of ``layers.conv2d_manual``: a convolution as matrix products over rows.

For stride 1 and no dilation, both gradients of a convolution with few channels are one matrix
product each over the image rows, the output columns in blocks of J (``row_block``):

    R[(n, i, beta), (a, w, c)] = X_pad[n, i + a, beta J + w, c]             (``row_slab``)
    T[(j, o), (a, w, c)]       = F[a, w - j, c, o], 0 <= w - j < k_w, else 0 (``band``)
    O = R T^T,   dF from R^T dO (``rows_filter_grad``),   dX from dO T (``rows_input_grad``)

and, under jax.grad, the forward is O = R T^T too (R kept for dF), or for one input channel
k_h k_w shifted multiply-adds stored once (``shifted_conv``, ``materialised``). They give the
values of ``layers.conv2d_backward``'s convolutions (tests/test_conv.py). ``plan`` decides,
from the thresholds below, which pass runs here; ``add_bias`` sums the bias gradient in two
stages. Measurements: the README's speed notes and experiments/benchmark_lenet.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

# The row products do (J + k_w - 1) / k_w times a convolution's multiply-adds (J output
# columns per block, ``row_block``), so they are used only where XLA:CPU's convolutions are slow:
ROWS_MAX_CHANNELS = 96  # C_in C_out at most this: with more, XLA:CPU's convolutions win
ROWS_MAX_WIDTH = 8  # columns one product reads, in kernel widths: wider, the extra work loses
ROWS_MIN_COLUMNS = 40  # output values J C_out per block row at least: thinner products are slow


def supports(cfg) -> bool:
    """Stride 1, no dilation: the only configurations these kernels compute."""
    return cfg.stride == (1, 1) and cfg.dilation == (1, 1)


def rows_pay(cfg, F_shape) -> bool:
    """Stride 1, no dilation, C_in C_out <= ROWS_MAX_CHANNELS, and the width that one product
    reads (a block's J + k_w - 1 columns for C_in = 1, else W_p = W_o + k_w - 1) at most
    ROWS_MAX_WIDTH kernels."""
    _, k_w, c_in, c_out = F_shape
    if not supports(cfg) or c_in * c_out > ROWS_MAX_CHANNELS:
        return False
    columns = row_block(cfg.out_hw[1], c_out) if c_in == 1 else cfg.out_hw[1]
    return columns + k_w - 1 <= ROWS_MAX_WIDTH * k_w


def single_channel(cfg, F_shape) -> bool:
    """C_in = 1, stride 1, no dilation: a grayscale network's first layer (LeNet's C1), where
    XLA:CPU's convolution kernels are slowest (experiments/benchmark_lenet.py)."""
    return F_shape[2] == 1 and supports(cfg)


def plan(cfg, F_shape, *, always: bool = False) -> tuple[str, str]:
    """(forward, backward) under jax.grad: forward "shifted", "rows" or "xla" (lax's
    convolution), backward "rows" or "xla" (``layers.conv2d_backward``'s convolutions).

    always=False (``impl=None``): the shifted forward for a single channel, the row products
    where ``rows_pay``, else XLA. always=True (``impl="rows"``, ``supports(cfg)`` required):
    the kernels whatever the thresholds say.
    """
    backward = "rows" if always or rows_pay(cfg, F_shape) else "xla"
    forward = "shifted" if single_channel(cfg, F_shape) else backward
    return forward, backward


def forward(kind: str, x: Array, F: Array, cfg) -> tuple[Array, tuple[Array, Array]]:
    """O [B, H_o, W_o, C_out] and the residuals for ``backward``: (x, F) after the shifted
    forward (kind "shifted"), (R, F) after the row product (kind "rows")."""
    if kind == "shifted":
        return materialised(lambda x, F: shifted_conv(x, F, cfg), x, F), (x, F)
    J = row_block(cfg.out_hw[1], F.shape[3])
    R = row_slab(x, F.shape, cfg, J)
    O = (R @ band(F, J).T).reshape(x.shape[0], *cfg.out_hw, F.shape[3])
    return O, (R, F)


def backward(residuals, dO: Array, cfg, *, from_rows: bool) -> tuple[Array, Array]:
    """(dL/dX, dL/dF) as row products; residuals (R, F) if the forward was the row product
    (from_rows), else (x, F)."""
    x_or_R, F = residuals
    J = row_block(cfg.out_hw[1], F.shape[3])
    R = x_or_R if from_rows else row_slab(x_or_R, F.shape, cfg, J)
    return (rows_input_grad(dO, band(F, J), F.shape, cfg, J),
            rows_filter_grad(dO, R, F.shape, J))


def add_bias(O: Array, b: Array) -> Array:
    """O [B, H_o, W_o, C_out] + b [C_out]; under jax.grad dL/db is summed in two stages."""
    return _add_bias(O, b)


@jax.custom_vjp
def _add_bias(O: Array, b: Array) -> Array:
    return O + b


def _add_bias_fwd(O: Array, b: Array):
    return O + b, None


def _add_bias_bwd(_, dO: Array):
    """dL/dO passes through; dL/db = sum_{n, i, j} dO[n, i, j, :], first over the rows (n, i) of
    dO viewed as [B H_o, W_o C_out], then over j: XLA:CPU's one reduction to C_out sums is slow
    for few channels."""
    n, h, w, c = dO.shape
    return dO, dO.reshape(n * h, w * c).sum(0).reshape(w, c).sum(0)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def materialised(fn, *args):
    """fn(*args), computed once and stored, on XLA:CPU; elsewhere simply fn(*args).

    XLA:CPU fuses an elementwise producer such as ``shifted_conv`` into every consumer and
    recomputes it in each (in LeNet's step: C1's 25 multiply-adds inside the relu mask, the
    pooling and its arg-max routing), and it drops ``lax.optimization_barrier`` before fusion.
    The result of a conditional is a fusion boundary, so on CPU fn runs as both branches of a
    ``lax.cond`` whose predicate (a NaN test on one element of args[0], which XLA cannot fold)
    therefore cannot change the value. Under a vmap that batches args[0] the cond becomes a
    select of two equal values and the boundary is lost (values unchanged).
    ``lax.platform_dependent`` keeps the cond off GPUs, where a conditional's predicate is read
    back by the host.
    """
    def on_cpu(*a):
        if not jnp.size(a[0]):  # nothing to read the predicate from (an empty batch)
            return fn(*a)
        return lax.cond(jnp.isnan(jnp.ravel(a[0])[0]), fn, fn, *a)
    return lax.platform_dependent(*args, cpu=on_cpu, default=fn)


def _pad(x: Array, cfg) -> Array:
    """X_pad: x [B, H, W, C] with the configuration's zero padding."""
    (lo_h, hi_h), (lo_w, hi_w) = cfg.padding
    return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0),
                                               (0, 0, 0)))


def shifted_conv(x: Array, F: Array, cfg) -> Array:
    """O[n, i, j, o] = sum_{a, b} X_pad[n, i + a, j + b, 0] F[a, b, 0, o] for C_in = 1, stride 1:
    k_h k_w multiply-adds of shifted views, which XLA fuses into one loop."""
    xp, (ho, wo) = _pad(x, cfg), cfg.out_hw
    k_h, k_w = F.shape[:2]
    terms = [xp[:, a:a + ho, b:b + wo, :] * F[a, b, 0] for a in range(k_h) for b in range(k_w)]
    return sum(terms[1:], terms[0])


def row_block(wo: int, c_out: int) -> int:
    """J, the output columns per block of the row products: the smallest divisor of W_o with
    J C_out >= ROWS_MIN_COLUMNS, else W_o (one block).

    A block of J output columns reads J + k_w - 1 input columns, so the products do
    (J + k_w - 1) / k_w times a convolution's multiply-adds: fewer with small J, but the
    matrices get thin (J C_out columns) and slow.
    """
    return next((J for J in range(1, wo + 1) if wo % J == 0 and J * c_out >= ROWS_MIN_COLUMNS),
                wo)


def row_slab(x: Array, F_shape, cfg, J: int) -> Array:
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


def band(F: Array, J: int) -> Array:
    """The banded (Toeplitz) kernel matrix of one block of J output columns:

        T[(j, o), (a, w, c)] = F[a, w - j, c, o]  where 0 <= w - j < k_w, else 0
                                        [J C_out, k_h (J + k_w - 1) C_in]

    so that O[n, i, beta J + j, o] = sum_{a, w, c} R[(n, i, beta), (a, w, c)] T[(j, o), (a, w, c)]
    (R from ``row_slab``).
    """
    k_h, k_w, c_in, c_out = F.shape
    wj = J + k_w - 1
    tap = np.arange(wj)[None, :] - np.arange(J)[:, None]  # [J, wj]: the tap w - j
    band = jnp.transpose(F, (0, 1, 3, 2))[:, np.clip(tap, 0, k_w - 1)]  # [k_h, J, wj, O, C_in]
    band = jnp.where(((tap >= 0) & (tap < k_w))[None, :, :, None, None], band, 0)
    return band.transpose(1, 3, 0, 2, 4).reshape(J * c_out, k_h * wj * c_in)


def rows_filter_grad(dO: Array, R: Array, F_shape, J: int) -> Array:
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


def rows_input_grad(dO: Array, T: Array, F_shape, cfg, J: int) -> Array:
    """dX for stride 1, no dilation, as one matrix product with the banded matrix T (``band``):

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
