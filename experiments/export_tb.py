"""TensorBoard event files for run folders written before jaxnets[tb] was installed.

    python -m experiments.export_tb runs/sin_mlp-... [runs/lr_sweep-... ...]
    tensorboard --logdir runs

Writes <run folder>/tensorboard/ from each folder's metrics*.jsonl, config.json and *.png
(``jaxnets.tensorboard.export``; an earlier export is replaced), holding the folder
(``runs.lock``) meanwhile so that a run still writing it is refused. New runs are exported when
they end (``experiments.common``). Needs tensorboardX: ``pip install "jaxnets[tb]"``. A folder
that cannot be exported is one line on stderr; the others are still exported, and the exit code
is then 1.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import tyro

from jaxnets import runs, tensorboard


@dataclasses.dataclass(frozen=True)
class Config:
    """Write TensorBoard event files (<run folder>/tensorboard/) for existing run folders."""

    run_dirs: Annotated[tuple[Path, ...], tyro.conf.Positional,
                        tyro.conf.arg(metavar="RUN_DIR [RUN_DIR ...]")]
    """Run folders, each with a metrics.jsonl (and metrics*.jsonl, config.json, *.png)."""


def export(run_dir: Path) -> Path:
    """``tensorboard.export`` of one folder, held while it runs."""
    if not Path(run_dir).is_dir():  # before runs.lock, which would create it
        raise ValueError(f"{run_dir}: not a run folder (no such directory)")
    with runs.lock(run_dir):
        return tensorboard.export(run_dir)


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    if not config.run_dirs:
        sys.exit("error: give at least one RUN_DIR")
    if not tensorboard.available():
        sys.exit(f"error: {tensorboard.INSTALL_HINT}")
    failed = 0
    for run_dir in config.run_dirs:
        try:
            print(f"wrote {export(run_dir)}")
        except (ValueError, ImportError, runs.FolderInUse) as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
        except OSError as e:  # FileNotFoundError: no metrics.jsonl; or a full disk
            failed += 1
            print(f"error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}",
                  file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
