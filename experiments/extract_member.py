"""One member of an lr_sweep run, as an ordinary sin_mlp run folder that can be resumed.

    python -m experiments.extract_member runs/lr_sweep-... --optimizer adam --lr-index 3 --seed 1
    python -m experiments.sin_mlp --resume runs/sin_mlp-...     # continue it as a single run
    python -m experiments.sin_mlp --init-from runs/sin_mlp-... --steps 4000  # a new run from it

The member's state (params, optimizer state, data key, step, diverged_at) and its metrics so far
are cut out of the newest checkpoint of the sweep's optimizer (``train.extract_member``) and
written as <new run folder>/checkpoints/sin_mlp/step-<step>.ckpt, beside a config.json of
``experiments.sin_mlp`` with the member's learning rate, optimizer and seed and the sweep's
model, data, batch size and steps. Resuming it gives the member's own run: the same numbers as
``python -m experiments.sin_mlp`` with those flags, up to float rounding between a vmapped and a
single computation (a sweep member equals ``train.fit`` to about 1e-6).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import tyro

from experiments import common, lr_sweep, sin_mlp
from jaxnets import checkpoint, runs, train


@dataclasses.dataclass(frozen=True)
class Config:
    """Extract one member of an lr_sweep run as a sin_mlp run folder."""

    sweep_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SWEEP_DIR")]
    """The lr_sweep run folder (with checkpoints/<optimizer>)."""
    optimizer: lr_sweep.OptimizerName = "sgd"
    """Which optimizer's sweep the member belongs to."""
    lr_index: int = 0
    """Index of the member's learning rate in the sweep's grid (0 = --lr-min)."""
    seed: int = 0
    """The member's seed (0 .. seeds - 1)."""
    out: Path = Path("runs")
    """Parent folder of the new run folder (sin_mlp-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact new run folder instead (created if needed; must hold no checkpoints)."""


def extract(config: Config) -> dict:
    """Write the member's sin_mlp run folder; return its path, config and step."""
    swept = common.load_config(lr_sweep.Config, config.sweep_dir)
    lrs = lr_sweep.learning_rates(swept)
    if config.optimizer not in swept.optimizers:
        raise ValueError(f"--optimizer {config.optimizer}: the sweep ran {list(swept.optimizers)}")
    if not 0 <= config.lr_index < len(lrs):
        raise ValueError(f"--lr-index must be in [0, {len(lrs) - 1}], got {config.lr_index}")
    if not 0 <= config.seed < swept.seeds:
        raise ValueError(f"--seed must be in [0, {swept.seeds - 1}], got {config.seed}")
    store = checkpoint.Checkpoints(Path(config.sweep_dir) / "checkpoints" / config.optimizer)
    source = store.latest()
    if source is None:
        raise checkpoint.CheckpointError(f"{store.directory}: no checkpoint to extract from")
    single = sin_mlp.Config(
        learning_rate=float(lrs[config.lr_index]), steps=swept.steps,
        batch_size=swept.batch_size, optimizer=config.optimizer, seed=config.seed,
        dataset=swept.dataset, data_dir=swept.data_dir, eval_every=swept.eval_every,
        hidden=swept.hidden, out=config.out, run_dir=config.run_dir)
    saved = checkpoint.read_meta(source)
    diff = checkpoint.differences(saved.get("config"), common.settings(swept))
    if diff:  # checkpoints copied in from another sweep
        raise checkpoint.CheckpointError(
            f"{source}: not a checkpoint of the sweep in {config.sweep_dir}: it differs from its "
            "config.json in " + "; ".join(diff))
    step = saved["chunks"] * swept.eval_every
    data = train.member_checkpoint(source, (config.lr_index, config.seed),
                                   {"config": common.settings(single), "part": "sin_mlp"})
    with common.run_folder(single, "sin_mlp") as run_dir:  # once the member is in hand
        dest = runs.atomic_write(
            checkpoint.Checkpoints(run_dir / "checkpoints" / "sin_mlp").path(step), data)
    return {"run_dir": str(run_dir), "checkpoint": str(dest), "step": step,
            "learning_rate": single.learning_rate, "optimizer": config.optimizer,
            "seed": config.seed, "source": str(source)}


def table(r: dict) -> str:
    return (f"member lr {r['learning_rate']:.6g}, seed {r['seed']} of {r['optimizer']} at step "
            f"{r['step']} (from {r['source']})\n"
            f"continue it: python -m experiments.sin_mlp --resume {r['run_dir']}\n"
            f"or train on from its params as a new run (other --steps, optimizer, ...): "
            f"python -m experiments.sin_mlp --init-from {r['run_dir']}")


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, extract, table, argv)


if __name__ == "__main__":
    main()
