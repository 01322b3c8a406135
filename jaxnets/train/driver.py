"""The driver: every training loop of the project, one run (``fit``) or a grid (``sweep``).

``drive`` is the one chunked executor. It calls a compiled ``run(state, num_chunks)``: for
``fit`` the jitted ``step.train_chunks`` of one member; for ``sweep`` the same function under
``jit(shard_map(vmap over hyperparameters(vmap over seeds(...))))``, planned in blocks that fit
a device's memory (``plan``). Without a checkpoint folder the whole run is one call (traceable:
``jax.vmap(fit)`` works); with one, ``loop.run_chunks`` calls it one chunk of ``eval_every``
steps at a time, with a progress bar, checkpoints and resume. A new capability (a tracker, a
step function, an interrupt rule) is added here once and every loop has it.

Models enter through a step (``RunSpec.step``): by default ``SupervisedStep(init, loss,
optimizer, batch_size, augment)``, built from ``fit``'s and ``sweep``'s keyword arguments, so
``fit(key, learning_rate, train_data, eval_data, *, init, loss, optimizer, steps, batch_size)``
is a pure function of its array arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxnets import checkpoint, interrupt, loop, runs
from jaxnets.optim import OptimizerFactory
from jaxnets.train import multihost, plan
from jaxnets.train.step import (
    AugmentFn,
    Batch,
    EvalFn,
    Hparams,
    LossFn,
    LossMetric,
    PyTree,
    RunSpec,
    Step,
    SupervisedStep,
    Tracker,
    check_pair,
    init_run_state,
    train_chunks,
)


class FitResult(NamedTuple):
    """What ``fit`` returns. Losses after divergence are NaN (masked)."""

    params: PyTree  # final params (if the run diverged, those before its marked step)
    train_loss: Any  # [steps] the step's aux: the minibatch loss (a pytree for other steps)
    eval_metrics: dict[str, Array]  # "split/metric" -> [steps // eval_every]
    diverged_at: Array  # int32 [], -1 if the run stayed finite
    checkpoint: loop.Chunked | None = None  # with checkpoint_dir: timings, resumed_from
    tracked: dict[str, Array] | None = None  # with track: name -> [steps // track.every, ...]


class SweepResult(NamedTuple):
    """What ``sweep`` returns; every array has the grid's shape in front.

    ``grid`` maps axis name to values in axis order: "learning_rate", then each name of
    ``hparams``, then "seed". A member whose loss or update became non-finite has
    ``diverged_at`` >= 0 and NaN losses and eval metrics from that step on; no other member is
    affected.
    """

    params: PyTree  # [*grid, ...] final params (the last finite ones where a member diverged)
    train_loss: Any  # [*grid, steps] (the step's aux)
    eval_metrics: dict[str, Array]  # "split/metric" -> [*grid, steps // eval_every]
    diverged_at: Array  # int32 [*grid]; -1 where the member stayed finite
    grid: dict[str, np.ndarray]
    blocks: int  # compiled calls the grid was cut into to fit in memory (1 if it fit whole)
    bytes_per_device: int | None  # XLA's memory estimate for one block on one device
    checkpoint: loop.Chunked | None = None  # with checkpoint_dir: timings, resumed_from
    tracked: dict[str, Array] | None = None  # with track: name -> [*grid, steps // every, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    def member(self, *index: int) -> FitResult:
        """The member at a grid index, as ``fit`` returns it: ``result.member(i_lr, i_seed)``."""
        if len(index) != len(self.grid):
            raise IndexError(f"member takes one index per grid axis {list(self.grid)}")
        params, loss, metrics, diverged_at, tracked = jax.tree.map(lambda a: a[index], (
            self.params, self.train_loss, self.eval_metrics, self.diverged_at, self.tracked))
        return FitResult(params, loss, metrics, diverged_at, tracked=tracked)


# ----------------------------------------------------------------------------------------------
# The spec of a run, and its checks.

def make_spec(*, steps: int, eval_every: int | None, evaluate: EvalFn | None,
              step: Step | None, init, loss, optimizer, batch_size, augment,
              has_eval: bool, track: Tracker | None = None) -> RunSpec:
    """The RunSpec of ``fit``'s and ``sweep``'s keyword arguments: ``step``, or a
    ``SupervisedStep`` of (init, loss, optimizer, batch_size, augment); ``evaluate`` defaults
    to {"loss": loss} for a supervised step."""
    eval_every = steps if eval_every is None else eval_every
    if step is None:
        missing = [n for n, v in (("init", init), ("loss", loss), ("optimizer", optimizer),
                                  ("batch_size", batch_size)) if v is None]
        if missing:
            raise TypeError(f"give a step, or init, loss, optimizer and batch_size "
                            f"(missing: {', '.join(missing)})")
        step = SupervisedStep(init, loss, optimizer, batch_size, augment)
        evaluate = evaluate or LossMetric(loss)
    else:
        given = [n for n, v in (("init", init), ("loss", loss), ("optimizer", optimizer),
                                ("batch_size", batch_size), ("augment", augment)) if v is not None]
        if given:
            raise TypeError(f"a step brings its own model and optimizer; do not also give "
                            f"{', '.join(given)}")
        if has_eval and evaluate is None:
            raise TypeError("eval_data needs evaluate with a step of your own")
    return RunSpec(step, steps, eval_every, evaluate, track)


def validate_spec(spec: RunSpec, key: Array, hparams: dict, train_data: Any,
                  eval_data: dict[str, Batch], where: str) -> None:
    """Clear errors for a run's arguments, raised before anything is compiled: the counts, the
    evaluation sets, then the step's own checks (``step.validate``: for a supervised step, the
    model traced on the real data with ``jax.eval_shape``, so shape errors and label-range
    errors surface with the model's own message rather than from inside XLA)."""
    spec.validate(where)
    spec.step.validate(key, hparams, train_data, where)
    for name, batch in eval_data.items():
        check_pair(batch, f"eval_data[{name!r}]", where)
    if eval_data or spec.track is not None:
        state = jax.eval_shape(spec.step.init_state, key)
        for batch in eval_data.values():
            jax.eval_shape(lambda p, b=batch: spec.evaluate(p, b), state.params)
        if spec.track is not None:
            spec.track.validate(state.params, train_data, where)
            carry = jax.eval_shape(spec.track.init, state, train_data)
            jax.eval_shape(lambda s, c: spec.track(s, {"learning_rate": 0.0, **hparams},
                                                   train_data, c), state, carry)


def validate_run(key: Array, train_data: Batch, eval_data: dict[str, Batch], *,
                 init: Callable[[Array], PyTree], loss: LossFn, evaluate: EvalFn, steps: int,
                 batch_size: int, eval_every: int, optimizer: OptimizerFactory | None = None,
                 hparams: dict | None = None, augment: AugmentFn | None = None,
                 where: str = "fit") -> None:
    """``validate_spec`` for a supervised run given by keyword arguments (without
    ``optimizer``, its hyperparameters are not checked)."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"{where}: batch_size must be a positive integer, got {batch_size!r}")
    opt = optimizer or (lambda **_: optax.identity())
    spec = make_spec(steps=steps, eval_every=eval_every, evaluate=evaluate, step=None,
                     init=init, loss=loss, optimizer=opt, batch_size=batch_size,
                     augment=augment, has_eval=bool(eval_data))
    validate_spec(spec, key, dict(hparams or {}) if optimizer else {}, train_data, eval_data,
                  where)


# ----------------------------------------------------------------------------------------------
# The one driver.

def drive(spec: RunSpec, state: PyTree, run: Callable[[PyTree, int], tuple], *, lead: int = 0,
          outputs_like: PyTree | None = None, checkpoint_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 1, keep: int = 3, meta: dict | None = None,
          progress: bool = False, desc: str = "train", stop: Callable | None = None,
          resume_step: int | None = None) -> tuple[PyTree, Any, dict, loop.Chunked | None]:
    """Run ``spec.steps`` steps of ``run(state, num_chunks) -> (state, (aux, metrics,
    tracked))``.

    ``run`` returns aux [*lead, num_chunks * eval_every, ...], metrics {k: [*lead,
    num_chunks]} and tracked {k: [*lead, num_chunks * eval_every / track.every, ...]} (``lead``
    member axes in front: none for one run, the grid's for a sweep).
    Without ``checkpoint_dir`` (or with ``checkpoint_every = 0``) and ``progress``, it is called
    once for the whole run. Else ``loop.run_chunks`` calls ``run(state, 1)`` chunk by chunk, saving
    {state, outputs so far} with ``meta`` (the spec's meta and the caller's) after every
    ``checkpoint_every`` chunks, resuming from the folder's newest checkpoint (or
    ``resume_step``'s), with a progress bar if ``progress``; ``stop(state)`` ends the run early.
    Returns (state, (aux [*lead, steps, ...], metrics {k: [*lead, chunks]}, tracked), loop.Chunked
    or None).
    """
    if not chunked(checkpoint_dir, checkpoint_every, progress):
        state, outputs = run(state, spec.num_chunks)
        return state, outputs, None
    def chunk(s):  # metrics {k: [*lead, 1]} -> {k: [*lead]}
        s, (aux, metrics, tracked) = run(s, 1)
        return s, (aux, {k: v[..., 0] for k, v in metrics.items()}, tracked)

    info = loop.run_chunks(state, chunk, spec.num_chunks, directory=checkpoint_dir,
                           meta={"spec": spec.meta(), **(meta or {})}, every=checkpoint_every,
                           keep=keep, steps_per_chunk=spec.eval_every, desc=desc,
                           progress=progress, outputs_like=outputs_like, stop=stop,
                           resume_step=resume_step)
    if info.outputs is None:  # Ctrl-C (``jaxnets.interrupt``) before any chunk ran
        raise interrupt.Interrupted(None)
    aux, metrics, tracked = info.outputs  # [chunks, *lead, n, ...], {k: [chunks, *lead]}, ...

    def steps_last(a):  # [chunks, *lead, n, ...] -> [*lead, chunks * n, ...]
        a = np.moveaxis(a, 0, lead)
        return a.reshape(a.shape[:lead] + (-1,) + a.shape[lead + 2:])

    return (info.state, (jax.tree.map(steps_last, aux),
                         {k: np.moveaxis(v, 0, lead) for k, v in metrics.items()},
                         jax.tree.map(steps_last, tracked)), info)


def chunked(checkpoint_dir, checkpoint_every: int, progress: bool) -> bool:
    """Whether a run goes chunk by chunk: to save checkpoints, or to show progress."""
    return progress or (checkpoint_dir is not None and checkpoint_every > 0)


def _check_checkpointing(where: str, checkpoint_every: int) -> None:
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 0):
        raise ValueError(f"{where}: checkpoint_every must be an integer >= 0, got "
                         f"{checkpoint_every!r}")


# ----------------------------------------------------------------------------------------------
# One run.

@partial(jax.jit, static_argnames=("spec",))
def _init_jit(key: Array, spec: RunSpec, data: Any) -> PyTree:
    return init_run_state(key, spec, data)


@partial(jax.jit, static_argnames=("spec", "num_chunks"))
def _chunks_jit(state, hparams, train_data, eval_data, spec: RunSpec, num_chunks: int):
    return train_chunks(state, hparams, train_data, eval_data, spec, num_chunks)


def fit(key: Array, learning_rate: Array | float, train_data: Any,
        eval_data: dict[str, Batch] | None = None, *, init: Callable[[Array], PyTree] | None = None,
        loss: LossFn | None = None, optimizer: OptimizerFactory | None = None, steps: int,
        batch_size: int | None = None, evaluate: EvalFn | None = None,
        eval_every: int | None = None, hparams: dict[str, Array | float] | None = None,
        augment: AugmentFn | None = None, step: Step | None = None, validate: bool = True,
        checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1,
        keep: int = 3, meta: dict | None = None, progress: bool = False, desc: str = "fit",
        stop_when_diverged: bool = False, track: Tracker | None = None) -> FitResult:
    """Train from ``init(key)`` for ``steps`` optax steps, all inside one jit.

    Args:
      key: PRNG key; split once into the init key and the data-order key.
      learning_rate: scalar, traced (a sweep vmaps over it without recompiling).
      train_data: (x: [n, ...], y: [n, ...]) (or what ``step`` reads).
      eval_data: named data sets evaluated every ``eval_every`` steps (default: none).
      init: key -> params. loss: (params, batch) -> scalar.
      optimizer: factory, ``optimizer(learning_rate=lr, **hparams)`` -> optax transform.
      evaluate: (params, batch) -> {metric: scalar}; defaults to {"loss": loss}.
      eval_every: steps between evaluations (default: steps); must divide steps.
      hparams: further optimizer hyperparameters, traced like the learning rate
        (e.g. {"beta": 0.9} for ``optim.momentum``).
      augment: (key, minibatch) -> minibatch, applied at every training step with the key
        ``augment_key(state)`` (e.g. ``data.random_shift``); evaluation data is not augmented.
      step: a step of your own instead of (init, loss, optimizer, batch_size, augment), e.g.
        ``models.gan.GanStep``; see ``jaxnets.train.step``.
      validate: check the arguments first (``validate_spec``); a loop calling ``fit`` many
        times with the same checked arguments may skip it.
      checkpoint_dir: run in chunks of ``eval_every`` steps, saving the state and the metrics
        so far there after every ``checkpoint_every``-th chunk (newest ``keep`` kept, with
        ``meta`` beside the run's own) and resuming from the newest checkpoint it holds,
        bit-identical to an uninterrupted run.
      progress: a progress bar, the run going chunk by chunk (one compile for all chunks).
      stop_when_diverged: when going chunk by chunk, stop after the chunk in which the run
        diverged (train_loss and eval_metrics then hold the chunks run).
      track: measured inside the compiled run every ``track.every`` steps (a divisor of
        eval_every) on the training data, e.g. ``curvature.sharpness(loss, every=50)``; its
        history is checkpointed with the run.
    Returns:
      FitResult with train_loss [steps], eval_metrics {"name/metric": [steps // eval_every]}
      and, with ``track``, tracked {name: [steps // track.every, ...]}.
    Raises:
      ValueError / TypeError for bad arguments, shapes or labels, before anything is compiled.
      (Divergence is reported in ``diverged_at``; see ``raise_if_diverged``.)
    """
    eval_data = dict(eval_data or {})
    hparams = {"learning_rate": learning_rate, **(hparams or {})}
    spec = make_spec(steps=steps, eval_every=eval_every, evaluate=evaluate, step=step,
                     init=init, loss=loss, optimizer=optimizer, batch_size=batch_size,
                     augment=augment, has_eval=bool(eval_data), track=track)
    if validate:
        _check_checkpointing("fit", checkpoint_every)
        validate_spec(spec, key, {k: v for k, v in hparams.items() if k != "learning_rate"},
                      train_data, eval_data, "fit")
    run = partial(_chunks_jit, hparams=hparams, train_data=train_data, eval_data=eval_data,
                  spec=spec)
    state, (aux, metrics, tracked), info = drive(
        spec, _init_jit(key, spec, train_data if spec.track else None),
        lambda s, num_chunks: run(s, num_chunks=num_chunks),
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, keep=keep, meta=meta,
        progress=progress, desc=desc,
        stop=(lambda s: int(s.diverged_at) >= 0) if stop_when_diverged else None)
    return FitResult(state.params, aux, metrics, state.diverged_at, info,
                     tracked if track is not None else None)


# ----------------------------------------------------------------------------------------------
# Sweeps: one compiled computation over learning rates x other hyperparameters x seeds.

def _sweep_grid(learning_rates, hparams: dict, seeds) -> dict[str, np.ndarray]:
    """Validated grid axes {"learning_rate": [n_lr], **hparams, "seed": [n_seed]}."""
    seeds = np.arange(seeds) if isinstance(seeds, int) else np.asarray(seeds)
    axes = {"learning_rate": np.asarray(learning_rates), **{
        k: np.asarray(v) for k, v in hparams.items()}}
    for name, v in axes.items():
        if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
            raise ValueError(f"sweep: {name} must be a non-empty 1-D array of finite numbers, "
                             f"got shape {v.shape}")
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"sweep: seeds must be a positive int or a 1-D array of ints, "
                         f"got {seeds!r}")
    # the values as the computation sees them (float32 unless x64 is on)
    return {**{k: np.asarray(jnp.asarray(v)) for k, v in axes.items()}, "seed": seeds}


def _sweep_segment(state: NamedTuple, hparams: Hparams, train_data: Any,
                   eval_data: dict[str, Batch], spec: RunSpec, num_chunks: int):
    """``num_chunks`` chunks of every member of a block; hparams {name: [H]}, state as
    ``plan.layout``.

    Returns (member fields [H, S, ...], (aux [H, S, num_chunks * eval_every, ...], metrics
    {k: [H, S, num_chunks]}, tracked {k: [H, S, num_chunks * eval_every / every, ...]})).
    Seeds are the inner vmap: members that share a seed share the
    data key, so their minibatch gather stays unbatched and ``x_batch @ W1`` becomes one wide
    matmul for all H.
    """
    fields = plan.member_fields(state)

    def member(members, key, hp):
        s = state._replace(**dict(zip(fields, members, strict=True)), key=key)
        s, out = train_chunks(s, hp, train_data, eval_data, spec, num_chunks)
        return tuple(getattr(s, f) for f in fields), out

    over_seeds = _vmap(member, (0, 0, None))
    return _vmap(over_seeds, (0, None, 0))(
        tuple(getattr(state, f) for f in fields), state.key, hparams)


def _vmap(f: Callable, in_axes: tuple) -> Callable:
    """``jax.vmap(f, in_axes)``, but an axis of size one is indexed away and put back instead.

    XLA:CPU runs products with a batch axis of size one slower (the GAN ring with one learning
    rate and 8 seeds took 1.25x the time of the same run vmapped over seeds only); the results
    are the same.
    """
    mapped = jax.vmap(f, in_axes=in_axes)

    def call(*args):
        sizes = {jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, in_axes, strict=True)
                 if ax is not None and jax.tree.leaves(a)}
        if sizes != {1}:
            return mapped(*args)
        out = f(*(a if ax is None else jax.tree.map(lambda v: v[0], a)
                  for a, ax in zip(args, in_axes, strict=True)))
        return jax.tree.map(lambda v: v[None], out)
    return call


@lru_cache(maxsize=32)
def _sweep_fn(mesh: Mesh, spec: RunSpec, num_chunks: int, layout: NamedTuple) -> Callable:
    """The jitted block function, each device running its shard of the [H, S] grid."""
    block = partial(_sweep_segment, spec=spec, num_chunks=num_chunks)
    return jax.jit(jax.shard_map(block, mesh=mesh,
                                 in_specs=(jax.tree.map(plan.spec, layout), P("hp"), P(), P()),
                                 out_specs=P("hp", "seed"), check_vma=False))


@partial(jax.jit, static_argnames=("spec",))
def _init_seeds(keys: Array, spec: RunSpec, data: Any) -> PyTree:
    return jax.vmap(lambda k: init_run_state(k, spec, data))(keys)


def _sweep_init(keys: Array, n_h: int, spec: RunSpec, data: Any) -> NamedTuple:
    """Every member's initial state as ``plan.layout``, seed j's for all n_h hyperparameters:
    host views (``np.broadcast_to``) of one state per seed, so the grid costs no memory until a
    block of it is sent to a device."""
    s = _init_seeds(keys, spec, data if spec.track else None)
    wide = partial(jax.tree.map, lambda a: np.broadcast_to(np.asarray(a), (n_h, *a.shape)))
    return s._replace(**{f: wide(getattr(s, f)) for f in plan.member_fields(s)}, step=s.step[0])


def _data_shapes(batch: Any) -> list:
    return [[list(jnp.shape(v)), str(jnp.result_type(v))] for v in jax.tree.leaves(batch)]


def _sweep_meta(grid: dict, train_data: Any, eval_data: dict, spec: RunSpec,
                layout: NamedTuple) -> dict:
    """What a sweep checkpoint must agree on to be resumed: the grid (axes in order), the
    spec, data shapes and dtypes; and the state's layout, by which ``member_checkpoint`` cuts
    out one member."""
    return {"kind": "jaxnets.train.sweep", "grid_axes": list(grid),
            "grid": {k: v.tolist() for k, v in grid.items()},
            "train_data": _data_shapes(train_data),
            "eval_data": {k: _data_shapes(b) for k, b in eval_data.items()},
            "layout": dict(zip(layout._fields, layout, strict=True)), "spec": spec.meta()}


def sweep(learning_rates, train_data: Any, eval_data: dict[str, Batch] | None = None, *,
          init: Callable[[Array], PyTree] | None = None, loss: LossFn | None = None,
          optimizer: OptimizerFactory | None = None, steps: int, batch_size: int | None = None,
          seeds: int | Sequence[int] = 1, hparams: dict[str, Sequence[float]] | None = None,
          evaluate: EvalFn | None = None, eval_every: int | None = None,
          devices: Sequence | None = None, memory_limit: int | None = None,
          members_per_block: int | None = None, augment: AugmentFn | None = None,
          step: Step | None = None, checkpoint_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 1, keep: int = 3, meta: dict | None = None,
          progress: bool = False, desc: str = "sweep", validate: bool = True,
          track: Tracker | None = None) -> SweepResult:
    """Every (learning rate, hparams..., seed) combination of a grid, trained as one computation.

    ``jax.vmap`` of ``fit``'s scanned run, over hyperparameters (outer) and seeds (inner),
    inside one jit; hyperparameters are traced, so a new grid of the same shape does not
    recompile. Member (i, ..., j) equals
    ``fit(jax.random.key(seeds[j]), learning_rates[i], ..., hparams={...})`` to float rounding.

    Devices: the grid is split over ``devices`` (default: all) with ``jax.shard_map`` on a
    ("hp", "seed") mesh, each device running its members with no communication; axes are
    padded to a multiple of the mesh (padding members are dropped). On several hosts, call
    ``jax.distributed.initialize()`` in every process first and pass the same arguments
    everywhere: the mesh spans the hosts, the processes agree on the memory limit and block
    size (the smallest), and every process gets the whole result as numpy arrays.

    Memory: only metrics, final params and ``diverged_at`` come back, never per-step params.
    The compiled block's memory (XLA's memory analysis) is checked against ``memory_limit``
    bytes per device (default ``plan.default_memory_limit``); a grid that does not fit is cut
    automatically into equal blocks run one after another (``SweepResult.blocks``); if one
    member per device does not fit, a ``MemoryError`` says how much it needs.

    Speed: ``members_per_block`` caps the members one device runs at once (default
    ``plan.default_members_per_block``: on CPU, as many as keep their params and optimizer
    state within ``plan.CPU_BLOCK_STATE_BYTES``; unbounded on accelerators).

    Checkpoints: with ``checkpoint_dir`` the run goes in compiled chunks of ``eval_every``
    steps (a progress bar with ``progress``) and after every ``checkpoint_every``-th chunk
    the whole grid's state (leaves [*grid, ...]) and the metrics so far are saved there (newest
    ``keep`` kept). If the folder already holds a checkpoint of this sweep, it resumes from
    it, bit-identical to an uninterrupted run; one of another sweep (another grid or order of
    its axes, model, data shapes or settings) is refused, listing the differences.
    ``extract_member`` turns one member into an ordinary single-run checkpoint. On a mesh
    spanning processes, process i saves in ``checkpoint_dir/process-<i>`` and all resume from
    the newest step every process holds.

    The arguments not listed below are as in ``fit``.

    Args:
      learning_rates: [n_lr].
      seeds: n (seeds 0..n-1) or [n_seed] ints.
      hparams: other traced optimizer hyperparameters, {name: [n]}, e.g. {"beta": [0.8, 0.9]}.
      step: a step of your own (e.g. ``models.gan.GanStep``), as in ``fit``.
      track: as in ``fit``, for every member: tracked {name: [*grid, steps // every, ...]}.
      validate: check the arguments first (``validate_spec``, which traces the loss on the
        data); a caller that already checked them may skip it, as with ``fit``.
    Returns:
      SweepResult; arrays shaped [n_lr, *(len(v) for v in hparams), n_seed, ...].
    """
    eval_data = dict(eval_data or {})
    spec = make_spec(steps=steps, eval_every=eval_every, evaluate=evaluate, step=step,
                     init=init, loss=loss, optimizer=optimizer, batch_size=batch_size,
                     augment=augment, has_eval=bool(eval_data), track=track)
    grid = _sweep_grid(learning_rates, dict(hparams or {}), seeds)
    keys = jax.vmap(jax.random.key)(jnp.asarray(grid["seed"]))
    hp_names = [k for k in grid if k != "seed"]
    if validate:
        validate_spec(spec, keys[0], {k: grid[k][0] for k in hp_names if k != "learning_rate"},
                      train_data, eval_data, "sweep")
    _check_checkpointing("sweep", checkpoint_every)
    mesh_axes = np.meshgrid(*(grid[k] for k in hp_names), indexing="ij")
    hps = {k: jnp.asarray(v.reshape(-1)) for k, v in zip(hp_names, mesh_axes, strict=True)}
    n_h, n_s = hps["learning_rate"].shape[0], len(keys)
    state = _sweep_init(keys, n_h, spec, train_data)  # on the host
    layout = plan.layout(state)
    sweep_meta = _sweep_meta(grid, train_data, eval_data, spec, layout)
    mesh = plan.mesh_for(list(devices or jax.devices()), n_h, n_s)
    if mesh.is_multi_process:
        multihost.check_same_everywhere(sweep_meta, train_data, eval_data)
    saves = checkpoint_dir is not None and checkpoint_every > 0
    resume_step = None
    run_meta = {**sweep_meta, **(meta or {})}
    if saves and mesh.is_multi_process:  # each process saves the whole grid in its folder
        checkpoint_dir = Path(checkpoint_dir) / f"process-{jax.process_index()}"
        resume_step = multihost.common_checkpoint(checkpoint_dir, run_meta)
    elif saves:  # refuse another sweep's checkpoint before compiling anything
        loop.resume_point(checkpoint_dir, run_meta)
    shape = tuple(len(grid[k]) for k in hp_names) + (n_s,)
    in_chunks = chunked(checkpoint_dir, checkpoint_every, progress)
    num_chunks = 1 if in_chunks else spec.num_chunks
    replicated = jax.NamedSharding(mesh, P())
    data = (jax.tree.map(partial(multihost.put_global_array, sharding=replicated),
                         (train_data, eval_data))
            if mesh.is_multi_process else jax.device_put((train_data, eval_data), replicated))
    leaves, treedef = jax.tree.flatten((state, hps, *data))
    avals = tuple(jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for v in leaves)
    local = mesh.local_devices[0]
    memory_limit = memory_limit or plan.default_memory_limit(local)
    if members_per_block is None:
        members_per_block = plan.default_members_per_block(local, spec.step, keys[0])
    if mesh.is_multi_process:  # every process must plan the same blocks
        memory_limit, members_per_block = (int(v) for v in multihost_utils.process_allgather(
            np.array([memory_limit, members_per_block], np.int64)).min(axis=0))
    b_h, b_s, compiled, used = plan.plan_blocks(
        _sweep_fn(mesh, spec, num_chunks, layout), mesh, n_h, n_s, avals, treedef,
        memory_limit, members_per_block)
    blocks = plan.Blocks(compiled, mesh, b_h, b_s, n_h, n_s, spec.eval_every * num_chunks)
    n = len(shape)

    def run(s: NamedTuple, num_chunks: int):
        s, outputs = blocks(plan.relead(s, n, (n_h, n_s)), hps, data)
        return plan.relead(s, 2, shape), jax.tree.map(
            lambda a: a.reshape(shape + a.shape[2:]), outputs)

    outputs_like = None
    if in_chunks:
        _, (aux, metrics, tracked) = jax.eval_shape(
            partial(_sweep_segment, spec=spec, num_chunks=1), state, hps, *data)
        def grid_shaped(a):
            return jax.ShapeDtypeStruct(shape + a.shape[2:], a.dtype)
        outputs_like = (jax.tree.map(grid_shaped, aux),
                        {k: jax.ShapeDtypeStruct(shape, a.dtype) for k, a in metrics.items()},
                        jax.tree.map(grid_shaped, tracked))
    state, (aux, metrics, tracked), info = drive(
        spec, plan.relead(state, 2, shape), run, lead=n, outputs_like=outputs_like,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        keep=keep, meta=run_meta, progress=progress, desc=desc, resume_step=resume_step)
    return SweepResult(state.params, aux, metrics, state.diverged_at, grid=grid,
                       blocks=blocks.count, bytes_per_device=used, checkpoint=info,
                       tracked=tracked if track is not None else None)


# ----------------------------------------------------------------------------------------------
# One member of a sweep checkpoint as a single run's checkpoint.

def member_checkpoint(source: str | os.PathLike, index: Sequence[int],
                      meta: dict | None = None) -> bytes:
    """Member ``index`` (one index per grid axis, in the grid's order) of a sweep checkpoint, as
    the bytes of an ordinary single-run checkpoint (``fit`` with ``checkpoint_dir``: chunks of
    ``eval_every`` steps): its state, and outputs (aux [chunks, eval_every, ...], metrics
    {k: [chunks]}); the sweep's spec and ``meta`` are stored beside the chunk count. Which
    arrays have grid axes comes from the sweep's recorded layout (``plan.layout``)."""
    arrays, header = checkpoint.read_arrays(source)
    smeta = header["meta"]
    if smeta.get("kind") != "jaxnets.train.sweep" or not isinstance(smeta.get("layout"), dict):
        raise checkpoint.CheckpointError(f"{source}: not a sweep checkpoint")
    axes = {k: len(smeta["grid"][k]) for k in smeta["grid_axes"]}
    index = tuple(int(i) for i in index)
    if len(index) != len(axes) or not all(
            0 <= i < n for i, n in zip(index, axes.values(), strict=True)):
        raise IndexError(f"{source}: member index {index} is not in the grid {axes}")
    per_axes = {"hs": index, "s": index[-1:], "": ()}
    out = {}
    for name, a in arrays.items():
        if name.startswith("['state']."):
            field = name[len("['state']."):].split(".")[0].split("[")[0]
            lead = per_axes[smeta["layout"][field]]
            out[name] = np.asarray(a[lead]) if lead else a
        else:  # outputs [chunks, *grid, ...]
            out[name] = a[(slice(None), *index)]
    return checkpoint.encode_arrays(out, header["keys"], {"spec": smeta.get("spec"),
                                                          **(meta or {}),
                                                          "chunks": smeta["chunks"]})


def extract_member(source: str | os.PathLike, index: Sequence[int],
                   destination: str | os.PathLike, meta: dict | None = None) -> Path:
    """``member_checkpoint`` written atomically to ``destination``."""
    return runs.atomic_write(destination, member_checkpoint(source, index, meta))
