"""2-D convolution: forward against its definition, hand-derived backward against autodiff."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_eqns
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxnets import layers
from jaxnets.kernels import conv_rows
from jaxnets.layers import conv2d, conv2d_backward, conv2d_manual, conv_config


@partial(jax.jit, static_argnames=("stride", "padding", "dilation"))
def conv_by_definition(x, F, b, stride, padding, dilation):
    """O[n,i,j,o] = b[o] + sum_{a,c} X_pad[n, s i + d a, s j + d c, :] @ F[a, c]: slices and
    matmuls only, so its jax.vjp is an independent reference for the hand-derived backward.
    Jitted: one program compiles faster than its k_h k_w slices and products one by one."""
    cfg = conv_config(x.shape, F.shape, stride, padding, dilation)
    (plh, phh), (plw, phw) = cfg.padding
    xp = jnp.pad(x, ((0, 0), (plh, phh), (plw, phw), (0, 0)))
    (sh, sw), (dh, dw), (oh, ow) = cfg.stride, cfg.dilation, cfg.out_hw
    out = b
    for a in range(F.shape[0]):
        for c in range(F.shape[1]):
            window = xp[:, dh * a: dh * a + sh * (oh - 1) + 1: sh,
                        dw * c: dw * c + sw * (ow - 1) + 1: sw, :]  # [B, H_o, W_o, C_in]
            out = out + window @ F[a, c]
    return out


pair = st.tuples(st.integers(1, 3), st.integers(1, 3))
paddings = st.one_of(
    st.sampled_from(["SAME", "VALID"]), st.integers(0, 2),
    st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
              st.tuples(st.integers(0, 2), st.integers(0, 2))))


@st.composite
def conv_cases(draw):
    """A valid configuration: shapes, stride, padding, dilation."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, dilation, padding = draw(pair), draw(st.tuples(st.integers(1, 2), st.integers(1, 2))), \
        draw(paddings)
    # the input is at least as large as the dilated kernel, so every configuration is valid
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, 12))
    w = draw(st.integers(dilation[1] * (kw - 1) + 1, 12))
    b, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return (b, h, w, c_in), (kh, kw, c_in, c_out), stride, padding, dilation


def _arrays(seed, x_shape, F_shape):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=s)) for s in (x_shape, F_shape, F_shape[3:]))


def primitives(jaxpr) -> list[str]:
    """Names of every primitive in a jaxpr, sub-jaxprs (pjit, custom_vjp, scan...) included."""
    return [eqn.primitive.name for eqn in all_eqns(jaxpr)]


# (x [B, H, W, C_in], F [k_h, k_w, C_in, C_out], padding, backward by "rows" or "conv")
STRIDE_ONE = [
    ((3, 32, 32, 1), (5, 5, 1, 6), "VALID", "rows"),  # LeNet's C1
    ((3, 14, 14, 6), (5, 5, 6, 16), "VALID", "rows"),  # LeNet's C3
    ((2, 9, 7, 1), (3, 2, 1, 4), "SAME", "rows"),
    ((2, 8, 9, 3), (3, 3, 3, 4), "SAME", "rows"),
    ((2, 5, 6, 1), (3, 3, 1, 2), 1, "rows"),
    ((2, 6, 5, 1), (2, 3, 1, 2), ((1, 2), (0, 1)), "rows"),
    ((2, 6, 7, 2), (2, 3, 2, 5), ((1, 2), (0, 1)), "rows"),
    ((1, 4, 4, 1), (4, 6, 1, 3), ((0, 0), (1, 1)), "rows"),  # kernel as wide as the padded input
    ((1, 4, 4, 1), (1, 1, 1, 3), "VALID", "rows"),
    ((2, 6, 40, 1), (3, 3, 1, 8), "VALID", "rows"),  # W_p = 40 > 8 k_w, blocks of 19 + 2
    ((2, 5, 40, 1), (2, 2, 1, 3), "VALID", "conv"),  # one block (W_o = 39 = 3 x 13): too wide
    ((2, 5, 40, 3), (2, 2, 3, 3), "VALID", "conv"),
    ((2, 6, 6, 8), (3, 3, 8, 16), 1, "conv"),  # C_in C_out = 128 > 96
]


@pytest.mark.parametrize("x_shape, F_shape, padding, backward", STRIDE_ONE)
def test_stride_one_paths_are_taken_and_right(x64, x_shape, F_shape, padding, backward):
    """Stride 1: under jax.grad no convolution in a single-channel forward, none at all where
    the row products pay (else two in the backward: dL/dF, dL/dX); evaluation (no grad) is
    lax's convolution; values and gradients equal the definition's, also vmapped over stacked
    kernels and over stacked inputs (where the forward's fusion barrier becomes a select)."""
    x, F, b = _arrays(7, x_shape, F_shape)
    fwd = jax.make_jaxpr(lambda x, F: conv2d_manual(x, F, padding=padding))(x, F)
    assert primitives(fwd.jaxpr).count("conv_general_dilated") == 1
    grad = jax.make_jaxpr(jax.grad(lambda F: conv2d_manual(x, F, padding=padding).sum()))(F)
    assert primitives(grad.jaxpr).count("conv_general_dilated") == (
        0 if backward == "rows" else (0 if F_shape[2] == 1 else 1) + 2)
    O_ref, pullback = jax.vjp(lambda x, F, b: conv_by_definition(x, F, b, 1, padding, 1), x, F, b)
    O_m, pullback_m = jax.vjp(lambda x, F, b: conv2d_manual(x, F, b, padding=padding), x, F, b)
    chex.assert_trees_all_close(O_m, O_ref, atol=1e-12, rtol=1e-12)
    chex.assert_trees_all_close(conv2d_manual(x, F, b, padding=padding), O_ref, atol=1e-12,
                                rtol=1e-12)
    dO = jnp.asarray(np.random.default_rng(8).normal(size=O_ref.shape))
    chex.assert_trees_all_close(pullback_m(dO), pullback(dO), atol=1e-11, rtol=1e-11)

    def vjp_m(x, F):
        return jax.vjp(lambda x, F: conv2d_manual(x, F, padding=padding), x, F)[1](dO)

    def vjp_ref(x, F):
        return jax.vjp(lambda x, F: conv_by_definition(x, F, 0.0, 1, padding, 1), x, F)[1](dO)

    Fs, xs = jnp.stack([F, 2 * F, -F]), jnp.stack([x, -x])
    chex.assert_trees_all_close(jax.jit(jax.vmap(vjp_m, (None, 0)))(x, Fs),
                                jax.jit(jax.vmap(vjp_ref, (None, 0)))(x, Fs), atol=1e-11,
                                rtol=1e-11)
    chex.assert_trees_all_close(jax.jit(jax.vmap(vjp_m, (0, None)))(xs, F),
                                jax.jit(jax.vmap(vjp_ref, (0, None)))(xs, F), atol=1e-11,
                                rtol=1e-11)


@pytest.mark.parametrize("x_shape, F_shape, padding", [
    ((2, 32, 32, 1), (5, 5, 1, 6), "VALID"),  # LeNet's C1: W_o = 28
    ((2, 14, 14, 6), (5, 5, 6, 16), "VALID"),  # LeNet's C3: W_o = 10
    ((2, 7, 12, 2), (3, 2, 2, 3), ((1, 2), (0, 1))),  # W_o = 12, asymmetric padding
])
def test_every_row_block_gives_the_definition(x64, x_shape, F_shape, padding):
    """The row products with the output columns in blocks of J, for every J dividing W_o
    (J = W_o: one block; J = 1: one column per block), give the definition's O, dL/dX and
    dL/dF."""
    x, F, _ = _arrays(3, x_shape, F_shape)
    cfg = conv_config(x.shape, F.shape, 1, padding, 1)
    O, pullback = jax.vjp(lambda x, F: conv_by_definition(x, F, 0.0, 1, padding, 1), x, F)
    dO = jnp.asarray(np.random.default_rng(4).normal(size=O.shape))
    dx_ref, dF_ref = pullback(dO)

    @partial(jax.jit, static_argnums=2)
    def rows(x, F, J):
        R, T = conv_rows.row_slab(x, F.shape, cfg, J), conv_rows.band(F, J)
        return ((R @ T.T).reshape(O.shape), conv_rows.rows_input_grad(dO, T, F.shape, cfg, J),
                conv_rows.rows_filter_grad(dO, R, F.shape, J))

    wo = cfg.out_hw[1]
    for J in [J for J in range(1, wo + 1) if wo % J == 0]:
        chex.assert_trees_all_close(rows(x, F, J), (O, dx_ref, dF_ref), atol=1e-11, rtol=1e-11)


def test_row_block_rule():
    """J is the smallest divisor of W_o giving at least ROWS_MIN_COLUMNS = 40 columns J C_out,
    else W_o: LeNet's C1 (W_o 28, 6 channels) 7, C3 (10, 16) 5."""
    assert conv_rows.ROWS_MIN_COLUMNS == 40
    assert [conv_rows.row_block(wo, c) for wo, c in
            ((28, 6), (10, 16), (13, 3), (12, 50), (12, 4))] == [7, 5, 13, 1, 12]


def test_single_channel_forward_is_stored_once_on_cpu():
    """Under jax.grad, XLA:CPU gets the shifted forward as a conditional's result (a fusion
    boundary: its consumers read it instead of recomputing its k_h k_w multiply-adds);
    without grad there is no conditional."""
    cpu = jax.devices("cpu")[0]  # the test suite may run on a GPU: compile for the CPU
    x, F = (jax.device_put(jnp.ones(s, jnp.float32), cpu) for s in ((2, 12, 12, 1), (5, 5, 1, 6)))

    def loss(F, x):  # x an argument: a constant x would let XLA fold the predicate
        return jnp.sum(jax.nn.relu(conv2d_manual(x, F)) ** 2)

    assert jax.jit(jax.grad(loss)).lower(F, x).compile().as_text().count(" conditional(") == 1
    assert " conditional(" not in jax.jit(loss).lower(F, x).compile().as_text()
    # an empty batch has no element to test: no cond, and dL/dF = 0
    np.testing.assert_array_equal(jax.grad(loss)(F, x[:0]), np.zeros(F.shape))


def test_conv2d_manual_refuses_mixed_dtypes():
    x, F = jnp.ones((1, 6, 6, 1), jnp.float32), jnp.ones((3, 3, 1, 2), jnp.float16)
    with pytest.raises(TypeError, match="x and F must have one dtype, got float32 and float16"):
        conv2d_manual(x, F)


def test_bias_of_another_dtype_promotes_as_conv2d():
    """float32 x and F with a float64 b: conv2d's promoted O + b, and dL/db in b's dtype."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(12)
        x, F = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((2, 8, 8, 1), (3, 3, 1, 4)))
        b = jnp.asarray(rng.normal(size=4))
        O = conv2d_manual(x, F, b)
        assert O.dtype == conv2d(x, F, b).dtype == jnp.float64
        np.testing.assert_allclose(O, conv2d(x, F, b), rtol=1e-6)
        dF, db = jax.grad(lambda F, b: jnp.sum(conv2d_manual(x, F, b) ** 2), (0, 1))(F, b)
        ref_dF, ref_db = jax.grad(lambda F, b: jnp.sum(conv2d(x, F, b) ** 2), (0, 1))(F, b)
        assert (dF.dtype, db.dtype) == (jnp.float32, jnp.float64)
        np.testing.assert_allclose(db, ref_db, rtol=1e-5)
        np.testing.assert_allclose(dF, ref_dF, rtol=1e-5)


def test_bias_gradient_in_two_stages_is_the_sum():
    """conv2d_manual's dL/db (rows of dO, then its columns) is the sum over n, i, j of dL/dO,
    and dL/dO reaches the convolution unchanged, for each kind of backward (float64)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(11)
        for x_shape, F_shape in (((3, 12, 9, 1), (5, 5, 1, 6)), ((2, 7, 8, 3), (3, 3, 3, 4)),
                                 ((2, 9, 9, 8), (3, 3, 8, 16))):
            x, F, b = (jnp.asarray(rng.normal(size=s)) for s in (x_shape, F_shape, F_shape[3:]))
            O, pull = jax.vjp(conv2d_manual, x, F, b)
            dO = jnp.asarray(rng.normal(size=O.shape))
            dx, dF, db = pull(dO)
            np.testing.assert_allclose(db, np.asarray(dO).sum((0, 1, 2)), rtol=1e-12)
            ref_dx, ref_dF = jax.vjp(conv2d, x, F)[1](dO)
            np.testing.assert_allclose(dx, ref_dx, rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(dF, ref_dF, rtol=1e-11, atol=1e-12)


# impl switch: (x [B, H, W, C_in], F [k_h, k_w, C_in, C_out], config, impls to run, also
# without jit (op by op, slow with many ops))
IMPL_CASES = [
    ((2, 12, 32, 1), (5, 5, 1, 6), {}, (None, "xla", "rows"), True),  # LeNet's C1 width
    ((2, 14, 14, 6), (5, 5, 6, 16), {}, (None, "xla", "rows"), False),  # LeNet's C3
    ((2, 5, 40, 1), (2, 2, 1, 3), {}, (None, "xla", "rows"), False),  # default shifted + convs
    ((2, 8, 9, 3), (3, 3, 3, 4), dict(padding="SAME"), (None, "xla", "rows"), True),
    ((2, 6, 6, 8), (3, 3, 8, 16), dict(padding=1), (None, "xla", "rows"), False),  # rows forced
    ((2, 9, 8, 3), (3, 2, 3, 4), dict(stride=2, padding=((1, 0), (0, 1))), (None, "xla"), True),
    ((1, 9, 9, 1), (3, 3, 1, 2), dict(dilation=2), (None, "xla"), False),
]


@pytest.mark.parametrize("x_shape, F_shape, cfg, impls, jit", [
    (*case[:4], jit) for case in IMPL_CASES for jit in (True, False) if jit or case[4]])
def test_every_impl_gives_the_values_and_gradients_of_the_maths(x64, x_shape, F_shape, cfg,
                                                                impls, jit):
    """conv2d_manual with impl None, "xla" and "rows": O and jax.grad (x, F, b) of a loss equal
    the plain maths' (conv_by_definition under autodiff), in float64."""
    x, F, b = _arrays(21, x_shape, F_shape)
    full = dict(stride=1, padding="VALID", dilation=1) | cfg
    O_ref = jax.jit(partial(conv_by_definition, **full))(x, F, b)
    w = jnp.asarray(np.random.default_rng(22).normal(size=O_ref.shape))

    def loss_ref(x, F, b):
        return jnp.sum(w * jnp.sin(conv_by_definition(x, F, b, **full)))

    grads_ref = jax.jit(jax.grad(loss_ref, (0, 1, 2)))(x, F, b)
    for impl in impls:
        def loss(x, F, b, impl=impl):
            return jnp.sum(w * jnp.sin(conv2d_manual(x, F, b, impl=impl, **cfg)))

        run = jax.jit if jit else (lambda f: f)
        chex.assert_trees_all_close(run(partial(conv2d_manual, impl=impl, **cfg))(x, F, b),
                                    O_ref, atol=1e-12, rtol=1e-12)
        chex.assert_trees_all_close(run(jax.grad(loss, (0, 1, 2)))(x, F, b), grads_ref,
                                    atol=1e-11, rtol=1e-11)


def test_unknown_or_unsupported_impl_raises():
    x, F = jnp.ones((1, 6, 6, 1)), jnp.ones((3, 3, 1, 2))
    with pytest.raises(ValueError, match=r"conv2d_manual: impl must be None or one of "
                                         r"\('xla', 'rows'\), got 'fft'"):
        conv2d_manual(x, F, impl="fft")
    with pytest.raises(ValueError, match=r"impl='rows' needs stride 1 and no dilation, got "
                                         r"stride \(2, 2\), dilation \(1, 1\)"):
        conv2d_manual(x, F, stride=2, impl="rows")
    assert layers.conv.IMPLS == ("xla", "rows")


def _grad_jaxpr(x, F, b, impl="default", **cfg):
    """The jaxpr text of jax.grad of a loss of conv2d_manual (impl left out for "default")."""
    kw = {} if impl == "default" else dict(impl=impl)
    loss = lambda x, F, b: jnp.sum(jnp.sin(conv2d_manual(x, F, b, **kw, **cfg)))  # noqa: E731
    return str(jax.make_jaxpr(jax.grad(loss, (0, 1, 2)))(x, F, b))


@pytest.mark.parametrize("x_shape, F_shape, cfg, default", [
    ((2, 32, 32, 1), (5, 5, 1, 6), {}, "rows"),  # LeNet's C1
    ((2, 14, 14, 6), (5, 5, 6, 16), {}, "rows"),  # LeNet's C3
    ((2, 8, 9, 3), (3, 3, 3, 4), dict(padding="SAME"), "rows"),
    ((2, 6, 40, 1), (3, 3, 1, 8), {}, "rows"),  # blocks of 19 + 2 columns
    ((2, 6, 6, 8), (3, 3, 8, 16), dict(padding=1), "xla"),  # C_in C_out = 128 > 96
    ((2, 5, 40, 3), (2, 2, 3, 3), {}, "xla"),  # W_p = 40 > 8 k_w
    ((2, 9, 8, 3), (3, 2, 3, 4), dict(stride=2), "xla"),
    ((2, 5, 40, 1), (2, 2, 1, 3), {}, "shifted"),  # one block too wide: shifted forward only
])
def test_default_impl_is_the_per_shape_choice(x_shape, F_shape, cfg, default):
    """impl=None is conv_rows.plan's choice: under jax.grad the very jaxpr of impl="rows" where
    the row products pay; elsewhere that of impl="xla" apart from the bias (summed in two stages
    by default, by autodiff's sum with "xla"); for a single channel where they do not pay, the
    shifted forward (no convolution, a cond on CPU) and the convolutions' gradients."""
    x, F, b = _arrays(0, x_shape, F_shape)
    cfg_ = conv_config(x.shape, F.shape, **cfg)
    want = {"rows": ("shifted" if F_shape[2] == 1 else "rows", "rows"), "xla": ("xla", "xla"),
            "shifted": ("shifted", "xla")}[default]
    assert conv_rows.plan(cfg_, F.shape) == want
    jaxpr = _grad_jaxpr(x, F, b, **cfg)
    if default == "rows":
        assert jaxpr == _grad_jaxpr(x, F, b, "rows", **cfg)
        assert jaxpr != _grad_jaxpr(x, F, b, "xla", **cfg)
    nobias = jax.make_jaxpr(jax.grad(lambda F: jnp.sum(jnp.sin(conv2d_manual(x, F, **cfg)))))(F)
    xla = jax.make_jaxpr(jax.grad(lambda F: jnp.sum(jnp.sin(conv2d_manual(x, F, impl="xla",
                                                                          **cfg)))))(F)
    assert (str(nobias) == str(xla)) == (default == "xla")
    convs = primitives(nobias.jaxpr).count("conv_general_dilated")
    assert convs == {"rows": 0, "xla": 3, "shifted": 2}[default]
    assert ("cond" in primitives(nobias.jaxpr)) == (F_shape[2] == 1 and default != "xla")
    assert primitives(xla.jaxpr).count("conv_general_dilated") == 3


class Conv2dTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(case=conv_cases(), seed=st.integers(0, 2**31 - 1))
    def test_backward_equals_autodiff_float64(self, case, seed):
        x_shape, F_shape, stride, padding, dilation = case
        cfg = dict(stride=stride, padding=padding, dilation=dilation)
        with jax.enable_x64(True):
            x, F, b = _arrays(seed, x_shape, F_shape)
            O = self.variant(lambda x, F, b: conv2d(x, F, b, **cfg))(x, F, b)
            O_ref, pullback = jax.vjp(
                lambda x, F, b: conv_by_definition(x, F, b, stride, padding, dilation), x, F, b)
            chex.assert_trees_all_close(O, O_ref, atol=1e-12, rtol=1e-12)
            dO = jnp.asarray(np.random.default_rng(seed + 1).normal(size=O.shape))
            grads = self.variant(lambda dO, x, F: conv2d_backward(dO, x, F, **cfg))(dO, x, F)
            chex.assert_trees_all_close(tuple(grads), pullback(dO), atol=1e-12, rtol=1e-12)
            # conv2d_manual: the same values, and jax.vjp runs the hand-derived backward
            O_m, pullback_m = jax.vjp(
                self.variant(lambda x, F, b: conv2d_manual(x, F, b, **cfg)), x, F, b)
            chex.assert_trees_all_close(O_m, O_ref, atol=1e-12, rtol=1e-12)
            chex.assert_trees_all_close(pullback_m(dO), pullback(dO), atol=1e-12, rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    @given(kernel=pair, hw=st.tuples(st.integers(4, 40), st.integers(4, 40)), padding=paddings,
           c_in=st.sampled_from([1, 1, 2, 3]), c_out=st.integers(1, 4),
           seed=st.integers(0, 2**31 - 1))
    def test_stride_one_paths_equal_the_definition(self, kernel, hw, padding, c_in, c_out, seed):
        """conv2d_manual with stride 1 (for C_in = 1 shifted multiply-adds forward; both
        gradients, and for C_in > 1 the forward, as matrix products over rows where
        ``conv_rows.rows_pay``, else as convolutions): values and vjp equal the definition's."""
        with jax.enable_x64(True):
            x, F, b = _arrays(seed, (2, *hw, c_in), (*kernel, c_in, c_out))
            O_ref, pullback = jax.vjp(
                lambda x, F, b: conv_by_definition(x, F, b, 1, padding, 1), x, F, b)
            O_m, pullback_m = jax.vjp(
                self.variant(lambda x, F, b: conv2d_manual(x, F, b, padding=padding)), x, F, b)
            chex.assert_trees_all_close(O_m, O_ref, atol=1e-12, rtol=1e-12)
            dO = jnp.asarray(np.random.default_rng(seed + 1).normal(size=O_ref.shape))
            chex.assert_trees_all_close(pullback_m(dO), pullback(dO), atol=1e-11, rtol=1e-11)

    @chex.variants(with_jit=True, without_jit=True)
    def test_backward_equals_lax_autodiff(self):
        """Against jax.vjp of lax.conv_general_dilated itself, on fixed configurations."""
        for x_shape, F_shape, stride, padding, dilation in [
            ((2, 9, 8, 3), (3, 3, 3, 4), 1, "SAME", 1),
            ((2, 10, 9, 2), (3, 2, 2, 3), (2, 3), "VALID", 1),
            ((1, 11, 11, 2), (3, 3, 2, 2), 2, ((1, 2), (0, 1)), (2, 1)),
            ((3, 32, 32, 1), (5, 5, 1, 6), 1, "VALID", 1),  # LeNet's first layer
        ]:
            cfg = dict(stride=stride, padding=padding, dilation=dilation)
            with jax.enable_x64(True):
                x, F, b = _arrays(0, x_shape, F_shape)
                O, pullback = jax.vjp(lambda x, F, b, cfg=cfg: conv2d(x, F, b, **cfg), x, F, b)
                dO = jnp.asarray(np.random.default_rng(1).normal(size=O.shape))
                grads = self.variant(
                    lambda dO, x, F, cfg=cfg: conv2d_backward(dO, x, F, **cfg))(dO, x, F)
                chex.assert_trees_all_close(tuple(grads), pullback(dO), atol=1e-12, rtol=1e-12)

    def test_check_grads(self):
        with jax.enable_x64(True):
            x, F, b = _arrays(3, (2, 7, 6, 2), (3, 2, 2, 3))
            check_grads(lambda x, F, b: conv2d(x, F, b, stride=2, padding=1, dilation=(1, 2)),
                        (x, F, b), order=1, modes=("rev",))

    def test_backward_where_xla_autodiff_crashes(self):
        """jax.grad of lax's conv aborts XLA:CPU (jax 0.10.2) here; the hand-derived backward,
        which dilates dL/dO with lax.pad instead of lhs_dilation, runs and is right."""
        x_shape, F_shape, cfg = (1, 3, 4, 3), (3, 2, 3, 2), dict(stride=(3, 2), padding=1,
                                                                  dilation=(2, 1))
        with jax.enable_x64(True):
            x, F, b = _arrays(5, x_shape, F_shape)
            O, pullback = jax.vjp(lambda x, F, b: conv_by_definition(x, F, b, **cfg), x, F, b)
            dO = jnp.ones_like(O)
            chex.assert_trees_all_close(tuple(conv2d_backward(dO, x, F, **cfg)), pullback(dO),
                                        atol=1e-12)

    def test_problem_set_004_q6_chain(self):
        """Problem set 004 Q6: conv -> 2x2 max pool (stride 1) -> MSE against the identity; the
        chain of hand-derived backward passes equals jax.grad of the loss w.r.t. F."""
        with jax.enable_x64(True):
            X = jnp.asarray([[1, 7, -1, -7, 10, 11], [2, 8, 0, 0, 12, 13], [3, 9, 0, 0, 0, 0],
                             [4, 10, -4, -10, 0, 0], [5, 11, -5, -11, 16, 17],
                             [6, 12, -6, -12, 14, 15]], jnp.float64)[None, :, :, None]
            F = jnp.asarray([[1, 0, -1], [2, 0, -2], [1, 0, -1]], jnp.float64)[:, :, None, None]
            target = jnp.eye(3)[None, :, :, None]

            def loss(F):
                M = layers.max_pool(conv2d(X, F), 2, strides=1)
                return jnp.mean((M - target) ** 2)

            O = conv2d(X, F)
            M = layers.max_pool(O, 2, strides=1)
            dM = 2 * (M - target) / M.size
            dO = layers.max_pool_backward(dM, O, 2, strides=1)
            dF = conv2d_backward(dO, X, F).dF
            chex.assert_trees_all_close(dF, jax.grad(loss)(F), atol=1e-12)
            assert dO.shape == O.shape == (1, 4, 4, 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=(2, 5, 5), F=(3, 3, 1, 1)), r"x must be \[B, H, W, C_in\]"),
    (dict(x=(2, 5, 5, 2), F=(3, 3, 1, 1)), r"x has 2 channels but F \(3, 3, 1, 1\)"),
    (dict(x=(2, 4, 5, 1), F=(3, 3, 1, 1), dilation=2), r"dilated kernel 5 \(k=3, d=2\) exceeds "
     r"the padded input 4 \(i=4, padding 0\+0\) along H"),
    (dict(x=(2, 5, 5, 1), F=(3, 3, 1, 1), stride=0), "stride must be a positive int"),
    (dict(x=(2, 5, 5, 1), F=(3, 3, 1, 1), padding="FULL"), "padding must be 'SAME', 'VALID'"),
    (dict(x=(2, 5, 5, 1), F=(3, 3, 1, 1), padding=((1, -1), (0, 0))), "explicit padding"),
])
def test_bad_configurations_raise(kwargs, match):
    x = jnp.zeros(kwargs.pop("x"))
    F = jnp.zeros(kwargs.pop("F"))
    with pytest.raises(ValueError, match=match):
        conv2d(x, F, **kwargs)


def test_bad_gradient_shape_raises():
    x, F = jnp.zeros((2, 6, 6, 1)), jnp.zeros((3, 3, 1, 2))
    with pytest.raises(ValueError, match=r"dO must have shape \(2, 4, 4, 2\)"):
        conv2d_backward(jnp.zeros((2, 4, 4, 1)), x, F)
