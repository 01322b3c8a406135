"""Steps: TrainState, the supervised step, the minibatch order and the spec of a run. Pure; no I/O.

A step is any object with

    init_state(key) -> state                    a NamedTuple with fields ``params``, ``key`` (the
                                                data or noise key), ``step`` (int32 []) and
                                                ``diverged_at`` (int32 [], -1 while finite)
    schedule(state, num_steps, data) -> xs      what each of the next num_steps steps reads
                                                (minibatch indices [num_steps, B]), or None
    __call__(state, hparams, data, x) -> (state, aux)   one step; aux e.g. the minibatch loss
    validate(key, hparams, data, where)         clear errors before anything is compiled
    state_bytes_fields                          the state's fields a member carries
                                                (params and optimizer state), for memory plans

``SupervisedStep`` is the step of every classifier and regressor (``loss(params, batch)``, one
optax update); ``jaxnets.models.gan.GanStep`` (k discriminator steps, then one generator step)
is another. ``RunSpec`` fixes a run's static part (step, steps, eval_every, evaluate): hashable,
so the driver's compiled functions are cached on it, and it writes the checkpoint metadata that
a resumed run must agree with.

Minibatches: step t of a run uses slice t mod E of the permutation
``random.permutation(fold_in(key, t // E), n)``, E = n // batch_size (epochs without
replacement). The order depends only on (key, t), so a run split into chunks sees the same data.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxnets.checkpoint import describe
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
# State fields every step's state has that are not one member's own: the data key (shared by
# the members of one seed in a sweep) and the step count (shared by all).
SHARED_FIELDS = ("key", "step")


class TrainState(NamedTuple):
    """Everything a supervised run carries from one step to the next."""

    params: PyTree
    opt_state: optax.OptState
    key: Array  # data-order key
    step: Array  # int32 [], steps taken so far
    diverged_at: Array  # int32 [], the step whose loss or update was not finite; -1 if none


class Tracker(Protocol):
    """Something measured inside a run every ``every`` steps (``jaxnets.curvature.sharpness``).

    ``init(state, data) -> carry`` once at the start of a run; then ``tracker(state, hparams,
    data, carry) -> ({name: array}, carry)`` after every ``every`` steps. The carry (e.g. the
    last top eigenvector, to warm-start the next measurement) travels in the run's state
    (``tracked_state``), so chunks, sweeps, checkpoints and resume carry it too.
    ``validate(params, data, where)`` raises clear errors before compiling.
    """

    every: int

    def init(self, state: NamedTuple, data: Any) -> PyTree: ...

    def __call__(self, state: NamedTuple, hparams: Hparams, data: Any, carry: PyTree
                 ) -> tuple[dict[str, Array], PyTree]: ...

    def validate(self, params: PyTree, data: Any, where: str) -> None: ...


@functools.cache
def _with_track(inner: type) -> type:
    """``inner``'s fields and ``track`` (a tracker's carry): a NamedTuple type per state type."""
    cls = NamedTuple(f"{inner.__name__}WithTrack",
                     [(f, Any) for f in inner._fields] + [("track", Any)])
    cls.inner = inner
    return cls


def tracked_state(state: NamedTuple, carry: PyTree) -> NamedTuple:
    """The step's state with the tracker's carry as one more field, ``track``."""
    return _with_track(type(state))(*state, carry)


def _split_tracked(state: NamedTuple) -> tuple[NamedTuple, PyTree]:
    return type(state).inner(*state[:-1]), state.track


def init_run_state(key: Array, spec: RunSpec, data: Any) -> NamedTuple:
    """A run's first state: ``spec.step.init_state(key)``, with ``spec.track.init``'s carry
    when the run has a tracker."""
    state = spec.step.init_state(key)
    return state if spec.track is None else tracked_state(state, spec.track.init(state, data))


class Step(Protocol):
    """What the driver needs of a step (see the module docstring)."""

    state_bytes_fields: tuple[str, ...]

    def init_state(self, key: Array) -> NamedTuple: ...

    def schedule(self, state: NamedTuple, num_steps: int, data: Any) -> Any: ...

    def __call__(self, state: NamedTuple, hparams: Hparams, data: Any, x: Any
                 ) -> tuple[NamedTuple, Any]: ...

    def validate(self, key: Array, hparams: dict, data: Any, where: str) -> None: ...


class DivergenceError(FloatingPointError):
    """A run's loss or parameters became NaN or inf."""


def raise_if_diverged(diverged_at: Array, learning_rate: float | None = None) -> None:
    """Raise ``DivergenceError`` naming the step if a run (not a sweep) diverged."""
    step = int(diverged_at)
    if step >= 0:
        lr = "" if learning_rate is None else f" with learning rate {learning_rate:g}"
        raise DivergenceError(
            f"training diverged{lr}: the loss or parameters became NaN/inf at step {step}; "
            "params are those before that step. Try a smaller learning rate."
        )


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


def all_finite(tree: PyTree) -> Array:
    """True where every leaf of ``tree`` is finite: bool []."""
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
    extra pass over them. Finite params plus a finite update can still overflow when both are
    near the float maximum: that step is taken, and the next one, whose loss reads the inf, is
    the one marked.
    """
    if augment is not None:
        batch = augment(augment_key(state), batch)
    value, grads = jax.value_and_grad(loss)(state.params, batch)
    updates, opt_state = optimizer(**hparams).update(grads, state.opt_state, state.params)

    healthy = state.diverged_at < 0
    ok = jnp.isfinite(value) & all_finite(updates)
    keep = healthy & ok
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(keep, new, old),
        (optax.apply_updates(state.params, updates), opt_state), (state.params, state.opt_state))
    diverged_at = jnp.where(healthy & ~ok, state.step, state.diverged_at)
    value = jnp.where(healthy, value, jnp.nan)
    return TrainState(params, opt_state, state.key, state.step + 1, diverged_at), value


def _shapes(tree: PyTree) -> list:
    return [(jnp.shape(v), jnp.result_type(v)) for v in jax.tree.leaves(tree)]


@dataclasses.dataclass(frozen=True)
class SupervisedStep:
    """``train_step`` on minibatches of ``data = (x [n, ...], y [n, ...])`` drawn in epochs.

    init: key -> params. loss: (params, batch) -> scalar. optimizer: factory,
    ``optimizer(learning_rate=lr, **hparams)`` -> optax transform. augment: (key, minibatch) ->
    minibatch, at every step with the key ``augment_key(state)``.
    """

    init: Callable[[Array], PyTree]
    loss: LossFn
    optimizer: OptimizerFactory
    batch_size: int
    augment: AugmentFn | None = None
    state_bytes_fields = ("params", "opt_state")

    def init_state(self, key: Array) -> TrainState:
        """``init_state``: params from init(k_init), the optimizer's state, the data key."""
        return init_state(key, init=self.init, optimizer=self.optimizer)

    def schedule(self, state: TrainState, num_steps: int, data: Batch) -> Array:
        """Minibatch indices of the next ``num_steps`` steps: [num_steps, batch_size]."""
        return chunk_indices(state.key, state.step, num_steps, data[0].shape[0], self.batch_size)

    def __call__(self, state: TrainState, hparams: Hparams, data: Batch, idx: Array
                 ) -> tuple[TrainState, Array]:
        x, y = data
        return train_step(state, hparams, (x[idx], y[idx]), loss=self.loss,
                          optimizer=self.optimizer, augment=self.augment)

    def validate(self, key: Array, hparams: dict, data: Batch, where: str) -> None:
        """Clear errors for the data, batch size, optimizer hyperparameters and augmentation,
        then the model traced on the data (``jax.eval_shape``): shape and label-range errors
        surface with the model's own message rather than from inside XLA."""
        check_pair(data, "train_data", where)
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"{where}: batch_size must be a positive integer, got "
                             f"{self.batch_size!r}")
        n = jnp.shape(data[0])[0]
        if self.batch_size > n:
            raise ValueError(f"{where}: batch_size ({self.batch_size}) exceeds the {n} training "
                             "examples")
        try:
            self.optimizer(**{"learning_rate": 0.0, **hparams})
        except TypeError as e:
            raise ValueError(f"{where}: the optimizer does not take the hyperparameters "
                             f"{sorted(hparams)}: {e}") from None
        if self.augment is not None:
            batch = (data[0][:self.batch_size], data[1][:self.batch_size])
            out = jax.eval_shape(self.augment, key, batch)
            if _shapes(out) != _shapes(batch):
                raise ValueError(f"{where}: augment must return a minibatch of the same shapes "
                                 f"and dtypes, got {_shapes(out)} for {_shapes(batch)}")
        params = jax.eval_shape(self.init, key)
        jax.eval_shape(lambda p: self.loss(p, data), params)


def check_pair(batch: Any, name: str, where: str) -> None:
    """TypeError / ValueError unless ``batch`` is a pair (x, y) with as many inputs as targets."""
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise TypeError(f"{where}: {name} must be a pair (x, y), got {type(batch).__name__}")
    if jnp.shape(batch[0])[:1] != jnp.shape(batch[1])[:1]:
        raise ValueError(f"{where}: {name} has {jnp.shape(batch[0])[:1]} inputs but "
                         f"{jnp.shape(batch[1])[:1]} targets")


class LossMetric(NamedTuple):
    """evaluate = {"loss": loss}; a NamedTuple so equal ones hash equal (one compile)."""

    loss: LossFn

    def __call__(self, params, batch):
        return {"loss": self.loss(params, batch)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The static part of a run: its step, length, evaluation. Hashable (compiled functions are
    cached on it); ``meta()`` is what a checkpoint of the run records and a resume compares.

    steps: steps of the run. eval_every: steps per chunk, between evaluations (divides steps).
    evaluate: (params, batch) -> {metric: scalar} on each evaluation set.
    track: measured inside the run every ``track.every`` steps (which must divide eval_every),
    e.g. ``curvature.sharpness``.
    """

    step: Step
    steps: int
    eval_every: int
    evaluate: EvalFn | None = None
    track: Tracker | None = None

    @property
    def num_chunks(self) -> int:
        return self.steps // self.eval_every

    def validate(self, where: str) -> None:
        """ValueError for counts that are not positive integers or do not divide."""
        for name in ("steps", "eval_every"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
        if self.steps % self.eval_every:
            raise ValueError(f"{where}: steps ({self.steps}) must be a multiple of eval_every "
                             f"({self.eval_every})")
        every = getattr(self.track, "every", None)
        if self.track is not None and (not isinstance(every, int) or every < 1
                                       or self.eval_every % every):
            raise ValueError(f"{where}: track.every ({every!r}) must be a positive integer "
                             f"dividing eval_every ({self.eval_every})")

    def meta(self) -> dict:
        """Stable names of the run's functions and its settings (``checkpoint.describe``)."""
        step = {f.name: getattr(self.step, f.name) for f in dataclasses.fields(self.step)}
        return {"step": describe(type(self.step)),
                **{k: v if isinstance(v, int) else describe(v) for k, v in step.items()},
                "steps": self.steps, "eval_every": self.eval_every,
                "evaluate": describe(self.evaluate),
                **({} if self.track is None else {"track": describe(self.track)})}


def evaluate_all(params: PyTree, eval_data: dict[str, Batch], evaluate: EvalFn | None
                 ) -> dict[str, Array]:
    """``evaluate`` on each named data set, flattened to {"name/metric": scalar}."""
    return {f"{name}/{k}": v for name, batch in eval_data.items()
            for k, v in evaluate(params, batch).items()}


def _masked(state: NamedTuple, tree: PyTree) -> PyTree:
    """NaN in every value once the run has diverged."""
    return jax.tree.map(lambda v: jnp.where(state.diverged_at < 0, v, jnp.nan), tree)


def _tracked_steps(state: NamedTuple, hparams: Hparams, data: Any, spec: RunSpec,
                   num_steps: int) -> tuple[NamedTuple, tuple[Any, dict]]:
    """``num_steps`` steps of a state with a tracker's carry (``tracked_state``), as
    num_steps / every scans of ``every`` steps, ``spec.track`` after each: (state, (aux
    [num_steps, ...], tracked {name: [num_steps / every, ...]}))."""
    every = spec.track.every
    n = num_steps // every
    inner, carry = _split_tracked(state)
    xs = spec.step.schedule(inner, num_steps, data)

    def group(sc, x):
        s, c = sc
        s, aux = jax.lax.scan(lambda s, x: spec.step(s, hparams, data, x), s, x, length=every)
        values, c = spec.track(s, hparams, data, c)
        return (s, c), (aux, _masked(s, values))

    xs = jax.tree.map(lambda a: a.reshape(n, every, *a.shape[1:]), xs)
    (inner, carry), (aux, tracked) = jax.lax.scan(group, (inner, carry), xs, length=n)
    return tracked_state(inner, carry), (
        jax.tree.map(lambda a: a.reshape(num_steps, *a.shape[2:]), aux), tracked)


def train_chunk(state: NamedTuple, hparams: Hparams, data: Any, eval_data: dict[str, Batch],
                spec: RunSpec, num_steps: int) -> tuple[NamedTuple, tuple[Any, dict, dict]]:
    """``num_steps`` steps in one ``lax.scan``, then ``spec.evaluate`` on ``eval_data``:
    (state, (aux [num_steps, ...], metrics {"name/metric": scalar}, tracked {name:
    [num_steps / track.every, ...]}, empty without ``spec.track``)).

    Metrics and tracked values of a run that has diverged read NaN (masked), like its losses.
    """
    if spec.track is None:
        xs = spec.step.schedule(state, num_steps, data)
        state, aux = jax.lax.scan(lambda s, x: spec.step(s, hparams, data, x), state, xs,
                                  length=num_steps)
        tracked = {}
    else:
        state, (aux, tracked) = _tracked_steps(state, hparams, data, spec, num_steps)
    metrics = _masked(state, evaluate_all(state.params, eval_data, spec.evaluate))
    return state, (aux, metrics, tracked)


def train_chunks(state: NamedTuple, hparams: Hparams, data: Any, eval_data: dict[str, Batch],
                 spec: RunSpec, num_chunks: int) -> tuple[NamedTuple, tuple[Any, dict, dict]]:
    """``num_chunks`` chunks of ``spec.eval_every`` steps in one ``lax.scan``: (state, (aux
    [num_chunks * eval_every, ...], metrics {k: [num_chunks]}, tracked {k: [num_chunks *
    eval_every / track.every, ...]}))."""
    state, (aux, metrics, tracked) = jax.lax.scan(
        lambda s, _: train_chunk(s, hparams, data, eval_data, spec, spec.eval_every), state,
        None, length=num_chunks)
    def flat(a):
        return a.reshape(-1, *a.shape[2:])
    return state, (jax.tree.map(flat, aux), metrics, jax.tree.map(flat, tracked))
