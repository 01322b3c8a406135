"""Training: one driver runs every loop, one run (``fit``) or a grid of them (``sweep``).

Modules, imported one way (``step`` <- ``plan`` <- ``driver``; ``multihost`` beside ``plan``):

- ``step``: ``TrainState``, the supervised step, the minibatch order, ``RunSpec``; pure, no I/O.
- ``plan``: the device mesh, the memory plan, blocks of a grid.
- ``driver``: ``drive`` (the one chunked executor), ``fit``, ``sweep``, ``extract_member``.
- ``multihost``: the agreement between the processes of a sweep spanning hosts.

The loop around the compiled chunks (progress, checkpoints, resume) is ``jaxnets.loop``.
"""

from jaxnets.train.driver import (
                                  FitResult,
                                  SweepResult,
                                  drive,
                                  extract_member,
                                  fit,
                                  make_spec,
                                  member_checkpoint,
                                  sweep,
                                  validate_run,
                                  validate_spec,
)
from jaxnets.train.plan import (
                                  CPU_BLOCK_STATE_BYTES,
                                  batch_over_devices,
                                  cpu_devices,
                                  default_members_per_block,
                                  default_memory_limit,
                                  put_over_devices,
)
from jaxnets.train.step import (
                                  AUGMENT_STREAM,
                                  AugmentFn,
                                  Batch,
                                  DivergenceError,
                                  EvalFn,
                                  Hparams,
                                  LossFn,
                                  LossMetric,
                                  RunSpec,
                                  Step,
                                  SupervisedStep,
                                  Tracker,
                                  TrainState,
                                  augment_key,
                                  chunk_indices,
                                  evaluate_all,
                                  init_state,
                                  minibatch_indices,
                                  raise_if_diverged,
                                  train_chunk,
                                  train_chunks,
                                  train_step,
)

__all__ = [
    "AUGMENT_STREAM", "AugmentFn", "Batch", "CPU_BLOCK_STATE_BYTES", "DivergenceError", "EvalFn",
    "FitResult", "Hparams", "LossFn", "LossMetric", "RunSpec", "Step", "SupervisedStep",
    "SweepResult", "Tracker", "TrainState", "augment_key", "batch_over_devices", "chunk_indices",
    "cpu_devices", "default_members_per_block", "default_memory_limit", "drive", "evaluate_all",
    "extract_member", "fit", "init_state", "make_spec", "member_checkpoint", "minibatch_indices",
    "put_over_devices", "raise_if_diverged", "sweep", "train_chunk", "train_chunks", "train_step",
    "validate_run", "validate_spec",
]
