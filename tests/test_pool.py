"""Max / average pooling: numpy-loop forward references and hand backwards against jax.vjp."""

import math
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_eqns
from hypothesis import assume, given
from hypothesis import strategies as st

from jaxnets.layers.pool import (
    avg_pool,
    avg_pool_backward,
    max_pool,
    max_pool_backward,
    max_pool_manual,
)

GEOMETRY = ("window", "strides", "padding")


def _explicit_pads(x_hw, window, strides, padding):
    """((lo, hi), (lo, hi)) written out independently of lax.padtype_to_pads."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for n, k, s in zip(x_hw, window, strides, strict=True):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return padding


def _pool_reference(x, window, strides, padding, kind, count_include_pad=True):
    """Direct loops over b, p, q, c on a numpy-padded input."""
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw) = window, strides
    (lo_h, hi_h), (lo_w, hi_w) = _explicit_pads(x.shape[1:3], window, strides, padding)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)), constant_values=fill)
    real = np.pad(np.ones(x.shape[1:3]), ((lo_h, hi_h), (lo_w, hi_w)))
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for b in range(x.shape[0]):
        for p in range(ho):
            for q in range(wo):
                for c in range(x.shape[3]):
                    win = xp[b, p * sh:p * sh + kh, q * sw:q * sw + kw, c]
                    if kind == "max":
                        y[b, p, q, c] = win.max()
                    else:
                        n = kh * kw if count_include_pad else real[p * sh:p * sh + kh,
                                                                   q * sw:q * sw + kw].sum()
                        y[b, p, q, c] = win.sum() / n
    return y


def _first_argmax_backward(dy, x, window, strides):
    """VALID max-pool backward by loops: each dy goes to the first maximum in row-major order."""
    x, dy = np.asarray(x), np.asarray(dy)
    (kh, kw), (sh, sw) = window, strides
    dx = np.zeros_like(x)
    for b in range(x.shape[0]):
        for p in range(dy.shape[1]):
            for q in range(dy.shape[2]):
                for c in range(x.shape[3]):
                    k = int(np.argmax(x[b, p * sh:p * sh + kh, q * sw:q * sw + kw, c]))
                    dx[b, p * sh + k // kw, q * sw + k % kw, c] += dy[b, p, q, c]
    return dx


@st.composite
def pool_cases(draw):
    """Window up to 4 x 4, strides 1..4 (often < window: overlapping), any padding kind."""
    window = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kind = draw(st.sampled_from(["VALID", "SAME", "explicit"]))
    if kind == "explicit":
        padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1)))
                        for k in window)
    else:
        padding = kind
    x_hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    pads = _explicit_pads(x_hw, window, strides, padding)
    assume(all(n + lo + hi >= k for n, (lo, hi), k in zip(x_hw, pads, window, strict=True)))
    shape = (draw(st.integers(1, 3)), *x_hw, draw(st.integers(1, 3)))
    return shape, window, strides, padding


def _draw_x(rng, shape, ties):
    """Normal draws, or small integers (0, 1, 2) so that most windows hold tied maxima."""
    if ties:
        return jnp.asarray(rng.integers(0, 3, size=shape).astype(np.float64))
    return jnp.asarray(rng.normal(size=shape))


class PoolBackwardTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(case=pool_cases(), ties=st.booleans(), seed=st.integers(0, 2**31 - 1))
    def test_max_pool_backward_equals_autodiff(self, case, ties, seed):
        """max_pool_backward, and max_pool_manual's vjp, equal autodiff's, ties included."""
        shape, window, strides, padding = case
        with jax.enable_x64(True):
            rng = np.random.default_rng(seed)
            x = _draw_x(rng, shape, ties)
            y, pullback = jax.vjp(lambda x: max_pool(x, window, strides, padding), x)
            dy = jnp.asarray(rng.normal(size=y.shape))
            manual = self.variant(max_pool_backward, static_argnames=GEOMETRY)(
                dy, x, window=window, strides=strides, padding=padding)
            chex.assert_trees_all_close(manual, pullback(dy)[0], rtol=1e-12, atol=1e-12)

            # max_pool_manual: max_pool's values, and jax.vjp runs the hand-derived routing
            def value_and_vjp(x, dy):
                y_m, pull_m = jax.vjp(lambda x: max_pool_manual(x, window, strides, padding), x)
                return y_m, pull_m(dy)[0]

            y_m, dx_m = self.variant(value_and_vjp)(x, dy)
            np.testing.assert_array_equal(y_m, y)
            chex.assert_trees_all_close(dx_m, pullback(dy)[0], rtol=1e-12, atol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    @given(case=pool_cases(), count_include_pad=st.booleans(), seed=st.integers(0, 2**31 - 1))
    def test_avg_pool_backward_equals_autodiff(self, case, count_include_pad, seed):
        shape, window, strides, padding = case
        with jax.enable_x64(True):
            rng = np.random.default_rng(seed)
            x = jnp.asarray(rng.normal(size=shape))
            y, pullback = jax.vjp(
                lambda x: avg_pool(x, window, strides, padding, count_include_pad), x)
            dy = jnp.asarray(rng.normal(size=y.shape))
            manual = self.variant(
                avg_pool_backward,
                static_argnames=("x_shape", *GEOMETRY, "count_include_pad"))(
                dy, x_shape=shape, window=window, strides=strides, padding=padding,
                count_include_pad=count_include_pad)
            chex.assert_trees_all_close(manual, pullback(dy)[0], rtol=1e-12, atol=1e-12)


# Fixed geometries so that overlap, SAME and explicit padding are always covered.
FIXED = [
    ((2, 6, 5, 3), (3, 3), (1, 1), "VALID"),  # heavy overlap
    ((1, 7, 7, 2), (3, 2), (2, 1), "SAME"),  # overlap along both axes, uneven SAME pads
    ((2, 5, 4, 1), (2, 3), (3, 2), ((1, 1), (2, 0))),  # stride > window along H
    ((1, 4, 4, 1), (2, 2), None, "VALID"),  # strides default to the window
    # non-overlapping windows (strides == window: max_pool_backward's tiled routing)
    ((2, 7, 5, 2), (2, 2), (2, 2), "VALID"),  # a trailing row and column no window reads
    ((1, 7, 8, 2), (3, 2), (3, 2), "SAME"),
    ((2, 6, 5, 1), (2, 3), (2, 3), ((1, 0), (2, 1))),  # padded rows no window reads either
]


def test_non_overlapping_windows_route_by_tiling():
    """strides == window: no interior-padded lax.pad (one per window offset otherwise)."""

    x = jnp.ones((1, 6, 6, 1))
    for window, out, pads in ((2, 3, 0), (3, 2, 9)):  # strides 2: the second overlaps
        jaxpr = jax.make_jaxpr(lambda dy, x, k=window: max_pool_backward(dy, x, k, 2))(
            jnp.ones((1, out, out, 1)), x)
        interior = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "pad"
                    and any(c[2] > 0 for c in e.params["padding_config"])]
        assert len(interior) == pads


@pytest.mark.parametrize("shape, window, strides, padding", FIXED)
@pytest.mark.parametrize("ties", [False, True])
def test_backwards_on_fixed_geometries(x64, shape, window, strides, padding, ties):
    rng = np.random.default_rng(3)
    x = _draw_x(rng, shape, ties)
    y, pullback = jax.vjp(lambda x: max_pool(x, window, strides, padding), x)
    dy = jnp.asarray(rng.normal(size=y.shape))
    chex.assert_trees_all_close(max_pool_backward(dy, x, window, strides, padding),
                                pullback(dy)[0], rtol=1e-12, atol=1e-12)
    for cip in (True, False):
        _, pullback = jax.vjp(lambda x, cip=cip: avg_pool(x, window, strides, padding, cip), x)
        chex.assert_trees_all_close(avg_pool_backward(dy, shape, window, strides, padding, cip),
                                    pullback(dy)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad"])
@pytest.mark.parametrize("window, strides, padding", [
    ((2, 2), (2, 2), "VALID"),
    ((3, 2), (1, 2), "SAME"),
    ((3, 3), (2, 1), ((1, 2), (0, 2))),
])
def test_forward_matches_numpy_loops(x64, kind, window, strides, padding):
    x = np.random.default_rng(4).normal(size=(2, 5, 6, 3))
    if kind == "max":
        y = max_pool(jnp.asarray(x), window, strides, padding)
    else:
        y = avg_pool(jnp.asarray(x), window, strides, padding,
                     count_include_pad=kind == "avg")
    ref = _pool_reference(x, window, strides, padding, kind[:3], kind == "avg")
    np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_convention_matches_flax(x64, count_include_pad):
    """count_include_pad has flax.linen.avg_pool's meaning (and True is both defaults)."""
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 5, 6, 3)))
    ours = avg_pool(x, (3, 2), (2, 1), "SAME", count_include_pad=count_include_pad)
    theirs = nn.avg_pool(x, (3, 2), (2, 1), "SAME", count_include_pad=count_include_pad)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    np.testing.assert_allclose(avg_pool(x, 3, 1, "SAME"), nn.avg_pool(x, (3, 3), (1, 1), "SAME"),
                               rtol=1e-14)


def test_count_include_pad_corner_value(x64):
    """All-ones 3x3 input, 3x3 window, SAME: the corner window holds 4 real ones of 9."""
    x = jnp.ones((1, 3, 3, 1))
    assert float(avg_pool(x, 3, 1, "SAME")[0, 0, 0, 0]) == pytest.approx(4 / 9)
    assert float(avg_pool(x, 3, 1, "SAME", count_include_pad=False)[0, 0, 0, 0]) == 1.0


def test_ties_all_zeros_first_in_window_order(x64):
    """All-zero 4x4, 3x3 window, stride 1, SAME (1 pad each side): every window is a tie.

    The first real element of window (p, q) in row-major order is (max(p-1, 0), max(q-1, 0)),
    so rows 0..3 receive 2, 1, 1, 0 outputs (likewise columns) and dx = outer([2,1,1,0], same).
    Spreading over all tied elements would instead give every element a share.
    """
    x = jnp.zeros((1, 4, 4, 1))
    counts = np.array([2.0, 1.0, 1.0, 0.0])
    expected = np.outer(counts, counts)[None, :, :, None]
    dy = jnp.ones((1, 4, 4, 1))
    _, pullback = jax.vjp(lambda x: max_pool(x, 3, 1, "SAME"), x)
    np.testing.assert_array_equal(pullback(dy)[0], expected)  # JAX's own choice
    np.testing.assert_array_equal(max_pool_backward(dy, x, 3, 1, "SAME"), expected)


def test_ties_integers_with_repeats_go_to_first_argmax(x64):
    """Random {0, 1, 2} inputs: JAX and max_pool_backward both give each dy to the first max."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.integers(0, 3, size=(2, 7, 6, 2)).astype(np.float64))
    window, strides = (3, 2), (1, 2)
    y, pullback = jax.vjp(lambda x: max_pool(x, window, strides), x)
    dy = jnp.asarray(rng.normal(size=y.shape))
    ref = _first_argmax_backward(dy, x, window, strides)
    np.testing.assert_allclose(pullback(dy)[0], ref, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(max_pool_backward(dy, x, window, strides), ref,
                               rtol=1e-14, atol=1e-15)
    # each output routes to exactly one element: gradient mass is conserved
    assert float(jnp.sum(max_pool_backward(jnp.ones_like(y), x, window, strides))) == y.size


def test_minus_inf_input_ties_with_padding_like_jax(x64):
    """x = -inf ties with the -inf padding; a window whose first element is padding drops dy."""
    x = jnp.full((1, 3, 3, 1), -jnp.inf)
    dy = jnp.ones((1, 3, 3, 1))
    _, pullback = jax.vjp(lambda x: max_pool(x, 3, 1, "SAME"), x)
    expected = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])[None, :, :, None]
    np.testing.assert_array_equal(pullback(dy)[0], expected)
    np.testing.assert_array_equal(max_pool_backward(dy, x, 3, 1, "SAME"), expected)


def test_manual_forward_under_grad_is_one_reduction_keeping_winners():
    """Under jax.vjp, max_pool_manual's forward is one variadic reduction (maxima and arg-max
    together, no reduce_window) and the pullback keeps the int32 winners, not x."""
    x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 6, 6, 3)), jnp.float32)
    for window, strides in ((2, 2), (3, 1)):
        f = partial(max_pool_manual, window=window, strides=strides)
        eqns = list(all_eqns(jax.make_jaxpr(lambda x, f=f: jax.vjp(f, x)[0])(x).jaxpr))
        names = [e.primitive.name for e in eqns]
        assert "reduce_window_max" not in names and "argmax" not in names
        assert [len(e.outvars) for e in eqns if e.primitive.name == "reduce"] == [2]
        y, pullback = jax.vjp(f, x)
        kept = jax.tree.leaves(pullback)
        assert [(r.dtype, r.shape) for r in kept] == [(jnp.int32, y.shape)]


def test_manual_nan_and_minus_inf_windows(x64):
    """max_pool_manual under jax.vjp: NaN windows give NaN (as max_pool) and route dy to the
    NaN (with two, to one of them); an all -inf window routes dy to its first element."""
    x = np.arange(32, dtype=np.float64).reshape(1, 4, 8, 1) % 5
    x[0, 1, 1, 0] = x[0, 0, 3, 0] = x[0, 1, 2, 0] = np.nan  # window (0, 1) holds two NaNs
    x[0, 2:4, 4:6, 0] = -np.inf  # window (1, 2): all -inf
    x = jnp.asarray(x)
    y_m, pull_m = jax.vjp(lambda x: max_pool_manual(x, 2), x)
    np.testing.assert_array_equal(y_m, max_pool(x, 2))
    assert np.isnan(y_m[0, 0, :2, 0]).all() and y_m[0, 1, 2, 0] == -np.inf
    dy = jnp.arange(1.0, 9.0).reshape(1, 2, 4, 1)
    dx = pull_m(dy)[0]
    np.testing.assert_array_equal(dx, max_pool_backward(dy, x, 2))
    assert dx[0, 1, 1, 0] == dy[0, 0, 0, 0] and dx[0, 2, 4, 0] == dy[0, 1, 2, 0]
    assert sorted([float(dx[0, 0, 3, 0]), float(dx[0, 1, 2, 0])]) == [0.0, float(dy[0, 0, 1, 0])]
    assert float(jnp.sum(dx)) == float(jnp.sum(dy))  # each window's dy lands once
    # overlapping windows (the transposed-slice routing), at most one NaN per window
    x = np.array(jnp.where(jnp.isnan(x), 0.0, x))
    x[0, 1, 1, 0] = x[0, 3, 6, 0] = np.nan
    _, pull_m = jax.vjp(lambda x: max_pool_manual(x, 2, 1), jnp.asarray(x))
    dy = jnp.asarray(np.random.default_rng(9).normal(size=(1, 3, 7, 1)))
    np.testing.assert_array_equal(pull_m(dy)[0], _first_argmax_backward(dy, x, (2, 2), (1, 1)))


def test_manual_maxima_are_the_winners_values(x64):
    """Windows of signed zeros: under jax.vjp the maximum is its first element, bit for bit
    (the sign included), and equals max_pool's as a number."""
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.choice([-0.0, 0.0, -1.0], size=(2, 6, 6, 3)))
    for strides in (2, 1):
        y_m, _ = jax.vjp(lambda x, s=strides: max_pool_manual(x, 2, s), x)
        np.testing.assert_array_equal(y_m, max_pool(x, 2, strides))  # -0.0 == 0.0
        views = np.stack([np.asarray(x)[:, i:i + 5:strides, j:j + 5:strides]
                          for i in range(2) for j in range(2)])
        first = np.take_along_axis(views, np.argmax(views, axis=0)[None], axis=0)[0]
        np.testing.assert_array_equal(np.signbit(y_m), np.signbit(first))


@pytest.mark.parametrize("window, strides, padding", [(2, 2, "VALID"), (3, 1, "SAME"),
                                                      ((2, 3), (1, 2), ((1, 0), (0, 2)))])
def test_manual_second_derivatives_equal_autodiffs(x64, window, strides, padding):
    """Reverse over reverse through max_pool_manual (a gradient penalty) equals autodiff's
    through max_pool; the winners have no derivative, so max_pool_backward's dx has none in x."""
    x = jnp.asarray(np.random.default_rng(13).normal(size=(2, 6, 7, 2)))

    def penalty(pool):
        inner = jax.grad(lambda x: jnp.sum(jnp.sin(pool(x, window, strides, padding)) ** 2))
        return jax.grad(lambda x: jnp.sum(inner(x) ** 2))

    chex.assert_trees_all_close(jax.jit(penalty(max_pool_manual))(x), penalty(max_pool)(x),
                                rtol=1e-12, atol=1e-12)
    dy = jnp.ones(max_pool(x, window, strides, padding).shape)
    d_dx = jax.grad(lambda x: jnp.sum(max_pool_backward(dy, x, window, strides, padding) * x))(x)
    np.testing.assert_array_equal(d_dx, max_pool_backward(dy, x, window, strides, padding))


IMPL_GEOMETRIES = [
    ((2, 6, 8, 3), (2, 2), None, "VALID"),  # non-overlapping: "fused" routes by tiling
    ((1, 7, 8, 2), (3, 2), (3, 2), "SAME"),  # non-overlapping, padded
    ((2, 6, 5, 2), (3, 3), (1, 2), "VALID"),  # overlapping
    ((1, 7, 7, 2), (3, 2), (2, 1), ((1, 2), (0, 1))),
]


@pytest.mark.parametrize("ties, jit", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("shape, window, strides, padding", IMPL_GEOMETRIES)
def test_every_impl_gives_the_values_and_gradients_of_the_maths(x64, shape, window, strides,
                                                                padding, ties, jit):
    """max_pool_manual and max_pool_backward with impl None, "xla" and "fused": max_pool's
    values and jax.grad through max_pool (autodiff), ties included, float64; second
    derivatives (a gradient penalty) equal autodiff's without ties, and each other's with
    them (there autodiff's may differ: its JVP of a window's maximum need not take the first
    maximum's tangent)."""
    rng = np.random.default_rng(14)
    x = _draw_x(rng, shape, ties)
    y = max_pool(x, window, strides, padding)
    w = jnp.asarray(rng.normal(size=y.shape))

    def loss(pool, **kw):
        return lambda x: jnp.sum(w * jnp.sin(pool(x, window, strides, padding, **kw)))

    def penalty(f):
        return jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2))

    grad_ref = jax.grad(loss(max_pool))(x)
    run = jax.jit if jit else (lambda f: f)
    penalty_ref = (run(penalty(loss(max_pool_manual, impl="xla"))) if ties
                   else penalty(loss(max_pool)))(x)
    for impl in (None, "xla", "fused"):
        np.testing.assert_array_equal(
            run(partial(max_pool_manual, window=window, strides=strides, padding=padding,
                        impl=impl))(x), y)
        f = loss(max_pool_manual, impl=impl)
        chex.assert_trees_all_close(run(jax.grad(f))(x), grad_ref, rtol=1e-12, atol=1e-12)
        chex.assert_trees_all_close(run(penalty(f))(x), penalty_ref, rtol=1e-12, atol=1e-12)
        backward = partial(max_pool_backward, window=window, strides=strides, padding=padding,
                           impl=impl)
        chex.assert_trees_all_close(run(backward)(w * jnp.cos(y), x), grad_ref, rtol=1e-12,
                                    atol=1e-12)


def test_unknown_impl_raises():
    x = jnp.ones((1, 4, 4, 1))
    for fn, call in (("max_pool_manual", lambda: max_pool_manual(x, 2, impl="rows")),
                     ("max_pool_backward",
                      lambda: max_pool_backward(jnp.ones((1, 2, 2, 1)), x, 2, impl="rows"))):
        with pytest.raises(ValueError, match=rf"{fn}: impl must be None or one of "
                                             r"\('xla', 'fused'\), got 'rows'"):
            call()


@pytest.mark.parametrize("window, strides", [(2, None), (3, 1), ((3, 2), (3, 2))])
def test_default_impl_is_fused_and_xla_keeps_x(window, strides):
    """impl=None is "fused" (the same jaxprs, for max_pool_manual under jax.grad and for
    max_pool_backward); "xla" takes the maxima with reduce_window, keeps x and routes dy
    through the transposed window views (interior-padded pads) even for non-overlapping
    windows."""
    x = jnp.asarray(np.random.default_rng(15).normal(size=(2, 6, 6, 3)), jnp.float32)
    dy = jnp.ones(max_pool(x, window, strides).shape)

    def grad_jaxpr(**kw):
        return jax.make_jaxpr(jax.grad(lambda x: jnp.sum(jnp.sin(
            max_pool_manual(x, window, strides, **kw)))))(x)

    def backward_jaxpr(**kw):
        return jax.make_jaxpr(partial(max_pool_backward, window=window, strides=strides,
                                      **kw))(dy, x)

    assert str(grad_jaxpr()) == str(grad_jaxpr(impl="fused")) != str(grad_jaxpr(impl="xla"))
    assert str(backward_jaxpr()) == str(backward_jaxpr(impl="fused")) != str(
        backward_jaxpr(impl="xla"))
    f = partial(max_pool_manual, window=window, strides=strides, impl="xla")
    names = [e.primitive.name for e in all_eqns(
        jax.make_jaxpr(lambda x: jax.vjp(f, x)[0])(x).jaxpr)]
    assert "reduce_window_max" in names and "reduce" not in names
    y, pullback = jax.vjp(f, x)
    assert [(r.dtype, r.shape) for r in jax.tree.leaves(pullback)] == [(x.dtype, x.shape)]
    if strides in (None, window):  # non-overlapping: interior-padded pads only with "xla"
        kh, kw = (window, window) if isinstance(window, int) else window
        for impl, pads in ((None, 0), ("xla", kh * kw)):
            interior = [e for e in all_eqns(backward_jaxpr(impl=impl).jaxpr)
                        if e.primitive.name == "pad"
                        and any(c[2] > 0 for c in e.params["padding_config"])]
            assert len(interior) == pads


def test_problem_set_002_pool_output_sizes():
    """Q7.1: 5x5 non-overlapping (stride 5) pool of 125x125 -> 25x25; at stride 1 it is 121.

    Q8.2: on 32x32, k = s = 4 gives 8x8; k = 8, s = 4 gives 7x7.
    """
    assert max_pool(jnp.zeros((1, 125, 125, 1)), 5).shape == (1, 25, 25, 1)
    assert max_pool(jnp.zeros((1, 125, 125, 1)), 5, strides=1).shape == (1, 121, 121, 1)
    assert avg_pool(jnp.zeros((1, 32, 32, 64)), 4).shape == (1, 8, 8, 64)
    assert max_pool(jnp.zeros((1, 32, 32, 64)), 8, strides=4).shape == (1, 7, 7, 64)


@pytest.mark.parametrize("x_shape, kwargs, match", [
    ((4, 4, 1), dict(window=2), r"x must be 4-D \[B, H, W, C\], got shape \(4, 4, 1\)"),
    ((1, 3, 5, 1), dict(window=(4, 2)),
     r"larger than the padded input along H: 3 \+ 0 \+ 0 = 3 < 4"),
    ((1, 5, 3, 1), dict(window=(2, 5), padding=((0, 0), (1, 0))),
     r"along W: 3 \+ 1 \+ 0 = 4 < 5"),
    ((1, 4, 4, 1), dict(window=0), r"window must be a positive int .* got 0"),
    ((1, 4, 4, 1), dict(window=(2, 2, 2)), r"window must be .* got \(2, 2, 2\)"),
    ((1, 4, 4, 1), dict(window=2, strides=(1, -1)), r"strides must be .* got \(1, -1\)"),
    ((1, 4, 4, 1), dict(window=2, padding="FULL"), r"padding must be 'VALID', 'SAME'"),
    ((1, 4, 4, 1), dict(window=2, padding=((2, 0), (0, 0))),
     r"along H must satisfy 0 <= pad < window 2, got \(lo, hi\) = \(2, 0\)"),
])
@pytest.mark.parametrize("pool", [max_pool, avg_pool])
def test_bad_arguments_are_named(pool, x_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pool(jnp.ones(x_shape), **kwargs)


def test_backwards_reject_wrong_dy_shape():
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(ValueError, match=r"dy must have the pooled shape \(1, 2, 2, 1\).*"
                                         r"got \(1, 3, 3, 1\)"):
        max_pool_backward(jnp.ones((1, 3, 3, 1)), x, 2)
    with pytest.raises(ValueError, match=r"avg_pool_backward: dy must have the pooled shape "
                                         r"\(1, 4, 4, 1\)"):
        avg_pool_backward(jnp.ones((1, 2, 2, 1)), x.shape, 2, strides=1, padding="SAME")
    with pytest.raises(ValueError, match="x must be 4-D"):
        avg_pool_backward(jnp.ones((1, 2, 2, 1)), (4, 4, 1), 2)
