"""Sweep learning rates x seeds for each optimizer of problem set 004 section 11, one
``train.sweep`` (one compiled, vmapped computation) per optimizer, and write a run folder.

    python -m experiments.lr_sweep                                  # digits, 5 optimizers
    python -m experiments.lr_sweep --optimizers sgd adam --lr-min 1e-3 --lr-max 1 --count 10
    python -m experiments.lr_sweep --dataset mnist --data-dir ../shared/data/mnist

The run folder holds config.json, metrics.jsonl (one row per member: optimizer, learning rate,
seed, final losses and accuracies, the step it diverged at or -1), sweep.png (final training
loss and test accuracy against the learning rate, one curve per optimizer: median over seeds,
band from min to max, x where a seed diverged) and results.json (the best learning rate per
optimizer) and checkpoints/<optimizer> (the stacked state of the whole grid after every chunk of
--eval-every steps; ``--resume RUN_DIR`` continues an interrupted sweep, and
``python -m experiments.extract_member`` turns one member into a sin_mlp run folder). "Best" is
the learning rate with the lowest final training loss (mean over seeds) among those where no
seed diverged; its test accuracy is reported beside it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from experiments import common
from jaxnets import curvature, data, optim, runs, train
from jaxnets.models import sin_mlp

OptimizerName = Literal["sgd", "momentum", "nesterov", "adagrad", "adam"]


class Model(NamedTuple):
    """What a sweep needs of a model: init(key, d, hidden, m), loss and metrics."""

    init: Callable
    loss: Callable
    metrics: Callable


MODELS = {"sin_mlp": Model(sin_mlp.init, sin_mlp.loss, sin_mlp.metrics)}


@dataclasses.dataclass(frozen=True)
class Config(common.SweepFlags):
    """Learning-rate sweep of each optimizer on one model, all seeds of a grid in one jit."""

    model: Literal["sin_mlp"] = "sin_mlp"
    """Model (init/loss/metrics in jaxnets.models); later models plug into MODELS."""
    optimizers: tuple[OptimizerName, ...] = ("sgd", "momentum", "nesterov", "adagrad", "adam")
    """Optimizers to sweep (jaxnets.optim; momentum, nesterov in the problem sets' form)."""
    lr_min: float = 1e-4
    """Smallest learning rate of the log-spaced grid."""
    lr_max: float = 10.0
    """Largest learning rate."""
    count: int = 11
    """Number of learning rates."""
    seeds: int = 3
    """Seeds per learning rate (seeds 0 .. N-1: initial weights and data order)."""
    steps: int = 500
    """Optimizer steps per run."""
    hidden: int = 128
    """Hidden units d_h."""
    batch_size: int = 64
    """Examples per minibatch."""
    eval_every: int = 100
    """Steps between evaluations on the full train and test sets; must divide --steps."""
    dataset: Literal["digits", "mnist"] = "digits"
    """digits: scikit-learn's bundled 8x8 digits. mnist: IDX files in --data-dir."""
    data_dir: Path | None = None
    """Folder with the MNIST IDX .gz files (required for --dataset mnist)."""
    sharpness: bool = False
    """Also measure each member's sharpness (the top Hessian eigenvalue of the training loss on
    the whole training set, 20 Lanczos steps) at every evaluation, inside the compiled sweep;
    written to metrics.jsonl as "sharpness" (null after a member diverged)."""


def learning_rates(config: Config) -> np.ndarray:
    """The log-spaced grid [count], float32; a clear error for an impossible one."""
    if not (0 < config.lr_min <= config.lr_max and np.isfinite(config.lr_max)):
        raise ValueError(f"need 0 < --lr-min <= --lr-max, got {config.lr_min:g} and "
                         f"{config.lr_max:g}")
    if config.count < 1 or config.seeds < 1:
        raise ValueError(f"--count and --seeds must be >= 1, got {config.count} and "
                         f"{config.seeds}")
    return np.geomspace(config.lr_min, config.lr_max, config.count)


def load_data(config: Config) -> data.Split:
    """The configured data set, images flattened to [N, H * W]."""
    return data.load_flat(config.dataset, config.data_dir)


def best(lrs: np.ndarray, final_loss: np.ndarray, test_acc: np.ndarray,
         diverged: np.ndarray) -> dict:
    """Best learning rate: lowest mean final training loss over seeds, no seed diverged.

    final_loss, test_acc, diverged: [n_lr, n_seed]. None if every learning rate diverged.
    """
    ok = ~diverged.any(axis=1)
    if not ok.any():
        return {"learning_rate": None, "train_loss": None, "test_accuracy": None}
    mean_loss = np.where(ok, np.mean(final_loss, axis=1), np.inf)
    i = int(np.argmin(mean_loss))
    return {"learning_rate": float(lrs[i]), "train_loss": float(mean_loss[i]),
            "test_accuracy": float(np.mean(test_acc[i])),
            "test_accuracy_min": float(np.min(test_acc[i])),
            "test_accuracy_max": float(np.max(test_acc[i]))}


def plot(lrs: np.ndarray, per_opt: dict[str, dict], path: Path, title: str) -> Path:
    """Final training loss and test accuracy against the learning rate, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("train_loss", "final training loss (full train set)", "log"),
              ("test_accuracy", "final test accuracy", "linear"))
    for ax, (metric, label, yscale) in zip(axes, panels, strict=True):
        for c, (name, res) in enumerate(per_opt.items()):
            v = np.asarray(res[metric], float)  # [n_lr, n_seed], NaN where diverged
            with warnings.catch_warnings():  # all-NaN rows: every seed diverged
                warnings.simplefilter("ignore", RuntimeWarning)
                med, lo, hi = (np.nanmedian(v, 1), np.nanmin(v, 1), np.nanmax(v, 1))
            ax.plot(lrs, med, "o-", color=f"C{c}", ms=3, label=name)
            ax.fill_between(lrs, lo, hi, color=f"C{c}", alpha=0.2)
            div = np.asarray(res["diverged"]).any(axis=1)
            if div.any():
                ax.plot(lrs[div], np.full(div.sum(), 1.0), "x", color=f"C{c}", ms=8,
                        transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set(xscale="log", yscale=yscale, xlabel="learning rate", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(title="median, min-max over seeds; x: diverged", fontsize=8)
    fig.suptitle(title)
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def run(config: Config, progress: bool = True) -> dict:
    """One ``train.sweep`` per optimizer over learning rates x seeds; write the run folder.

    Raises data.DataError, ValueError for bad arguments (before anything is compiled).
    """
    lrs = learning_rates(config)
    split = load_data(config)
    train_data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    eval_data = {"train": train_data,
                 "test": (jnp.asarray(split.x_test), jnp.asarray(split.y_test))}
    model = MODELS[config.model]
    init = partial(model.init, d=train_data[0].shape[1], d_h=config.hidden, m=10)
    track = (curvature.sharpness(model.loss, every=config.eval_every) if config.sharpness
             else None)
    with common.run_folder(config, "lr_sweep") as run_dir:
        per_opt, rows = {}, []
        for name in tqdm(config.optimizers, desc="lr_sweep", unit="optimizer",
                         disable=not progress):
            r = train.sweep(lrs, train_data, eval_data, init=init, loss=model.loss,
                            optimizer=optim.get(name), steps=config.steps,
                            batch_size=config.batch_size, seeds=config.seeds,
                            evaluate=model.metrics, eval_every=config.eval_every,
                            **common.checkpoint_args(config, run_dir, name), progress=progress,
                            desc=f"lr_sweep {name}", track=track)
            rows += curve_rows(name, lrs, r, config.eval_every)
            common.stop_if_interrupted(r, run_dir, rows)
            final = {k: np.asarray(v[..., -1]) for k, v in r.eval_metrics.items()}
            diverged = np.asarray(r.diverged_at) >= 0  # [n_lr, n_seed]
            per_opt[name] = {"train_loss": final["train/loss"],
                             "test_accuracy": final["test/accuracy"], "diverged": diverged}
            per_opt[name]["best"] = best(lrs, final["train/loss"], final["test/accuracy"],
                                         diverged)
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        title = (f"{config.model} on {config.dataset}: {config.steps} steps, batch "
                 f"{config.batch_size}, {config.seeds} seeds")
        plot(lrs, per_opt, run_dir / "sweep.png", title)
        results = {"run_dir": str(run_dir), "learning_rates": lrs.tolist(),
                   "best": {name: res["best"] for name, res in per_opt.items()},
                   "diverged": {name: int(res["diverged"].any(axis=1).sum())
                                for name, res in per_opt.items()}}
        runs.write_json(run_dir / "results.json", results)
    return results | {"per_optimizer": per_opt}


def curve_rows(optimizer: str, lrs: np.ndarray, r: train.SweepResult, eval_every: int
               ) -> list[dict]:
    """metrics.jsonl's rows of one optimizer's sweep: every member's learning curve, one row
    per (learning rate, seed, evaluation), with ``diverged_at`` (-1 while finite; the metrics
    are null from the evaluation after it) and, if tracked, the sharpness then."""
    metrics = {k: np.asarray(v) for k, v in r.eval_metrics.items()}  # [n_lr, n_seed, evals]
    if r.tracked:  # tracked every evaluation: [n_lr, n_seed, evals, k = 1]
        metrics["sharpness"] = np.asarray(r.tracked["sharpness"])[..., 0]
    n_lr, n_seed, n_eval = next(iter(metrics.values())).shape
    return [{"optimizer": optimizer, "learning_rate": float(lrs[i]),
             "seed": int(r.grid["seed"][j]), "step": (e + 1) * eval_every,
             **{k: float(v[i, j, e]) for k, v in metrics.items()},
             "diverged_at": int(r.diverged_at[i, j])}
            for i in range(n_lr) for j in range(n_seed) for e in range(n_eval)]


def table(results: dict) -> str:
    """The best learning rate per optimizer, as text."""
    lines = [f"{'optimizer':10s} {'best lr':>9s} {'train loss':>10s} {'test acc (min-max)':>20s} "
             f"{'diverged lrs':>12s}"]
    for name, b in results["best"].items():
        n_div = results["diverged"][name]
        if b["learning_rate"] is None:
            lines.append(f"{name:10s} {'-':>9s} {'-':>10s} {'every lr diverged':>20s} {n_div:12d}")
            continue
        lo, hi = b["test_accuracy_min"], b["test_accuracy_max"]
        acc = f"{b['test_accuracy']:.3f} ({lo:.3f}-{hi:.3f})"
        lines.append(f"{name:10s} {b['learning_rate']:9.3g} {b['train_loss']:10.4f} {acc:>20s} "
                     f"{n_div:12d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
