"""Gradient descent at the edge of stability (Cohen et al., ICLR 2021): full-batch training of
an fc-tanh network, its sharpness (top Hessian eigenvalue) tracked inside the compiled sweep.

    python -m experiments.edge_of_stability                       # digits, 6 learning rates
    python -m experiments.edge_of_stability --optimizer adam      # preconditioned sharpness
    python -m experiments.edge_of_stability --dataset mnist --data-dir ../shared/data/mnist

On a quadratic, gradient descent is stable iff the sharpness is below 2 / eta (problem set 004
Q12). On a network the sharpness first rises ("progressive sharpening") until it reaches
2 / eta, then hovers there while the loss keeps falling, non-monotonically. Adam's
preconditioned sharpness (``curvature.preconditioned_top_eigenvalue``) settles near
(2 + 2 b1) / ((1 - b1) eta) = 38 / eta instead (Cohen et al. 2022).

Setup: two hidden layers of --hidden tanh units, loss 1/2 ||f(x) - onehot(y)||^2 averaged over
the examples, full-batch gradient descent (sgd) or Adam at each learning rate, all as one
``train.sweep`` with ``curvature.sharpness`` (Lanczos, --iters products) every --every steps on
the whole training set. A run is analysed up to the evaluation where it first reaches
--target-accuracy on the training set (or to --steps).

The run folder holds config.json, metrics.jsonl (per learning rate and every --every steps:
sharpness, its threshold, training loss and accuracy), eos.png (sharpness against step with a
dashed threshold per learning rate, the training loss beside it), results.json (the table) and
checkpoints/.
Per learning rate the table gives the step at which the sharpness first reaches 0.9 x the
threshold, the median of sharpness / threshold after that step, and the training loss then and
at the end. The goals: each run that reaches its threshold hovers at it (median in [0.9, 1.15])
and ends with a lower loss than when it got there; the smallest learning rate (the control)
never reaches its threshold.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Literal

import jax.numpy as jnp
import numpy as np

from experiments import common
from jaxnets import curvature, data, optim, runs, train
from jaxnets.models import fc_tanh

DEFAULT_LEARNING_RATES = {
    # sgd: 2 / eta = 50, 60, 70, 80, 100, and the control at 1000
    "sgd": (2 / 50, 2 / 60, 2 / 70, 2 / 80, 2 / 100, 2 / 1000),
    # adam: 38 / eta = 20,000, 40,000, 80,000, and the control at 3,800,000
    "adam": (38 / 20_000, 38 / 40_000, 38 / 80_000, 38 / 3_800_000),
}
REACHED = 0.9  # the sharpness has "reached" the threshold at REACHED x threshold
GOAL = (0.9, 1.15)  # the median of sharpness / threshold after reaching it


@dataclasses.dataclass(frozen=True)
class Config(common.SweepFlags):
    """Full-batch training of fc-tanh at several learning rates, sharpness tracked in the run."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    """sgd: full-batch gradient descent, sharpness against 2 / eta. adam: Adam (b1 0.9, b2
    0.999, eps 1e-8), preconditioned sharpness against 38 / eta."""
    learning_rates: tuple[float, ...] | None = None
    """Learning rates, one run each (default: sgd 2/50, 2/60, 2/70, 2/80, 2/100 and the control
    2/1000; adam 38/20000, 38/40000, 38/80000 and the control 1e-5)."""
    steps: int = 8000
    """Gradient steps per run (the limit)."""
    every: int = 50
    """Steps between two measurements of the sharpness (and of the training loss)."""
    iters: int = 20
    """Lanczos iterations (Hessian-vector products) per measurement, each started from the last
    measurement's top eigenvector (3 keep the tracking within 15 % of the run's time)."""
    hidden: int = 200
    """Units in each of the two hidden tanh layers."""
    target_accuracy: float = 0.99
    """Each run is analysed up to the evaluation where it first reaches this training accuracy."""
    dataset: Literal["digits", "mnist"] = "digits"
    """digits: scikit-learn's bundled 8x8 digits (training split, 1,437 images). mnist: the first
    --examples training images of the MNIST files in --data-dir."""
    examples: int = 5000
    """Training images used with --dataset mnist."""
    data_dir: Path | None = None
    """Folder with the MNIST IDX .gz files (required for --dataset mnist)."""
    seed: int = 0
    """Random seed of the initial weights."""


def learning_rates(config: Config) -> np.ndarray:
    lrs = config.learning_rates or DEFAULT_LEARNING_RATES[config.optimizer]
    return np.asarray(lrs, np.float64)


def threshold(config: Config, lr: np.ndarray) -> np.ndarray:
    """Where the (preconditioned) sharpness stops being stable: 2 / eta for gradient descent,
    (2 + 2 b1) / ((1 - b1) eta) = 38 / eta for Adam with b1 = 0.9."""
    return 2 / lr if config.optimizer == "sgd" else (2 + 2 * 0.9) / ((1 - 0.9) * lr)


def load(config: Config) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The training set, images flattened: x [n, d], y [n]."""
    if config.dataset == "mnist" and config.examples < 1:
        raise ValueError(f"--examples must be >= 1, got {config.examples}")
    split = data.load_flat(config.dataset, config.data_dir)
    n = config.examples if config.dataset == "mnist" else len(split.x_train)
    return jnp.asarray(split.x_train[:n]), jnp.asarray(split.y_train[:n])


def analyse(steps: np.ndarray, sharp: np.ndarray, loss: np.ndarray, acc: np.ndarray,
            limit: float, target: float) -> dict:
    """One run's row of the table from its measurements [n] at ``steps`` [n]."""
    done = np.flatnonzero(acc >= target)
    end = int(done[0]) if done.size else len(steps) - 1
    sharp, loss = sharp[:end + 1], loss[:end + 1]
    ratio = sharp / limit
    at = np.flatnonzero(ratio >= REACHED)
    row = {"threshold": float(limit), "target_step": int(steps[end]) if done.size else None,
           "final_loss": float(loss[-1]), "max_ratio": float(np.nanmax(ratio))}
    if not at.size:
        return row | {"reached_step": None, "median_ratio": None, "loss_at_reach": None,
                      "hovers": None, "loss_fell": None}
    i = int(at[0])
    median = float(np.median(ratio[i:]))
    return row | {"reached_step": int(steps[i]), "median_ratio": median,
                  "loss_at_reach": float(loss[i]),
                  "hovers": bool(GOAL[0] <= median <= GOAL[1]),
                  "loss_fell": bool(loss[-1] < loss[i])}


def rows_of(config: Config, lrs: np.ndarray, r: train.SweepResult) -> list[dict]:
    """metrics.jsonl: one row per learning rate and measurement."""
    sharp = np.asarray(r.tracked["sharpness"])[:, 0, :, 0]  # [n_lr, n]
    loss = np.asarray(r.eval_metrics["train/loss"])[:, 0]
    acc = np.asarray(r.eval_metrics["train/accuracy"])[:, 0]
    return [{"learning_rate": float(lr), "step": (t + 1) * config.every,
             "sharpness": float(sharp[i, t]), "threshold": float(threshold(config, lr)),
             "train/loss": float(loss[i, t]), "train/accuracy": float(acc[i, t]),
             "diverged_at": int(r.diverged_at[i, 0])}
            for i, lr in enumerate(lrs) for t in range(sharp.shape[1])]


def plot(config: Config, lrs: np.ndarray, r: train.SweepResult, path: Path) -> Path:
    """Sharpness against step (dashed: each learning rate's threshold) and training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sharp = np.asarray(r.tracked["sharpness"])[:, 0, :, 0]
    loss = np.asarray(r.eval_metrics["train/loss"])[:, 0]
    steps = config.every * np.arange(1, sharp.shape[1] + 1)
    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    name = "2 / eta" if config.optimizer == "sgd" else "38 / eta"
    for i, lr in enumerate(lrs):
        c = f"C{i}"
        ax_s.plot(steps, sharp[i], color=c, label=f"eta = {lr:.4g}")
        ax_s.axhline(threshold(config, lr), color=c, ls="--", lw=1)
        ax_l.plot(steps, loss[i], color=c)
    top = np.nanmax(sharp) * 1.3
    ax_s.set(xlabel="step", ylim=(0, top), title=f"sharpness; dashed: {name}",
             ylabel="top Hessian eigenvalue" if config.optimizer == "sgd"
             else "preconditioned sharpness")
    ax_l.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
    for ax in (ax_s, ax_l):
        ax.grid(alpha=0.3)
    ax_s.legend(fontsize=8)
    fig.suptitle(f"fc-tanh ({config.hidden}x2) on {config.dataset}, full-batch "
                 f"{'gradient descent' if config.optimizer == 'sgd' else 'Adam'}")
    fig.tight_layout()
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def run(config: Config, progress: bool = True) -> dict:
    """One ``train.sweep`` over the learning rates with the sharpness tracked; the run folder."""
    lrs = learning_rates(config)
    common.check_learning_rates(dataclasses.replace(config, learning_rates=tuple(lrs)))
    x, y = load(config)
    init = partial(fc_tanh.init, widths=(x.shape[1], config.hidden, config.hidden, 10))
    track = (curvature.sharpness(fc_tanh.loss, every=config.every, iters=config.iters)
             if config.optimizer == "sgd" else
             curvature.preconditioned_sharpness(fc_tanh.loss, every=config.every,
                                                iters=config.iters))
    with common.run_folder(config, "edge_of_stability") as run_dir:
        r = train.sweep(lrs, (x, y), {"train": (x, y)}, init=init, loss=fc_tanh.loss,
                        optimizer=optim.get(config.optimizer), steps=config.steps,
                        batch_size=x.shape[0], seeds=[config.seed], evaluate=fc_tanh.metrics,
                        eval_every=config.every, track=track, progress=progress,
                        desc="edge_of_stability",
                        **common.checkpoint_args(config, run_dir, "sweep"))
        rows = rows_of(config, lrs, r)
        common.stop_if_interrupted(r, run_dir, rows)
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        sharp = np.asarray(r.tracked["sharpness"])[:, 0, :, 0]
        steps = config.every * np.arange(1, sharp.shape[1] + 1)
        table_rows = [{"learning_rate": float(lr), **analyse(
            steps, sharp[i], np.asarray(r.eval_metrics["train/loss"])[i, 0],
            np.asarray(r.eval_metrics["train/accuracy"])[i, 0], threshold(config, lr),
            config.target_accuracy)} for i, lr in enumerate(lrs)]
        plot(config, lrs, r, run_dir / "eos.png")
        reached = [t for t in table_rows if t["reached_step"] is not None]
        control = table_rows[int(np.argmin(lrs))]
        goals = {"hovers": all(t["hovers"] for t in reached) and bool(reached),
                 "loss_fell": all(t["loss_fell"] for t in reached) and bool(reached),
                 "control_below": control["max_ratio"] < 1.0}
        results = {"run_dir": str(run_dir), "optimizer": config.optimizer,
                   "rows": table_rows, "goals": goals}
        runs.write_json(run_dir / "results.json", results)
    return results


def table(results: dict) -> str:
    """The per-learning-rate table and the goals, as text."""
    name = "2/eta" if results["optimizer"] == "sgd" else "38/eta"
    lines = [f"{'eta':>9s} {name:>8s} {'reached at':>10s} {'median S/thr':>12s} "
             f"{'loss then':>10s} {'loss end':>9s} {'99% at':>7s}"]
    for t in results["rows"]:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(f"{t['learning_rate']:9.4g} {t['threshold']:8.1f} "
                     f"{fmt(t['reached_step'], 'd'):>10s} {fmt(t['median_ratio'], '.3f'):>12s} "
                     f"{fmt(t['loss_at_reach'], '.4f'):>10s} {t['final_loss']:9.4f} "
                     f"{fmt(t['target_step'], 'd'):>7s}")
    g = results["goals"]
    lines.append(f"goals: hovers in [{GOAL[0]}, {GOAL[1]}] {'met' if g['hovers'] else 'NOT met'}; "
                 f"loss fell after reaching {'met' if g['loss_fell'] else 'NOT met'}; control "
                 f"below its threshold {'met' if g['control_below'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
