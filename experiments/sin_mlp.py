"""Train the sin-MLP of seed 001 Q2 and write a run folder.

    python -m experiments.sin_mlp                      # digits, bundled with scikit-learn
    python -m experiments.sin_mlp --dataset mnist --data-dir ../shared/data/mnist

The run folder holds config.json, metrics.jsonl (one row per evaluation), curves.png,
params.msgpack and results.json. The same seed gives bit-identical metrics.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from tqdm.auto import tqdm

from jaxnets import data, optim, runs, train
from jaxnets.models import sin_mlp


@dataclasses.dataclass(frozen=True)
class Config:
    """Train the one-hidden-layer sin-MLP (seed 001 Q2) with softmax cross-entropy."""

    learning_rate: float = 3e-3
    """Step size alpha of the optimizer."""
    steps: int = 2000
    """Optimizer steps (minibatches)."""
    hidden: int = 128
    """Hidden units d_h."""
    batch_size: int = 64
    """Examples per minibatch (drawn without replacement within an epoch)."""
    optimizer: Literal["sgd", "momentum", "adagrad", "adam"] = "adam"
    """Optimizer, built from optax (momentum is the seed's EMA form, beta = 0.9)."""
    seed: int = 0
    """Seed of the PRNG key for the initial weights and the data order."""
    dataset: Literal["digits", "mnist"] = "digits"
    """digits: scikit-learn's bundled 8x8 digits. mnist: IDX files in --data-dir."""
    data_dir: Path | None = None
    """Folder with the MNIST IDX .gz files (required for --dataset mnist)."""
    eval_every: int = 100
    """Steps between evaluations on the full train and test sets; must divide --steps."""
    out: Path = Path("runs")
    """Parent folder of the run folder (sin_mlp-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed)."""


def load_data(config: Config) -> data.Split:
    """The configured data set, images flattened to [N, H * W]."""
    return data.load_flat(config.dataset, config.data_dir)


def plot(rows: list[dict], path: Path) -> Path:
    """Train/test loss and accuracy against steps, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = [r["step"] for r in rows]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
    ax_l.plot(step, [r["minibatch/loss"] for r in rows], color="0.6",
              label="minibatch (mean over the interval)")
    for split, color in (("train", "C0"), ("test", "C1")):
        ax_l.plot(step, [r[f"{split}/loss"] for r in rows], color=color, label=split)
        ax_a.plot(step, [r[f"{split}/accuracy"] for r in rows], color=color, label=split)
    ax_l.set(xlabel="step", ylabel="mean NLL", yscale="log", title="loss")
    ax_a.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("sin-MLP (seed 001 Q2)")
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def run(config: Config, progress: bool = True) -> dict:
    """Train, evaluate every ``eval_every`` steps, write the run folder; return the results.

    Training runs as ``steps / eval_every`` jitted chunks of ``train.train_chunk`` (the same
    function ``train.fit`` scans), so a progress bar can advance between chunks.
    Raises data.DataError, ValueError for bad arguments, train.DivergenceError on NaN/inf.
    """
    split = load_data(config)
    train_data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    test_data = (jnp.asarray(split.x_test), jnp.asarray(split.y_test))
    eval_data = {"train": train_data, "test": test_data}
    d, m = train_data[0].shape[1], 10
    init = partial(sin_mlp.init, d=d, d_h=config.hidden, m=m)
    factory = optim.get(config.optimizer)
    key = jax.random.key(config.seed)
    train.validate_run(key, train_data, eval_data, init=init, loss=sin_mlp.loss,
                       evaluate=sin_mlp.metrics, steps=config.steps,
                       batch_size=config.batch_size, eval_every=config.eval_every)

    run_dir = config.run_dir or runs.new_run_dir(config.out, "sin_mlp")
    runs.write_json(run_dir / "config.json", config)
    state = train.init_state(key, init=init, optimizer=factory)
    hparams = {"learning_rate": jnp.asarray(config.learning_rate, jnp.float32)}
    rows, losses = [], []
    chunks = range(config.steps // config.eval_every)
    for _ in tqdm(chunks, desc="sin_mlp", unit="chunk", delay=3, disable=not progress):
        state, (chunk_loss, metrics) = train.train_chunk_jit(
            state, hparams, train_data, eval_data, evaluate=sin_mlp.metrics,
            num_steps=config.eval_every, loss=sin_mlp.loss, optimizer=factory,
            batch_size=config.batch_size)
        losses.append(np.asarray(chunk_loss))
        rows.append({"step": int(state.step), "minibatch/loss": float(np.mean(chunk_loss)),
                     **{k: float(v) for k, v in metrics.items()}})
        if int(state.diverged_at) >= 0:
            break
    runs.write_jsonl(run_dir / "metrics.jsonl", rows)
    train.raise_if_diverged(state.diverged_at, config.learning_rate)

    runs.save_params(run_dir / "params.msgpack", state.params)
    plot(rows, run_dir / "curves.png")
    results = {"run_dir": str(run_dir), "final": rows[-1], "n_train": len(split.y_train),
               "n_test": len(split.y_test), "train_loss": np.concatenate(losses)}
    runs.write_json(run_dir / "results.json", {k: v for k, v in results.items()
                                               if k != "train_loss"})
    return results


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    try:
        results = run(config)
    except (data.DataError, train.DivergenceError, ValueError) as e:
        sys.exit(f"error: {e}")
    f = results["final"]
    print(f"step {f['step']}: train loss {f['train/loss']:.4f} acc {f['train/accuracy']:.4f} | "
          f"test loss {f['test/loss']:.4f} acc {f['test/accuracy']:.4f}")
    print(f"run folder: {results['run_dir']}")


if __name__ == "__main__":
    main()
