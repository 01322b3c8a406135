"""Train the LeNet-style CNN and write a run folder.

    python -m experiments.lenet                        # digits resized to 32x32
    python -m experiments.lenet --dataset mnist --data-dir ../shared/data/mnist

MNIST's 28x28 digits are zero-padded to 32x32; with only the official t10k files it trains on
the fixed 8,000 / 2,000 split of them (jaxnets.data). scikit-learn's 8x8 digits, the default on
a machine without files, are resized to 32x32. The run folder is described in
experiments/common.py.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Literal

from experiments import common
from experiments.common import augmentation
from jaxnets import data
from jaxnets.models import lenet


@dataclasses.dataclass(frozen=True)
class Config(common.TrainFlags):
    """Train the LeNet-style CNN (conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, 10)."""

    steps: int = 3000
    """Optimizer steps (minibatches)."""
    eval_every: int = 250
    """Steps between evaluations on the full train and test sets; must divide --steps."""
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    """Activation after every layer but the last."""
    pool: Literal["max", "avg"] = "max"
    """2x2 pooling with stride 2 after each convolution."""
    shift: int = 2
    """Training images are moved by up to this many pixels in each direction, at random per
    image and step (jaxnets.augment.random_shift); 0 turns augmentation off."""


def run(config: Config, progress: bool = True) -> dict:
    """Train (see ``common.train_classifier``) and return the results."""
    split = data.load_images(config.dataset, config.data_dir, size=32)
    kw = dict(activation=config.activation, pool=config.pool)
    return common.train_classifier(
        config, "lenet", f"LeNet ({config.activation}, {config.pool} pool)", split,
        init=partial(lenet.init, in_shape=(32, 32, 1), num_classes=10),
        loss=partial(lenet.loss, **kw), evaluate=partial(lenet.metrics, **kw),
        augment=augmentation(config.shift), progress=progress)


def main(argv: list[str] | None = None) -> None:
    common.main(Config, run, argv)


if __name__ == "__main__":
    main()
