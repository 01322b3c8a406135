"""Train the sin-MLP of problem set 001 Q2 and write a run folder.

    python -m experiments.sin_mlp                      # digits, bundled with scikit-learn
    python -m experiments.sin_mlp --dataset mnist --data-dir ../shared/data/mnist

The run folder holds config.json, metrics.jsonl (one row per evaluation), curves.png,
params.msgpack and results.json. The same seed gives bit-identical metrics.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from experiments import common
from jaxnets import data
from jaxnets.models import sin_mlp


@dataclasses.dataclass(frozen=True)
class Config(common.TrainFlags):
    """Train the one-hidden-layer sin-MLP (problem set 001 Q2) with softmax cross-entropy."""

    learning_rate: float = 3e-3
    """Step size alpha of the optimizer."""
    batch_size: int = 64
    """Examples per minibatch (drawn without replacement within an epoch)."""
    hidden: int = 128
    """Hidden units d_h."""
    checkpoint_every: int = 5
    """Save a checkpoint after every this many chunks, and after the last; 0 saves none. (Every
    fifth by default: a chunk of this small model is so short that saving after each one would
    take a noticeable share of the training time.)"""


def load_data(config: Config) -> data.Split:
    """The configured data set, images flattened to [N, H * W]."""
    return data.load_flat(config.dataset, config.data_dir)


def run(config: Config, progress: bool = True) -> dict:
    """Train (see ``common.train_classifier``) and return the results."""
    split = load_data(config)
    init = partial(sin_mlp.init, d=split.x_train.shape[1], d_h=config.hidden, m=10)
    return common.train_classifier(config, "sin_mlp", "sin-MLP (problem set 001 Q2)", split,
                                   init=init,
                                   loss=sin_mlp.loss, evaluate=sin_mlp.metrics, progress=progress)


def main(argv: list[str] | None = None) -> None:
    common.main(Config, run, argv)


if __name__ == "__main__":
    main()
