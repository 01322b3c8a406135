"""The adding problem (Hochreiter and Schmidhuber 1997): can the network carry two numbers
across T steps? LSTM against tanh RNN, each over a grid of learning rates x seeds, all members
of one cell trained side by side as one ``train.sweep``.

    python -m experiments.adding                       # T = 100, both cells, 6 lrs x 3 seeds
    python -m experiments.adding --T 50 --cells rnn --steps 4000

Data is generated (``jaxnets.data.adding_problem``): a fixed training set and a test set drawn
from different seeds. Predicting the mean gives test MSE 1/6 ~ 0.167; "solved" is test MSE below
--solved-mse (0.01). The run folder holds config.json, metrics.jsonl (one row per member and
evaluation), curves.png (test MSE against steps at each cell's best learning rate, every seed;
final test MSE against the learning rate), results.json (the table below) and checkpoints/<cell>
(``--resume RUN_DIR`` continues an interrupted run; see experiments/common.py).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Literal

import jax.numpy as jnp
import numpy as np

from experiments import common
from jaxnets import data, optim, runs, train
from jaxnets.models import rnn

BASELINE_MSE = 1 / 6  # Var(U1 + U2) for independent U[0, 1]: what predicting the mean scores


@dataclasses.dataclass(frozen=True)
class Config(common.SweepFlags):
    """LSTM vs tanh RNN on the adding problem, a learning-rate grid x seeds per cell."""

    T: int = 100
    """Sequence length."""
    cells: tuple[Literal["lstm", "rnn"], ...] = ("lstm", "rnn")
    """Cells to train (each gets the same grid, steps and data)."""
    hidden: int = 32
    """Hidden units d_h."""
    lr_min: float = 1e-4
    """Smallest learning rate of the log-spaced grid (Adam)."""
    lr_max: float = 3e-2
    """Largest learning rate."""
    count: int = 6
    """Number of learning rates."""
    seeds: int = 3
    """Seeds per learning rate (initial weights and data order)."""
    steps: int = 2000
    """Adam steps per run."""
    batch_size: int = 64
    """Sequences per minibatch."""
    eval_every: int = 100
    """Steps between evaluations on the test set; must divide --steps."""
    n_train: int = 20000
    """Training sequences (fixed set, drawn with data seed 0)."""
    n_test: int = 2000
    """Test sequences (drawn with data seed 1)."""
    forget_bias: float = 1.0
    """Initial bias of the LSTM's forget gate."""
    solved_mse: float = 0.01
    """Test MSE below which a run counts as solved."""


def learning_rates(config: Config) -> np.ndarray:
    """The log-spaced grid [count], float32, after checking every flag (clear errors)."""
    if not (0 < config.lr_min <= config.lr_max and np.isfinite(config.lr_max)):
        raise ValueError(f"need 0 < --lr-min <= --lr-max, got {config.lr_min:g} and "
                         f"{config.lr_max:g}")
    for name in ("count", "seeds", "hidden", "n_train", "n_test"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(config, name)}")
    if not config.cells:
        raise ValueError("--cells must name at least one cell")
    if not (config.steps >= 1 and config.eval_every >= 1 and config.steps % config.eval_every == 0):
        raise ValueError(f"--steps ({config.steps}) must be a positive multiple of --eval-every "
                         f"({config.eval_every})")
    if not 1 <= config.batch_size <= config.n_train:
        raise ValueError(f"--batch-size must be in [1, --n-train = {config.n_train}], got "
                         f"{config.batch_size}")
    return np.geomspace(config.lr_min, config.lr_max, config.count)


def first_solved(step: np.ndarray, mse: np.ndarray, threshold: float) -> np.ndarray:
    """The first evaluation step with MSE < threshold, per row of mse [..., n_eval]; -1 if none."""
    hit = mse < threshold
    return np.where(hit.any(-1), step[np.argmax(hit, -1)], -1)


def summarize(lrs: np.ndarray, step: np.ndarray, mse: np.ndarray, diverged: np.ndarray,
              threshold: float) -> dict:
    """One cell's results. mse [n_lr, n_seed, n_eval] (NaN after divergence), diverged
    [n_lr, n_seed]. Best lr: lowest median final test MSE among lrs where no seed diverged."""
    final = mse[..., -1]
    ok = ~diverged.any(axis=1)
    median = np.where(ok, np.median(final, axis=1), np.inf)
    i = int(np.argmin(median)) if ok.any() else None
    solved_at = first_solved(step, mse, threshold)
    per_lr = [{"learning_rate": float(lr), "final_mse": final[k].tolist(),
               "solved": int((final[k] < threshold).sum()), "diverged": int(diverged[k].sum()),
               "solved_at": solved_at[k].tolist()} for k, lr in enumerate(lrs)]
    best = None if i is None else {
        "learning_rate": float(lrs[i]), "median_final_mse": float(median[i]),
        "min_final_mse": float(final[i].min()), "max_final_mse": float(final[i].max()),
        "solved": int((final[i] < threshold).sum()), "index": i}
    return {"best": best, "per_lr": per_lr,
            "solved_any": int((np.nan_to_num(final, nan=np.inf) < threshold).sum())}


def plot(step: np.ndarray, per_cell: dict, lrs: np.ndarray, path: Path, title: str) -> Path:
    """Test MSE curves at each cell's best lr (every seed) and final MSE against lr, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c, (cell, res) in enumerate(per_cell.items()):
        best = res["best"]
        if best is not None:
            for j, curve in enumerate(res["mse"][best["index"]]):
                ax_c.plot(step, curve, color=f"C{c}", alpha=0.8,
                          label=f"{cell}, lr {best['learning_rate']:.3g}" if j == 0 else None)
        final = res["mse"][..., -1]
        ax_l.plot(lrs, np.nanmedian(final, 1) if np.isfinite(final).any() else final[:, 0],
                  "o-", color=f"C{c}", ms=3, label=cell)
        ax_l.fill_between(lrs, np.nanmin(final, 1), np.nanmax(final, 1), color=f"C{c}",
                          alpha=0.2)
        div = res["diverged"].any(axis=1)
        if div.any():
            ax_l.plot(lrs[div], np.full(div.sum(), 1.0), "x", color=f"C{c}", ms=8,
                      transform=ax_l.get_xaxis_transform(), clip_on=False)
    for ax in (ax_c, ax_l):
        ax.axhline(BASELINE_MSE, color="0.5", ls="--", lw=1, label="predict the mean (1/6)")
        ax.axhline(per_cell[next(iter(per_cell))]["threshold"], color="0.5", ls=":", lw=1,
                   label="solved")
        ax.set(yscale="log", ylabel="test MSE")
        ax.grid(alpha=0.3)
    ax_c.set(xlabel="step", title="best learning rate, every seed")
    ax_l.set(xscale="log", xlabel="learning rate (Adam)",
             title="final test MSE: median, min-max over seeds; x: diverged")
    ax_c.legend(fontsize=8)
    ax_l.legend(fontsize=8)
    fig.suptitle(title)
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def run(config: Config, progress: bool = True) -> dict:
    """Train every cell over lrs x seeds (one ``train.sweep`` per cell); write the run folder.

    Raises ValueError for bad flags, before anything is compiled.
    """
    lrs = learning_rates(config)
    x, y = data.adding_problem(config.n_train, config.T, seed=0)
    x_test, y_test = data.adding_problem(config.n_test, config.T, seed=1)
    train_data = (jnp.asarray(x), jnp.asarray(y))
    eval_data = {"test": (jnp.asarray(x_test), jnp.asarray(y_test))}
    n_eval = config.steps // config.eval_every
    step = config.eval_every * np.arange(1, n_eval + 1)
    with common.run_folder(config, "adding") as run_dir:
        per_cell, rows = {}, []
        for cell in config.cells:
            init = partial(rnn.init, d_x=2, d_h=config.hidden, d_y=1, cell=cell,
                           forget_bias=config.forget_bias)
            m = train.sweep(lrs, train_data, eval_data, init=init, loss=rnn.loss,
                            evaluate=rnn.metrics, optimizer=optim.get("adam"),
                            steps=config.steps, batch_size=config.batch_size,
                            seeds=config.seeds, eval_every=config.eval_every,
                            progress=progress, desc=f"adding {cell}",
                            **common.checkpoint_args(config, run_dir, cell))
            mse = np.asarray(m.eval_metrics["test/loss"])  # [n_lr, n_seed, n_eval]
            for i, j in np.ndindex(mse.shape[:2]):
                rows += [{"cell": cell, "learning_rate": float(lrs[i]), "seed": j,
                          "step": int(s), "test/mse": float(v),
                          "diverged_at": int(m.diverged_at[i, j])}
                         for s, v in zip(step[:mse.shape[-1]], mse[i, j], strict=True)]
            common.stop_if_interrupted(m, run_dir, rows)
            diverged = np.asarray(m.diverged_at) >= 0  # [n_lr, n_seed]
            per_cell[cell] = summarize(lrs, step, mse, diverged, config.solved_mse) | {
                "mse": mse, "diverged": diverged, "threshold": config.solved_mse}
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        title = (f"adding problem, T = {config.T}: {config.steps} Adam steps of "
                 f"{config.batch_size}, d_h = {config.hidden}, {config.seeds} seeds")
        plot(step, per_cell, lrs, run_dir / "curves.png", title)
        summary = {cell: {k: v for k, v in res.items() if k not in ("mse", "diverged")}
                   for cell, res in per_cell.items()}
        results = {"run_dir": str(run_dir), "T": config.T, "baseline_mse": BASELINE_MSE,
                   "cells": summary}
        runs.write_json(run_dir / "results.json", results)
    return results | {"per_cell": per_cell}


def table(results: dict) -> str:
    """Per cell and learning rate: median final test MSE, seeds solved, first solved step."""
    lines = [f"{'cell':5s} {'lr':>8s} {'median MSE':>10s} {'min-max':>17s} {'solved':>7s} "
             f"{'first step < thr':>16s} {'diverged':>8s}"]
    for cell, res in results["cells"].items():
        for r in res["per_lr"]:
            f = np.asarray(r["final_mse"])
            at = [s for s in r["solved_at"] if s >= 0]
            lines.append(
                f"{cell:5s} {r['learning_rate']:8.2g} {np.median(f):10.4f} "
                f"{f'{np.min(f):.4f}-{np.max(f):.4f}':>17s} {r['solved']:>3d}/{len(f):<3d} "
                f"{(str(min(at)) if at else '-'):>16s} {r['diverged']:8d}")
        b = res["best"]
        lines.append(f"{cell:5s} best lr {b['learning_rate']:.3g}: median final test MSE "
                     f"{b['median_final_mse']:.4f}" if b else f"{cell:5s} every lr diverged")
    lines.append(f"(predicting the mean: {BASELINE_MSE:.4f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
