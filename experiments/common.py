"""What the classifier experiments share: the training flags, a chunked training loop with a
progress bar, the run folder and the curves plot.

A run folder holds config.json, metrics.jsonl (one row per evaluation), curves.png,
params.msgpack and results.json. The same seed gives bit-identical metrics.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from tqdm.auto import tqdm

from jaxnets import augment, data, optim, runs, train


@dataclasses.dataclass(frozen=True)
class TrainFlags:
    """Flags every classifier experiment has."""

    learning_rate: float = 1e-3
    """Step size alpha of the optimizer."""
    steps: int = 2000
    """Optimizer steps (minibatches)."""
    batch_size: int = 128
    """Examples per minibatch (drawn without replacement within an epoch)."""
    optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "adam"] = "adam"
    """Optimizer, built from optax (momentum and Nesterov in the seed's EMA form, beta = 0.9)."""
    seed: int = 0
    """Seed of the PRNG key for the initial weights and the data order."""
    dataset: Literal["digits", "mnist"] = "digits"
    """digits: scikit-learn's bundled 8x8 digits. mnist: IDX files in --data-dir (with only the
    official t10k pair: a fixed 8,000 train / 2,000 test split of it)."""
    data_dir: Path | None = None
    """Folder with the MNIST IDX .gz files (required for --dataset mnist)."""
    eval_every: int = 100
    """Steps between evaluations on the full train and test sets; must divide --steps."""
    out: Path = Path("runs")
    """Parent folder of the run folder (<experiment>-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed)."""


def augmentation(shift: int) -> train.AugmentFn | None:
    """``augment.random_shift`` by up to ``shift`` pixels; None for 0."""
    if not (isinstance(shift, int) and shift >= 0):
        raise ValueError(f"--shift must be an integer >= 0, got {shift!r}")
    return partial(augment.random_shift, max_shift=shift) if shift else None


def plot_curves(rows: list[dict], path: Path, title: str) -> Path:
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
    fig.suptitle(title)
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def train_classifier(config: TrainFlags, name: str, title: str, split: data.Split, *,
                     init: Callable, loss: Callable, evaluate: Callable,
                     augment: train.AugmentFn | None = None, progress: bool = True) -> dict:
    """Train, evaluate every ``eval_every`` steps, write the run folder; return the results.

    Training runs as ``steps / eval_every`` jitted chunks of ``train.train_chunk`` (the same
    function ``train.fit`` scans), so a progress bar can advance between chunks. ``augment``
    transforms every training minibatch (``train.fit``'s argument).
    Raises ValueError for bad arguments and train.DivergenceError on NaN/inf.
    """
    train_data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    test_data = (jnp.asarray(split.x_test), jnp.asarray(split.y_test))
    eval_data = {"train": train_data, "test": test_data}
    factory = optim.get(config.optimizer)
    key = jax.random.key(config.seed)
    train.validate_run(key, train_data, eval_data, init=init, loss=loss, evaluate=evaluate,
                       steps=config.steps, batch_size=config.batch_size,
                       eval_every=config.eval_every, augment=augment)

    run_dir = config.run_dir or runs.new_run_dir(config.out, name)
    runs.write_json(run_dir / "config.json", config)
    state = train.init_state(key, init=init, optimizer=factory)
    hparams = {"learning_rate": jnp.asarray(config.learning_rate, jnp.float32)}
    rows, losses = [], []
    chunks = range(config.steps // config.eval_every)
    for _ in tqdm(chunks, desc=name, unit="chunk", delay=3, disable=not progress):
        state, (chunk_loss, metrics) = train.train_chunk_jit(
            state, hparams, train_data, eval_data, evaluate=evaluate,
            num_steps=config.eval_every, loss=loss, optimizer=factory,
            batch_size=config.batch_size, augment=augment)
        losses.append(np.asarray(chunk_loss))
        rows.append({"step": int(state.step), "minibatch/loss": float(np.mean(chunk_loss)),
                     **{k: float(v) for k, v in metrics.items()}})
        if int(state.diverged_at) >= 0:
            break
    runs.write_jsonl(run_dir / "metrics.jsonl", rows)
    train.raise_if_diverged(state.diverged_at, config.learning_rate)

    runs.save_params(run_dir / "params.msgpack", state.params)
    plot_curves(rows, run_dir / "curves.png", title)
    results = {"run_dir": str(run_dir), "final": rows[-1], "n_train": len(split.y_train),
               "n_test": len(split.y_test), "train_loss": np.concatenate(losses)}
    runs.write_json(run_dir / "results.json", {k: v for k, v in results.items()
                                               if k != "train_loss"})
    return results


class Members(NamedTuple):
    """What ``train_members`` returns, member axis first."""

    params: object  # final params, leaves [M, ...]
    train_loss: np.ndarray  # [M, steps], NaN after divergence
    eval_metrics: dict[str, np.ndarray]  # "split/metric" -> [M, steps // eval_every]
    diverged_at: np.ndarray  # [M], -1 where the run stayed finite


def train_members(keys, learning_rates, train_data, eval_data: dict, *, init: Callable,
                  loss: Callable, evaluate: Callable, optimizer: Callable, steps: int,
                  batch_size: int, eval_every: int, desc: str = "train",
                  progress: bool = True) -> Members:
    """M runs side by side: ``jax.vmap`` of ``train.train_chunk`` over (key, learning rate).

    The same computation as ``train.sweep`` (member m equals ``train.fit(keys[m],
    learning_rates[m], ...)``) cut into ``steps / eval_every`` jitted chunks so a progress bar
    advances between them; one compile for all chunks.
    Args: keys [M] PRNG keys, learning_rates [M]; the rest as in ``train.fit``.
    """
    lrs = jnp.asarray(learning_rates, jnp.float32)
    train.validate_run(keys[0], train_data, eval_data, init=init, loss=loss, evaluate=evaluate,
                       steps=steps, batch_size=batch_size, eval_every=eval_every,
                       optimizer=optimizer, where=desc)
    states = jax.vmap(partial(train.init_state, init=init, optimizer=optimizer))(keys)
    chunk = jax.jit(jax.vmap(
        partial(train.train_chunk, evaluate=evaluate, num_steps=eval_every, loss=loss,
                optimizer=optimizer, batch_size=batch_size),
        in_axes=(0, 0, None, None)))
    losses, metrics = [], []
    for _ in tqdm(range(steps // eval_every), desc=desc, unit="chunk", delay=3,
                  disable=not progress):
        states, (chunk_loss, chunk_metrics) = chunk(states, {"learning_rate": lrs}, train_data,
                                                    eval_data)
        losses.append(np.asarray(chunk_loss))
        metrics.append({k: np.asarray(v) for k, v in chunk_metrics.items()})
    return Members(states.params, np.concatenate(losses, axis=1),
                   {k: np.stack([m[k] for m in metrics], axis=1) for k in metrics[0]},
                   np.asarray(states.diverged_at))


def main(config_cls: type, run: Callable[[TrainFlags], dict], argv: list[str] | None) -> None:
    """Parse flags into ``config_cls``, run, print the final metrics; errors exit with code 1."""
    config = tyro.cli(config_cls, args=argv)
    try:
        results = run(config)
    except (data.DataError, train.DivergenceError, ValueError) as e:
        sys.exit(f"error: {e}")
    f = results["final"]
    print(f"step {f['step']}: train loss {f['train/loss']:.4f} acc {f['train/accuracy']:.4f} | "
          f"test loss {f['test/loss']:.4f} acc {f['test/accuracy']:.4f}")
    print(f"run folder: {results['run_dir']}")


def cli(config_cls: type, run: Callable, table: Callable[[dict], str], argv: list[str] | None,
        errors: tuple[type[Exception], ...] = (data.DataError, ValueError, MemoryError)) -> None:
    """Parse flags into ``config_cls``, run, print ``table(results)`` and the run folder; write
    the results to ``--json PATH`` where the config has that flag. ``errors`` exit with code 1."""
    config = tyro.cli(config_cls, args=argv)
    try:
        results = run(config)
    except errors as e:
        sys.exit(f"error: {e}")
    print(table(results))
    if "run_dir" in results:
        print(f"run folder: {results['run_dir']}")
    if getattr(config, "json", None):
        runs.write_json(config.json, results)
        print(f"wrote {config.json}")
