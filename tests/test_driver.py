"""One driver: fit, sweep and GAN training run through ``jaxnets.train.driver.drive`` (the
``drives`` fixture of conftest; each experiment's own test counts its calls the same way)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from experiments import gan
from jaxnets import optim, train
from jaxnets.models import gan as gan_model
from jaxnets.models import sin_mlp as sin_model


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


