"""One driver: fit, sweep, every training experiment and GAN training all run through
``jaxnets.train.driver.drive``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import adding, gan, lenet, lr_sweep, mixer, sin_mlp
from jaxnets import optim, train
from jaxnets.models import gan as gan_model
from jaxnets.models import sin_mlp as sin_model
from jaxnets.train import driver


@pytest.fixture
def drives(monkeypatch):
    """The list of (spec, lead) of every ``drive`` call while the test runs."""
    calls, real = [], driver.drive

    def counted(spec, state, run, **kw):
        calls.append((spec, kw.get("lead", 0)))
        return real(spec, state, run, **kw)

    monkeypatch.setattr(driver, "drive", counted)
    return calls


def _data():
    x = jax.random.normal(jax.random.key(0), (64, 8))
    return x, (x[:, 0] > 0).astype(jnp.int32)


KW = dict(init=partial(sin_model.init, d=8, d_h=4, m=2), loss=sin_model.loss,
          optimizer=optim.get("sgd"), steps=20, batch_size=16, eval_every=10)


def test_fit_and_sweep_each_call_the_driver_once(drives):
    data = _data()
    train.fit(jax.random.key(0), 0.1, data, {"train": data}, **KW)
    assert [lead for _, lead in drives] == [0]
    train.sweep([0.1, 0.2], data, {"train": data}, seeds=2, **KW)
    assert [lead for _, lead in drives] == [0, 2]
    assert all(isinstance(spec.step, train.SupervisedStep) for spec, _ in drives)


def test_gan_training_runs_through_the_driver(drives):
    step = gan.ring_step(gan.Config(hidden=4, batch_size=8, steps=10), "nonsaturating")
    alone = train.fit(jax.random.key(1), 1e-3, None, step=step, steps=10, eval_every=5)
    grid = train.sweep([1e-3], None, step=step, steps=10, eval_every=5, seeds=[1])
    assert len(drives) == 2 and all(isinstance(s.step, gan_model.GanStep) for s, _ in drives)
    np.testing.assert_allclose(grid.train_loss[0][0, 0], alone.train_loss[0], rtol=1e-5)


@pytest.mark.slow
def test_every_training_experiment_runs_through_the_driver(drives, tmp_path):
    """Each experiment's training loops are ``drive`` calls: one per fit or sweep it runs."""
    tiny = dict(steps=20, eval_every=10, checkpoint_every=1)
    expected = {}
    sin_mlp.run(sin_mlp.Config(hidden=4, run_dir=tmp_path / "s", **tiny), progress=False)
    expected["sin_mlp"] = 1
    lenet.run(lenet.Config(run_dir=tmp_path / "l", **tiny), progress=False)
    expected["lenet"] = 1
    mixer.run(mixer.Config(run_dir=tmp_path / "m", **tiny), progress=False)
    expected["mixer"] = 1
    lr_sweep.run(lr_sweep.Config(optimizers=("sgd", "adam"), count=2, seeds=1, hidden=4,
                                 run_dir=tmp_path / "r", **tiny), progress=False)
    expected["lr_sweep"] = 2  # one sweep per optimizer
    adding.run(adding.Config(T=5, hidden=4, count=2, seeds=2, n_train=64, n_test=32,
                             batch_size=16, run_dir=tmp_path / "a", **tiny), progress=False)
    expected["adding"] = 2  # one sweep per cell
    gan.run(gan.Config(seeds=2, steps=20, chunk=10, hidden=4, samples=100, batch_size=8,
                       image_steps=20, image_latent=4, image_hidden=4,
                       variants=("minimax", "wgan-gp"), run_dir=tmp_path / "g"),
            progress=False)
    expected["gan"] = 3  # a sweep per variant, one fit for the images
    assert len(drives) == sum(expected.values())
    kinds = [type(spec.step).__name__ for spec, _ in drives]
    assert kinds[-3:] == ["GanStep"] * 3 and set(kinds[:-3]) == {"SupervisedStep"}
