"""What the experiments share: run-folder and checkpoint flags, resuming (``parse``,
``run_folder``), the classifiers' training flags and run (``train_classifier``), the curves plot and
the command-line entry points.

Experiments own their flags, run folders and plots; every one trains through ``train.fit`` or
``train.sweep``. A classifier's run folder holds config.json, metrics.jsonl (one row per
evaluation), curves.png, params.msgpack, results.json and checkpoints/. The same seed gives
bit-identical metrics.

Checkpoints: every training loop runs through ``train.fit`` or ``train.sweep`` in jitted chunks
and saves its state (params, optimizer state, PRNG keys, step; the data order is a function of the
key and the step) with the metrics so far into <run folder>/checkpoints[/<part>] after every
``--checkpoint-every`` chunks. ``--resume RUN_DIR`` continues a run from its newest checkpoints:
the flags come from RUN_DIR/config.json, a flag given now must agree with it (else the run is
refused with the differing fields listed), and the results are bit-identical to an
uninterrupted run. A new run never reuses a folder that holds checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import types
import typing
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from jaxnets import augment, checkpoint, data, optim, runs, train


@dataclasses.dataclass(frozen=True)
class RunFlags:
    """Flags of every training experiment: where the run folder goes, checkpoints, resuming."""

    out: Path = Path("runs")
    """Parent folder of the run folder (<experiment>-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed; refused if it holds checkpoints)."""
    resume: Path | None = None
    """Continue the run in this folder from its newest checkpoint. Its config.json supplies
    every flag not given now; a flag given now that differs from it is refused. The results are
    bit-identical to an uninterrupted run."""
    checkpoint_every: int = 1
    """Save a checkpoint (params, optimizer state, keys, step, metrics so far) to
    <run folder>/checkpoints after every this many chunks, and after the last; 0 saves none."""
    keep: int = 3
    """Checkpoints kept per training loop (the newest)."""


# Flags that may differ between a run and its resumption: they do not change any result.
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunFlags))


@dataclasses.dataclass(frozen=True)
class TrainFlags(RunFlags):
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
    """Steps between evaluations on the full train and test sets; must divide --steps. A chunk
    (one jitted call, one tick of the progress bar) is this many steps."""


def settings(config: RunFlags) -> dict[str, Any]:
    """The config as JSON values, without the fields a resumed run may change."""
    return {k: v for k, v in json.loads(runs.to_json(config)).items() if k not in RUN_FIELDS}


def _coerce(hint: Any, value: Any) -> Any:
    """A JSON value as the dataclass field typed ``hint`` holds it (Path, tuple)."""
    if value is None:
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in args if a is not type(None)), hint)
        args = typing.get_args(hint)
    if hint is Path:
        return Path(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def load_config(config_cls: type, run_dir: Path) -> Any:
    """The config of the run in ``run_dir`` (its config.json, JSON only), with clear errors
    for a missing folder or file, bad JSON, or a config of another experiment."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise checkpoint.CheckpointError(f"--resume {run_dir}: no such run folder")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise checkpoint.CheckpointError(f"{path}: missing; {run_dir} is not a run folder of "
                                         "this experiment") from None
    except (OSError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: not a readable JSON config ({e})") from None
    hints = typing.get_type_hints(config_cls)
    unknown = sorted(set(raw) - set(hints)) if isinstance(raw, dict) else None
    if unknown is None or unknown:
        raise checkpoint.CheckpointError(
            f"{path}: not a config of this experiment ({config_cls.__module__}); unknown "
            f"fields: {unknown if unknown else type(raw).__name__}")
    return config_cls(**{k: _coerce(hints[k], v) for k, v in raw.items()})


def parse(config_cls: type, argv: list[str] | None) -> Any:
    """Flags into ``config_cls``; with ``--resume RUN_DIR`` the run's saved config supplies the
    defaults (``run_folder`` then refuses a flag that disagrees with it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--resume", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.resume is None or "-h" in (argv or sys.argv) or "--help" in (argv or sys.argv):
        return tyro.cli(config_cls, args=argv)
    return tyro.cli(config_cls, args=argv, default=load_config(config_cls, known.resume))


def run_folder(config: RunFlags, name: str) -> Path:
    """The run folder: ``--resume``'s (after checking that the config agrees with the saved
    one and that the newest checkpoint of every part is whole, so that nothing is written when
    one of them is bad), else a new one with config.json written. A new run refuses a folder
    that holds checkpoints, so no run's work is overwritten."""
    if config.resume is not None:
        saved = load_config(type(config), config.resume)
        diff = checkpoint.differences(settings(saved), settings(config))
        if diff:
            raise checkpoint.CheckpointError(
                f"--resume {config.resume}: the flags differ from the run's config.json; "
                "refusing to continue it with other settings: " + "; ".join(diff))
        if not config.checkpoint_every:
            raise checkpoint.CheckpointError(
                "--resume with --checkpoint-every 0 would start the run over; leave it out")
        for part in sorted(Path(config.resume, "checkpoints").glob("*")):
            if (latest := checkpoint.Checkpoints(part).latest()) is not None:
                checkpoint.read_meta(latest)  # every part is whole before any part resumes
        return Path(config.resume)
    run_dir = config.run_dir or runs.new_run_dir(config.out, name)
    if (run_dir / "checkpoints").exists():
        raise checkpoint.CheckpointError(
            f"{run_dir} already holds checkpoints of a run; continue it with --resume "
            f"{run_dir}, or choose another --run-dir")
    runs.write_json(run_dir / "config.json", config)
    return run_dir


def checkpoint_args(config: RunFlags, run_dir: Path, part: str) -> dict:
    """``train.fit``'s and ``train.sweep``'s checkpoint arguments for one training loop of a
    run: <run_dir>/checkpoints/<part>, the config's flags, and the config's settings as the
    checkpoints' meta."""
    return {"checkpoint_dir": run_dir / "checkpoints" / part,
            "checkpoint_every": config.checkpoint_every, "keep": config.keep,
            "meta": {"config": settings(config), "part": part}}


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
    """Train with ``train.fit``, evaluate every ``eval_every`` steps, write the run folder;
    return the results.

    The run goes in chunks of ``eval_every`` steps, a progress bar advancing between them and
    checkpoints in <run folder>/checkpoints/<name> (see the module docstring); going chunk by
    chunk, it stops after the chunk in which it diverged. ``augment`` transforms every training
    minibatch.
    Raises ValueError for bad arguments and train.DivergenceError on NaN/inf.
    """
    train_data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    test_data = (jnp.asarray(split.x_test), jnp.asarray(split.y_test))
    eval_data = {"train": train_data, "test": test_data}
    factory = optim.get(config.optimizer)
    key = jax.random.key(config.seed)
    kw = dict(init=init, loss=loss, optimizer=factory, steps=config.steps,
              batch_size=config.batch_size, evaluate=evaluate, eval_every=config.eval_every,
              augment=augment)
    train.validate_run(key, train_data, eval_data, **kw)  # before the run folder is made

    run_dir = run_folder(config, name)
    r = train.fit(key, jnp.asarray(config.learning_rate, jnp.float32), train_data, eval_data,
                  **kw, validate=False, **checkpoint_args(config, run_dir, name),
                  progress=progress, desc=name, stop_when_diverged=True)
    losses = r.train_loss.reshape(-1, config.eval_every)  # [chunks run, eval_every]
    rows = [{"step": (i + 1) * config.eval_every, "minibatch/loss": float(np.mean(losses[i])),
             **{k: float(v[i]) for k, v in r.eval_metrics.items()}} for i in range(len(losses))]
    runs.write_jsonl(run_dir / "metrics.jsonl", rows)
    train.raise_if_diverged(r.diverged_at, config.learning_rate)

    runs.save_params(run_dir / "params.msgpack", r.params)
    plot_curves(rows, run_dir / "curves.png", title)
    results = {"run_dir": str(run_dir), "final": rows[-1], "n_train": len(split.y_train),
               "n_test": len(split.y_test)}
    runs.write_json(run_dir / "results.json", results)
    return results | {"train_loss": r.train_loss, "checkpoint": r.checkpoint}


def main(config_cls: type, run: Callable[[TrainFlags], dict], argv: list[str] | None) -> None:
    """Parse flags into ``config_cls`` (``parse``), run, print the final metrics; errors exit
    with code 1."""
    try:
        results = run(parse(config_cls, argv))
    except (data.DataError, train.DivergenceError, ValueError) as e:
        sys.exit(f"error: {e}")
    f = results["final"]
    print(f"step {f['step']}: train loss {f['train/loss']:.4f} acc {f['train/accuracy']:.4f} | "
          f"test loss {f['test/loss']:.4f} acc {f['test/accuracy']:.4f}")
    print(f"run folder: {results['run_dir']}")


def cli(config_cls: type, run: Callable, table: Callable[[dict], str], argv: list[str] | None,
        errors: tuple[type[Exception], ...] = (data.DataError, ValueError, MemoryError)) -> None:
    """Parse flags into ``config_cls`` (``parse``), run, print ``table(results)`` and the run
    folder; write the results to ``--json PATH`` where the config has that flag. ``errors``
    exit with code 1."""
    try:
        config = parse(config_cls, argv)
        results = run(config)
    except errors as e:
        sys.exit(f"error: {e}")
    print(table(results))
    if "run_dir" in results:
        print(f"run folder: {results['run_dir']}")
    if getattr(config, "json", None):
        runs.write_json(config.json, results)
        print(f"wrote {config.json}")


def compile_seconds(fn: Callable[[], object]) -> float:
    """Seconds of JAX's "/jax/core/compile/" duration events (trace, lower, compile) during one
    call of ``fn`` (waited for): 0 when every executable was cached. Benchmarks report it as
    their compile column instead of first call minus median, which noise can make negative."""
    spent = []

    def listen(event: str, seconds: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            spent.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(fn())
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return float(sum(spent))


def environment() -> dict[str, str]:
    """Date (UTC), machine, device and versions, for benchmark reports."""
    kind, backend = jax.devices()[0].device_kind, jax.default_backend()
    device = backend if kind == backend else f"{backend} {kind}"
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": " ".join(filter(None, (platform.node(), platform.machine(),
                                              platform.processor(), f"{os.cpu_count()} CPUs"))),
            "device": f"{device} ({len(jax.devices())} device(s))", "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib")}
