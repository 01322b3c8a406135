"""jaxnets.curvature against dense Hessians in float64, the sin-MLP's hand-derived R-operator,
problem set 004 Q12 (gradient descent is stable iff eta < 2 / lambda_max), and the tracker
inside train.fit / train.sweep."""

from functools import partial

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rel_err
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from jaxnets import checkpoint, curvature, optim, train
from jaxnets.checkpoint import CheckpointError
from jaxnets.models import fc_tanh, mixer, sin_mlp
from jaxnets.train import driver


def _sin_mlp(seed=0, B=11, d=5, d_h=7, m=3, dtype=jnp.float64):
    k_p, k_b, k_x, k_y = jax.random.split(jax.random.key(seed), 4)
    params = sin_mlp.init(k_p, d, d_h, m, dtype)
    params["b1"] = jax.random.normal(k_b, (d_h,), dtype)
    x = jax.random.normal(k_x, (B, d), dtype) * 1.5
    return params, (x, jax.random.randint(k_y, (B,), 0, m)), sin_mlp.loss


def _fc_tanh(seed=0, B=13, widths=(6, 9, 8, 4), dtype=jnp.float64):
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k_x, (B, widths[0]), dtype)
    return (fc_tanh.init(k_p, widths, dtype), (x, jax.random.randint(k_y, (B,), 0, widths[-1])),
            fc_tanh.loss)


def _mixer(seed=0, dtype=jnp.float64):
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = mixer.init(k_p, image_size=(4, 4), in_channels=1, patch=2, hidden=4,
                        tokens_mlp_dim=3, channels_mlp_dim=5, depth=1, num_classes=3,
                        dtype=dtype)
    x = jax.random.normal(k_x, (5, 4, 4, 1), dtype)
    return params, (x, jax.random.randint(k_y, (5,), 0, 3)), mixer.loss


MODELS = {"sin_mlp": _sin_mlp, "fc_tanh": _fc_tanh, "mixer": _mixer}


def _dense(loss, params, batch):
    flat, unravel = ravel_pytree(params)
    H = jax.jit(jax.hessian(lambda f: loss(unravel(f), batch)))(flat)
    return np.asarray(H), unravel


@pytest.mark.parametrize("model", sorted(MODELS))
def test_hvp_equals_the_dense_hessian_times_v(model, x64):
    params, batch, loss = MODELS[model]()
    H, unravel = _dense(loss, params, batch)
    v = jax.random.normal(jax.random.key(9), (H.shape[0],), jnp.float64)
    Hv = curvature.hvp(loss, params, batch, unravel(v))
    np.testing.assert_allclose(ravel_pytree(Hv)[0], H @ np.asarray(v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_top3_eigenpairs_equal_dense_eigh(model, x64):
    params, batch, loss = MODELS[model]()
    H, _ = _dense(loss, params, batch)
    P = H.shape[0]
    assert 50 <= P <= 400  # "a few hundred parameters"
    w, U = np.linalg.eigh(H)
    w, U = w[::-1][:3], U[:, ::-1][:, :3]
    values, vectors = jax.jit(partial(curvature.top_eigenvalues, loss, k=3, iters=P))(
        params, batch)
    np.testing.assert_allclose(values, w, rtol=1e-8)
    V = jax.vmap(lambda t: ravel_pytree(t)[0])(vectors)  # [3, P]
    np.testing.assert_allclose(np.abs(np.sum(V * U.T, axis=1)), 1.0, atol=1e-6)  # up to sign


def test_power_iteration_and_fewer_lanczos_steps_converge_to_the_top_eigenvalue(x64):
    params, batch, loss = _sin_mlp()
    H, _ = _dense(loss, params, batch)
    top = np.linalg.eigvalsh(H)[-1]
    power = curvature.top_eigenvalues(loss, params, batch, k=1, iters=300, method="power")[0]
    lanczos = curvature.top_eigenvalues(loss, params, batch, k=1, iters=20)[0]
    np.testing.assert_allclose(power, [top], rtol=1e-8)
    np.testing.assert_allclose(lanczos, [top], rtol=1e-8)


def test_no_array_of_size_p_squared_is_formed(x64):
    params, batch, loss = _fc_tanh()
    P = ravel_pytree(params)[0].size
    v = jax.tree.map(jnp.ones_like, params)
    fns = {"hvp": lambda p: curvature.hvp(loss, p, batch, v),
           "top_eigenvalues": lambda p: curvature.top_eigenvalues(loss, p, batch, k=2, iters=20),
           "hutchinson": lambda p: curvature.hutchinson_trace(loss, p, batch, samples=4,
                                                              key=jax.random.key(0))}

    def sizes(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield int(np.prod(var.aval.shape))
        for sub in jax.extend.core.subjaxprs(jaxpr):  # scan, while and jvp bodies
            yield from sizes(sub)

    for name, f in fns.items():
        largest = max(sizes(jax.make_jaxpr(f)(params).jaxpr))
        assert largest < P * P // 4, (name, largest, P)


def test_quadratic_sharpness_is_lambda_max_and_gd_is_stable_iff_eta_below_two_over_it(x64):
    """Problem set 004 Q12 (and the claims report): on E = 1/2 w^T A w, gradient descent
    w <- w - eta A w converges iff eta < 2 / lambda_max(A)."""
    n = 30
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))[0]
    lam = np.linspace(0.1, 7.0, n)
    A = jnp.asarray(Q @ np.diag(lam) @ Q.T)

    def loss(w, batch):
        return 0.5 * w @ A @ w

    w0 = jnp.ones(n)
    sharp = curvature.top_eigenvalues(loss, w0, None, k=1, iters=n)[0][0]
    assert float(sharp) == pytest.approx(7.0, rel=1e-12)

    def final_norm(eta, steps=3000):
        step = jax.jit(lambda w: w - eta * jax.grad(loss)(w, None))
        w = jax.lax.fori_loop(0, steps, lambda _, w: step(w), w0)
        return float(jnp.linalg.norm(w))

    assert final_norm(1.98 / sharp) < 1e-3 * float(jnp.linalg.norm(w0))
    assert final_norm(2.02 / sharp) > 1e3 * float(jnp.linalg.norm(w0))


class JitVmapTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_top_eigenvalues_under_jit_and_vmap(self):
        with jax.enable_x64(True):
            members = [_sin_mlp(seed) for seed in range(3)]
            batch, loss = members[0][1], members[0][2]
            stacked = jax.tree.map(lambda *a: jnp.stack(a), *[m[0] for m in members])
            f = partial(curvature.top_eigenvalues, loss, batch=batch, k=2, iters=40)
            together = self.variant(jax.vmap(f))(stacked)[0]
            for i, (params, _, _) in enumerate(members):
                H, _ = _dense(loss, params, batch)
                np.testing.assert_allclose(together[i], np.linalg.eigvalsh(H)[::-1][:2],
                                           rtol=1e-8)


def test_hutchinson_is_exact_for_a_diagonal_hessian_and_unbiased_otherwise(x64):
    d = jnp.asarray(np.linspace(-2.0, 5.0, 40))
    est = curvature.hutchinson_trace(lambda w, _: 0.5 * jnp.sum(d * w**2), jnp.ones(40), None,
                                     samples=3, key=jax.random.key(1))
    assert float(est) == pytest.approx(float(jnp.sum(d)), rel=1e-12)
    params, batch, loss = _sin_mlp()
    H, _ = _dense(loss, params, batch)
    samples = 4000
    est = curvature.hutchinson_trace(loss, params, batch, samples=samples, key=jax.random.key(2))
    sigma = np.sqrt(2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / samples)
    assert abs(float(est) - np.trace(H)) < 5 * sigma


def test_adam_preconditioned_sharpness_equals_dense(x64):
    params, batch, loss = _sin_mlp()
    opt = optax.adam(1e-2, b1=0.9, b2=0.99, eps=1e-6)
    state = opt.init(params)
    for _ in range(5):
        updates, state = opt.update(jax.grad(loss)(params, batch), state)
        params = optax.apply_updates(params, updates)
    H, _ = _dense(loss, params, batch)
    P = ravel_pytree(curvature.adam_preconditioner(state, b1=0.9, b2=0.99, eps=1e-6))[0]
    nu, t = ravel_pytree(state[0].nu)[0], 5
    np.testing.assert_allclose(P, (1 - 0.9**t) * (np.sqrt(nu / (1 - 0.99**t)) + 1e-6))
    s = 1 / np.sqrt(np.asarray(P))
    want = np.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1]
    got = curvature.preconditioned_top_eigenvalue(loss, params, batch, state, b1=0.9, b2=0.99,
                                                  eps=1e-6, iters=66)
    assert float(got) == pytest.approx(want, rel=1e-8)
    with pytest.raises(ValueError, match="no optax.scale_by_adam state"):
        curvature.adam_preconditioner(optax.sgd(0.1).init(params))


HVP_SIN_MLP = jax.jit(partial(curvature.hvp, sin_mlp.loss))  # the reference, compiled per shape


class ManualHvpTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @given(B=st.integers(1, 9), d=st.integers(1, 8), d_h=st.integers(1, 10),
           m=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
    def test_r_operator_equals_forward_over_reverse(self, B, d, d_h, m, seed):
        with jax.enable_x64(True):
            params, batch, loss = _sin_mlp(seed, B, d, d_h, m)
            v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(seed + 1), a.shape,
                                                         a.dtype), params)
            manual = self.variant(sin_mlp.manual_hvp)(params, batch, v)
            auto = HVP_SIN_MLP(params, batch, v)
            chex.assert_trees_all_equal_structs(manual, auto)
            assert rel_err(manual, auto) <= 1e-10


def test_bad_arguments_are_refused(x64):
    params, batch, loss = _sin_mlp()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 66\]"):
        curvature.top_eigenvalues(loss, params, batch, k=67)
    with pytest.raises(ValueError, match="iters must be an integer >= k = 3"):
        curvature.top_eigenvalues(loss, params, batch, k=3, iters=2)
    with pytest.raises(ValueError, match="unknown method 'qr'"):
        curvature.top_eigenvalues(loss, params, batch, method="qr")


# ----------------------------------------------------------------------------------------------
# The tracker inside the compiled run.

def _data(n=96, d=6, m=3):
    k_x, k_y = jax.random.split(jax.random.key(5))
    return jax.random.normal(k_x, (n, d)), jax.random.randint(k_y, (n,), 0, m)


INIT = partial(fc_tanh.init, widths=(6, 12, 12, 3))
FIT = dict(init=INIT, loss=fc_tanh.loss, optimizer=optim.get("sgd"), steps=40, batch_size=32,
           eval_every=20)


def test_fit_tracks_sharpness_every_k_steps_as_measured_on_the_params_then():
    data = _data()
    track = curvature.sharpness(fc_tanh.loss, every=10, k=2, iters=30)
    r = train.fit(jax.random.key(0), 0.1, data, track=track, **FIT)
    chex.assert_shape(r.tracked["sharpness"], (4, 2))
    for i, steps in enumerate((10, 20, 30, 40)):  # params after that many steps
        p = train.fit(jax.random.key(0), 0.1, data, **{**FIT, "steps": steps,
                                                       "eval_every": steps}).params
        want = curvature.top_eigenvalues(fc_tanh.loss, p, data, k=2, iters=30,
                                         key=jax.random.key(0))[0]
        np.testing.assert_allclose(r.tracked["sharpness"][i], want, rtol=2e-4)
    # 3 Lanczos steps per measurement, each from the last one's eigenvector: Ritz values never
    # exceed the top eigenvalue, and the error shrinks from measurement to measurement
    warm = train.fit(jax.random.key(0), 0.1, data, track=curvature.sharpness(
        fc_tanh.loss, every=10, k=1, iters=3), **FIT)
    top = np.asarray(r.tracked["sharpness"][:, 0])
    err = 1 - np.asarray(warm.tracked["sharpness"][:, 0]) / top
    assert np.all(err >= -1e-5) and np.all(np.diff(err) < 0) and err[-1] < 1e-2
    plain = train.fit(jax.random.key(0), 0.1, data, **FIT)
    assert plain.tracked is None
    chex.assert_trees_all_equal(r.params, plain.params)  # tracking does not change training


def test_a_sweep_tracks_every_member_in_one_compile_and_resumes_with_its_history(tmp_path):
    data = _data()
    lrs = np.geomspace(0.01, 0.3, 8).astype(np.float32)
    track = curvature.sharpness(fc_tanh.loss, every=10, iters=10)
    compiled = driver._sweep_fn.cache_info().misses
    whole = train.sweep(lrs, data, track=track, **FIT)
    assert driver._sweep_fn.cache_info().misses == compiled + 1  # one compiled sweep
    chex.assert_shape(whole.tracked["sharpness"], (8, 1, 4, 1))
    alone = train.fit(jax.random.key(0), lrs[5], data, track=track, **FIT)
    np.testing.assert_allclose(whole.tracked["sharpness"][5, 0], alone.tracked["sharpness"],
                               rtol=1e-4)
    saved = train.sweep(lrs, data, track=track, checkpoint_dir=tmp_path, **FIT)
    chex.assert_trees_all_equal(saved.tracked, whole.tracked)
    checkpoint.Checkpoints(tmp_path).path(40).unlink()  # as if stopped after the first chunk
    with pytest.raises(CheckpointError, match="track"):  # a run without the tracker refuses it
        train.sweep(lrs, data, checkpoint_dir=tmp_path, **FIT)
    resumed = train.sweep(lrs, data, track=track, checkpoint_dir=tmp_path, **FIT)
    assert resumed.checkpoint.resumed_from == 1
    chex.assert_trees_all_equal(resumed.tracked, whole.tracked)


@pytest.mark.parametrize("track, match", [
    (curvature.sharpness(fc_tanh.loss, every=15), r"track.every \(15\) must be a positive "
                                                  r"integer dividing eval_every \(20\)"),
    (curvature.sharpness(fc_tanh.loss, every=10, k=5, iters=4), r"track's k must be in"),
    (curvature.sharpness(fc_tanh.loss, every=10, examples=1000), r"examples must be in \[1, 96\]"),
    (curvature.Sharpness(fc_tanh.loss, 10, method="qr"), "method must be 'lanczos' or 'power'"),
])
def test_bad_trackers_are_refused_before_compiling(track, match):
    with pytest.raises(ValueError, match=match):
        train.fit(jax.random.key(0), 0.1, _data(), track=track, **FIT)
