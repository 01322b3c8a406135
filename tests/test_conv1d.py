"""1-D convolution / cross-correlation against numpy's convolve / correlate (problem set 002 Q6)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxnets.layers.conv1d import conv1d, correlate1d

MODES = ["full", "valid", "same"]


def _rowwise(np_fn, x, w, mode):
    """Apply a 1-D numpy function to every row of x [..., n]."""
    x = np.asarray(x)
    rows = [np_fn(r, np.asarray(w), mode) for r in x.reshape(-1, x.shape[-1])]
    return np.stack(rows).reshape(*x.shape[:-1], -1)


class Conv1dTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(n=st.integers(1, 12), k=st.integers(1, 12), mode=st.sampled_from(MODES),
           batch=st.sampled_from([(), (3,), (2, 2)]), seed=st.integers(0, 2**31 - 1))
    def test_conv1d_equals_numpy_convolve(self, n, k, mode, batch, seed):
        with jax.enable_x64(True):
            rng = np.random.default_rng(seed)
            x, w = rng.normal(size=(*batch, n)), rng.normal(size=k)
            y = self.variant(conv1d, static_argnames="mode")(jnp.asarray(x), jnp.asarray(w),
                                                             mode=mode)
            np.testing.assert_allclose(y, _rowwise(np.convolve, x, w, mode),
                                       rtol=1e-12, atol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    @given(n=st.integers(1, 12), k=st.integers(1, 12), mode=st.sampled_from(MODES),
           batch=st.sampled_from([(), (3,), (2, 2)]), seed=st.integers(0, 2**31 - 1))
    def test_correlate1d_equals_numpy_correlate(self, n, k, mode, batch, seed):
        with jax.enable_x64(True):
            rng = np.random.default_rng(seed)
            x, w = rng.normal(size=(*batch, n)), rng.normal(size=k)
            c = self.variant(correlate1d, static_argnames="mode")(jnp.asarray(x),
                                                                  jnp.asarray(w), mode=mode)
            np.testing.assert_allclose(c, _rowwise(np.correlate, x, w, mode),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n, k", [(1, 1), (5, 3), (4, 4), (6, 2), (2, 5), (3, 8), (4, 7)])
def test_all_lengths_and_modes_match_numpy(x64, n, k, mode):
    """Fixed grid so that k > n (numpy swaps roles) and even/odd lengths are always covered."""
    rng = np.random.default_rng(n * 10 + k)
    x, w = rng.normal(size=(2, n)), rng.normal(size=k)
    np.testing.assert_allclose(conv1d(x, w, mode), _rowwise(np.convolve, x, w, mode),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(correlate1d(x, w, mode), _rowwise(np.correlate, x, w, mode),
                               rtol=1e-12, atol=1e-12)


def test_full_convolution_matches_definition(x64):
    """(x * w)[t] = sum_i x[i] w[t - i], by loops, with and without k > n."""
    rng = np.random.default_rng(1)
    for n, k in [(7, 3), (3, 7)]:
        x, w = rng.normal(size=n), rng.normal(size=k)
        ref = [sum(x[i] * w[t - i] for i in range(n) if 0 <= t - i < k)
               for t in range(n + k - 1)]
        np.testing.assert_allclose(conv1d(x, w, "full"), ref, rtol=1e-13)
        ref_c = [sum(x[i + t] * w[i] for i in range(k) if 0 <= i + t < n)
                 for t in range(-(k - 1), n)]
        np.testing.assert_allclose(correlate1d(x, w, "full"), ref_c, rtol=1e-13)


def test_problem_set_002_q6_worked_answers():
    """[1, 2, 3, 4] * [1, 0, 2]: the problem set's answers, recomputed by numpy, then conv1d."""
    x, w = [1, 2, 3, 4], [1, 0, 2]
    seed = {"full": [1, 2, 5, 8, 6, 8], "valid": [5, 8], "same": [2, 5, 8, 6]}
    for mode, answer in seed.items():
        np.testing.assert_array_equal(np.convolve(x, w, mode), answer)  # the problem set is right
        np.testing.assert_array_equal(conv1d(jnp.array(x), jnp.array(w), mode), answer)
        np.testing.assert_array_equal(conv1d(jnp.array(x, jnp.float32), jnp.array(w), mode),
                                      answer)
    # Without the flip (cross-correlation) the answers differ: full [2, 4, 7, 10, 3, 4].
    np.testing.assert_array_equal(np.correlate(x, w, "full"), [2, 4, 7, 10, 3, 4])
    np.testing.assert_array_equal(correlate1d(jnp.array(x), jnp.array(w), "full"),
                                  [2, 4, 7, 10, 3, 4])
    np.testing.assert_array_equal(correlate1d(jnp.array(x), jnp.array(w)), [7, 10])


def test_kernel_longer_than_signal_swaps_roles_like_numpy(x64):
    """k > n: "valid" has k - n + 1 outputs (x slides inside w), "same" has k; x * w = w * x."""
    x, w = jnp.array([1.0, 2.0]), jnp.array([1.0, 10.0, 100.0, 1000.0])
    # by hand: full[t] = x0 w[t] + x1 w[t - 1] = [1, 10 + 2, 100 + 20, 1000 + 200, 2000]
    np.testing.assert_allclose(conv1d(x, w, "full"), [1.0, 12.0, 120.0, 1200.0, 2000.0])
    np.testing.assert_allclose(conv1d(x, w, "valid"), [12.0, 120.0, 1200.0])  # full[1:4]
    np.testing.assert_allclose(conv1d(x, w, "same"), [1.0, 12.0, 120.0, 1200.0])  # full[0:4]
    for mode in MODES:
        np.testing.assert_allclose(conv1d(x, w, mode), conv1d(w, x, mode))


def test_correlate_same_centring_when_kernel_longer(x64):
    """numpy.correlate(x, w, "same") with k > n and n even sits one step later than
    numpy.convolve(x, w[::-1], "same"); correlate1d follows numpy.correlate."""
    x, w = jnp.array([1.0, 2.0]), jnp.array([1.0, 10.0, 100.0, 1000.0])
    # full correlation, lags -3..1: [1000, 2100, 210, 21, 2]
    np.testing.assert_allclose(correlate1d(x, w, "full"), [1000.0, 2100.0, 210.0, 21.0, 2.0])
    np.testing.assert_allclose(correlate1d(x, w, "same"), [2100.0, 210.0, 21.0, 2.0])
    np.testing.assert_allclose(conv1d(x, w[::-1], "same"), [1000.0, 2100.0, 210.0, 21.0])
    # for n >= k, or n odd, correlation is convolution with the flipped kernel in every mode
    rng = np.random.default_rng(2)
    for n, k in [(5, 3), (4, 4), (3, 6)]:
        x, w = rng.normal(size=n), rng.normal(size=k)
        for mode in MODES:
            np.testing.assert_allclose(correlate1d(x, w, mode), conv1d(x, w[::-1], mode),
                                       rtol=1e-13)


def test_correlate_conjugates_complex_kernel(x64):
    rng = np.random.default_rng(3)
    x = rng.normal(size=6) + 1j * rng.normal(size=6)
    w = rng.normal(size=3) + 1j * rng.normal(size=3)
    for mode in MODES:
        np.testing.assert_allclose(correlate1d(x, w, mode), np.correlate(x, w, mode), rtol=1e-12)
        np.testing.assert_allclose(conv1d(x, w, mode), np.convolve(x, w, mode), rtol=1e-12)


@pytest.mark.parametrize("fn", [conv1d, correlate1d])
@pytest.mark.parametrize("x, w, mode, match", [
    (jnp.ones(4), jnp.ones(2), "causal",
     r"mode must be one of \('full', 'valid', 'same'\), got 'causal'"),
    (jnp.ones(4), jnp.ones((2, 1)), "full", r"w must be 1-D \[k\], got shape \(2, 1\)"),
    (jnp.ones(()), jnp.ones(2), "full", r"x must be \[..., n\] with ndim >= 1, got shape \(\)"),
    (jnp.ones((2, 0)), jnp.ones(2), "full", "non-empty, got n = 0, k = 2"),
    (jnp.ones(3), jnp.ones(0), "valid", "non-empty, got n = 3, k = 0"),
])
def test_bad_arguments_are_named(fn, x, w, mode, match):
    with pytest.raises(ValueError, match=match):
        fn(x, w, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n, k", [(7, 3), (3, 7), (5, 5), (1, 4)])
def test_integers_are_exact_without_a_convolution(mode, n, k):
    """Integer signals: numpy's exact integer results (values where float32 would round), by
    shifted multiply-adds, no lax convolution (cuDNN refuses integer ones: the problem set's answers
    failed on an H200 before)."""
    rng = np.random.default_rng(n * 10 + k)
    x, w = rng.integers(-3000, 3000, (2, n), np.int32), rng.integers(-3000, 3000, k, np.int32)
    for fn, ref in ((conv1d, np.convolve), (correlate1d, np.correlate)):
        out = jax.jit(fn, static_argnums=2)(x, w, mode)
        assert out.dtype == jnp.int32
        np.testing.assert_array_equal(out, _rowwise(ref, x, w, mode))
        prims = {e.primitive.name for e in jax.make_jaxpr(fn, static_argnums=2)(x, w, mode).eqns}
        assert "conv_general_dilated" not in prims
