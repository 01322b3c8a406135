"""Conv arithmetic against lax: output sizes, counts, receptive fields, the solver, the seeds."""

import itertools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax

from jaxnets.theory import conv_arith as ca
from jaxnets.theory.conv_arith import KSPD, Conv, Pool

NHWC = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------- lax references


def _conv(x, k, c_out, s, p, d):
    """x: [1, H, W, C_in] -> [1, o_h, o_w, c_out]; k, s, p, d are (h, w) pairs; all-ones weights."""
    w = jnp.ones((*k, x.shape[-1], c_out), x.dtype)
    return lax.conv_general_dilated(x, w, s, [(p[0], p[0]), (p[1], p[1])], rhs_dilation=d,
                                    dimension_numbers=NHWC)


def _pool(x, k, s, p, d=(1, 1), op="max"):
    """x: [1, H, W, C] -> [1, o_h, o_w, C]; max pool, or sum pool (positive, all taps count)."""
    init, fn = (-jnp.inf, lax.max) if op == "max" else (0.0, lax.add)
    return lax.reduce_window(x, init, fn, (1, *k, 1), (1, *s, 1),
                             [(0, 0), (p[0], p[0]), (p[1], p[1]), (0, 0)],
                             window_dilation=(1, *d, 1))


def _run_stack(x, layers, pool_op="max"):
    """Every layer's output of a stack of ``Conv``/``Pool`` specs, run with lax."""
    outs = []
    for layer in layers:
        sq = lambda v: (v, v)  # noqa: E731
        if isinstance(layer, Conv):
            x = _conv(x, sq(layer.k), layer.c_out, sq(layer.s), sq(layer.p), sq(layer.d))
        else:
            x = _pool(x, sq(layer.k), sq(layer.s), sq(layer.p), op=pool_op)
        outs.append(x)
    return outs


def _lax_shapes(input_shape, layers, abstract=False):
    """(H, W, C) after each layer: run for real, or (``abstract``) by lax's shape rules only."""
    f = lambda x: _run_stack(x, layers)  # noqa: E731
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    outs = jax.eval_shape(f, x) if abstract else f(jnp.ones(x.shape))
    return [tuple(y.shape[1:]) for y in outs]


def _lax_size_1d(i, k, s=1, p=0, d=1, pool=False):
    """Output length along one axis by lax's shape rule (0 when the window does not fit)."""
    x = jax.ShapeDtypeStruct((1, i, 1, 1), jnp.float32)
    if pool:
        f = lambda x: _pool(x, (k, 1), (s, 1), (p, 0), (d, 1))  # noqa: E731
    else:
        f = lambda x: _conv(x, (k, 1), 1, (s, 1), (p, 0), (d, 1))  # noqa: E731
    return jax.eval_shape(f, x).shape[1]


def _flax_params(k, c_in, c_out, bias=True):
    """Parameter count of flax's Conv layer (shapes only, nothing is computed)."""
    module = nn.Conv(c_out, (k, k) if isinstance(k, int) else k, use_bias=bias)
    tree = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.ones((1, 16, 16, c_in))))
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


@st.composite
def _axis(draw, k_max=5, d_max=3, p_max=3, extra=12):
    """One axis (i, k, s, p, d) whose dilated kernel fits the padded input."""
    k, s, d = draw(st.integers(1, k_max)), draw(st.integers(1, 4)), draw(st.integers(1, d_max))
    p = draw(st.integers(0, p_max))
    kd = d * (k - 1) + 1
    i = draw(st.integers(max(1, kd - 2 * p), kd - 2 * p + extra))
    return i, k, s, p, d


# ---------------------------------------------------------------- formulas vs lax


@given(h=_axis(), w=_axis(), c_in=st.integers(1, 3), c_out=st.integers(1, 3))
def test_output_size_is_the_conv_shape(h, w, c_in, c_out):
    (ih, *cfg_h), (iw, *cfg_w) = h, w
    k, s, p, d = zip(cfg_h, cfg_w, strict=True)  # each an (h, w) pair
    y = _conv(jnp.ones((1, ih, iw, c_in)), k, c_out, s, p, d)
    assert y.shape == (1, ca.output_size(*h), ca.output_size(*w), c_out)


@given(h=_axis(), w=_axis(), c=st.integers(1, 3))
def test_output_size_is_the_reduce_window_shape(h, w, c):
    (ih, *cfg_h), (iw, *cfg_w) = h, w
    k, s, p, d = zip(cfg_h, cfg_w, strict=True)
    y = _pool(jnp.ones((1, ih, iw, c)), k, s, p, d)
    assert y.shape == (1, ca.output_size(*h), ca.output_size(*w), c)


@pytest.mark.parametrize("pool", [False, True], ids=["conv", "pool"])
def test_output_size_on_a_grid_raises_exactly_when_lax_gives_nothing(pool):
    """Every (i, k, s, p, d) in a small grid, by lax's shape rule (an empty output: no fit)."""
    n_empty = 0
    for i, k, s, p, d in itertools.product(range(1, 9), range(1, 6), range(1, 4), range(3),
                                           range(1, 4)):
        o = _lax_size_1d(i, k, s, p, d, pool)
        if o >= 1:
            assert ca.output_size(i, k, s, p, d) == o, (i, k, s, p, d)
        else:
            n_empty += 1
            with pytest.raises(ValueError, match=r"exceeds padded input"):
                ca.output_size(i, k, s, p, d)
    assert n_empty > 0


@given(kh=st.integers(1, 5), kw=st.integers(1, 5), c_in=st.integers(1, 4),
       c_out=st.integers(1, 4), bias=st.booleans())
def test_conv_params_match_flax(kh, kw, c_in, c_out, bias):
    assert ca.conv_params((kh, kw), c_in, c_out, bias) == _flax_params((kh, kw), c_in, c_out, bias)


@given(h=_axis(), w=_axis(), c_in=st.integers(1, 3), c_out=st.integers(1, 3))
def test_multiplications_are_the_taps_lax_sums(h, w, c_in, c_out):
    """All-ones weights on an all-ones (hand-padded) input: each output is the number of
    products it sums, so the outputs add up to the layer's multiplications."""
    (ih, *cfg_h), (iw, *cfg_w) = h, w
    k, s, p, d = zip(cfg_h, cfg_w, strict=True)
    x_pad = jnp.ones((1, ih + 2 * p[0], iw + 2 * p[1], c_in))  # the zero padding, as ones
    y = _conv(x_pad, k, c_out, s, (0, 0), d)
    o = (ca.output_size(*h), ca.output_size(*w))
    assert y.shape[1:3] == o
    assert int(jnp.sum(y)) == ca.conv_multiplications(o, k, c_in, c_out)


@st.composite
def _stack_1d(draw):
    """1 to 3 layers (k, s, p, d, is_pool) along one axis; pools have d = 1 and p <= k // 2."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        pool = draw(st.booleans())
        k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        d = 1 if pool else draw(st.integers(1, 3))
        layers.append((k, s, draw(st.integers(0, k // 2 if pool else 2)), d, pool))
    return layers


@given(layers=_stack_1d())
def test_receptive_field_is_the_support_of_the_input_gradient(layers):
    """d y[centre] / d x is nonzero on exactly RF consecutive-extent pixels (all-ones weights,
    sum pools), and the centre unit's window lies inside the input, so padding clips nothing."""
    kernels, strides, pads, dils, _ = zip(*layers, strict=True)
    rf = ca.receptive_field(kernels, strides, dils)
    jumps = np.cumprod((1, *strides))
    i = 3 * rf + 4 * int(jumps[-1]) + 4 * int(np.dot(pads, jumps[:-1]))

    def stack(x):  # x: [1, i, 1, 1], one spatial axis
        for k, s, p, d, pool in layers:
            if pool:
                x = _pool(x, (k, 1), (s, 1), (p, 0), op="sum")
            else:
                x = _conv(x, (k, 1), 1, (s, 1), (p, 0), (d, 1))
        return x

    x = jnp.ones((1, i, 1, 1))
    centre = stack(x).shape[1] // 2
    g = jax.grad(lambda x: stack(x)[0, centre, 0, 0])(x)[0, :, 0, 0]
    support = np.flatnonzero(np.asarray(g))
    assert 0 < support[0] and support[-1] < i - 1
    assert support[-1] - support[0] + 1 == rf


@given(ks=st.lists(st.integers(1, 9), min_size=1, max_size=6),
       data=st.data())
def test_receptive_field_equals_seed_004_q10_recursion_and_closed_form(ks, data):
    """Problem set 004 Q10 (right): RF_n = RF_{n-1} + (k_n - 1) prod_{i<n} s_i, and closed form."""
    ss = data.draw(st.lists(st.integers(1, 4), min_size=len(ks), max_size=len(ks)))
    rf = ks[0]
    for n in range(1, len(ks)):
        rf += (ks[n] - 1) * math.prod(ss[:n])
    closed = ks[0] + sum((ks[i] - 1) * math.prod(ss[:i]) for i in range(1, len(ks)))
    assert ca.receptive_field(ks, ss) == rf == closed
    assert ca.receptive_field([], []) == 1


# ---------------------------------------------------------------- solver


@given(i=st.integers(1, 24), o=st.integers(1, 10), k_max=st.integers(1, 8),
       s_max=st.integers(1, 5), p_max=st.integers(0, 3), d_max=st.integers(1, 3),
       pool=st.booleans())
def test_solve_equals_lax_brute_force(i, o, k_max, s_max, p_max, d_max, pool):
    d_max = 1 if pool else d_max
    brute = {
        KSPD(k, s, p, d)
        for k in range(1, k_max + 1) for s in range(1, s_max + 1)
        for p in range((min(p_max, k // 2) if pool else p_max) + 1) for d in range(1, d_max + 1)
        if _lax_size_1d(i, k, s, p, d, pool) == o
    }
    found = ca.solve(i, o, k_max=k_max, s_max=s_max, p_max=p_max, d_max=d_max, pool=pool)
    assert found == sorted(found) and set(found) == brute and len(found) == len(brute)
    x = jnp.ones((1, i, 1, 1))
    for k, s, p, d in found[:4]:  # a few run for real, beyond the shape rule
        y = (_pool(x, (k, 1), (s, 1), (p, 0)) if pool
             else _conv(x, (k, 1), 1, (s, 1), (p, 0), (d, 1)))
        assert y.shape[1] == o


# ---------------------------------------------------------------- summary


@st.composite
def _stack_2d(draw):
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        if draw(st.booleans()):
            layers.append(Pool(k, s, draw(st.integers(0, k // 2))))
        else:
            layers.append(Conv(draw(st.integers(1, 3)), k, s, draw(st.integers(0, 2)),
                               draw(st.integers(1, 2)), draw(st.booleans())))
    return layers


@given(layers=_stack_2d(), h=st.integers(9, 14), w=st.integers(9, 14), c=st.integers(1, 3))
def test_summarize_matches_lax_and_flax(layers, h, w, c):
    rows = ca.summarize((h, w, c), layers)
    assert [r["out_shape"] for r in rows] == _lax_shapes((h, w, c), layers)
    for r, layer in zip(rows, layers, strict=True):
        want = (_flax_params(layer.k, r["in_shape"][2], layer.c_out, layer.bias)
                if isinstance(layer, Conv) else 0)
        assert r["params"] == want
    assert rows[-1]["rf"] == ca.receptive_field(
        [lyr.k for lyr in layers], [lyr.s for lyr in layers],
        [lyr.d if isinstance(lyr, Conv) else 1 for lyr in layers])
    assert rows[-1]["jump"] == math.prod(lyr.s for lyr in layers)


def test_format_summary_is_a_readable_table():
    layers = [Conv(64, 8, 2, 4), Pool(2, 2), Conv(128, 4, 2, 2)]
    rows = ca.summarize((128, 128, 3), layers)
    json.dumps(rows)  # plain data
    table = ca.format_summary(rows)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["#", "layer"] and len(lines) == 2 + 4 + 2
    assert "128x128x3" in lines[2]
    for line, r in zip(lines[3:6], rows, strict=True):
        assert r["layer"] in line and "x".join(map(str, r["out_shape"])) in line
        assert f"{r['params']:,}" in line and f"{r['mults']:,}" in line
    assert lines[-1].split()[1:] == [f"{sum(r['params'] for r in rows):,}",
                                     f"{sum(r['mults'] for r in rows):,}"]
    assert ca.format_summary([]).splitlines()[0].startswith("#")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("call, match", [
    (lambda: ca.output_size(4, 4, p=1, d=2),
     r"output_size: dilated kernel 7 \(k=4, d=2\) exceeds padded input 6 \(i=4, p=1\)"),
    (lambda: ca.output_size(3, 5), r"dilated kernel 5 \(k=5, d=1\) exceeds padded input 3"),
    (lambda: ca.output_size(5, 0), r"output_size: k must be >= 1, got 0"),
    (lambda: ca.output_size(5, 3, s=0), r"output_size: s must be >= 1, got 0"),
    (lambda: ca.output_size(5, 3, s=-2), r"output_size: s must be >= 1, got -2"),
    (lambda: ca.output_size(5, 3, p=-1), r"output_size: p must be >= 0, got -1"),
    (lambda: ca.output_size(5, 3, d=0), r"output_size: d must be >= 1, got 0"),
    (lambda: ca.output_size(0, 1), r"output_size: i must be >= 1, got 0"),
    (lambda: ca.output_size(5, 2.5), r"output_size: k must be an int, got 2.5"),
    (lambda: ca.dilated_kernel(3, 0), r"dilated_kernel: d must be >= 1, got 0"),
    (lambda: ca.conv_params(3, 0, 4), r"conv_params: c_in must be >= 1, got 0"),
    (lambda: ca.conv_params((3, 3, 3), 1, 4), r"conv_params: k must be an int or an \(h, w\)"),
    (lambda: ca.conv_multiplications((4, 0), 3, 1, 1),
     r"conv_multiplications: o\[1\] must be >= 1, got 0"),
    (lambda: ca.receptive_field([3, 3], [1]), r"one int per layer, got lengths 2, 1, 2"),
    (lambda: ca.receptive_field([3, 0], [1, 1]), r"receptive_field: kernels\[1\] must be >= 1"),
    (lambda: ca.receptive_field([3], [1], [0]), r"dilations\[0\] must be >= 1, got 0"),
    (lambda: ca.solve(8, 0, k_max=3, s_max=3), r"solve: o must be >= 1, got 0"),
    (lambda: ca.solve(8, 2, k_max=3, s_max=3, p_max=-1), r"solve: p_max must be >= 0, got -1"),
    (lambda: ca.solve(8, 2, k_max=3, s_max=3, d_max=2, pool=True),
     r"solve: pooling has no dilation, so d_max must be 1, got 2"),
    (lambda: ca.summarize((8, 8, 3), [Conv(4, 5), Conv(4, 5)]),
     r"summarize: layer 2 \(conv 5x5/1 p0, 4\) on input \(4, 4, 4\): output_size: dilated "
     r"kernel 5 \(k=5, d=1\) exceeds padded input 4 \(i=4, p=0\)"),
    (lambda: ca.summarize((8, 8, 3), [Pool(2, 0)]), r"layer 1 \(pool 2x2/0 p0\).*s must be >= 1"),
    (lambda: ca.summarize((8, 8, 3), [Conv(0, 3)]), r"layer 1 .*c_out must be >= 1, got 0"),
    (lambda: ca.summarize((8, 8), [Conv(4, 3)]), r"input_shape must be \(H, W, C\)"),
    (lambda: ca.summarize((8, 8, 3), [(4, 3)]), r"layer 1 must be a Conv or a Pool"),
])
def test_impossible_configurations_raise_naming_the_numbers(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- seeds


def test_problem_set_000_q3():
    """128x128x3 -> conv 64 8x8/2 p4 -> max pool 2x2 (non-overlapping) -> conv 128 4x4/2 p2."""
    layers = [Conv(64, 8, 2, 4), Pool(2, 2), Conv(128, 4, 2, 2, bias=False)]
    rows = ca.summarize((128, 128, 3), layers)
    shapes = _lax_shapes((128, 128, 3), layers)
    assert [r["out_shape"] for r in rows] == shapes == [(65, 65, 64), (32, 32, 64), (17, 17, 128)]
    assert math.prod(rows[-1]["out_shape"]) == 17 * 17 * 128  # the problem set's answer (right)
    assert rows[-1]["params"] == _flax_params(4, 64, 128, bias=False) == 128 * 4 * 4 * 64


def test_problem_set_001_q3_ab():
    """32x32x1 -> conv 6 5x5 -> avg pool 2x2 (non-overlapping) -> conv 16 5x5 (no worked answer)."""
    layers = [Conv(6, 5), Pool(2, 2), Conv(16, 5, bias=False)]
    rows = ca.summarize((32, 32, 1), layers)
    assert [r["out_shape"] for r in rows] == _lax_shapes((32, 32, 1), layers)
    assert rows[-1]["out_shape"] == (10, 10, 16)  # 32 - 4 = 28, 28 / 2 = 14, 14 - 4 = 10
    assert rows[-1]["params"] == 5 * 5 * 6 * 16
    assert rows[-1]["params"] == _flax_params(5, 6, 16, bias=False)


@pytest.mark.parametrize("fixed", [dict(p=0, d=1), dict(p=1, d=2)], ids=["c_p0_d1", "d_p1_d2"])
def test_problem_set_001_q3_cd_configurations_for_64_to_6(fixed):
    """64x64x3 -> (64, 6, 6) with p = 0, d = 1 (c) or d = 2, p = 1 (d): every answer the solver
    lists gives that shape in lax (by shape rule; the first and last also run for real)."""
    sols = [c for c in ca.solve(64, 6, k_max=64, s_max=64, p_max=fixed["p"], d_max=fixed["d"])
            if c.p == fixed["p"] and c.d == fixed["d"]]
    assert sols
    for n, (k, s, p, d) in enumerate(sols):
        conv = Conv(64, k, s, p, d)
        real = n in (0, len(sols) - 1)
        assert _lax_shapes((64, 64, 3), [conv], abstract=not real) == [(6, 6, 64)]


def test_problem_set_002_q6_full_valid_same_sizes():
    """[1, 2, 3, 4] * [1, 0, 2] (flipped kernel): full p = k - 1, valid p = 0, same p = (k-1)/2."""
    x, f = jnp.array([1.0, 2, 3, 4]), jnp.array([1.0, 0, 2])
    seed = {2: [1, 2, 5, 8, 6, 8], 0: [5, 8], 1: [2, 5, 8, 6]}  # p -> the set's answers (right)
    for p, want in seed.items():
        y = lax.conv_general_dilated(x[None, None], f[::-1][None, None], (1,), [(p, p)])[0, 0]
        assert y.shape == (ca.output_size(4, 3, p=p),) == (len(want),)
        np.testing.assert_array_equal(y, want)


def test_problem_set_002_q7():
    """256x256x3 -> conv 64 8x8/2 -> max pool 5x5 non-overlapping -> conv 128 4x4/1 p1."""
    layers = [Conv(64, 8, 2), Pool(5, 5), Conv(128, 4, 1, 1, bias=False)]
    rows = ca.summarize((256, 256, 3), layers)
    shapes = _lax_shapes((256, 256, 3), layers)
    assert [r["out_shape"] for r in rows] == shapes == [(125, 125, 64), (25, 25, 64),
                                                         (24, 24, 128)]
    assert math.prod(rows[-1]["out_shape"]) == 73728
    assert rows[-1]["params"] == _flax_params(4, 64, 128, bias=False) == 131072
    # Erratum: the problem set's justification divides by stride 1, which gives 121, not 25.
    assert ca.output_size(125, 5, 1) == _lax_size_1d(125, 5, 1, pool=True) == 121
    assert ca.output_size(125, 5, 5) == _lax_size_1d(125, 5, 5, pool=True) == 25


def test_problem_set_002_q8():
    """3x64x64 -> (64, 32, 32) -> (64, 8, 8) -> (128, 4, 4): the problem set's answers are right."""
    def sols(i, o, **kw):
        return ca.solve(i, o, k_max=16, s_max=8, p_max=4, d_max=8, **kw)

    assert KSPD(8, 2, 3, 1) in sols(64, 32)  # 1(a) k = 8, d = 1: p = 3, s = 2
    assert KSPD(2, 2, 3, 7) in sols(64, 32)  # 1(b) d = 7, s = 2: k = 2, p = 3
    assert ca.output_size(64, 8, 2, 3) == ca.output_size(64, 2, 2, 3, d=7) == 32
    non_overlapping = [c for c in ca.solve(32, 8, k_max=16, s_max=16, pool=True) if c.k <= c.s]
    assert KSPD(4, 4, 0, 1) in non_overlapping  # 2(a)
    assert ca.output_size(32, 8, 4) == _lax_size_1d(32, 8, 4, pool=True) == 7  # 2(b)
    assert KSPD(5, 1, 0, 1) in sols(8, 4)  # 3(a)
    assert KSPD(5, 1, 2, 2) in sols(8, 4)  # 3(b)
    assert [c for c in sols(8, 4) if c.p == 1 and c.d == 1]  # 3(c): no worked answer; some exist
    for i, o in [(64, 32), (8, 4)]:
        assert all(_lax_size_1d(i, *c) == o for c in sols(i, o))


def test_problem_set_003_q1_output_formula():
    """H_out = floor((H + 2P - (k-1) - 1)/s + 1) is right; the W_out line drops the "- 1"."""
    for i, k, s, p in [(16, 3, 1, 0), (16, 5, 1, 0), (9, 4, 2, 1), (7, 2, 3, 2)]:
        h_out = math.floor((i + 2 * p - (k - 1) - 1) / s + 1)
        assert ca.output_size(i, k, s, p) == _lax_size_1d(i, k, s, p) == h_out
    seed_w_out = math.floor((16 + 2 * 0 - (3 - 1)) / 1 + 1)
    assert seed_w_out == 15 != ca.output_size(16, 3) == _lax_size_1d(16, 3) == 14
    # 1x1 kernel, p = 0: the problem set's worked list for W = 16 (right) ...
    for s, want in {2: 8, 3: 6, 4: 4, 5: 4}.items():
        assert ca.output_size(16, 1, s) == _lax_size_1d(16, 1, s) == want
    # ... but its table's floor(W/s + 1) is off by one whenever s divides W.
    for w, s in [(16, 2), (18, 3), (15, 3)]:
        assert ca.output_size(w, 1, s) == _lax_size_1d(w, 1, s) == math.ceil(w / s)
        assert math.floor(w / s + 1) == math.ceil(w / s) + 1


def test_problem_set_004_q6_shapes_and_values():
    """6x6 input, 3x3 filter -> O 4x4 -> 2x2/1 max pool -> M 3x3 (the set's O and M are right)."""
    x = jnp.array([[1, 7, -1, -7, 10, 11], [2, 8, 0, 0, 12, 13], [3, 9, 0, 0, 0, 0],
                   [4, 10, -4, -10, 0, 0], [5, 11, -5, -11, 16, 17], [6, 12, -6, -12, 14, 15]],
                  jnp.float32)
    f = jnp.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], jnp.float32)
    o = lax.conv_general_dilated(x[None, None], f[None, None], (1, 1), "VALID")[0, 0]
    m = lax.reduce_window(o, -jnp.inf, lax.max, (2, 2), (1, 1), "VALID")
    assert o.shape == (ca.output_size(6, 3),) * 2 == (4, 4)
    assert ca.solve(4, 3, k_max=4, s_max=4, pool=True) == [KSPD(2, 1, 0, 1)]  # M's pooling
    assert m.shape == (ca.output_size(4, 2, 1),) * 2 == (3, 3)
    np.testing.assert_array_equal(o, [[9, 39, -35, -44], [16, 46, -16, -23], [29, 71, -29, -48],
                                      [40, 88, -66, -93]])
    np.testing.assert_array_equal(m, [[46, 46, -16], [71, 71, -16], [88, 88, -29]])
    # dL/dF = X * dL/dO (valid, 6 with 4) is 3x3 like F; dL/dX = F (full) dL/dO is 6x6 like X.
    assert ca.output_size(6, 4) == 3 and ca.output_size(4, 3, p=2) == 6


def test_problem_set_004_q7_conv_as_a_sparse_dense_layer():
    """The conv as a matrix A with A x_flat = o_flat: [o_h o_w c_out, h w c_in], one nonzero per
    multiplication (p = 0), while the conv itself has only k_h k_w c_in c_out weights."""
    h, w, c_in, c_out, k, s = 7, 6, 2, 3, 3, 2
    x = jnp.ones((1, h, w, c_in))
    conv = lambda x: _conv(x, (k, k), c_out, (s, s), (0, 0), (1, 1))  # noqa: E731
    oh, ow = ca.output_size(h, k, s), ca.output_size(w, k, s)
    a = jax.jacfwd(conv)(x).reshape(oh * ow * c_out, h * w * c_in)  # [out, in]
    np.testing.assert_array_equal(a @ x.reshape(-1), conv(x).reshape(-1))
    assert int(jnp.count_nonzero(a)) == ca.conv_multiplications((oh, ow), k, c_in, c_out)
    assert a.size > ca.conv_params(k, c_in, c_out, bias=False)


def test_problem_set_004_q9():
    """205x205x10 -> 66x66x96, stride 3, p = 0: K = 10 (the problem set), but also K = 8 and 9."""
    sols = [c for c in ca.solve(205, 66, k_max=205, s_max=3) if c.s == 3]
    assert [c.k for c in sols] == [8, 9, 10]
    for c in sols:
        assert _lax_shapes((205, 205, 10), [Conv(96, c.k, 3)], abstract=True) == [(66, 66, 96)]
        assert _lax_size_1d(205, c.k, 3) == 66
    assert ca.conv_params(10, 10, 96) == _flax_params(10, 10, 96) == 96096  # right for K = 10
    assert ca.conv_multiplications(66, 10, 10, 96) == 66 * 66 * 96 * 10 * 10 * 10 == 418176000
    assert ca.conv_params(8, 10, 96) == _flax_params(8, 10, 96)  # what K = 8 would need instead
