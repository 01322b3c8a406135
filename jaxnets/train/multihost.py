"""Sweeps on a mesh spanning processes (``jax.distributed``): the agreement between processes.

Every process passes the same arguments; before running, they compare a SHA-256 of the
sweep's meta and data (``check_same_everywhere``) and agree on the checkpoint to resume from
(``common_checkpoint``). Inputs are placed as global arrays, each process placing only its own
shards (``put_global``).
"""

from __future__ import annotations

import hashlib
import warnings
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxnets import checkpoint, loop, runs


def check_same_everywhere(meta: dict, *data) -> None:
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


def common_checkpoint(directory: Path, meta: dict) -> int:
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
        loop.resume_point(directory, meta, step or None)
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


def put_global_array(a, sharding: jax.NamedSharding) -> Array:
    """A host value that every process holds alike as a global array: each process places
    only its own devices' shards (``device_put`` would first gather every process's copy to
    check they agree). PRNG keys go through their key data."""
    if jnp.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put_global_array(jax.random.key_data(a), sharding),
                                        impl=jax.random.key_impl(a))
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def put_global(block: tuple[NamedTuple, dict], mesh: Mesh, specs: list[P]) -> tuple:
    """A block's (state, hparams) as global arrays on a mesh spanning processes; ``specs``:
    the partition of each state field."""
    put = lambda spec, a: put_global_array(a, jax.NamedSharding(mesh, spec))  # noqa: E731
    state, hps = block
    state = type(state)(*(jax.tree.map(partial(put, spec), field)
                          for spec, field in zip(specs, state, strict=True)))
    return state, jax.tree.map(partial(put, P("hp")), hps)


