"""jaxnets.theory.constructions: sigmoid -> tanh nets (problem set 002 Q4), interpolation with N - 1
hidden units (Q5.3 ReLU, Q5.4 sigmoid), a conv layer as a dense matrix and the parameter counts
(problem set 004 Q7), each against an independent computation in float64; every claim passes.

Inputs come from numpy, so no test compiles a random-number kernel."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.functional import heaviside, relu, sigmoid
from jaxnets.layers import conv2d, dense
from jaxnets.theory import constructions as C
from jaxnets.theory.conv_arith import conv_multiplications

pytestmark = pytest.mark.usefixtures("x64")


def _rand(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _net(seed, widths, scale=2.0):
    return [{"W": scale * _rand(seed + 2 * n, a, b), "b": _rand(seed + 2 * n + 1, b)}
            for n, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))]


# --------------------------------------------------------------------------------- claims


@pytest.mark.parametrize("claim", C.CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured
    assert (outcome.stated_value is None) == (outcome.computed is None)


def test_claim_names_are_unique():
    assert len({c.name for c in C.CLAIMS}) == len(C.CLAIMS)


# --------------------------------------------------------------------- mlp, sigmoid -> tanh


def test_mlp_is_the_composition():
    layers = _net(0, (3, 4, 2))
    x = _rand(9, 5, 3)
    by_hand = np.tanh(np.asarray(x) @ layers[0]["W"] + layers[0]["b"]) @ layers[1]["W"] \
        + layers[1]["b"]
    np.testing.assert_allclose(C.mlp(layers, x, jnp.tanh), by_hand, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("widths", [(1, 1), (3, 5, 2), (4, 7, 6, 3), (2, 8, 8, 8, 8, 1)])
def test_sigmoid_to_tanh_same_function(widths):
    layers = _net(len(widths), widths)
    x = _rand(1, 50, widths[0])
    ys = C.mlp(layers, x, sigmoid)
    yt = C.mlp(C.sigmoid_to_tanh(layers), x, jnp.tanh)
    assert float(jnp.max(jnp.abs(yt - ys)) / jnp.max(jnp.abs(ys))) < 1e-13
    if len(widths) > 2:  # a tanh net with the sigmoid's own weights is a different function
        assert float(jnp.max(jnp.abs(C.mlp(layers, x, jnp.tanh) - ys))) > 1e-2


def test_sigmoid_to_tanh_one_hidden_layer_is_the_seeds_formula():
    """Problem set 002 Q4, entrywise: w1~ = w1 / 2 (biases too), w2~_kj = w2_kj / 2 for j != 0,
    w2~_k0 = sum_{l=1..M} w2_kl / 2 + w2_k0; and its compact form with B (M+1) x (M+1)."""
    D, M, K = 3, 5, 2
    (l1, l2) = _net(0, (D, M, K))
    (t1, t2) = C.sigmoid_to_tanh([l1, l2])
    np.testing.assert_array_equal(t1["W"], l1["W"] / 2)
    np.testing.assert_array_equal(t1["b"], l1["b"] / 2)
    np.testing.assert_array_equal(t2["W"], l2["W"] / 2)
    np.testing.assert_allclose(t2["b"], l2["b"] + l2["W"].sum(0) / 2, rtol=1e-15)
    # the problem set's matrices: w2 is K x (M+1) with the bias in column 0
    w2 = np.concatenate([np.asarray(l2["b"])[:, None], np.asarray(l2["W"]).T], axis=1)
    B = np.zeros((M + 1, M + 1))
    B[:, 0] = 1
    compact = w2 / 2 + w2 @ B / 2
    np.testing.assert_allclose(compact[:, 0], t2["b"], rtol=1e-14)
    np.testing.assert_allclose(compact[:, 1:], np.asarray(t2["W"]).T, rtol=1e-15)
    B_seed = np.zeros((M + 1, K))  # "the same dimensions as w2^T"
    assert (w2 @ B_seed).shape == (K, K) != w2.shape  # not conformable with w2 / 2


def test_sigmoid_to_tanh_single_linear_layer_unchanged():
    (layer,) = _net(0, (3, 2))
    (out,) = C.sigmoid_to_tanh([layer])
    np.testing.assert_array_equal(out["W"], layer["W"])
    np.testing.assert_array_equal(out["b"], layer["b"])


@pytest.mark.parametrize("layers, match", [
    ([], "non-empty"),
    ([{"W": jnp.ones((2, 3))}], "'W' and 'b'"),
    ([{"W": jnp.ones((2, 3)), "b": jnp.ones(2)}], r"b \[d_out\]"),
    ([{"W": jnp.ones((2, 3)), "b": jnp.ones(3)}, {"W": jnp.ones((4, 1)), "b": jnp.ones(1)}],
     "takes 4 inputs"),
])
def test_bad_layers_raise(layers, match):
    with pytest.raises(ValueError, match=match):
        C.sigmoid_to_tanh(layers)
    with pytest.raises(ValueError, match=match):
        C.mlp(layers, jnp.ones(2), jnp.tanh)


# ------------------------------------------------------------------------- interpolation


def _relative_miss(layers, x, f, phi):
    h = np.abs(np.asarray(phi(dense(layers[0], x))))
    scale = h @ np.abs(np.asarray(layers[1]["W"])) + np.abs(np.asarray(layers[1]["b"]))
    return float(np.max(np.abs(np.asarray(C.mlp(layers, x, phi)) - f)) / np.max(scale))


def test_interpolation_matrix_entries():
    t, c = _rand(0, 4), _rand(1, 3)
    M = C.interpolation_matrix(t, c, jnp.tanh)
    expect = [[math.tanh(t[i] - c[j]) for j in range(3)] + [1.0] for i in range(4)]
    np.testing.assert_allclose(M, expect, rtol=1e-15)
    with pytest.raises(ValueError, match="centers"):
        C.interpolation_matrix(t, c[:2], jnp.tanh)


@pytest.mark.parametrize("N, n, m", [(2, 1, 1), (7, 1, 1), (15, 1, 3), (10, 4, 2)])
def test_relu_interpolant_hits_every_point(N, n, m):
    x, f, w = _rand(N, N, n), _rand(N + 1, N, m), _rand(N + 2, n)
    layers = C.relu_interpolant(x, f, w)
    assert layers[0]["W"].shape == (n, N - 1) and layers[1]["W"].shape == (N - 1, m)
    assert _relative_miss(layers, x, f, relu) < 1e-14
    # the problem set's M: upper triangular, diagonal (eps, ..., eps, 1) with eps = min gap
    t = np.sort(np.asarray(x @ w))[::-1]
    delta = np.min(t[:-1] - t[1:])
    M = np.asarray(C.interpolation_matrix(jnp.asarray(t), jnp.asarray(t[:-1] - delta), relu))
    assert np.all(np.tril(M, -1) == 0)
    np.testing.assert_allclose(np.diag(M), [delta] * (N - 1) + [1], rtol=1e-9)


def test_relu_interpolant_any_eps_up_to_the_gap_and_not_beyond():
    x, f = jnp.array([[0.0], [1.0], [1.5], [3.0]]), _rand(0, 4, 1)
    w = jnp.ones(1)
    for eps in (0.5, 0.1, 1e-3):  # min gap 0.5
        assert _relative_miss(C.relu_interpolant(x, f, w, eps), x, f, relu) < 1e-14
    t = jnp.array([3.0, 1.5, 1.0, 0.0])
    M = C.interpolation_matrix(t, t[:-1] - 0.6, relu)  # eps > gap: below the diagonal
    assert float(M[2, 1]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="eps"):
        C.relu_interpolant(x, f, w, 0.6)
    with pytest.raises(ValueError, match="eps"):
        C.relu_interpolant(x, f, w, 0.0)


def test_relu_interpolant_is_piecewise_linear_with_kinks_at_t_minus_eps():
    x, f = jnp.array([[0.0], [1.0], [1.5], [3.0]]), jnp.array([[1.0], [-2.0], [0.5], [4.0]])
    layers = C.relu_interpolant(x, f, jnp.ones(1), eps=0.25)
    np.testing.assert_allclose(-layers[0]["b"], [2.75, 1.25, 0.75])  # t_j - eps, t decreasing
    s = jnp.linspace(-1.0, 4.0, 501)[:, None]
    y = np.asarray(C.mlp(layers, s, relu))[:, 0]
    curvature = np.abs(np.diff(y, 2))
    kinks = np.flatnonzero(curvature > 1e-9)
    assert set(np.round(np.asarray(s)[kinks + 1, 0], 2)) <= {2.75, 1.25, 0.75}


def test_relu_interpolant_ignores_point_order():
    x, f, w = _rand(0, 6, 2), _rand(1, 6, 1), _rand(2, 2)
    perm = np.array([3, 0, 5, 1, 4, 2])
    a, b = C.relu_interpolant(x, f, w), C.relu_interpolant(x[perm], f[perm], w)
    probe = _rand(3, 20, 2)
    np.testing.assert_allclose(C.mlp(a, probe, relu), C.mlp(b, probe, relu), rtol=1e-12)


@pytest.mark.parametrize("args, match", [
    ((jnp.ones(3), jnp.ones((3, 1)), jnp.ones(1)), r"x \[N, n\]"),
    ((jnp.ones((3, 2)), jnp.ones((4, 1)), jnp.ones(2)), r"x \[N, n\]"),
    ((jnp.ones((3, 2)), jnp.ones((3, 1)), jnp.ones(3)), r"w \[n\]"),
    ((jnp.ones((1, 1)), jnp.ones((1, 1)), jnp.ones(1)), "N >= 2"),
    ((jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.ones((2, 1)), jnp.ones(2)), "distinct"),
])
def test_interpolant_bad_input_raises(args, match):
    with pytest.raises(ValueError, match=match):
        C.relu_interpolant(*args)
    with pytest.raises(ValueError, match=match):
        C.sigmoid_interpolant(*args, 1.0)


def _sorted_points(N=6):
    x = jnp.asarray(np.sort(np.random.default_rng(0).normal(size=N))[::-1].copy())[:, None]
    f = _rand(1, N, 2)
    return x, f, float(jnp.min(x[:-1, 0] - x[1:, 0]))


@pytest.mark.parametrize("lam_delta", [1.0, 5.0, 40.0])
def test_sigmoid_interpolant_exact_weights_interpolate(lam_delta):
    x, f, delta = _sorted_points()
    layers = C.sigmoid_interpolant(x, f, jnp.ones(1), lam_delta / delta)
    assert _relative_miss(layers, x, f, sigmoid) < 1e-13


def test_sigmoid_matrix_tends_to_the_triangular_limit():
    x, _, delta = _sorted_points()
    t = x[:, 0]
    M_inf = np.asarray(C.interpolation_matrix(t, t[:-1], heaviside))
    above = np.triu_indices(len(t), k=1, m=len(t) - 1)  # i < j < N
    assert np.all(np.tril(M_inf, -1) == 0) and np.all(M_inf[:, :-1][above] == 1)
    np.testing.assert_array_equal(np.diag(M_inf), [0.5] * (len(t) - 1) + [1])
    for lam_delta in (2.0, 8.0, 20.0):
        lam = lam_delta / delta
        M = np.asarray(C.interpolation_matrix(t, t[:-1], lambda s, lam=lam: sigmoid(lam * s)))
        gap = np.max(np.abs(M - M_inf))
        assert gap == pytest.approx(1 / (1 + math.exp(lam_delta)), rel=1e-9)


def test_sigmoid_limit_weights_error_bound_and_rate():
    x, f, delta = _sorted_points()
    limit = None
    errs = []
    for lam_delta in (8.0, 12.0, 16.0, 20.0):
        layers = C.sigmoid_interpolant(x, f, jnp.ones(1), lam_delta / delta, limit=True)
        if limit is not None:  # the limit weights do not depend on lambda
            np.testing.assert_array_equal(layers[1]["W"], limit)
        limit = layers[1]["W"]
        err = float(jnp.max(jnp.abs(C.mlp(layers, x, sigmoid) - f)))
        assert 0 < err <= float(jnp.sum(jnp.abs(limit))) / (1 + math.exp(lam_delta))
        errs.append(err)
    ratios = np.exp(4.0) * np.array(errs[1:]) / np.array(errs[:-1])  # e^{-4 per step}
    np.testing.assert_allclose(ratios, 1, atol=0.05)
    # and the exact weights tend to the limit weights
    exact = C.sigmoid_interpolant(x, f, jnp.ones(1), 30.0 / delta)
    np.testing.assert_allclose(exact[1]["W"], limit, atol=1e-9 * float(jnp.max(jnp.abs(limit))))


def test_sigmoid_interpolant_bad_lambda():
    x, f, _ = _sorted_points()
    with pytest.raises(ValueError, match="lambda"):
        C.sigmoid_interpolant(x, f, jnp.ones(1), 0.0)


# ------------------------------------------------------------------------- conv as dense

CONV_CASES = [  # (H, W, k_h, k_w, C_in, C_out, stride, padding, dilation)
    (5, 5, 3, 3, 1, 1, 1, "VALID", 1),
    (6, 7, 2, 3, 2, 3, (2, 1), "SAME", 1),
    (7, 6, 3, 3, 2, 2, 2, 2, (2, 1)),
    (6, 8, 3, 2, 1, 2, (1, 3), ((0, 2), (3, 1)), 2),
    (4, 4, 4, 4, 3, 1, 1, "VALID", 1),  # one output pixel: a plain dot product
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_as_dense_is_conv2d_and_its_jacobian(case):
    h, w, kh, kw, ci, co, s, p, d = case
    x, F, b = _rand(0, 3, h, w, ci), _rand(1, kh, kw, ci, co), _rand(2, co)
    kwargs = {"stride": s, "padding": p, "dilation": d}
    params = C.conv_as_dense(F, b, (h, w), **kwargs)
    ref = conv2d(x, F, b, **kwargs)
    out = dense(params, x.reshape(3, -1)).reshape(ref.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)
    # the matrix of a linear map is its Jacobian (autodiff through lax.conv, entries exact)
    J = jax.jacobian(lambda v: conv2d(v.reshape(1, h, w, ci), F, **kwargs).reshape(-1))(
        jnp.zeros(h * w * ci))
    np.testing.assert_array_equal(params["W"], J.T)
    np.testing.assert_array_equal(params["b"], np.tile(np.asarray(b), ref.shape[1] * ref.shape[2]))


def test_conv_as_dense_without_bias():
    F = _rand(0, 2, 2, 1, 2)
    params = C.conv_as_dense(F, None, (3, 3))
    np.testing.assert_array_equal(params["b"], np.zeros(8))


@pytest.mark.parametrize("args, kwargs, match", [
    ((jnp.ones((3, 3, 1)), None, (5, 5)), {}, "F must be"),
    ((jnp.ones((3, 3, 1, 2)), jnp.ones(3), (5, 5)), {}, "b must have shape"),
    ((jnp.ones((3, 3, 1, 2)), None, (5,)), {}, "in_hw"),
    ((jnp.ones((3, 3, 1, 2)), None, (0, 5)), {}, "in_hw"),
    ((jnp.ones((6, 3, 1, 2)), None, (5, 5)), {}, "exceeds"),
    ((jnp.ones((3, 3, 1, 2)), None, (5, 5)), {"stride": 0}, "stride"),
])
def test_conv_as_dense_bad_input_raises(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.conv_as_dense(*args, **kwargs)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_param_counts_against_the_matrix(case):
    h, w, kh, kw, ci, co, s, p, d = case
    F = _rand(5, kh, kw, ci, co)
    kwargs = {"stride": s, "padding": p, "dilation": d}
    W = np.asarray(C.conv_as_dense(F, None, (h, w), **kwargs)["W"])
    units = W.shape[1]
    counts = C.param_counts((h, w, ci), F.shape, **kwargs)
    assert counts.shared == F.size + co
    assert counts.local == np.count_nonzero(W) + units  # F has no zero entry
    assert counts.dense == W.size + units


def test_param_counts_seed_layers():
    # problem set 004 Q6: 6x6 input, 3x3 filter, 4x4 output
    assert C.param_counts((6, 6, 1), (3, 3, 1, 1)) == (9 + 1, 16 * 9 + 16, 36 * 16 + 16)
    # problem set 004 Q9: 205x205x10 -> 66x66x96, K = 10, stride 3; without padding the local
    # weights are the multiplications
    q9 = C.param_counts((205, 205, 10), (10, 10, 10, 96), stride=3)
    units = 66 * 66 * 96
    assert q9 == (96096, conv_multiplications(66, 10, 10, 96) + units,
                  205 * 205 * 10 * units + units)


def test_param_counts_bad_input():
    with pytest.raises(ValueError, match="exceeds"):
        C.param_counts((4, 4, 1), (5, 5, 1, 1))
    with pytest.raises(ValueError, match="channels"):
        C.param_counts((4, 4, 2), (3, 3, 1, 1))
    with pytest.raises(ValueError, match=r"in_shape \(H, W, C_in\)"):
        C.param_counts((4, 4), (3, 3, 1, 1))
