"""Training: a whole run of N steps as one jitted ``lax.scan``, with the learning rate traced.

``fit(key, learning_rate, train_data, eval_data, *, init, loss, optimizer, steps, batch_size)``
is a pure function of its array arguments, so ``jax.vmap(fit, in_axes=(0, 0, None, None))``
sweeps seeds and learning rates in one compiled computation.

Models enter only through ``init(key) -> params`` and ``loss(params, batch) -> scalar`` (plus an
optional ``evaluate(params, batch) -> dict`` of metrics). The step functions live at module level
and take a ``TrainState`` (a NamedTuple), so each can be run and tested alone.

Minibatches are drawn inside the scan: step t of a run uses slice t mod E of the permutation
``random.permutation(fold_in(key, t // E), n)``, E = n // batch_size (epochs without
replacement). The order depends only on (key, t), so a run split into chunks sees the same data.
"""

from __future__ import annotations

import hashlib
import os
import warnings
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

from jaxnets import checkpoint, runs
from jaxnets.optim import OptimizerFactory

PyTree = Any
Batch = tuple[Array, Array]
Hparams = dict[str, Array]  # keyword arguments of the optimizer factory, "learning_rate" included
LossFn = Callable[[PyTree, Batch], Array]
EvalFn = Callable[[PyTree, Batch], dict[str, Array]]
AugmentFn = Callable[[Array, Batch], Batch]  # (key, minibatch) -> minibatch of the same shapes
# Augmentation keys are fold_in(fold_in(data key, AUGMENT_STREAM), step); data-order keys are
# fold_in(data key, epoch), and no run reaches epoch 2**31 - 1, so the two never coincide.
AUGMENT_STREAM = 2**31 - 1


class TrainState(NamedTuple):
    """Everything a run carries from one step to the next."""

    params: PyTree
    opt_state: optax.OptState
    key: Array  # data-order key
    step: Array  # int32 [], steps taken so far
    diverged_at: Array  # int32 [], the step whose loss or update was not finite; -1 if none


class FitResult(NamedTuple):
    """What ``fit`` returns. Losses after divergence are NaN (masked)."""

    params: PyTree  # final params (if the run diverged, those before its marked step)
    train_loss: Array  # [steps] minibatch loss at each step, before its update
    eval_metrics: dict[str, Array]  # "split/metric" -> [steps // eval_every]
    diverged_at: Array  # int32 [], -1 if the run stayed finite


class DivergenceError(FloatingPointError):
    """A run's loss or parameters became NaN or inf."""


def init_state(key: Array, *, init: Callable[[Array], PyTree], optimizer: OptimizerFactory
               ) -> TrainState:
    """Params from ``init(k_init)``, the optimizer's state, the data key; the key is split once."""
    k_init, k_data = jax.random.split(key)
    params = init(k_init)
    # The optimizer's state has the same structure whatever the hyperparameters.
    opt_state = optimizer(learning_rate=0.0).init(params)
    return TrainState(params, opt_state, k_data, jnp.zeros((), jnp.int32),
                      jnp.full((), -1, jnp.int32))


def minibatch_indices(key: Array, step: Array, n: int, batch_size: int) -> Array:
    """Indices [batch_size] of step ``step``: epochs of n // batch_size disjoint batches.

    Epoch e is ``random.permutation(fold_in(key, e), n)`` cut into E = n // batch_size batches;
    step t uses batch t mod E of epoch t // E. This is the definition; ``chunk_indices`` computes
    the same indices for a run of steps with one permutation per epoch instead of one per step.
    """
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
    return jax.lax.dynamic_slice_in_dim(perm, (step % per_epoch) * batch_size, batch_size)


def chunk_indices(key: Array, start: Array, num_steps: int, n: int, batch_size: int) -> Array:
    """``minibatch_indices`` for steps start .. start + num_steps - 1: [num_steps, batch_size].

    The steps span at most num_steps // E + 2 epochs (E = n // batch_size), whose permutations
    are drawn once: [epochs, n] -> [epochs * E, batch_size] batches, then a window of rows.
    """
    per_epoch = n // batch_size
    first = start // per_epoch
    epochs = first + jnp.arange(num_steps // per_epoch + 2)
    perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))(epochs)
    batches = perms[:, :per_epoch * batch_size].reshape(-1, batch_size)  # [epochs * E, B]
    return jax.lax.dynamic_slice_in_dim(batches, start - first * per_epoch, num_steps)


def _all_finite(tree: PyTree) -> Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(tree)]))


def augment_key(state: TrainState) -> Array:
    """The key ``augment`` gets at this step: fold_in(fold_in(key, AUGMENT_STREAM), step)."""
    return jax.random.fold_in(jax.random.fold_in(state.key, AUGMENT_STREAM), state.step)


def train_step(state: TrainState, hparams: Hparams, batch: Batch, *, loss: LossFn,
               optimizer: OptimizerFactory, augment: AugmentFn | None = None
               ) -> tuple[TrainState, Array]:
    """One step of ``optimizer(**hparams)`` on ``batch``; returns (state, minibatch loss).

    With ``augment``, the step trains on ``augment(augment_key(state), batch)``.
    If the loss or the update is not finite, the step is not taken, ``diverged_at`` records it,
    and every later step is a no-op whose loss reads NaN.

    The update is checked, not the new params (as ``optax.apply_if_finite`` does): the check is
    then known before params + update is formed, so selecting new or old params costs no
    extra pass over them (a sweep is memory-bound outside its matrix products). Finite params
    plus a finite update can still overflow when both are near the float maximum: that step is
    taken, and the next one, whose loss reads the inf, is the one marked.
    """
    if augment is not None:
        batch = augment(augment_key(state), batch)
    value, grads = jax.value_and_grad(loss)(state.params, batch)
    updates, opt_state = optimizer(**hparams).update(grads, state.opt_state, state.params)

    healthy = state.diverged_at < 0
    ok = jnp.isfinite(value) & _all_finite(updates)
    keep = healthy & ok
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(keep, new, old),
        (optax.apply_updates(state.params, updates), opt_state), (state.params, state.opt_state))
    diverged_at = jnp.where(healthy & ~ok, state.step, state.diverged_at)
    value = jnp.where(healthy, value, jnp.nan)
    return TrainState(params, opt_state, state.key, state.step + 1, diverged_at), value


def _step_on_index(state: TrainState, idx: Array, hparams: Hparams, data: Batch, **step_kwargs
                   ) -> tuple[TrainState, Array]:
    x, y = data
    return train_step(state, hparams, (x[idx], y[idx]), **step_kwargs)


def train_steps(state: TrainState, hparams: Hparams, data: Batch, *, num_steps: int,
                batch_size: int, **step_kwargs) -> tuple[TrainState, Array]:
    """``num_steps`` of ``train_step`` in one ``lax.scan``; returns (state, losses [num_steps]).

    Minibatch t is ``data[minibatch_indices(state.key, t, n, batch_size)]``.
    """
    idx = chunk_indices(state.key, state.step, num_steps, data[0].shape[0], batch_size)
    step = partial(_step_on_index, hparams=hparams, data=data, **step_kwargs)
    return jax.lax.scan(step, state, idx)


def evaluate_all(params: PyTree, eval_data: dict[str, Batch], evaluate: EvalFn
                 ) -> dict[str, Array]:
    """``evaluate`` on each named data set, flattened to {"name/metric": scalar}."""
    return {f"{name}/{k}": v for name, batch in eval_data.items()
            for k, v in evaluate(params, batch).items()}


def train_chunk(state: TrainState, hparams: Hparams, data: Batch,
                eval_data: dict[str, Batch], *, evaluate: EvalFn, num_steps: int,
                **step_kwargs) -> tuple[TrainState, tuple[Array, dict[str, Array]]]:
    """``num_steps`` steps, then ``evaluate`` on ``eval_data``: (state, (losses, metrics)).

    Metrics of a run that has diverged read NaN (masked), like its losses.
    """
    state, losses = train_steps(state, hparams, data, num_steps=num_steps, **step_kwargs)
    metrics = evaluate_all(state.params, eval_data, evaluate)
    metrics = jax.tree.map(lambda v: jnp.where(state.diverged_at < 0, v, jnp.nan), metrics)
    return state, (losses, metrics)


train_chunk_jit = jax.jit(
    train_chunk,
    static_argnames=("evaluate", "num_steps", "loss", "optimizer", "batch_size", "augment"))


def _run_chunks(state: TrainState, hparams, train_data, eval_data, *, num_chunks, loss,
                optimizer, batch_size, evaluate, eval_every, augment=None
                ) -> tuple[TrainState, tuple[Array, dict[str, Array]]]:
    """``num_chunks`` chunks of ``train_chunk`` in one ``lax.scan``:
    (state, (losses [num_chunks * eval_every], metrics {k: [num_chunks]}))."""
    chunk = partial(train_chunk, hparams=hparams, data=train_data, eval_data=eval_data,
                    evaluate=evaluate, num_steps=eval_every, loss=loss, optimizer=optimizer,
                    batch_size=batch_size, augment=augment)
    state, (losses, metrics) = jax.lax.scan(lambda s, _: chunk(s), state, None,
                                            length=num_chunks)
    return state, (losses.reshape(-1), metrics)


def _fit(key, hparams, train_data, eval_data, *, init, steps, eval_every, optimizer,
         **kw) -> FitResult:
    state = init_state(key, init=init, optimizer=optimizer)
    state, (losses, metrics) = _run_chunks(state, hparams, train_data, eval_data,
                                           num_chunks=steps // eval_every, eval_every=eval_every,
                                           optimizer=optimizer, **kw)
    return FitResult(state.params, losses, metrics, state.diverged_at)


_STATIC = ("init", "loss", "optimizer", "steps", "batch_size", "evaluate", "eval_every",
           "augment")
_fit_jit = jax.jit(_fit, static_argnames=_STATIC)


def validate_run(key: Array, train_data: Batch, eval_data: dict[str, Batch], *,
                 init: Callable[[Array], PyTree], loss: LossFn, evaluate: EvalFn, steps: int,
                 batch_size: int, eval_every: int, optimizer: OptimizerFactory | None = None,
                 hparams: dict | None = None, augment: AugmentFn | None = None,
                 where: str = "fit") -> None:
    """Clear errors for a run's arguments, raised before anything is compiled.

    Checks the counts, then traces the model on the real data without running it
    (``jax.eval_shape``): shape errors, and label-range errors while the data is concrete,
    surface with the model's own message rather than from inside XLA. With ``optimizer``,
    checks that it accepts the hyperparameter names in ``hparams``.
    """
    for name, v in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
    if steps % eval_every:
        raise ValueError(
            f"{where}: steps ({steps}) must be a multiple of eval_every ({eval_every})")
    datasets = {"train_data": train_data, **{f"eval_data[{k!r}]": b for k, b in eval_data.items()}}
    for name, batch in datasets.items():
        if not (isinstance(batch, tuple | list) and len(batch) == 2):
            raise TypeError(f"{where}: {name} must be a pair (x, y), got {type(batch).__name__}")
        if jnp.shape(batch[0])[:1] != jnp.shape(batch[1])[:1]:
            raise ValueError(f"{where}: {name} has {jnp.shape(batch[0])[:1]} inputs but "
                             f"{jnp.shape(batch[1])[:1]} targets")
    n = jnp.shape(train_data[0])[0]
    if batch_size > n:
        raise ValueError(f"{where}: batch_size ({batch_size}) exceeds the {n} training examples")
    if optimizer is not None:
        try:
            optimizer(**{"learning_rate": 0.0, **(hparams or {})})
        except TypeError as e:
            raise ValueError(f"{where}: the optimizer does not take the hyperparameters "
                             f"{sorted(hparams or {})}: {e}") from None
    if augment is not None:
        shapes = lambda tree: [(jnp.shape(v), jnp.result_type(v)) for v in jax.tree.leaves(tree)]  # noqa: E731
        batch = (train_data[0][:batch_size], train_data[1][:batch_size])
        out = jax.eval_shape(augment, key, batch)
        if shapes(out) != shapes(batch):
            raise ValueError(f"{where}: augment must return a minibatch of the same shapes and "
                             f"dtypes, got {shapes(out)} for {shapes(batch)}")
    params = jax.eval_shape(init, key)
    jax.eval_shape(lambda p: loss(p, train_data), params)
    for batch in eval_data.values():
        jax.eval_shape(lambda p, b=batch: evaluate(p, b), params)


def fit(key: Array, learning_rate: Array | float, train_data: Batch,
        eval_data: dict[str, Batch] | None = None, *, init: Callable[[Array], PyTree],
        loss: LossFn, optimizer: OptimizerFactory, steps: int, batch_size: int,
        evaluate: EvalFn | None = None, eval_every: int | None = None,
        hparams: dict[str, Array | float] | None = None, augment: AugmentFn | None = None,
        validate: bool = True) -> FitResult:
    """Train from ``init(key)`` for ``steps`` optax steps, all inside one jit.

    Args:
      key: PRNG key; split once into the init key and the data-order key.
      learning_rate: scalar, traced (a sweep vmaps over it without recompiling).
      train_data: (x: [n, ...], y: [n, ...]).
      eval_data: named data sets evaluated every ``eval_every`` steps (default: none).
      init: key -> params. loss: (params, batch) -> scalar.
      optimizer: factory, ``optimizer(learning_rate=lr, **hparams)`` -> optax transform.
      evaluate: (params, batch) -> {metric: scalar}; defaults to {"loss": loss}.
      eval_every: steps between evaluations (default: steps); must divide steps.
      hparams: further optimizer hyperparameters, traced like the learning rate
        (e.g. {"beta": 0.9} for ``optim.momentum``).
      augment: (key, minibatch) -> minibatch, applied at every training step with the key
        ``augment_key(state)`` (e.g. ``data.random_shift``); evaluation data is not augmented.
      validate: check the arguments first (``validate_run``); a loop calling ``fit`` many
        times with the same checked arguments may skip it.
    Returns:
      FitResult with train_loss [steps] and eval_metrics {"name/metric": [steps // eval_every]}.
    Raises:
      ValueError / TypeError for bad arguments, shapes or labels, before anything is compiled.
      (Divergence is reported in ``diverged_at``; see ``raise_if_diverged``.)
    """
    eval_data = dict(eval_data or {})
    eval_every = steps if eval_every is None else eval_every
    evaluate = evaluate or _LossMetric(loss)
    hparams = dict(hparams or {})
    if validate:
        validate_run(key, train_data, eval_data, init=init, loss=loss, evaluate=evaluate,
                     steps=steps, batch_size=batch_size, eval_every=eval_every,
                     optimizer=optimizer, hparams=hparams, augment=augment)
    return _fit_jit(key, {"learning_rate": learning_rate, **hparams}, train_data, eval_data,
                    init=init, loss=loss, optimizer=optimizer, steps=steps,
                    batch_size=batch_size, evaluate=evaluate, eval_every=eval_every,
                    augment=augment)


class _LossMetric(NamedTuple):
    """evaluate = {"loss": loss}; a NamedTuple so equal ones hash equal (one compile)."""

    loss: LossFn

    def __call__(self, params, batch):
        return {"loss": self.loss(params, batch)}


def raise_if_diverged(diverged_at: Array, learning_rate: float | None = None) -> None:
    """Raise ``DivergenceError`` naming the step if a run (not a sweep) diverged."""
    step = int(diverged_at)
    if step >= 0:
        lr = "" if learning_rate is None else f" with learning rate {learning_rate:g}"
        raise DivergenceError(
            f"training diverged{lr}: the loss or parameters became NaN/inf at step {step}; "
            "params are those before that step. Try a smaller learning rate."
        )


# ----------------------------------------------------------------------------------------------
# Sweeps: one compiled computation over learning rates x other hyperparameters x seeds.


class SweepResult(NamedTuple):
    """What ``sweep`` returns; every array has the grid's shape in front.

    ``grid`` maps axis name to values in axis order: "learning_rate", then each name of
    ``hparams``, then "seed". A member whose loss or update became non-finite has
    ``diverged_at`` >= 0 and NaN losses and eval metrics from that step on; no other member is
    affected.
    """

    params: PyTree  # [*grid, ...] final params (the last finite ones where a member diverged)
    train_loss: Array  # [*grid, steps]
    eval_metrics: dict[str, Array]  # "split/metric" -> [*grid, steps // eval_every]
    diverged_at: Array  # int32 [*grid]; -1 where the member stayed finite
    grid: dict[str, np.ndarray]
    blocks: int  # compiled calls the grid was cut into to fit in memory (1 if it fit whole)
    bytes_per_device: int | None  # XLA's memory estimate for one block on one device
    checkpoint: checkpoint.Chunked | None = None  # with checkpoint_dir: timings, resumed_from

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    def member(self, *index: int) -> FitResult:
        """The member at a grid index, as ``fit`` returns it: ``result.member(i_lr, i_seed)``."""
        if len(index) != len(self.grid):
            raise IndexError(f"member takes one index per grid axis {list(self.grid)}")
        return FitResult(*jax.tree.map(lambda a: a[index], (
            self.params, self.train_loss, self.eval_metrics, self.diverged_at)))


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


# Leading axes of a sweep state's leaves: [H, S] for params, optimizer state and diverged_at,
# [S] for the data-order keys (members that share a seed share them), none for the step.
_LAYOUT = TrainState("hs", "hs", "s", "", "hs")


def _sweep_segment(state: TrainState, hparams: Hparams, train_data: Batch,
                   eval_data: dict[str, Batch], static: tuple):
    """``num_chunks`` chunks of every member of a block; hparams {name: [H]}, state as _LAYOUT.

    Returns ((params, opt_state, diverged_at) [H, S, ...], (losses [H, S, num_chunks *
    eval_every], metrics {k: [H, S, num_chunks]})). Seeds are the inner vmap: members that share
    a seed share the data-order key, so their minibatch gather stays unbatched and
    ``x_batch @ W1`` becomes one wide matmul for all H.
    """
    def member(params, opt_state, diverged_at, key, hp):
        s = TrainState(params, opt_state, key, state.step, diverged_at)
        s, out = _run_chunks(s, hp, train_data, eval_data, **dict(static))
        return (s.params, s.opt_state, s.diverged_at), out

    over_seeds = jax.vmap(member, in_axes=(0, 0, 0, 0, None))
    return jax.vmap(over_seeds, in_axes=(0, 0, 0, None, 0))(
        state.params, state.opt_state, state.diverged_at, state.key, hparams)


def _spec(axes: str) -> P:
    return P(*({"h": "hp", "s": "seed"}[c] for c in axes))


@lru_cache(maxsize=32)
def _sweep_fn(mesh: Mesh, static: tuple) -> Callable:
    """The jitted block function, each device running its shard of the [H, S] grid."""
    block = partial(_sweep_segment, static=static)
    return jax.jit(jax.shard_map(block, mesh=mesh,
                                 in_specs=(jax.tree.map(_spec, _LAYOUT), P("hp"), P(), P()),
                                 out_specs=P("hp", "seed"), check_vma=False))


def _mesh(devices: list, n_hp: int, n_seed: int) -> Mesh:
    """A ("hp", "seed") mesh over ``devices`` that pads the grid least (ties: shard hp)."""
    n = len(devices)

    def padded(d_hp):
        return -(-n_hp // d_hp) * d_hp * -(-n_seed // (n // d_hp)) * (n // d_hp)

    d_hp = min((d for d in range(n, 0, -1) if n % d == 0), key=padded)
    return Mesh(np.asarray(devices).reshape(d_hp, n // d_hp), ("hp", "seed"))


def default_memory_limit(device) -> int:
    """Bytes a sweep block may use on ``device``: 90% of an accelerator's memory; on CPU half
    the machine's RAM shared by its CPU devices."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(0.9 * stats["bytes_limit"])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // 2 // max(1, len(jax.local_devices(backend="cpu")))


CPU_BLOCK_STATE_BYTES = 4 * 2**20


def default_members_per_block(device, init: Callable, optimizer: OptimizerFactory,
                              key: Array) -> int:
    """Members per device per block: on CPU, as many as keep params + optimizer state within
    ``CPU_BLOCK_STATE_BYTES`` (measured in experiments/benchmark_sweep.py: the 784-256-10
    sin-MLP runs 64 members faster in blocks of a few than in one); elsewhere no cap."""
    if device.platform != "cpu":
        return 2**31 - 1
    nbytes = _state_bytes(init, optimizer, jax.ShapeDtypeStruct(key.shape, key.dtype),
                          bool(jax.config.jax_enable_x64))
    return max(1, CPU_BLOCK_STATE_BYTES // max(1, nbytes))


@lru_cache(maxsize=32)
def _state_bytes(init: Callable, optimizer: OptimizerFactory, key, x64: bool) -> int:
    """Bytes of one member's params + optimizer state (traced once per model, optimizer and
    x64 mode, which sets init's default dtypes)."""
    state = jax.eval_shape(lambda k: init_state(k, init=init, optimizer=optimizer)[:2], key)
    return sum(v.size * v.dtype.itemsize for v in jax.tree.leaves(state))


def _window(a, axis: int, start: int, size: int):
    """Entries start .. start + size - 1 of ``a`` along ``axis``, past the end repeating the
    last entry (a valid member, dropped later)."""
    if start == 0 and size == a.shape[axis]:
        return a
    idx = np.minimum(np.arange(start, start + size), a.shape[axis] - 1)
    return a[(slice(None),) * axis + (idx,)]


def _take_block(tree, layout, i_h: int, i_s: int, b_h: int, b_s: int):
    """Block (i_h, i_s) of a tree whose leaves have the leading axes named in ``layout``."""
    def leaf(axes, a):
        for ax, c in enumerate(axes):
            i, b = (i_h, b_h) if c == "h" else (i_s, b_s)
            a = _window(a, ax, i * b, b)
        return a

    return jax.tree.map(lambda axes, sub: jax.tree.map(partial(leaf, axes), sub), layout, tree)


def _block_avals(tree, layout, b_h: int, b_s: int):
    """Abstract leaves of one block: the leading axes resized to (b_h, b_s)."""
    def leaf(axes, a):
        lead = tuple(b_h if c == "h" else b_s for c in axes)
        return jax.ShapeDtypeStruct(lead + tuple(a.shape[len(axes):]), a.dtype)

    return jax.tree.map(lambda axes, sub: jax.tree.map(partial(leaf, axes), sub), layout, tree)


def _compiled_bytes(compiled, gathered_from: int = 0) -> int | None:
    """Bytes per device XLA says a compiled block needs (None where it cannot say); with
    ``gathered_from`` devices, at least its outputs plus all of theirs (gathering a block
    spanning processes copies the whole block's outputs to every device)."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    run = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
    return max(run, m.output_size_in_bytes * (1 + gathered_from))


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


def _split(n: int, cap: int) -> int:
    """Size of equal blocks of at most ``cap`` covering n (the least padding for that count)."""
    return -(-n // -(-n // max(1, cap)))


@lru_cache(maxsize=32)
def _plan_blocks(fn: Callable, mesh: Mesh, n_h: int, n_s: int, avals: tuple, treedef,
                 memory_limit: int, members_per_block: int
                 ) -> tuple[int, int, Callable, int | None]:
    """Block sizes (b_h, b_s), the compiled block and XLA's bytes per device for it: at most
    ``members_per_block`` members per device, then halve the larger per-device axis until
    XLA's estimate fits ``memory_limit``.

    ``avals``/``treedef``: the abstract (state [n_h, n_s] as _LAYOUT, hps {name: [n_h]},
    train_data, eval_data).
    """
    d_h, d_s = mesh.devices.shape
    per_s = _split(-(-n_s // d_s), members_per_block)
    per_h = _split(-(-n_h // d_h), members_per_block // per_s)
    b_h, b_s = per_h * d_h, per_s * d_s
    state, hps, *data = jax.tree.unflatten(treedef, avals)
    while True:
        args = _block_avals((state, hps), (_LAYOUT, "h"), b_h, b_s)
        compiled = fn.lower(*args, *data).compile()
        used = _compiled_bytes(compiled, mesh.size if mesh.is_multi_process else 0)
        if used is None or used <= memory_limit:
            return b_h, b_s, compiled, used
        if b_h == d_h and b_s == d_s:
            raise MemoryError(
                f"sweep: one member per device needs {_mib(used)}, over the memory limit of "
                f"{_mib(memory_limit)}; use a smaller batch_size or model, or pass a larger "
                "memory_limit")
        if b_h // d_h >= b_s // d_s:
            b_h = -(-(b_h // d_h) // 2) * d_h
        else:
            b_s = -(-(b_s // d_s) // 2) * d_s


class _Blocks(NamedTuple):
    """A planned sweep: the compiled block function and how the [H, S] grid is cut."""

    compiled: Callable
    mesh: Mesh
    b_h: int
    b_s: int
    n_h: int
    n_s: int
    steps_per_call: int

    @property
    def count(self) -> int:
        return -(-self.n_h // self.b_h) * -(-self.n_s // self.b_s)

    def __call__(self, state: TrainState, hps: Hparams, data: tuple
                 ) -> tuple[TrainState, tuple[Array, dict[str, Array]]]:
        """Every block for ``steps_per_call`` steps: (state, (losses [H, S, steps_per_call],
        metrics {k: [H, S, steps_per_call // eval_every]}))."""
        in_shardings = self.compiled.input_shardings[0]
        rows = []
        for i in range(-(-self.n_h // self.b_h)):
            rows.append([])
            for j in range(-(-self.n_s // self.b_s)):
                block = _take_block((state, hps), (_LAYOUT, "h"), i, j, self.b_h, self.b_s)
                if self.mesh.is_multi_process:  # every process gets the whole block back
                    out = self.compiled(*_put_global(block, self.mesh), *data)
                    rows[-1].append(multihost_utils.process_allgather(out, tiled=True))
                else:
                    out = self.compiled(*jax.device_put((*block, *data), in_shardings))
                    # with several blocks the grid's state waits on the host: a device holds
                    # one block at a time, as the memory plan assumes
                    rows[-1].append(out if self.count == 1 else jax.device_get(out))
        (params, opt_state, diverged_at), outputs = jax.tree.map(
            lambda *leaves: _assemble(leaves, len(rows[0]), self.n_h, self.n_s),
            *[r for row in rows for r in row])
        state = TrainState(params, opt_state, state.key, state.step + self.steps_per_call,
                           diverged_at)
        return state, outputs


def _global(a, sharding: jax.NamedSharding) -> Array:
    """A host value that every process holds alike as a global array: each process places
    only its own devices' shards (``device_put`` would first gather every process's copy to
    check they agree). PRNG keys go through their key data."""
    if jnp.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_global(jax.random.key_data(a), sharding),
                                        impl=jax.random.key_impl(a))
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def _put_global(block: tuple[TrainState, Hparams], mesh: Mesh) -> tuple:
    """A block's (state, hparams) as global arrays on a mesh spanning processes."""
    put = lambda spec, a: _global(a, jax.NamedSharding(mesh, spec))  # noqa: E731
    state, hps = block
    state = TrainState(*(jax.tree.map(partial(put, spec), field)
                         for spec, field in zip(jax.tree.map(_spec, _LAYOUT), state, strict=True)))
    return state, jax.tree.map(partial(put, P("hp")), hps)


def _relead(state: TrainState, lead: int, shape: tuple[int, ...]) -> TrainState:
    """Reshape the first ``lead`` axes of a sweep state's member fields to ``shape`` (between
    the flat [n_h, n_s] the blocks use and the grid [n_lr, *n_hparam, n_seed])."""
    re = partial(jax.tree.map, lambda a: a.reshape(shape + a.shape[lead:]))
    return state._replace(params=re(state.params), opt_state=re(state.opt_state),
                          diverged_at=re(state.diverged_at))


def sweep(learning_rates, train_data: Batch, eval_data: dict[str, Batch] | None = None, *,
          init: Callable[[Array], PyTree], loss: LossFn, optimizer: OptimizerFactory,
          steps: int, batch_size: int, seeds: int | Sequence[int] = 1,
          hparams: dict[str, Sequence[float]] | None = None, evaluate: EvalFn | None = None,
          eval_every: int | None = None, devices: Sequence | None = None,
          memory_limit: int | None = None, members_per_block: int | None = None,
          augment: AugmentFn | None = None, checkpoint_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 1, keep: int = 3, progress: bool = False,
          validate: bool = True) -> SweepResult:
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
    size (the smallest), and every process gets the whole result as numpy arrays (see
    README).

    Memory: only metrics, final params and ``diverged_at`` come back, never per-step params.
    The compiled block's memory (XLA's memory analysis) is checked against ``memory_limit``
    bytes per device (default ``default_memory_limit``); a grid that does not fit is cut
    automatically into equal blocks run one after another (``SweepResult.blocks``); if one
    member per device does not fit, a ``MemoryError`` says how much it needs.

    Speed: ``members_per_block`` caps the members one device runs at once (default
    ``default_members_per_block``: on CPU, as many as keep their params and optimizer state
    within 4 MiB, because a block whose state falls out of cache runs slower than the same
    members in smaller blocks; unbounded on accelerators).

    Checkpoints: with ``checkpoint_dir`` the run goes in compiled chunks of ``eval_every``
    steps (a progress bar with ``progress``) and after every ``checkpoint_every``-th chunk
    the whole grid's state (params, optimizer states, data keys, step, diverged_at, leaves
    [*grid, ...]) and the metrics so far are saved there (``checkpoint.run_chunks``, newest
    ``keep`` kept). If the folder already holds a checkpoint of this sweep, it resumes from
    it, bit-identical to an uninterrupted run; one of another sweep (another grid or order of
    its axes, model, data shapes or settings) is refused, listing the differences.
    ``extract_member`` turns one member into an ordinary single-run checkpoint. On a mesh
    spanning processes, process i saves in ``checkpoint_dir/process-<i>`` and all resume from
    the newest step every process holds.

    Args:
      learning_rates: [n_lr]. seeds: n (seeds 0..n-1) or [n_seed] ints.
      hparams: other traced optimizer hyperparameters, {name: [n]}, e.g. {"beta": [0.8, 0.9]}.
      validate: check the arguments first (``validate_run``, which traces the loss on the data:
        about 10 ms); a caller that already checked them may skip it, as with ``fit``.
      The rest as in ``fit``.
    Returns:
      SweepResult; arrays shaped [n_lr, *(len(v) for v in hparams), n_seed, ...].
    """
    eval_data = dict(eval_data or {})
    eval_every = steps if eval_every is None else eval_every
    evaluate = evaluate or _LossMetric(loss)
    grid = _sweep_grid(learning_rates, dict(hparams or {}), seeds)
    keys = jax.vmap(jax.random.key)(jnp.asarray(grid["seed"]))
    hp_names = [k for k in grid if k != "seed"]
    if validate:
        validate_run(keys[0], train_data, eval_data, init=init, loss=loss, evaluate=evaluate,
                     steps=steps, batch_size=batch_size, eval_every=eval_every,
                     optimizer=optimizer,
                     hparams={k: grid[k][0] for k in hp_names if k != "learning_rate"},
                     augment=augment, where="sweep")
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 0):
        raise ValueError(f"sweep: checkpoint_every must be an integer >= 0, got "
                         f"{checkpoint_every!r}")
    meta = _sweep_meta(grid, train_data, eval_data, init=init, loss=loss, optimizer=optimizer,
                       evaluate=evaluate, augment=augment, steps=steps, batch_size=batch_size,
                       eval_every=eval_every)
    mesh_axes = np.meshgrid(*(grid[k] for k in hp_names), indexing="ij")
    hps = {k: jnp.asarray(v.reshape(-1)) for k, v in zip(hp_names, mesh_axes, strict=True)}
    n_h, n_s = hps["learning_rate"].shape[0], len(keys)
    devices = list(devices or jax.devices())
    mesh = _mesh(devices, n_h, n_s)
    if mesh.is_multi_process:
        _check_same_everywhere(meta, train_data, eval_data)
    chunked = checkpoint_dir is not None and checkpoint_every > 0
    resume_step = None
    if chunked and mesh.is_multi_process:  # each process saves the whole grid in its folder
        checkpoint_dir = Path(checkpoint_dir) / f"process-{jax.process_index()}"
        resume_step = _common_checkpoint(checkpoint_dir, meta)
    elif chunked:  # refuse another sweep's checkpoint before compiling anything
        checkpoint.check_resumable(checkpoint_dir, meta)
    shape = tuple(len(grid[k]) for k in hp_names) + (n_s,)
    n_chunks = steps // eval_every
    static = (("loss", loss), ("optimizer", optimizer), ("batch_size", batch_size),
              ("evaluate", evaluate), ("eval_every", eval_every), ("augment", augment),
              ("num_chunks", 1 if chunked else n_chunks))
    state = _sweep_init(keys, n_h, init=init, optimizer=optimizer)  # on the host
    replicated = jax.NamedSharding(mesh, P())
    data = (jax.tree.map(partial(_global, sharding=replicated), (train_data, eval_data))
            if mesh.is_multi_process else jax.device_put((train_data, eval_data), replicated))
    leaves, treedef = jax.tree.flatten((state, hps, *data))
    avals = tuple(jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for v in leaves)
    local = mesh.local_devices[0]
    memory_limit = memory_limit or default_memory_limit(local)
    if members_per_block is None:
        members_per_block = default_members_per_block(local, init, optimizer, keys[0])
    if mesh.is_multi_process:  # every process must plan the same blocks
        memory_limit, members_per_block = (int(v) for v in multihost_utils.process_allgather(
            np.array([memory_limit, members_per_block], np.int64)).min(axis=0))
    b_h, b_s, compiled, used = _plan_blocks(
        _sweep_fn(mesh, static), mesh, n_h, n_s, avals, treedef, memory_limit,
        members_per_block)
    blocks = _Blocks(compiled, mesh, b_h, b_s, n_h, n_s, eval_every * dict(static)["num_chunks"])
    info = None
    if chunked:
        def chunk(s: TrainState):
            s, (losses, metrics) = blocks(_relead(s, len(shape), (n_h, n_s)), hps, data)
            return _relead(s, 2, shape), (losses.reshape(shape + (eval_every,)),
                                           {k: v.reshape(shape) for k, v in metrics.items()})

        _, (l_, m_) = jax.eval_shape(partial(_sweep_segment, static=static), state, hps, *data)
        outputs_like = (jax.ShapeDtypeStruct(shape + (eval_every,), l_.dtype),
                        {k: jax.ShapeDtypeStruct(shape, v.dtype) for k, v in m_.items()})
        info = checkpoint.run_chunks(_relead(state, 2, shape), chunk, n_chunks,
                                     directory=checkpoint_dir, meta=meta, every=checkpoint_every,
                                     keep=keep, steps_per_chunk=eval_every, desc="sweep",
                                     progress=progress, outputs_like=outputs_like,
                                     resume_step=resume_step)
        state, (losses, metrics) = info.state, info.outputs  # [n_chunks, *shape, ...]
        n = len(shape)
        losses = np.moveaxis(losses, 0, n).reshape(shape + (steps,))
        metrics = {k: np.moveaxis(v, 0, n) for k, v in metrics.items()}
    else:
        state, (losses, metrics) = blocks(state, hps, data)
        state = _relead(state, 2, shape)
        losses = losses.reshape(shape + (steps,))
        metrics = {k: v.reshape(shape + (n_chunks,)) for k, v in metrics.items()}
    return SweepResult(state.params, losses, metrics, state.diverged_at, grid=grid,
                       blocks=blocks.count, bytes_per_device=used,
                       checkpoint=info)


def _check_same_everywhere(meta: dict, *data) -> None:
    """ValueError in every process unless all passed the same sweep: its meta (grid, model,
    optimizer, settings, data shapes) and data values (SHA-256 of them, compared)."""
    digest = hashlib.sha256(runs.to_json(meta).encode())
    for leaf in jax.tree.leaves(data):
        a = np.ascontiguousarray(leaf)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    everyone = multihost_utils.process_allgather(np.frombuffer(digest.digest(), np.uint8))
    differ = [i for i, d in enumerate(everyone) if not np.array_equal(d, everyone[0])]
    if differ:
        raise ValueError(f"sweep: processes {differ} passed another grid, model, setting or "
                         "data than process 0; every process must pass the same arguments")


def _common_checkpoint(directory: Path, meta: dict) -> int:
    """The newest step whose checkpoint every process holds in its own ``directory`` (0 if
    none), checked (settings, hash) in every process before any resumes: processes killed
    together may have finished different saves, and all must resume from the same one; a
    refusal in one process is raised in all (else the others would wait for it forever)."""
    held = checkpoint.Checkpoints(directory).steps()
    width = int(np.max(multihost_utils.process_allgather(np.int32(len(held)))))
    padded = np.full(max(width, 1), -1, np.int64)
    padded[:len(held)] = held
    everyone = multihost_utils.process_allgather(padded)  # [processes, width]
    common = set(everyone[0]).intersection(*map(set, everyone[1:])) - {-1}
    step = int(max(common, default=0))
    if not common and (everyone >= 0).any():
        warnings.warn(f"sweep: the processes hold checkpoints but no step in common "
                      f"({everyone.tolist()}); starting afresh", stacklevel=3)
    error = None
    try:
        checkpoint.check_resumable(directory, meta)
        if step:
            checkpoint.read_arrays(checkpoint.Checkpoints(directory).path(step))
    except (checkpoint.CheckpointError, OSError) as e:
        error = e
    refused = np.flatnonzero(multihost_utils.process_allgather(np.int32(error is not None)))
    if error is not None:
        raise error
    if refused.size:
        raise checkpoint.CheckpointError(
            f"sweep: process(es) {refused.tolist()} refused their checkpoint of step {step} "
            "(their error says why); no process resumed")
    return step


def _sweep_init(keys: Array, n_h: int, *, init, optimizer) -> TrainState:
    """Every member's initial state as _LAYOUT, seed j's for all n_h hyperparameters: host
    views (``np.broadcast_to``) of one state per seed, so the grid costs no memory until a
    block of it is sent to a device."""
    s = _init_seeds(keys, init=init, optimizer=optimizer)
    wide = partial(jax.tree.map, lambda a: np.broadcast_to(np.asarray(a), (n_h, *a.shape)))
    return TrainState(wide(s.params), wide(s.opt_state), s.key, s.step[0], wide(s.diverged_at))


@partial(jax.jit, static_argnames=("init", "optimizer"))
def _init_seeds(keys: Array, *, init, optimizer) -> TrainState:
    return jax.vmap(partial(init_state, init=init, optimizer=optimizer))(keys)


def _sweep_meta(grid: dict, train_data: Batch, eval_data: dict, **settings) -> dict:
    """What a sweep checkpoint must agree on to be resumed: the grid (axes in order), model,
    data shapes and dtypes, settings."""
    shapes = lambda batch: [[list(jnp.shape(v)), str(jnp.result_type(v))] for v in batch]  # noqa: E731
    return {"kind": "jaxnets.train.sweep", "grid_axes": list(grid),
            "grid": {k: v.tolist() for k, v in grid.items()}, "train_data": shapes(train_data),
            "eval_data": {k: shapes(b) for k, b in eval_data.items()},
            **{k: v if isinstance(v, int) else checkpoint.describe(v)
               for k, v in settings.items()}}


def member_checkpoint(source: str | os.PathLike, index: Sequence[int],
                      meta: dict | None = None) -> bytes:
    """Member ``index`` (one index per grid axis, in the grid's order) of a sweep checkpoint, as
    the bytes of an ordinary single-run checkpoint (``checkpoint.run_chunks`` with chunks of
    ``eval_every`` steps, the layout of ``experiments.common.train_classifier``): state
    TrainState(params, opt_state, key, step, diverged_at) and outputs (losses
    [chunks, eval_every], metrics {k: [chunks]}); ``meta`` is stored beside the chunk count.
    """
    arrays, header = checkpoint.read_arrays(source)
    smeta = header["meta"]
    if smeta.get("kind") != "jaxnets.train.sweep":
        raise checkpoint.CheckpointError(f"{source}: not a sweep checkpoint")
    axes = {k: len(smeta["grid"][k]) for k in smeta["grid_axes"]}
    index = tuple(int(i) for i in index)
    if len(index) != len(axes) or not all(
            0 <= i < n for i, n in zip(index, axes.values(), strict=True)):
        raise IndexError(f"{source}: member index {index} is not in the grid {axes}")
    out = {}
    for name, a in arrays.items():
        if name == "['state'].key":
            out[name] = a[index[-1]]
        elif name == "['state'].step":
            out[name] = a
        elif name.startswith("['state']"):
            out[name] = np.asarray(a[index])
        else:  # outputs [chunks, *grid, ...]
            out[name] = a[(slice(None), *index)]
    return checkpoint.encode_arrays(out, header["keys"], {**(meta or {}),
                                                          "chunks": smeta["chunks"]})


def extract_member(source: str | os.PathLike, index: Sequence[int],
                   destination: str | os.PathLike, meta: dict | None = None) -> Path:
    """``member_checkpoint`` written atomically to ``destination``."""
    return runs.atomic_write(destination, member_checkpoint(source, index, meta))


def _assemble(leaves, per_row: int, n_h: int, n_s: int) -> Array:
    """Blocks [b_h, b_s, ...] (row-major; host arrays if several) -> [n_h, n_s, ...], padding
    dropped."""
    if len(leaves) == 1:
        return leaves[0] if leaves[0].shape[:2] == (n_h, n_s) else leaves[0][:n_h, :n_s]
    rows = [np.concatenate(leaves[i:i + per_row], axis=1)
            for i in range(0, len(leaves), per_row)]
    return np.concatenate(rows, axis=0)[:n_h, :n_s]
