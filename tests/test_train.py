"""train.fit: one jitted scan, traced learning rate, vmappable, reproducible, divergence caught."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_run

from jaxnets import optim, train
from jaxnets.models import sin_mlp
from jaxnets.train import driver

D, D_H, M, N = 6, 16, 3, 96
INIT = partial(sin_mlp.init, d=D, d_h=D_H, m=M)


def _data(seed=0, n=N):
    """Three Gaussian blobs in R^6: learnable, so the loss must fall."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, M, n).astype(np.int32)
    centres = rng.normal(scale=3.0, size=(M, D))
    x = (centres[y] + rng.normal(size=(n, D))).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def _fit(key=0, lr=0.05, data=None, **kw):
    data = _data() if data is None else data
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("sgd"), steps=60,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20) | kw
    return train.fit(jax.random.key(key), lr, data, {"train": data}, **kw)


def test_fit_learns_and_returns_per_step_metrics():
    r = _fit()
    chex.assert_shape(r.train_loss, (60,))
    chex.assert_shape([r.eval_metrics["train/loss"], r.eval_metrics["train/accuracy"]], [(3,)] * 2)
    assert int(r.diverged_at) == -1
    first = float(sin_mlp.loss(INIT(jax.random.split(jax.random.key(0))[0]), _data()))
    assert float(r.eval_metrics["train/loss"][-1]) < 0.5 * first
    assert float(r.eval_metrics["train/accuracy"][-1]) > 0.9


def test_fit_with_nesterov_learns():
    """The look-ahead params and the NesterovState go through the jitted scan and its masking."""
    r = _fit(optimizer=optim.get("nesterov"), lr=0.1)
    assert int(r.diverged_at) == -1
    first = float(sin_mlp.loss(INIT(jax.random.split(jax.random.key(0))[0]), _data()))
    assert float(r.eval_metrics["train/loss"][-1]) < 0.5 * first
    assert float(r.eval_metrics["train/accuracy"][-1]) > 0.9


def test_same_seed_bit_identical_other_seed_differs():
    a, b, c = _fit(key=3), _fit(key=3), _fit(key=4)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_learning_rate_is_traced_no_recompile():
    _fit(lr=0.01)
    size = driver._chunks_jit._cache_size()
    r1, r2 = _fit(lr=0.02), _fit(lr=0.03)
    assert driver._chunks_jit._cache_size() == size
    assert not np.array_equal(r1.train_loss, r2.train_loss)


def test_vmap_over_seeds_and_learning_rates_matches_single_runs():
    data = _data()
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("momentum"), steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20)
    keys = jax.random.split(jax.random.key(7), 3)
    lrs = jnp.array([0.01, 0.1, 0.3])
    swept = jax.vmap(lambda k, lr: train.fit(k, lr, data, {"train": data}, **kw))(keys, lrs)
    chex.assert_shape(swept.train_loss, (3, 40))
    for i in range(3):
        alone = train.fit(keys[i], lrs[i], data, {"train": data}, **kw)
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], swept), alone,
                                    rtol=1e-5, atol=1e-6)


def test_chunked_run_equals_fit():
    """The experiments' loop of jitted chunks reproduces fit (bit for bit on CPU)."""
    data = _data()
    opt = optim.get("adam")
    whole = _fit(optimizer=opt, lr=0.01)
    state = train.init_state(jax.random.key(0), init=INIT, optimizer=opt)
    spec = train.RunSpec(train.SupervisedStep(INIT, sin_mlp.loss, opt, 16), 60, 20,
                         sin_mlp.metrics)
    chunk = jax.jit(train.train_chunk, static_argnames=("spec", "num_steps"))
    losses = []
    for _ in range(3):
        state, (losses_, metrics, tracked) = chunk(
            state, {"learning_rate": jnp.float32(0.01)}, data, {"train": data}, spec=spec,
            num_steps=20)
        assert tracked == {}  # no tracker
        losses.append(losses_)
    assert_same_run(jnp.concatenate(losses), whole.train_loss)
    assert_same_run(state.params, whole.params)
    assert int(state.step) == 60


def test_minibatches_are_epochs_without_replacement():
    key = jax.random.key(0)
    idx = jnp.stack([train.minibatch_indices(key, t, 20, 5) for t in range(8)])
    for epoch in (idx[:4], idx[4:]):
        np.testing.assert_array_equal(np.sort(epoch.reshape(-1)), np.arange(20))
    assert not np.array_equal(idx[:4], idx[4:])


def test_divergence_is_caught_masked_and_raised():
    r = _fit(lr=1e38, optimizer=optim.get("sgd"))
    step = int(r.diverged_at)
    assert 0 <= step < 60
    assert np.all(np.isfinite(r.train_loss[:step]))
    assert np.all(np.isnan(r.train_loss[step + 1:]))
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(r.params))
    with pytest.raises(train.DivergenceError, match=f"NaN/inf at step {step}"):
        train.raise_if_diverged(r.diverged_at, 1e38)
    train.raise_if_diverged(_fit().diverged_at)  # a healthy run passes


def _guard_steps(loss, w0: float, lr: float, n: int = 3):
    """n jitted train_steps of SGD on loss(w) from w = w0: (w, diverged_at, loss) after each."""
    sgd = optim.get("sgd")
    params = {"w": jnp.float32(w0)}
    state = train.TrainState(params, sgd(learning_rate=lr).init(params), jax.random.key(0),
                             jnp.int32(0), jnp.int32(-1))
    step = jax.jit(partial(train.train_step, loss=lambda p, _: loss(p["w"]), optimizer=sgd))
    out = []
    for _ in range(n):
        state, value = step(state, {"learning_rate": jnp.float32(lr)}, None)
        out.append((float(state.params["w"]), int(state.diverged_at), float(value)))
    return out


def test_step_guard_checks_the_loss_and_the_update():
    """An infinite gradient under a finite loss (-sqrt(w) at 0) is refused like a NaN loss: the
    params stay, the step is marked, later steps are no-ops with NaN losses."""
    (w, d, v), *later = _guard_steps(lambda w: -jnp.sqrt(w), 0.0, 0.1)
    assert (w, d, v) == (0.0, 0, 0.0)
    assert all(w == 0.0 and d == 0 and np.isnan(v) for w, d, v in later)
    healthy = _guard_steps(lambda w: -jnp.sqrt(w), 1.0, 0.1)
    assert all(d == -1 for _, d, _ in healthy)
    assert healthy[0][0] == pytest.approx(1.05)  # w + 0.1 / (2 sqrt(w))


def test_step_guard_marks_an_overflowing_sum_one_step_late():
    """The documented corner: finite w and a finite update whose sum overflows. That step is
    taken (w = inf); the next step's loss is -inf, so it is the step marked."""
    (w1, d1, v1), (w2, d2, v2), _ = _guard_steps(lambda w: -w, 3e38, 3e38)
    assert v1 == np.float32(-3e38) and w1 == np.inf and d1 == -1
    assert v2 == -np.inf and w2 == np.inf and d2 == 1


@pytest.mark.parametrize("kw, exc, match", [
    (dict(steps=50), ValueError, r"steps \(50\) must be a multiple of eval_every \(20\)"),
    (dict(batch_size=500), ValueError, r"batch_size \(500\) exceeds the 96 training"),
    (dict(steps=0), ValueError, "steps must be a positive integer"),
    (dict(data=(jnp.ones((N, D)), jnp.zeros(N - 1, jnp.int32))), ValueError,
     r"train_data has \(96,\) inputs but \(95,\) targets"),
    (dict(data=(jnp.ones((N, D + 1)), jnp.zeros(N, jnp.int32))), ValueError,
     r"x must have shape \[B, 6\]"),
    (dict(data=(jnp.ones((N, D)), jnp.full(N, 3, jnp.int32))), ValueError,
     r"labels must be in \[0, 3\), got values in \[3, 3\]"),
])
def test_bad_run_arguments_fail_before_compiling(kw, exc, match):
    with pytest.raises(exc, match=match):
        _fit(**kw)
