"""MLP-Mixer (problem set 000 Q4): shapes, eq. 1 against a loop, permutations, parameter counts."""

import dataclasses
import doctest
import itertools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erf

from jaxnets.models import mixer

# Compiled once per shape: eager dispatch compiles every op, which is slow on a busy CPU.
apply = jax.jit(mixer.apply)
embed = jax.jit(mixer.embed)
token_mixing = jax.jit(mixer.token_mixing)
channel_mixing = jax.jit(mixer.channel_mixing)
mixer_layer = jax.jit(mixer.mixer_layer)
patchify = jax.jit(mixer.patchify, static_argnums=1)


def _tiny(dtype=jnp.float32, seed=0, scale=0.3, **overrides):
    """A small Mixer with every leaf perturbed (biases, gamma, beta too), so each term counts."""
    cfg = dict(image_size=(4, 6), in_channels=2, patch=2, hidden=3, tokens_mlp_dim=5,
               channels_mlp_dim=4, depth=2, num_classes=3) | overrides
    params = mixer.init(jax.random.key(seed), **cfg, dtype=dtype)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a) + scale * rng.normal(size=a.shape), a.dtype), params)


def _normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _layer(params, k):
    """mixer.layer without eager dispatch (numpy slices; mixer.layer is tested once)."""
    return jax.tree.map(lambda a: np.asarray(a)[k], params["layers"])


# ---- shapes ---------------------------------------------------------------------------------

def test_problem_set_q4a_64x64_case_shapes_at_every_stage():
    """64 x 64 input, Mixer output table 16 x 128: S = 16, C = 128, so P = sqrt(HW/S) = 16."""
    cfg = mixer.CONFIGS["problem-set-000"]
    assert cfg.image_size == (64, 64) and cfg.hidden == 128 and cfg.num_patches == 16
    assert cfg.patch == int(np.sqrt(64 * 64 / 16)) == 16
    params = mixer.init_from_config(jax.random.key(0), cfg)
    x = _normal(1, (2, 64, 64, 3))
    patches = patchify(x, 16)
    chex.assert_shape(patches, (2, 16, 16 * 16 * 3))
    X = embed(params["embed"], x)
    chex.assert_shape(X, (2, 16, 128))
    lp = mixer.layer(params, 0)
    chex.assert_shape([lp["W1"], lp["W2"], lp["W3"], lp["W4"]],
                      [(64, 16), (16, 64), (512, 128), (128, 512)])
    U = token_mixing(lp, X)
    Y = channel_mixing(lp, U)
    chex.assert_shape([U, Y, mixer_layer(lp, X)], (2, 16, 128))
    stages = jax.eval_shape(mixer.forward, params, x)
    chex.assert_shape([stages.X, stages.Y], (2, 16, 128))  # the problem set's 16 x 128 output
    chex.assert_shape(stages.pooled, (2, 128))
    chex.assert_shape(stages.logits, (2, 10))
    assert mixer.sizes(params) == (16, 3, 128, 16, 64, 512, 2, 10)


@pytest.mark.parametrize("h, w, p", [(64, 64, 16), (28, 28, 7), (28, 28, 4), (32, 16, 8),
                                     (9, 9, 3), (6, 10, 2), (5, 5, 5), (4, 4, 1)])
def test_number_of_patches_is_hw_over_p_squared(h, w, p):
    c_in, c = 2, 3
    params = jax.eval_shape(lambda k: mixer.init(
        k, image_size=(h, w), in_channels=c_in, patch=p, hidden=c, tokens_mlp_dim=4,
        channels_mlp_dim=5, depth=1, num_classes=2), jax.random.key(0))
    s = h * w // p**2
    assert mixer.sizes(params).num_patches == s
    x = _normal(1, (3, h, w, c_in))
    patches = np.asarray(patchify(x, p))
    chex.assert_shape(patches, (3, s, p * p * c_in))
    for k in range(s):  # patch k = i (W/P) + j is the block at grid row i, column j
        i, j = divmod(k, w // p)
        np.testing.assert_array_equal(patches[:, k],
                                      x[:, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(3, -1))
    chex.assert_shape(jax.eval_shape(mixer.apply, params, x), (3, 2))
    chex.assert_shape(jax.eval_shape(mixer.apply, params, x[0]), (2,))  # one image, no batch


def test_embedding_is_a_stride_p_convolution():
    params = _tiny(jnp.float32, image_size=(6, 8), patch=2)
    x = _normal(2, (2, 6, 8, 2))
    conv = jax.lax.conv_general_dilated(x, params["embed"]["W"], window_strides=(2, 2),
                                        padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    expected = conv.reshape(2, 12, 3) + params["embed"]["b"]  # [B, H/P, W/P, C] -> [B, S, C]
    np.testing.assert_allclose(embed(params["embed"], x), expected, rtol=1e-5, atol=1e-5)


# ---- eq. 1 against a loop over columns / rows -----------------------------------------------

def _ln(v, gamma, beta, eps=1e-6):
    return gamma * (v - v.mean()) / np.sqrt(v.var() + eps) + beta


def _gelu(v):
    return v * (1 + erf(v / np.sqrt(2))) / 2


def _token_mixing_loop(lp, X):
    """U_{*,i} = X_{*,i} + W2 GELU(W1 LN(X)_{*,i} + b1) + b2, column by column (numpy)."""
    lp = jax.tree.map(np.asarray, lp)
    Z = np.stack([_ln(row, lp["LN1"]["gamma"], lp["LN1"]["beta"]) for row in X])
    U = np.empty_like(X)
    for i in range(X.shape[1]):
        U[:, i] = X[:, i] + lp["W2"] @ _gelu(lp["W1"] @ Z[:, i] + lp["b1"]) + lp["b2"]
    return U


def _channel_mixing_loop(lp, U):
    """Y_{j,*} = U_{j,*} + W4 GELU(W3 LN(U)_{j,*} + b3) + b4, row by row (numpy)."""
    lp = jax.tree.map(np.asarray, lp)
    return np.stack([
        u + lp["W4"] @ _gelu(lp["W3"] @ _ln(u, lp["LN2"]["gamma"], lp["LN2"]["beta"]) + lp["b3"])
        + lp["b4"] for u in U])


class Eq1Test(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(s=st.integers(1, 9), c=st.integers(2, 8), d_s=st.integers(1, 7),
           d_c=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
    def test_mixing_mlps_equal_the_paper_loop(self, s, c, d_s, d_c, seed):
        with jax.enable_x64(True):
            rng = np.random.default_rng(seed)
            lp = jax.tree.map(lambda shape: jnp.asarray(rng.normal(size=shape)), {
                "LN1": {"gamma": (c,), "beta": (c,)}, "W1": (d_s, s), "b1": (d_s,),
                "W2": (s, d_s), "b2": (s,), "LN2": {"gamma": (c,), "beta": (c,)},
                "W3": (d_c, c), "b3": (d_c,), "W4": (c, d_c), "b4": (c,)},
                is_leaf=lambda v: isinstance(v, tuple))
            X = rng.normal(size=(s, c)) * 2
            U = self.variant(mixer.token_mixing)(lp, jnp.asarray(X))
            np.testing.assert_allclose(U, _token_mixing_loop(lp, X), rtol=1e-10, atol=1e-12)
            Y = self.variant(mixer.channel_mixing)(lp, U)
            np.testing.assert_allclose(Y, _channel_mixing_loop(lp, np.asarray(U)),
                                       rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(self.variant(mixer.mixer_layer)(lp, jnp.asarray(X)), Y,
                                       rtol=1e-12, atol=1e-12)


def test_forward_is_embed_layers_norm_pool_head(x64):
    params = _tiny(jnp.float64, 3)
    x = _normal(4, (2, 4, 6, 2), np.float64)
    Y = embed(params["embed"], x)
    for k in range(2):
        Y = mixer_layer(_layer(params, k), Y)
    Z = np.stack([[_ln(r, params["LN"]["gamma"], params["LN"]["beta"]) for r in y]
                  for y in np.asarray(Y)])
    logits = Z.mean(1) @ np.asarray(params["head"]["W"]) + np.asarray(params["head"]["b"])
    np.testing.assert_allclose(apply(params, x), logits, rtol=1e-12, atol=1e-12)


# ---- permutations of the patches ------------------------------------------------------------

def test_channel_mixing_commutes_with_permuting_patches_token_mixing_does_not():
    params = _tiny(jnp.float32, 5, image_size=(4, 8), patch=2, hidden=6, tokens_mlp_dim=7,
                   channels_mlp_dim=9)
    lp = _layer(params, 0)
    X = _normal(6, (3, 8, 6))  # [B, S, C]
    for perm in [np.random.default_rng(i).permutation(8) for i in range(5)]:
        np.testing.assert_allclose(channel_mixing(lp, X[:, perm]),
                                   channel_mixing(lp, X)[:, perm], rtol=1e-5, atol=1e-5)
    swap = np.array([1, 0, 2, 3, 4, 5, 6, 7])  # exchange patches 0 and 1
    permuted_after = token_mixing(lp, X)[:, swap]
    permuted_before = token_mixing(lp, X[:, swap])
    assert np.max(np.abs(permuted_before - permuted_after)) > 0.1
    # Token mixing is equivariant only when its weights are permuted along with the patches:
    # W1 -> W1 Q^T (columns), W2 -> Q W2 and b2 -> Q b2 (rows). Position lives in the weights.
    lp_q = lp | {"W1": lp["W1"][:, swap], "W2": lp["W2"][swap], "b2": lp["b2"][swap]}
    np.testing.assert_allclose(token_mixing(lp_q, X[:, swap]), permuted_after,
                               rtol=1e-5, atol=1e-5)


def _perm_matrix(pi):
    """[e_pi(1); ...; e_pi(n)] (0-based pi): (M A) row k is A row pi(k)."""
    return np.eye(len(pi))[list(pi)]


def test_problem_set_q4c_all_row_permutations_keeping_the_patches():
    """9 x 9 image, 3 x 3 patches: exactly the 3! = 6 block orders (identity included) keep the
    set of patches, checked over all 9! row permutations of a generic image with patchify."""
    A = np.arange(81, dtype=np.float64).reshape(9, 9)  # distinct pixels: a generic image
    code = np.random.default_rng(0).normal(size=9)  # patch -> number, injective in practice
    target = np.sort(np.asarray(mixer.patchify(A[:, :, None], 3)) @ code)
    perms = np.array(list(itertools.permutations(range(9))), dtype=np.int64)
    keeps = []
    for chunk in np.array_split(perms, 9):
        patches = np.asarray(mixer.patchify(jnp.asarray(A[chunk][..., None]), 3))  # [n, 9, 9]
        ok = np.all(np.isclose(np.sort(patches @ code, axis=1), target), axis=1)
        keeps.extend(map(tuple, chunk[ok]))
    blocks = [tuple(r for b in order for r in range(3 * b, 3 * b + 3))
              for order in itertools.permutations(range(3))]
    assert sorted(keeps) == sorted(blocks) and len(keeps) == 6  # the problem set lists 5


def test_problem_set_q4cd_channel_mixing_output_and_p_reverse():
    """U_modified = Q U for the 6 block orders, P_reverse = Q^T; P_reverse = P_1 (the problem set's
    (d)) only because that swap is an involution; a row swap inside a block changes the patches."""
    params = _tiny(jnp.float32, 7, image_size=(9, 9), in_channels=1, patch=3, hidden=6,
                   tokens_mlp_dim=4, channels_mlp_dim=12, depth=1)
    lp = _layer(params, 0)
    A = np.random.default_rng(1).normal(size=(9, 9)).astype(np.float32)

    def U_of(img):
        X = embed(params["embed"], jnp.asarray(img)[..., None])  # the 9 x 6 matrix X
        chex.assert_shape(X, (9, 6))
        return np.asarray(channel_mixing(lp, X))  # U, 9 x 6

    U = U_of(A)
    for order in itertools.permutations(range(3)):
        pi = [r for b in order for r in range(3 * b, 3 * b + 3)]  # pixel rows, as P_k
        U_mod = U_of(_perm_matrix(pi) @ A)
        q = [3 * order[k // 3] + k % 3 for k in range(9)]  # patch k of PA is patch q[k] of A
        Q = _perm_matrix(q)
        np.testing.assert_allclose(U_mod, Q @ U, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(Q.T @ U_mod, U, rtol=1e-5, atol=1e-5)  # P_reverse = Q^T
        if order == (0, 2, 1):  # the problem set's A_m1: P_1 = [e1; e2; e3; e7; e8; e9; e4; e5; e6]
            assert np.array_equal(Q.T, _perm_matrix(pi))  # P_reverse = P_1
        if order == (1, 2, 0):  # the problem set's A_m3: cyclic, P_reverse = P_3^T != P_3
            assert np.array_equal(Q.T, _perm_matrix(pi).T)
            assert not np.array_equal(Q.T, _perm_matrix(pi))
    U_mod = U_of(_perm_matrix([1, 0, 2, 3, 4, 5, 6, 7, 8]) @ A)  # swap pixel rows 1 and 2
    dist = np.abs(U_mod[:, None] - U[None]).max(-1)  # [9, 9] row distances
    assert dist.min(1)[:3].min() > 1e-2  # the first three rows of U_mod are no rows of U


# ---- parameter counts -----------------------------------------------------------------------

def _count(cfg: mixer.MixerConfig) -> int:
    """embed P^2 C_in C + C; per layer 2 LNs (4C) + token MLP (2 S D_S + D_S + S)
    + channel MLP (2 C D_C + D_C + C); final LN 2C; head C K + K."""
    (h, w), p, c = cfg.image_size, cfg.patch, cfg.hidden
    s, d_s, d_c, k = h * w // p**2, cfg.tokens_mlp_dim, cfg.channels_mlp_dim, cfg.num_classes
    per_layer = 4 * c + (2 * s * d_s + d_s + s) + (2 * c * d_c + d_c + c)
    return (p * p * cfg.in_channels * c + c) + cfg.depth * per_layer + 2 * c + (c * k + k)


PAPER_MILLIONS = {"S/32": 19.1, "S/16": 18.5, "B/32": 60.3, "B/16": 59.9, "L/32": 206.9,
                  "L/16": 208.2}  # Table 1 of Tolstikhin et al. 2021, rounded


@pytest.mark.parametrize("name", list(mixer.CONFIGS))
def test_exact_parameter_counts_of_named_configs(name):
    cfg = mixer.CONFIGS[name]
    shapes = jax.eval_shape(lambda k: mixer.init_from_config(k, cfg), jax.random.key(0))
    assert mixer.num_params(shapes) == _count(cfg)
    if name in PAPER_MILLIONS:
        assert abs(_count(cfg) / 1e6 - PAPER_MILLIONS[name]) < 0.051


def test_parameter_counts_by_hand():
    # S/16: S = 196, C = 512, D_S = 256, D_C = 2048, N = 8, 1000 classes
    assert _count(mixer.CONFIGS["S/16"]) == (
        768 * 512 + 512 + 8 * (4 * 512 + 2 * 196 * 256 + 256 + 196 + 2 * 512 * 2048 + 2048 + 512)
        + 2 * 512 + 512 * 1000 + 1000) == 18_528_264
    assert _count(mixer.CONFIGS["mnist/7"]) == (
        49 * 64 + 64 + 4 * (256 + 2 * 16 * 64 + 64 + 16 + 2 * 64 * 256 + 256 + 64)
        + 128 + 640 + 10) == 145_866
    assert _count(mixer.CONFIGS["mnist/4"]) == 160_782


def test_init_from_config_docstring_example_runs():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(mixer.init_from_config):
        runner.run(test)
    assert runner.summarize(verbose=False) == (0, 5)  # failed, attempted


def test_param_tree_layout():
    params = mixer.init_from_config(jax.random.key(0), mixer.CONFIGS["mnist/7"])
    n, c, s, d_s, d_c = 4, 64, 16, 64, 256
    expected = {
        "embed": {"W": (7, 7, 1, c), "b": (c,)},
        "layers": {"LN1": {"gamma": (n, c), "beta": (n, c)}, "W1": (n, d_s, s), "b1": (n, d_s),
                   "W2": (n, s, d_s), "b2": (n, s), "LN2": {"gamma": (n, c), "beta": (n, c)},
                   "W3": (n, d_c, c), "b3": (n, d_c), "W4": (n, c, d_c), "b4": (n, c)},
        "LN": {"gamma": (c,), "beta": (c,)},
        "head": {"W": (c, 10), "b": (10,)},
    }
    assert jax.tree.map(jnp.shape, params) == expected
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    for w, fan_in in [(params["embed"]["W"], 49), (params["layers"]["W1"], s),
                      (params["layers"]["W2"], d_s), (params["layers"]["W3"], c),
                      (params["layers"]["W4"], d_c), (params["head"]["W"], c)]:
        np.testing.assert_allclose(np.std(w), 1 / np.sqrt(fan_in), rtol=0.1)  # LeCun normal
        assert np.abs(w).max() <= 2 / np.sqrt(fan_in) / 0.8796  # truncated at 2 std
    assert dataclasses.asdict(mixer.CONFIGS["mnist/7"])["patch"] == 7


# ---- jit, vmap, gradients -------------------------------------------------------------------

def test_jit_and_vmap_over_examples_and_over_stacked_params():
    params = _tiny()
    x = _normal(8, (5, 4, 6, 2))
    out = mixer.apply(params, x)
    np.testing.assert_allclose(jax.jit(mixer.apply)(params, x), out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(mixer.apply, (None, 0))(params, x), out,
                               rtol=1e-5, atol=1e-5)
    models = [_tiny(seed=i) for i in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *models)
    swept = jax.jit(jax.vmap(mixer.apply, (0, None)))(stacked, x)
    chex.assert_shape(swept, (3, 5, 3))
    for i, p in enumerate(models):
        np.testing.assert_allclose(swept[i], apply(p, x), rtol=1e-5, atol=1e-5)


def test_loss_gradient_is_finite_and_reaches_every_leaf():
    params = mixer.init_from_config(jax.random.key(0), mixer.CONFIGS["mnist/7"])
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=8)
    value, grads = jax.jit(jax.value_and_grad(mixer.loss))(params, (x, y))
    assert np.isfinite(value) and 1.0 < value < 5.0
    chex.assert_trees_all_equal_structs(grads, params)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_check_grads_float64(x64):
    params = _tiny(jnp.float64, 9)
    x = _normal(10, (2, 4, 6, 2), np.float64)
    y = jnp.array([0, 2])
    # LN over C = 3 channels is strongly curved: central differences need eps well below 1e-4
    jax.test_util.check_grads(jax.jit(lambda p: mixer.loss(p, (x, y))), (params,), order=1,
                              modes=["rev", "fwd"], eps=1e-6)
    jax.test_util.check_grads(jax.jit(lambda x: mixer.apply(params, x)), (x,), order=1,
                              modes=["rev"],
                              eps=1e-6)


def test_loss_and_metrics(x64):
    params = _tiny(jnp.float64, 11)
    x = _normal(12, (6, 4, 6, 2), np.float64)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    logits = np.asarray(apply(params, x))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    m = mixer.metrics(params, (x, y))
    assert set(m) == {"loss", "accuracy"}
    np.testing.assert_allclose(m["loss"], -logp[np.arange(6), np.asarray(y)].mean(), rtol=1e-12)
    np.testing.assert_allclose(mixer.loss(params, (x, y)), m["loss"], rtol=1e-14)
    np.testing.assert_allclose(m["accuracy"], np.mean(logits.argmax(-1) == np.asarray(y)),
                               rtol=1e-6)


def test_flops_are_affine_in_the_number_of_patches():
    """XLA's FLOP count at S = 16, 64, 256 (fixed P, C, D_S, D_C): F(S) ~ a S + b (Q4(b)),
    at least the matmul formula; the scan form is undercounted (its body is counted once)."""
    c, d_s, d_c, n, k, b = 8, 8, 16, 3, 4, 2
    flops, scan_flops = [], []
    for side in (8, 16, 32):
        params = jax.eval_shape(lambda key, side=side: mixer.init(
            key, image_size=(side, side), in_channels=1, patch=2, hidden=c, tokens_mlp_dim=d_s,
            channels_mlp_dim=d_c, depth=n, num_classes=k), jax.random.key(0))
        x = jax.ShapeDtypeStruct((b, side, side, 1), jnp.float32)
        for unroll, out in ((True, flops), (False, scan_flops)):
            compiled = jax.jit(mixer.apply, static_argnames="unroll").lower(
                params, x, unroll=unroll).compile()
            out.append(compiled.cost_analysis()["flops"])
        s = (side // 2) ** 2
        matmuls = b * (2 * s * 4 * c + n * 4 * s * c * (d_s + d_c) + 2 * c * k)
        assert matmuls <= flops[-1]  # plus LN, GELU (erf), pooling: elementwise, also ~ S
        assert scan_flops[-1] < flops[-1]
    f16, f64, f256 = flops
    # affine up to XLA's fusion choices, which move the elementwise count by a few per cent
    np.testing.assert_allclose(f256 - f64, 4 * (f64 - f16), rtol=0.05)


# ---- errors ---------------------------------------------------------------------------------

def test_images_not_multiples_of_the_patch_are_rejected():
    with pytest.raises(ValueError, match=r"multiples of the patch size P = 7, got H x W = "
                                         r"30 x 28 \(H mod P = 2, W mod P = 0\)"):
        mixer.init(jax.random.key(0), **dataclasses.asdict(mixer.CONFIGS["mnist/7"])
                   | {"image_size": (30, 28)})
    params = mixer.init_from_config(jax.random.key(0), mixer.CONFIGS["mnist/7"])
    with pytest.raises(ValueError, match=r"P = 7, got H x W = 28 x 27"):
        mixer.apply(params, jnp.ones((2, 28, 27, 1)))
    with pytest.raises(ValueError, match=r"P = 3, got H x W = 10 x 9"):
        mixer.patchify(jnp.ones((10, 9, 1)), 3)
    with pytest.raises(ValueError, match=r"built for S = 16 patches .* 35 x 35 image with "
                                         r"P = 7 has S = HW/P\^2 = 25"):
        mixer.apply(params, jnp.ones((2, 35, 35, 1)))


def test_wrong_channels_and_bad_batches_are_rejected():
    params = mixer.init_from_config(jax.random.key(0), mixer.CONFIGS["mnist/7"])
    x, y = jnp.ones((2, 28, 28, 1)), jnp.array([0, 9])
    with pytest.raises(ValueError, match=r"C_in = 1 channels .* \(7, 7, 1, 64\) .* "
                                         r"got shape \(2, 28, 28, 3\)"):
        mixer.apply(params, jnp.ones((2, 28, 28, 3)))
    for fn in (mixer.loss, mixer.metrics):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 10\), got values in "
                                             r"\[0, 10\]"):
            fn(params, (x, jnp.array([0, 10])))
        with pytest.raises(ValueError, match=r"\[-1, 0\]"):
            fn(params, (x, jnp.array([-1, 0])))
        with pytest.raises(TypeError, match="labels must be integers"):
            fn(params, (x, jnp.array([0.0, 1.0])))
        with pytest.raises(ValueError, match=r"y must have shape \[B\]"):
            fn(params, (x, jnp.array([0, 1, 2])))
        with pytest.raises(ValueError, match=r"x must be a batch of images \[B, H, W, C_in\]"):
            fn(params, (x[0], y))
        with pytest.raises(TypeError, match="pair"):
            fn(params, x)
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        mixer.init(jax.random.key(0), **dataclasses.asdict(mixer.CONFIGS["mnist/7"])
                   | {"depth": 0})


# ---- the benchmark, small ---------------------------------------------------------------------

def test_benchmark_mixer_runs_small_and_writes_its_json(tmp_path, capsys):
    from experiments import benchmark_mixer

    out = tmp_path / "bench.json"
    benchmark_mixer.main(["--passes", "forward", "--num-patches", "1", "4", "--patch", "2",
                          "--hidden", "4", "--tokens-mlp-dim", "3", "--channels-mlp-dim", "5",
                          "--depth", "2", "--batch", "2", "--repeats", "2", "--json", str(out)])
    assert "least squares" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert {"date", "machine", "jax", "config", "results", "affine_fits"} <= set(res)
    assert [r["S"] for r in res["results"]] == [1, 4]
    for r in res["results"]:
        assert r["forward"]["flops"] > r["forward"]["scan_flops"] > 0  # 2 layers vs 1 counted
    with pytest.raises(ValueError, match="perfect squares, got 8"):
        benchmark_mixer.run(benchmark_mixer.Config(num_patches=(8,)))


def test_benchmark_mixer_counts_on_the_cpu_where_the_platform_reports_no_flops():
    """On an H200 (jax 0.11) neither the lowered nor the compiled stage has a cost analysis:
    the benchmark then counts the CPU compile of the same function, and says so."""
    from experiments import benchmark_mixer

    class Stage:
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            return self.cost

    assert benchmark_mixer._flops(Stage(None)) is None
    assert benchmark_mixer._flops(Stage([])) is None
    assert benchmark_mixer._flops(Stage([{"flops": 6.0}])) == 6.0
    counts = benchmark_mixer._flop_counts(Stage({"flops": 3.0}), Stage({"flops": 2.0}), None)
    assert counts == {"hlo_flops": 3.0, "flops": 2.0, "flops_source": "platform"}
    lowered, compiled = benchmark_mixer._cpu_stages(lambda a: a @ a, (jnp.ones((4, 4)),))
    counts = benchmark_mixer._flop_counts(Stage(None), Stage(None),
                                          lambda: (lowered, compiled))
    assert counts["flops_source"] == "cpu" and counts["hlo_flops"] >= 128
    assert counts["flops"] == benchmark_mixer._flops(compiled) >= 128
    with pytest.raises(RuntimeError, match="no FLOP count"):
        benchmark_mixer._flop_counts(Stage(None), Stage(None), lambda: (Stage(None),) * 2)
