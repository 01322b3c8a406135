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

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxnets.optim import OptimizerFactory

PyTree = Any
Batch = tuple[Array, Array]
LossFn = Callable[[PyTree, Batch], Array]
EvalFn = Callable[[PyTree, Batch], dict[str, Array]]


class TrainState(NamedTuple):
    """Everything a run carries from one step to the next."""

    params: PyTree
    opt_state: optax.OptState
    key: Array  # data-order key
    step: Array  # int32 [], steps taken so far
    diverged_at: Array  # int32 [], the step whose loss or update was not finite; -1 if none


class FitResult(NamedTuple):
    """What ``fit`` returns. Losses after divergence are NaN (masked)."""

    params: PyTree  # final params (the last finite ones if the run diverged)
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
    # The optimizer's state has the same structure whatever the learning rate.
    opt_state = optimizer(0.0).init(params)
    return TrainState(params, opt_state, k_data, jnp.zeros((), jnp.int32),
                      jnp.full((), -1, jnp.int32))


def minibatch_indices(key: Array, step: Array, n: int, batch_size: int) -> Array:
    """Indices [batch_size] of step ``step``: epochs of n // batch_size disjoint batches."""
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
    return jax.lax.dynamic_slice_in_dim(perm, (step % per_epoch) * batch_size, batch_size)


def _all_finite(tree: PyTree) -> Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(tree)]))


def train_step(state: TrainState, learning_rate: Array, data: Batch, *, loss: LossFn,
               optimizer: OptimizerFactory, batch_size: int) -> tuple[TrainState, Array]:
    """One optimizer step on the minibatch of ``state.step``; returns (state, minibatch loss).

    If the loss or the new params are not finite, the step is not taken, ``diverged_at`` records
    it, and every later step is a no-op whose loss reads NaN.
    """
    x, y = data
    idx = minibatch_indices(state.key, state.step, x.shape[0], batch_size)
    value, grads = jax.value_and_grad(loss)(state.params, (x[idx], y[idx]))
    updates, opt_state = optimizer(learning_rate).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    healthy = state.diverged_at < 0
    ok = jnp.isfinite(value) & _all_finite(params)
    keep = healthy & ok
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(keep, new, old), (params, opt_state),
        (state.params, state.opt_state))
    diverged_at = jnp.where(healthy & ~ok, state.step, state.diverged_at)
    value = jnp.where(healthy, value, jnp.nan)
    return TrainState(params, opt_state, state.key, state.step + 1, diverged_at), value


def train_steps(state: TrainState, learning_rate: Array, data: Batch, *, num_steps: int,
                **step_kwargs) -> tuple[TrainState, Array]:
    """``num_steps`` of ``train_step`` in one ``lax.scan``; returns (state, losses [num_steps])."""
    step = partial(train_step, learning_rate=learning_rate, data=data, **step_kwargs)
    return jax.lax.scan(lambda s, _: step(s), state, None, length=num_steps)


def evaluate_all(params: PyTree, eval_data: dict[str, Batch], evaluate: EvalFn
                 ) -> dict[str, Array]:
    """``evaluate`` on each named data set, flattened to {"name/metric": scalar}."""
    return {f"{name}/{k}": v for name, batch in eval_data.items()
            for k, v in evaluate(params, batch).items()}


def train_chunk(state: TrainState, learning_rate: Array, data: Batch,
                eval_data: dict[str, Batch], *, evaluate: EvalFn, num_steps: int,
                **step_kwargs) -> tuple[TrainState, tuple[Array, dict[str, Array]]]:
    """``num_steps`` steps, then ``evaluate`` on ``eval_data``: (state, (losses, metrics))."""
    state, losses = train_steps(state, learning_rate, data, num_steps=num_steps, **step_kwargs)
    return state, (losses, evaluate_all(state.params, eval_data, evaluate))


train_chunk_jit = jax.jit(
    train_chunk, static_argnames=("evaluate", "num_steps", "loss", "optimizer", "batch_size"))


def _fit(key, learning_rate, train_data, eval_data, *, init, loss, optimizer, steps, batch_size,
         evaluate, eval_every) -> FitResult:
    state = init_state(key, init=init, optimizer=optimizer)
    chunk = partial(train_chunk, learning_rate=learning_rate, data=train_data,
                    eval_data=eval_data, evaluate=evaluate, num_steps=eval_every, loss=loss,
                    optimizer=optimizer, batch_size=batch_size)
    state, (losses, metrics) = jax.lax.scan(lambda s, _: chunk(s), state, None,
                                            length=steps // eval_every)
    return FitResult(state.params, losses.reshape(-1), metrics, state.diverged_at)


_fit_jit = jax.jit(_fit, static_argnames=(
    "init", "loss", "optimizer", "steps", "batch_size", "evaluate", "eval_every"))


def validate_run(key: Array, train_data: Batch, eval_data: dict[str, Batch], *,
                 init: Callable[[Array], PyTree], loss: LossFn, evaluate: EvalFn, steps: int,
                 batch_size: int, eval_every: int) -> None:
    """Clear errors for a run's arguments, raised before anything is compiled.

    Checks the counts, then traces the model on the real data without running it
    (``jax.eval_shape``): shape errors, and label-range errors while the data is concrete,
    surface with the model's own message rather than from inside XLA.
    """
    for name, v in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"fit: {name} must be a positive integer, got {v!r}")
    if steps % eval_every:
        raise ValueError(f"fit: steps ({steps}) must be a multiple of eval_every ({eval_every})")
    datasets = {"train_data": train_data, **{f"eval_data[{k!r}]": b for k, b in eval_data.items()}}
    for name, batch in datasets.items():
        if not (isinstance(batch, tuple | list) and len(batch) == 2):
            raise TypeError(f"fit: {name} must be a pair (x, y), got {type(batch).__name__}")
        if jnp.shape(batch[0])[:1] != jnp.shape(batch[1])[:1]:
            raise ValueError(f"fit: {name} has {jnp.shape(batch[0])[:1]} inputs but "
                             f"{jnp.shape(batch[1])[:1]} targets")
    n = jnp.shape(train_data[0])[0]
    if batch_size > n:
        raise ValueError(f"fit: batch_size ({batch_size}) exceeds the {n} training examples")
    params = jax.eval_shape(init, key)
    jax.eval_shape(lambda p: loss(p, train_data), params)
    for batch in eval_data.values():
        jax.eval_shape(lambda p, b=batch: evaluate(p, b), params)


def fit(key: Array, learning_rate: Array | float, train_data: Batch,
        eval_data: dict[str, Batch] | None = None, *, init: Callable[[Array], PyTree],
        loss: LossFn, optimizer: OptimizerFactory, steps: int, batch_size: int,
        evaluate: EvalFn | None = None, eval_every: int | None = None) -> FitResult:
    """Train from ``init(key)`` for ``steps`` optax steps, all inside one jit.

    Args:
      key: PRNG key; split once into the init key and the data-order key.
      learning_rate: scalar, traced (a sweep vmaps over it without recompiling).
      train_data: (x: [n, ...], y: [n, ...]).
      eval_data: named data sets evaluated every ``eval_every`` steps (default: none).
      init: key -> params. loss: (params, batch) -> scalar. optimizer: lr -> optax transform.
      evaluate: (params, batch) -> {metric: scalar}; defaults to {"loss": loss}.
      eval_every: steps between evaluations (default: steps); must divide steps.
    Returns:
      FitResult with train_loss [steps] and eval_metrics {"name/metric": [steps // eval_every]}.
    Raises:
      ValueError / TypeError for bad arguments, shapes or labels, before anything is compiled.
      (Divergence is reported in ``diverged_at``; see ``raise_if_diverged``.)
    """
    eval_data = dict(eval_data or {})
    eval_every = steps if eval_every is None else eval_every
    evaluate = evaluate or _LossMetric(loss)
    validate_run(key, train_data, eval_data, init=init, loss=loss, evaluate=evaluate,
                 steps=steps, batch_size=batch_size, eval_every=eval_every)
    return _fit_jit(key, learning_rate, train_data, eval_data, init=init, loss=loss,
                    optimizer=optimizer, steps=steps, batch_size=batch_size, evaluate=evaluate,
                    eval_every=eval_every)


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
