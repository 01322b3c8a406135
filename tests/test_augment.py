"""Random-shift augmentation, and train.fit's augment hook."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import augment, train
from jaxnets.models import sin_mlp


def _shift_reference(x, dy, dx):
    """out[i, j] = x[i - dy, j - dx] inside the image, else 0, by loops."""
    out = np.zeros_like(x)
    h, w = x.shape[:2]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[i, j] = x[i - dy, j - dx]
    return out


def test_shift_image_equals_the_definition_for_every_shift():
    x = np.random.default_rng(0).random((5, 6, 2)).astype(np.float32)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            np.testing.assert_array_equal(augment.shift_image(jnp.asarray(x), dy, dx, 2),
                                          _shift_reference(x, dy, dx))


def test_random_shift_moves_each_image_by_its_own_bounded_offset():
    # one-hot images: the hot pixel's new place reveals each image's shift
    x = np.zeros((64, 9, 9, 1), np.float32)
    x[:, 4, 4, 0] = 1
    y = jnp.arange(64)
    out, y_out = augment.random_shift(jax.random.key(0), (jnp.asarray(x), y), max_shift=2)
    np.testing.assert_array_equal(y_out, y)
    where = np.argwhere(np.asarray(out)[..., 0] == 1)  # [64, 3]: image, row, col
    assert len(where) == 64
    shifts = where[:, 1:] - 4
    assert np.abs(shifts).max() <= 2
    assert len({tuple(s) for s in shifts}) > 10  # not one shift for the whole batch
    again, _ = augment.random_shift(jax.random.key(0), (jnp.asarray(x), y), max_shift=2)
    np.testing.assert_array_equal(out, again)


def test_random_shift_errors():
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        augment.random_shift(jax.random.key(0), (jnp.zeros((1, 4, 4, 1)), jnp.zeros(1)), -1)
    with pytest.raises(ValueError, match=r"x must be images \[B, H, W, C\]"):
        augment.random_shift(jax.random.key(0), (jnp.zeros((1, 16)), jnp.zeros(1)))


def _fit(**kw):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((40, 4, 4, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 40), jnp.int32)
    flat = lambda p, b: sin_mlp.loss(p, (b[0].reshape(len(b[0]), -1), b[1]))  # noqa: E731
    init = partial(sin_mlp.init, d=16, d_h=8, m=3)
    return train.fit(jax.random.key(0), 0.1, (x, y), init=init,
                     loss=flat, optimizer=optax.sgd, steps=12, batch_size=8, **kw)


def test_fit_trains_on_augmented_minibatches():
    """With augment, step t sees augment(augment_key(state_t), minibatch_t), nothing else."""
    seen = []

    def spy(key, batch):
        jax.debug.callback(lambda k: seen.append(np.asarray(k)), jax.random.key_data(key))
        return batch

    plain = _fit()
    same = _fit(augment=spy)
    np.testing.assert_array_equal(plain.train_loss, same.train_loss)  # identity augment
    data_key = jax.random.split(jax.random.key(0))[1]
    expected = [jax.random.key_data(jax.random.fold_in(
        jax.random.fold_in(data_key, train.AUGMENT_STREAM), t)) for t in range(12)]
    np.testing.assert_array_equal(np.stack(seen), np.stack(expected))
    shifted = _fit(augment=partial(augment.random_shift, max_shift=1))
    assert not np.array_equal(plain.train_loss, shifted.train_loss)
    np.testing.assert_array_equal(
        shifted.train_loss, _fit(augment=partial(augment.random_shift, max_shift=1)).train_loss)


def test_an_augment_that_changes_shapes_is_refused():
    with pytest.raises(ValueError, match="augment must return a minibatch of the same shapes"):
        _fit(augment=lambda k, b: (b[0][:, :2], b[1]))
