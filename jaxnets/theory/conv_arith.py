"""Convolution arithmetic: output sizes, parameter and multiplication counts, receptive fields,
a solver for (k, s, p, d), and a per-layer summary of a stack.

Plain-integer functions (no arrays); every formula is checked against the shapes that
``lax.conv_general_dilated`` and ``lax.reduce_window`` produce, and the receptive field against
the support of an input gradient, in tests/test_conv_arith.py.

Conventions: one spatial axis at a time, with input size i, kernel k, stride s, zero padding p on
*each* side and dilation d (d = 1 means no holes). Images are (H, W, C), channels last; counts
are per image. Layer specs (``Conv``, ``Pool``) are square: the same k, s, p, d on H and W.

  dilated kernel        k' = d (k - 1) + 1
  output size           o = floor((i + 2p - k') / s) + 1,        defined when k' <= i + 2p
  conv parameters       k_h k_w c_in c_out (+ c_out biases)
  conv multiplications  o_h o_w c_out k_h k_w c_in               (taps on padding included)
  receptive field       RF_n = k'_1 + sum_{i=2..n} (k'_i - 1) prod_{j<i} s_j
  jump                  J_n = prod_{j<=n} s_j   (input pixels between neighbouring units)

(problem set 000 Q3, 001 Q3, 002 Q6-Q8, 003 Q1, 004 Q6-Q7, Q9-Q10.)

Errata in the problem sets (each checked against lax in tests/test_conv_arith.py):
- problem set 003 Q1 writes W_out = floor((W_in + 2P - (k - 1)) / s + 1), without the "- 1" its own
  H_out line has: for W = 16, k = 3, s = 1, P = 0 it gives 15; the output is 14.
- problem set 003 Q1 tabulates W_new = floor(W / s + 1) for a 1x1 kernel, p = 0, s = 2 and s = 3.
The
  output is floor((W - 1) / s) + 1 = ceil(W / s), which differs whenever s divides W
  (W = 18, s = 3: 6, not 7). Its worked list for W = 16 uses (16 - 1) and is right.
- problem set 002 Q7 justifies the pooled size with floor((125 + 2*0 - 5) / 1) + 1 = 25; with
stride 1
  that is 121. Non-overlapping 5x5 pooling has s = 5, which gives the 25 it states.
- problem set 004 Q9 drops the floor, solves 66 = (205 - K) / 3 + 1 and answers K = 10 (p = 0). With
  the floor K = 8, 9 and 10 all map 205 to 66 at s = 3, p = 0, so the shapes alone do not fix
  K; its parameter (96096) and multiplication (418176000) counts are right for K = 10.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

from jaxnets.theory.claim import Claim, Outcome

IntOrPair = int | tuple[int, int]


class Conv(NamedTuple):
    """A square conv layer: c_out filters k x k, stride s, zero padding p per side, dilation d."""

    c_out: int
    k: int
    s: int = 1
    p: int = 0
    d: int = 1
    bias: bool = True


class Pool(NamedTuple):
    """A square pooling window k x k (max or average: same arithmetic), stride s, padding p.

    No dilation and no parameters; non-overlapping pooling is s = k.
    """

    k: int
    s: int
    p: int = 0


class KSPD(NamedTuple):
    """One configuration found by ``solve``: kernel, stride, padding per side, dilation."""

    k: int
    s: int
    p: int
    d: int


def _int(where: str, name: str, v: Any, lo: int) -> int:
    """v as an int >= lo, or a ValueError naming the argument."""
    if isinstance(v, bool):
        raise ValueError(f"{where}: {name} must be an int, got {v!r}")
    try:
        v = operator.index(v)
    except TypeError:
        raise ValueError(f"{where}: {name} must be an int, got {v!r}") from None
    if v < lo:
        raise ValueError(f"{where}: {name} must be >= {lo}, got {v}")
    return v


def _pair(where: str, name: str, v: IntOrPair, lo: int) -> tuple[int, int]:
    if isinstance(v, tuple | list):
        if len(v) != 2:
            raise ValueError(f"{where}: {name} must be an int or an (h, w) pair, got {v!r}")
        return _int(where, f"{name}[0]", v[0], lo), _int(where, f"{name}[1]", v[1], lo)
    v = _int(where, name, v, lo)
    return v, v


def dilated_kernel(k: int, d: int = 1) -> int:
    """The extent k' = d (k - 1) + 1 of a k-tap kernel with dilation d."""
    k, d = _int("dilated_kernel", "k", k, 1), _int("dilated_kernel", "d", d, 1)
    return d * (k - 1) + 1


def output_size(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a conv or pooling window along one axis.

    o = floor((i + 2p - d (k - 1) - 1) / s) + 1, with p zeros on each side.

    Examples:
        >>> from jaxnets.theory.conv_arith import output_size
        >>> output_size(32, 5), output_size(28, 2, s=2), output_size(205, 10, s=3)
        (28, 14, 66)

    Raises:
      ValueError: i, k, s, d < 1 or p < 0, or the dilated kernel longer than the padded input
        (which is exactly when the formula would give o < 1).
    """
    where = "output_size"
    i, k, s = _int(where, "i", i, 1), _int(where, "k", k, 1), _int(where, "s", s, 1)
    p, d = _int(where, "p", p, 0), _int(where, "d", d, 1)
    kd = d * (k - 1) + 1
    if kd > i + 2 * p:
        raise ValueError(f"{where}: dilated kernel {kd} (k={k}, d={d}) exceeds padded input "
                         f"{i + 2 * p} (i={i}, p={p})")
    return (i + 2 * p - kd) // s + 1


def conv_params(k: IntOrPair, c_in: int, c_out: int, bias: bool = True) -> int:
    """Parameters of a conv layer: k_h k_w c_in c_out weights, plus c_out biases if ``bias``.

    Args:
      k: kernel size, an int (square) or (k_h, k_w).
    """
    kh, kw = _pair("conv_params", "k", k, 1)
    c_in, c_out = _int("conv_params", "c_in", c_in, 1), _int("conv_params", "c_out", c_out, 1)
    return kh * kw * c_in * c_out + (c_out if bias else 0)


def conv_multiplications(o: IntOrPair, k: IntOrPair, c_in: int, c_out: int) -> int:
    """Multiplications of a conv layer per image: o_h o_w c_out k_h k_w c_in.

    Each of the o_h o_w c_out outputs is a dot product of k_h k_w c_in weights with a window of
    the zero-padded input (taps that land on padding are counted, as a dense kernel does them;
    dilation changes where the taps land, not how many there are). Biases add, not multiply.

    Args:
      o: output size, an int (square) or (o_h, o_w). k: kernel size, int or (k_h, k_w).
    """
    where = "conv_multiplications"
    oh, ow = _pair(where, "o", o, 1)
    kh, kw = _pair(where, "k", k, 1)
    return oh * ow * _int(where, "c_out", c_out, 1) * kh * kw * _int(where, "c_in", c_in, 1)


def receptive_field(
    kernels: Sequence[int], strides: Sequence[int], dilations: Sequence[int] | None = None
) -> int:
    """Receptive field (in input pixels, along one axis) of one unit after n stacked layers.

    RF_n = k'_1 + sum_{i=2..n} (k'_i - 1) prod_{j<i} s_j, with k'_i = d_i (k_i - 1) + 1
    (problem set 004 Q10, with dilation). Padding does not change it. An empty stack gives 1.

    Args:
      kernels, strides, dilations: one int per layer, first layer first; dilations default 1.
    """
    where = "receptive_field"
    n = len(kernels)
    dilations = [1] * n if dilations is None else dilations
    if len(strides) != n or len(dilations) != n:
        raise ValueError(f"{where}: kernels, strides and dilations need one int per layer, got "
                         f"lengths {n}, {len(strides)}, {len(dilations)}")
    rf, jump = 1, 1
    for idx, (k, s, d) in enumerate(zip(kernels, strides, dilations, strict=True)):
        k = _int(where, f"kernels[{idx}]", k, 1)
        s = _int(where, f"strides[{idx}]", s, 1)
        d = _int(where, f"dilations[{idx}]", d, 1)
        rf += d * (k - 1) * jump  # (k'_i - 1) prod_{j<i} s_j; the first term is k'_1 - 1
        jump *= s
    return rf


def solve(
    i: int, o: int, *, k_max: int, s_max: int, p_max: int = 0, d_max: int = 1,
    pool: bool = False,
) -> list[KSPD]:
    """Every (k, s, p, d) within the bounds that maps input size i to output size o.

    Bounds: 1 <= k <= k_max, 1 <= s <= s_max, 0 <= p <= p_max, 1 <= d <= d_max. For each
    (k, p, d) with n = i + 2p - k' >= 0, o = floor(n / s) + 1 holds exactly for
    floor(n / o) + 1 <= s <= floor(n / (o - 1)) (no upper limit when o = 1).

    Pooling convention (``pool=True``): d = 1 (so d_max must be 1) and p <= k // 2, PyTorch's
    rule for its pools; it guarantees every window covers at least one real input pixel.

    Returns:
      The configurations sorted by (k, s, p, d); empty when none exists.
    """
    where = "solve"
    i, o = _int(where, "i", i, 1), _int(where, "o", o, 1)
    k_max, s_max = _int(where, "k_max", k_max, 1), _int(where, "s_max", s_max, 1)
    p_max, d_max = _int(where, "p_max", p_max, 0), _int(where, "d_max", d_max, 1)
    if pool and d_max != 1:
        raise ValueError(f"{where}: pooling has no dilation, so d_max must be 1, got {d_max}")
    found = []
    for k in range(1, k_max + 1):
        for p in range((min(p_max, k // 2) if pool else p_max) + 1):
            for d in range(1, d_max + 1):
                n = i + 2 * p - (d * (k - 1) + 1)
                if n < 0:
                    continue
                s_hi = s_max if o == 1 else min(s_max, n // (o - 1))
                found += [KSPD(k, s, p, d) for s in range(n // o + 1, s_hi + 1)]
    return sorted(found)


def _describe(layer: Conv | Pool) -> str:
    if isinstance(layer, Conv):
        dil = f" d{layer.d}" if layer.d != 1 else ""
        return f"conv {layer.k}x{layer.k}/{layer.s} p{layer.p}{dil}, {layer.c_out}"
    return f"pool {layer.k}x{layer.k}/{layer.s} p{layer.p}"


def summarize(
    input_shape: tuple[int, int, int], layers: Sequence[Conv | Pool]
) -> list[dict[str, Any]]:
    """Per-layer arithmetic of a stack of square conv and pooling layers, per image.

    Args:
      input_shape: (H, W, C) of one image, channels last.
      layers: ``Conv`` and ``Pool`` specs, first layer first.
    Returns:
      One dict per layer with keys ``layer`` (a short description), ``kind`` ("conv" or
      "pool"), ``k``, ``s``, ``p``, ``d``, ``in_shape`` and ``out_shape`` ((H, W, C) tuples),
      ``params``, ``mults`` (0 for pools), ``rf`` (receptive field in input pixels, per axis)
      and ``jump`` (input pixels between neighbouring output units). ``format_summary`` renders
      the list as a table.
    """
    if not (isinstance(input_shape, tuple | list) and len(input_shape) == 3):
        raise ValueError(f"summarize: input_shape must be (H, W, C), got {input_shape!r}")
    h, w, c = (_int("summarize", f"input_shape[{j}]", v, 1) for j, v in enumerate(input_shape))
    rows, kernels, strides, dilations = [], [], [], []
    for n, layer in enumerate(layers, start=1):
        if not isinstance(layer, Conv | Pool):
            raise ValueError(f"summarize: layer {n} must be a Conv or a Pool, got {layer!r}")
        d = layer.d if isinstance(layer, Conv) else 1
        try:
            oh = output_size(h, layer.k, layer.s, layer.p, d)
            ow = output_size(w, layer.k, layer.s, layer.p, d)
            if isinstance(layer, Conv):
                c_out = _int("Conv", "c_out", layer.c_out, 1)
                params = conv_params(layer.k, c, c_out, layer.bias)
                mults = conv_multiplications((oh, ow), layer.k, c, c_out)
            else:
                c_out, params, mults = c, 0, 0
        except ValueError as e:
            raise ValueError(f"summarize: layer {n} ({_describe(layer)}) on input {(h, w, c)}: "
                             f"{e}") from None
        kernels.append(layer.k)
        strides.append(layer.s)
        dilations.append(d)
        rows.append({
            "layer": _describe(layer), "kind": "conv" if isinstance(layer, Conv) else "pool",
            "k": layer.k, "s": layer.s, "p": layer.p, "d": d,
            "in_shape": (h, w, c), "out_shape": (oh, ow, c_out),
            "params": params, "mults": mults,
            "rf": receptive_field(kernels, strides, dilations), "jump": math.prod(strides),
        })
        h, w, c = oh, ow, c_out
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of ``summarize``'s rows, with a line of totals."""
    header = ("#", "layer", "output (H, W, C)", "params", "mults", "RF", "jump")
    body = [(str(n), r["layer"], "x".join(map(str, r["out_shape"])), f"{r['params']:,}",
             f"{r['mults']:,}", str(r["rf"]), str(r["jump"])) for n, r in enumerate(rows, 1)]
    if rows:  # the input as row 0: a unit of it sees one pixel
        body.insert(0, ("0", "input", "x".join(map(str, rows[0]["in_shape"])), "", "", "1", "1"))
    total = ("", "total", "", f"{sum(r['params'] for r in rows):,}",
             f"{sum(r['mults'] for r in rows):,}", "", "")
    widths = [max(len(line[j]) for line in (header, *body, total)) for j in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [v.ljust(wd) if j in (1, 2) else v.rjust(wd)
                 for j, (v, wd) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(tuple("-" * wd for wd in widths)))
    return "\n".join([fmt(header), rule, *map(fmt, body), rule, fmt(total)])


# ---------------------------------------------------------------------------------------------
# The problem sets' claims (rows of the report; tests/test_conv_arith.py checks the same in detail).

def lax_output_size(i: int, k: int, s: int = 1, p: int = 0, d: int = 1, pool: bool = False
                    ) -> int:
    """Output length along one axis by lax's own shape rule: ``conv_general_dilated``, or
    ``reduce_window`` (max) when ``pool``. Nothing is computed (``jax.eval_shape``)."""
    import jax
    from jax import lax

    x = jax.ShapeDtypeStruct((1, 1, i), "float32")
    if pool:
        def f(x):
            return lax.reduce_window(x, -float("inf"), lax.max, (1, 1, k), (1, 1, s),
                                     ((0, 0), (0, 0), (p, p)), window_dilation=(1, 1, d))
        return jax.eval_shape(f, x).shape[2]
    w = jax.ShapeDtypeStruct((1, 1, k), "float32")
    return jax.eval_shape(lambda x, w: lax.conv_general_dilated(
        x, w, (s,), [(p, p)], rhs_dilation=(d,)), x, w).shape[2]


def _sizes_agree(cases) -> tuple[bool, str]:
    bad = [c for c in cases if output_size(*c[:5]) != lax_output_size(*c)]
    return not bad, f"{len(cases) - len(bad)}/{len(cases)} sizes equal lax's"


def _q003_1_w_out() -> Outcome:
    seed = math.floor((16 + 2 * 0 - (3 - 1)) / 1 + 1)  # its W_out line, W = 16, k = 3
    ok, agree = _sizes_agree([(16, 3, 1, 0, 1, False), (9, 4, 2, 1, 1, False),
                              (7, 2, 3, 2, 1, False)])
    return Outcome(ok and output_size(16, 3) == 14, agree, str(seed), str(output_size(16, 3)))


def _q003_1_one_by_one() -> Outcome:
    ok, agree = _sizes_agree([(w, 1, s, 0, 1, False) for w in (15, 16, 18) for s in (2, 3)])
    return Outcome(ok and output_size(18, 1, 3) == math.ceil(18 / 3), agree,
                   str(math.floor(18 / 3 + 1)), str(output_size(18, 1, 3)))


def _q002_7() -> Outcome:
    ok, agree = _sizes_agree([(125, 5, 5, 0, 1, True), (125, 5, 1, 0, 1, True)])
    return Outcome(ok and output_size(125, 5, 5) == 25, agree + "; with s = 1 it is "
                   f"{output_size(125, 5, 1)}", "floor((125 - 5) / 1) + 1 = 25",
                   f"{output_size(125, 5, 1)} (s = 1), {output_size(125, 5, 5)} (s = 5)")


def _q004_9() -> Outcome:
    ks = [c.k for c in solve(205, 66, k_max=205, s_max=3) if c.s == 3 and c.p == 0]
    ok, agree = _sizes_agree([(205, k, 3, 0, 1, False) for k in ks])
    counts = (conv_params(10, 10, 96), conv_multiplications(66, 10, 10, 96))
    return Outcome(ok and 10 in ks and counts == (96096, 418176000),
                   f"{agree}; K = 10: {counts[0]} params, {counts[1]} multiplications",
                   "K = 10", "K in " + ", ".join(map(str, ks)))


def _q004_10() -> Outcome:
    import itertools

    worst = 0
    for ks in itertools.product((1, 2, 3, 5), repeat=3):
        for ss in itertools.product((1, 2, 3), repeat=3):
            rf = ks[0]
            for n in range(1, 3):  # the problem set's recursion RF_n = RF_{n-1} + (k_n - 1) prod s
                rf += (ks[n] - 1) * math.prod(ss[:n])
            worst = max(worst, abs(receptive_field(list(ks), list(ss)) - rf))
    return Outcome(worst == 0, f"closed form = recursion on {4 ** 3 * 3 ** 3} 3-layer stacks")


def _q000_3() -> Outcome:
    rows = summarize((128, 128, 3), [Conv(64, 8, 2, 4), Pool(2, 2), Conv(128, 4, 2, 2)])
    shape = rows[-1]["out_shape"]
    return Outcome(shape == (17, 17, 128), f"shapes {[r['out_shape'] for r in rows]}",
                   "17 x 17 x 128", " x ".join(map(str, shape)))


CLAIMS = [
    Claim("000", "Q3", "128x128x3 -> conv 64 8x8/2 p4 -> pool 2 -> conv 128 4x4/2 p2 gives "
          "17x17x128", "conv_arith.summarize; sizes as lax computes them", _q000_3),
    Claim("002", "Q7.1", "non-overlapping 5x5 pooling of 125 gives 25 (stride 5; the problem set "
          "divides by stride 1, which gives 121)", "output_size vs lax reduce_window", _q002_7),
    Claim("003", "Q1", "W_out = floor((W + 2P - d(k-1) - 1) / s) + 1 (the problem set's W_out line "
          "drops the - 1)", "output_size vs lax conv shapes", _q003_1_w_out),
    Claim("003", "Q1", "a 1x1 kernel, p = 0 gives ceil(W / s) (the problem set's floor(W/s + 1) "
          "is off "
          "by one when s divides W)", "output_size vs lax, W in 15, 16, 18, s in 2, 3",
          _q003_1_one_by_one),
    Claim("004", "Q9", "205 -> 66 at stride 3, p = 0 admits K = 8, 9, 10 (the problem set finds "
          "only "
          "10); 96,096 params and 418,176,000 multiplications for K = 10",
          "conv_arith.solve, checked against lax's shape rule", _q004_9),
    Claim("004", "Q10", "RF_n = k_1 + sum_{i>=2} (k_i - 1) prod_{j<i} s_j equals the recursion",
          "receptive_field vs RF_n = RF_{n-1} + (k_n - 1) prod s, all small stacks", _q004_10),
]
