"""What the experiments share: run-folder and checkpoint flags, resuming (``parse``,
``run_folder``), the classifiers' training flags and run (``train_classifier``), the curves plot and
the command-line entry points.

Experiments own their flags, run folders and plots; every one trains through ``train.fit`` or
``train.sweep``. A classifier's run folder holds config.json, metrics.jsonl (one row per
evaluation), curves.png, params.msgpack, results.json, checkpoints/ and, with jaxnets[tb]
installed, tensorboard/ event files. The same seed gives bit-identical metrics.

Checkpoints: every training loop runs through ``train.fit`` or ``train.sweep`` in jitted chunks
and saves its state (params, optimizer state, PRNG keys, step; the data order is a function of the
key and the step) with the metrics so far into <run folder>/checkpoints[/<part>] after every
``--checkpoint-every`` chunks. ``--resume RUN_DIR`` continues a run from its newest checkpoints:
the flags come from RUN_DIR/config.json, a flag given now must agree with it (else the run is
refused with the differing fields listed), and the results are bit-identical to an
uninterrupted run.

Run folders lose nothing: a folder is held by one process for the run's life (a second one is
refused at once, naming the holder's PID); a new run refuses a folder that already holds a run
unless ``--overwrite`` is given; Ctrl-C stops at the next chunk boundary after saving a
checkpoint and the metrics so far, printing how to resume, and exits 130 (a second Ctrl-C stops
at once; ``jaxnets.interrupt``); a full disk or another OSError is one line naming the file
(exit 1), the previous checkpoint intact. config.json records, beside the flags, what produced
the run under "run": the experiment, the versions of jaxnets, jax, jaxlib, optax and flax, the
git commit when there is one, and the start, end and wall time of each session.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import docstring_parser
import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import serialization

from jaxnets import (
    augment,
    checkpoint,
    compile_cache,
    data,
    interrupt,
    optim,
    runs,
    tensorboard,
    train,
)


@dataclasses.dataclass(frozen=True)
class RunFlags:
    """Flags of every training experiment: where the run folder goes, checkpoints, resuming."""

    out: Path = Path("runs")
    """Parent folder of the run folder (<experiment>-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed; refused if it already holds a
    run, unless --overwrite)."""
    overwrite: bool = False
    """Let a new run replace the run already in --run-dir (its files are deleted first)."""
    resume: Path | None = None
    """Continue the run in this folder from its newest checkpoint. Its config.json supplies
    every flag not given now; a flag given now that differs from it is refused. The results are
    bit-identical to an uninterrupted run."""
    checkpoint_every: int = 1
    """Save a checkpoint (params, optimizer state, keys, step, metrics so far) to
    <run folder>/checkpoints after every this many chunks, and after the last; 0 saves none."""
    keep: int = 3
    """Checkpoints kept per training loop (the newest)."""
    compilation_cache: Path | None = None
    """Folder of a persistent XLA compilation cache (created if needed): a later run of the same
    program loads its compiled code from there instead of compiling it again. Default: the
    JAXNETS_CACHE_DIR environment variable, else no cache."""


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
    """Optimizer, from optax (momentum and Nesterov in the problem sets' EMA form, beta 0.9)."""
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
    init_from: Path | None = None
    """Start a new run from the final params of the run in this folder (its params.msgpack, else
    its newest checkpoint: a run stopped early, or a member cut out by experiments.extract_member);
    the optimizer state and step start afresh, the data order from --seed. The model flags must
    give that run's param shapes (else the run is refused, naming the first differing one)."""


@dataclasses.dataclass(frozen=True)
class SweepFlags(RunFlags):
    """Flags of every experiment that trains a grid with ``train.sweep``."""

    cpu_devices: int | None = None
    """On CPU, split the machine into this many XLA devices (0: one per core) and run the
    sweep's members on all of them in parallel (jaxnets.train.cpu_devices): on 2 cores the
    benchmark sweeps run 1.2-1.9x faster. A member's values then differ from a one-device run
    by float32 rounding, which training can amplify (a GAN's, say). Default: JAX's own
    setting (one CPU device unless JAX_NUM_CPU_DEVICES says more)."""


RUN_RECORD = "run"  # config.json's key for what produced the run (not a flag)


def experiment_name(config_cls: type) -> str:
    """The module an experiment's config belongs to, as ``python -m`` names it (not
    ``__main__``)."""
    module = sys.modules.get(config_cls.__module__)
    spec = getattr(module, "__spec__", None)
    return spec.name if spec is not None else config_cls.__module__


def check_learning_rates(config: Any) -> None:
    """ValueError, in one line, for a learning-rate flag (``*learning_rate*``, ``lr_*``) that is
    not a finite number > 0."""
    for f in dataclasses.fields(config):
        if "learning_rate" not in f.name and not f.name.startswith("lr_"):
            continue
        value = getattr(config, f.name)
        if value is None:  # a default chosen later
            continue
        for v in value if isinstance(value, tuple) else (value,):
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                flag = "--" + f.name.replace("_", "-")
                raise ValueError(f"{flag} must be a finite number > 0, got {v!r}")


# Flags left out of the settings while unset, so that runs begun before they existed resume.
UNSET_OMITTED = ("init_from",)


def settings(config: RunFlags) -> dict[str, Any]:
    """The config as JSON values, without the fields a resumed run may change (nor the unset
    ``UNSET_OMITTED``)."""
    return {k: v for k, v in json.loads(runs.to_json(config)).items()
            if k not in RUN_FIELDS and not (k in UNSET_OMITTED and v is None)}


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
        raw = runs.loads(path.read_bytes())
    except FileNotFoundError:
        raise checkpoint.CheckpointError(f"{path}: missing; {run_dir} is not a run folder of "
                                         "this experiment") from None
    except (OSError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: not a readable JSON config ({e})") from None
    hints = typing.get_type_hints(config_cls)
    name = experiment_name(config_cls)
    record = raw.pop(RUN_RECORD, {}) if isinstance(raw, dict) else {}
    other = record.get("experiment") if isinstance(record, dict) else None
    if other is not None and other != name:
        raise checkpoint.CheckpointError(f"{path}: a run of {other}, not of {name}")
    unknown = sorted(set(raw) - set(hints)) if isinstance(raw, dict) else None
    if unknown is None or unknown:
        raise checkpoint.CheckpointError(
            f"{path}: not a config of this experiment ({name}); unknown "
            f"fields: {unknown if unknown else type(raw).__name__}")
    return config_cls(**{k: _coerce(hints[k], v) for k, v in raw.items()})


def plain_help(config_cls: type) -> type:
    """``config_cls``, each field's ``--help`` text set to its attribute docstring on one line
    (the field's metadata["help"], which tyro reads first): tyro keeps the line breaks of a
    docstring wrapped in the source, so sentences broke mid-line."""
    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):  # a subclass's docstring wins
        if dataclasses.is_dataclass(cls):
            docs |= {p.arg_name: " ".join(p.description.split())
                     for p in docstring_parser.parse_from_object(cls).params if p.description}
    for f in dataclasses.fields(config_cls):
        if f.name in docs and "help" not in f.metadata:
            f.metadata = types.MappingProxyType({**f.metadata, "help": docs[f.name]})
    return config_cls


def parse(config_cls: type, argv: list[str] | None) -> Any:
    """Flags into ``config_cls``; with ``--resume RUN_DIR`` the run's saved config supplies the
    defaults (``run_folder`` then refuses a flag that disagrees with it). For ``SweepFlags``
    configs, splits the CPU into ``--cpu-devices`` devices (0 resolved to the count); for
    ``RunFlags`` configs, turns on the compilation cache of ``--compilation-cache`` or, without
    that flag, of JAXNETS_CACHE_DIR (``jaxnets.compile_cache``)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--resume", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.resume is None or "-h" in (argv or sys.argv) or "--help" in (argv or sys.argv):
        config = tyro.cli(plain_help(config_cls), args=argv)
    else:
        config = tyro.cli(plain_help(config_cls), args=argv,
                          default=load_config(config_cls, known.resume))
    check_learning_rates(config)
    if isinstance(config, SweepFlags) and config.cpu_devices is not None:  # before JAX runs
        if config.cpu_devices < 0:
            raise ValueError(f"--cpu-devices must be 0 (one per core) or more, got "
                             f"{config.cpu_devices}")
        config = dataclasses.replace(config,  # 0 resolved: a resumed run gets the same count
                                     cpu_devices=train.cpu_devices(config.cpu_devices or None))
    if isinstance(config, RunFlags):  # before anything compiles; not benchmarks: they time it
        if config.compilation_cache is not None:
            compile_cache.enable(config.compilation_cache)
        else:
            compile_cache.from_env()
    return config


_active: dict[str, Any] = {}  # the run folder in use, for the Ctrl-C and error lines


def provenance() -> dict[str, Any]:
    """What produced a run: versions of jaxnets, jax, jaxlib, optax, flax and Python, and the git
    commit of the source tree when it is a checkout (None otherwise)."""
    versions = {p: _version(p) for p in ("jaxnets", "jax", "jaxlib", "optax", "flax")}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"versions": versions | {"python": platform.python_version()},
            "commit": commit or None}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_config(run_dir: Path, flags: dict, record: dict) -> None:
    runs.write_json(run_dir / "config.json", flags | {RUN_RECORD: record})


@contextlib.contextmanager
def run_folder(config: RunFlags, name: str) -> Iterator[Path]:
    """The run folder, held (``runs.lock``) while the ``with`` block runs.

    With ``--resume``: the folder's, after checking that the config agrees with the saved one
    and that the newest checkpoint of every part is whole, so that nothing is written when one
    of them is bad. Else a new folder (``--run-dir``, or a fresh one under ``--out``); a folder
    that already holds a run is refused unless ``--overwrite``, which deletes its files first.
    config.json holds the flags and, under "run", the experiment, the ``provenance()`` of the
    process that began it, and one entry per session (its start and provenance, and on a
    normal end its end and wall time)."""
    experiment = experiment_name(type(config))
    if config.resume is not None:
        if config.run_dir is not None and Path(config.run_dir).resolve() != Path(
                config.resume).resolve():
            raise ValueError(f"--resume {config.resume} continues the run in its own folder; "
                             f"leave out --run-dir (got --run-dir {config.run_dir})")
        run_dir = Path(config.resume)
        saved = load_config(type(config), run_dir)
        with runs.lock(run_dir):
            diff = checkpoint.differences(settings(saved), settings(config))
            if diff:
                raise checkpoint.CheckpointError(
                    f"--resume {run_dir}: the flags differ from the run's config.json; "
                    "refusing to continue it with other settings: " + "; ".join(diff))
            if not config.checkpoint_every:
                raise checkpoint.CheckpointError(
                    "--resume with --checkpoint-every 0 would start the run over; leave it out")
            for part in sorted(Path(run_dir, "checkpoints").glob("*")):
                if (latest := checkpoint.Checkpoints(part).latest()) is not None:
                    checkpoint.read_meta(latest)  # every part whole before any part resumes
            flags, record = _saved(run_dir, experiment)
            yield from _session(run_dir, flags, record)
        return
    run_dir = Path(config.run_dir) if config.run_dir else runs.new_run_dir(config.out, name)
    with runs.lock(run_dir):
        held = sorted(p.name for p in run_dir.iterdir() if p.name != runs.LOCK_NAME)
        if held and not config.overwrite:
            raise checkpoint.CheckpointError(
                f"{run_dir} already holds a run ({', '.join(held[:4])}"
                f"{', ...' if len(held) > 4 else ''}); continue it with --resume {run_dir}, "
                "replace it with --overwrite, or choose another --run-dir")
        for p in run_dir.iterdir():
            if p.name != runs.LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        yield from _session(run_dir, json.loads(runs.to_json(config)),
                            {"experiment": experiment, "sessions": []})


def _saved(run_dir: Path, experiment: str) -> tuple[dict, dict]:
    """The flags of a folder's config.json as the run began them, and its "run" record (a
    fresh one for folders written before jaxnets kept it)."""
    flags = runs.loads((run_dir / "config.json").read_bytes())
    raw = flags.pop(RUN_RECORD, None)
    record = raw if isinstance(raw, dict) else {"experiment": experiment}
    return flags, record | {"sessions": list(record.get("sessions", []))}


def _session(run_dir: Path, flags: dict, record: dict) -> Iterator[Path]:
    """One session in ``run_dir``: its start in config.json's record, the folder noted for the
    Ctrl-C and error lines; on a normal end, its end and wall time and, with tensorboardX
    installed, the folder exported to <run_dir>/tensorboard (``tensorboard.export``)."""
    t, now = time.perf_counter(), {"started": _now(), **provenance()}
    record = {**now, **record} if not record["sessions"] else record  # who began the run
    sessions = record["sessions"]
    _write_config(run_dir, flags, record | {"sessions": [*sessions, now]})
    _active.update(run_dir=run_dir, experiment=record["experiment"])
    yield run_dir
    done = now | {"finished": _now(), "wall_seconds": time.perf_counter() - t}
    _write_config(run_dir, flags, record | {"sessions": [*sessions, done]})
    if tensorboard.available() and tensorboard.metrics_files(run_dir):
        tensorboard.export(run_dir)


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


CHECKPOINT_PARAMS = "['state'].params"  # where a run's checkpoint holds its params


def _by_path(tree: Any) -> dict[str, Any]:
    """The leaves of ``tree`` by their ``jax.tree_util.keystr`` path."""
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe(leaf: Any) -> str:
    """dtype[shape] of an array or ShapeDtypeStruct, e.g. float32[128, 64]."""
    return f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}"


def _check_leaves(source: Path, want: dict[str, Any], have: dict[str, Any]) -> None:
    """ValueError naming the first leaf of ``want`` that ``have`` lacks or holds with another
    shape or dtype, else the first leaf of ``have`` that ``want`` lacks."""
    for name, leaf in want.items():
        got = have.get(name)
        if got is None or _describe(got) != _describe(leaf):
            there = "missing" if got is None else _describe(got)
            raise ValueError(f"--init-from: {source} holds other params than this model's: "
                             f"{name} is {there} there, {_describe(leaf)} here")
    if extra := [n for n in have if n not in want]:
        raise ValueError(f"--init-from: {source} holds other params than this model's: "
                         f"{extra[0]} is there, not here")


def saved_params(run_dir: Path, part: str, template: Any) -> Any:
    """The final params of the run in ``run_dir`` in ``template``'s structure (arrays or
    ShapeDtypeStructs): its params.msgpack, else the params of the newest checkpoint in
    checkpoints/<part>. ValueError when there are none, or when a leaf's path, shape or dtype
    differs from ``template``'s (``_check_leaves``)."""
    run_dir = Path(run_dir)
    if (final := run_dir / "params.msgpack").is_file():
        state = serialization.msgpack_restore(final.read_bytes())
        _check_leaves(final, _by_path(serialization.to_state_dict(template)), _by_path(state))
        return serialization.from_state_dict(template, state)
    folder = run_dir / "checkpoints" / part
    if (latest := checkpoint.Checkpoints(folder).latest()) is None:
        raise ValueError(f"--init-from {run_dir}: neither a params.msgpack nor a checkpoint "
                         f"in {folder}")
    arrays, _ = checkpoint.read_arrays(latest)
    have = {n.removeprefix(CHECKPOINT_PARAMS): a for n, a in arrays.items()
            if n.startswith(CHECKPOINT_PARAMS)}
    want = _by_path(template)
    _check_leaves(latest, want, have)
    return jax.tree.unflatten(jax.tree.structure(template), [have[n] for n in want])


def init_from(run_dir: Path, part: str, init: Callable, key: jax.Array) -> Callable:
    """An init that ignores its key and gives ``saved_params`` of ``run_dir``, checked against
    the shapes of ``init(key)``."""
    params = jax.tree.map(jnp.asarray, saved_params(run_dir, part, jax.eval_shape(init, key)))
    return lambda _: params


def train_classifier(config: TrainFlags, name: str, title: str, split: data.Split, *,
                     init: Callable, loss: Callable, evaluate: Callable,
                     augment: train.AugmentFn | None = None, progress: bool = True) -> dict:
    """Train with ``train.fit``, evaluate every ``eval_every`` steps, write the run folder;
    return the results.

    The run goes in chunks of ``eval_every`` steps, a progress bar advancing between them and
    checkpoints in <run folder>/checkpoints/<name> (see the module docstring); going chunk by
    chunk, it stops after the chunk in which it diverged. ``augment`` transforms every training
    minibatch. With ``--init-from DIR`` the params start as DIR's final ones (``init_from``).
    Raises ValueError for bad arguments and train.DivergenceError on NaN/inf.
    """
    train_data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    test_data = (jnp.asarray(split.x_test), jnp.asarray(split.y_test))
    eval_data = {"train": train_data, "test": test_data}
    factory = optim.get(config.optimizer)
    key = jax.random.key(config.seed)
    if config.init_from is not None:
        init = init_from(config.init_from, name, init, key)
    kw = dict(init=init, loss=loss, optimizer=factory, steps=config.steps,
              batch_size=config.batch_size, evaluate=evaluate, eval_every=config.eval_every,
              augment=augment)
    train.validate_run(key, train_data, eval_data, **kw)  # before the run folder is made

    with run_folder(config, name) as run_dir:
        r = train.fit(key, jnp.asarray(config.learning_rate, jnp.float32), train_data,
                      eval_data, **kw, validate=False, **checkpoint_args(config, run_dir, name),
                      progress=progress, desc=name, stop_when_diverged=True)
        losses = r.train_loss.reshape(-1, config.eval_every)  # [chunks run, eval_every]
        rows = [{"step": (i + 1) * config.eval_every,
                 "minibatch/loss": float(np.mean(losses[i])),
                 **{k: float(v[i]) for k, v in r.eval_metrics.items()}}
                for i in range(len(losses))]
        stop_if_interrupted(r, run_dir, rows)
        diverged_at = int(r.diverged_at)
        if diverged_at >= 0:
            rows[-1]["diverged_at"] = diverged_at
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        train.raise_if_diverged(r.diverged_at, config.learning_rate)

        runs.save_params(run_dir / "params.msgpack", r.params)
        plot_curves(rows, run_dir / "curves.png", title)
        results = {"run_dir": str(run_dir), "final": rows[-1], "n_train": len(split.y_train),
                   "n_test": len(split.y_test)}
        runs.write_json(run_dir / "results.json", results)
    return results | {"train_loss": r.train_loss, "checkpoint": r.checkpoint}


def _resume_hint() -> str:
    """How to continue the run in use, for the Ctrl-C and error lines ("" before there is one)."""
    if not _active:
        return ""
    return f"; resume with: python -m {_active['experiment']} --resume {_active['run_dir']}"


def _guarded(config_cls: type, run: Callable, argv: list[str] | None,
             errors: tuple[type[Exception], ...]) -> tuple[Any, Any]:
    """(config, results) of ``run(parse(config_cls, argv))`` with Ctrl-C handled
    (``jaxnets.interrupt``: exit 130 with how to resume) and ``errors``, a file that cannot be
    written (OSError: a full disk, say) and a folder in use ending the process with one line and
    exit code 1."""
    _active.clear()
    try:
        with interrupt.handling(_resume_hint):
            config = parse(config_cls, argv)
            results = run(config)
            if interrupt.requested():  # a Ctrl-C that came while the results were written
                raise KeyboardInterrupt
            return config, results
    except (interrupt.Interrupted, KeyboardInterrupt) as e:
        at = (f" at step {e.step}" if isinstance(e, interrupt.Interrupted) and e.step
              else "")
        sys.stderr.write(f"\ninterrupted{at}{_resume_hint()}\n")
        sys.exit(130)
    except OSError as e:
        sys.exit(f"error: cannot write {e.filename or 'a file'}: {e.strerror or e}"
                 f"{_resume_hint()}")
    except (runs.FolderInUse, *errors) as e:
        sys.exit(f"error: {e}")


def main(config_cls: type, run: Callable[[TrainFlags], dict], argv: list[str] | None) -> None:
    """Parse flags into ``config_cls`` (``parse``), run, print the final metrics (``_guarded``:
    errors exit with code 1, Ctrl-C with 130)."""
    _, results = _guarded(config_cls, run, argv,
                          (data.DataError, train.DivergenceError, ValueError))
    f = results["final"]
    print(f"step {f['step']}: train loss {f['train/loss']:.4f} acc {f['train/accuracy']:.4f} | "
          f"test loss {f['test/loss']:.4f} acc {f['test/accuracy']:.4f}")
    print(f"run folder: {results['run_dir']}")


def cli(config_cls: type, run: Callable, table: Callable[[dict], str], argv: list[str] | None,
        errors: tuple[type[Exception], ...] = (data.DataError, ValueError, MemoryError)) -> None:
    """Parse flags into ``config_cls`` (``parse``), run, print ``table(results)`` and the run
    folder; write the results to ``--json PATH`` where the config has that flag (``_guarded``:
    ``errors`` exit with code 1, Ctrl-C with 130)."""
    config, results = _guarded(config_cls, run, argv, errors)
    print(table(results))
    if "run_dir" in results:
        print(f"run folder: {results['run_dir']}")
    if getattr(config, "json", None):
        runs.write_json(config.json, results)
        print(f"wrote {config.json}")


def stop_if_interrupted(result: Any, run_dir: Path, rows: list[dict]) -> None:
    """After a ``train.fit`` or ``train.sweep`` that Ctrl-C stopped (its checkpoint saved):
    write the metrics so far (``rows``) and raise ``interrupt.Interrupted``."""
    info = result.checkpoint
    if info is not None and info.interrupted:
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        raise interrupt.Interrupted(info.saved_step)


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
