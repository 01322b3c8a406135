"""Train an MLP-Mixer (Tolstikhin et al. 2021; problem set 000 Q4) and write a run folder.

    python -m experiments.mixer                        # digits resized to 28x28
    python -m experiments.mixer --dataset mnist --data-dir ../shared/data/mnist --patch 4

Images are 28x28x1: MNIST as it is (with only the official t10k files, the fixed 8,000 / 2,000
split of them, jaxnets.data), scikit-learn's 8x8 digits resized. The run folder is described in
experiments/common.py.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from experiments import common
from experiments.common import augmentation
from jaxnets import data
from jaxnets.models import mixer

IMAGE_SIDE = 28
DEFAULT = mixer.CONFIGS["mnist/7"]  # the architecture flags' defaults


@dataclasses.dataclass(frozen=True)
class Config(common.TrainFlags):
    """Train an MLP-Mixer on 28x28 digits with softmax cross-entropy."""

    steps: int = 3000
    """Optimizer steps (minibatches)."""
    eval_every: int = 250
    """Steps between evaluations on the full train and test sets; must divide --steps."""
    patch: int = DEFAULT.patch
    """P, side of the square patches; must divide 28 (S = 784 / P^2 patches)."""
    hidden: int = DEFAULT.hidden
    """C, channels per patch after the embedding."""
    tokens_mlp_dim: int = DEFAULT.tokens_mlp_dim
    """D_S, hidden width of the token-mixing MLP."""
    channels_mlp_dim: int = DEFAULT.channels_mlp_dim
    """D_C, hidden width of the channel-mixing MLP."""
    depth: int = DEFAULT.depth
    """N, number of Mixer layers."""
    shift: int = 2
    """Training images are moved by up to this many pixels in each direction, at random per
    image and step (jaxnets.augment.random_shift); 0 turns augmentation off."""


def model_config(config: Config) -> mixer.MixerConfig:
    """The Mixer's sizes from the flags (28x28x1 images, 10 classes)."""
    return mixer.MixerConfig((IMAGE_SIDE, IMAGE_SIDE), 1, config.patch, config.hidden,
                             config.tokens_mlp_dim, config.channels_mlp_dim, config.depth, 10)


def run(config: Config, progress: bool = True) -> dict:
    """Train (see ``common.train_classifier``) and return the results."""
    sizes = model_config(config)
    init = partial(mixer.init_from_config, config=sizes)
    split = data.load_images(config.dataset, config.data_dir, size=IMAGE_SIDE)
    title = (f"MLP-Mixer (P={sizes.patch}, S={sizes.num_patches}, C={sizes.hidden}, "
             f"D_S={sizes.tokens_mlp_dim}, D_C={sizes.channels_mlp_dim}, N={sizes.depth})")
    return common.train_classifier(config, "mixer", title, split, init=init, loss=mixer.loss,
                                   evaluate=mixer.metrics, augment=augmentation(config.shift),
                                   progress=progress)


def main(argv: list[str] | None = None) -> None:
    common.main(Config, run, argv)


if __name__ == "__main__":
    main()
