"""Plans for a sweep: the device mesh, the memory each block needs, and blocks run in turn.

A sweep's state has leaves [H, S, ...] for every member field (params, optimizer state,
diverged_at), [S] for the data key (members that share a seed share it) and [] for the step
(``layout``). ``plan_blocks`` cuts the [H, S] grid into equal blocks whose compiled program
fits a device's memory (XLA's memory analysis), at most ``members_per_block`` members per
device; ``Blocks`` runs them one after another and assembles the grid.
"""

from __future__ import annotations

import glob
import mmap
import os
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jaxlib
import numpy as np
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets.train import multihost
from jaxnets.train.step import SHARED_FIELDS, Hparams, Step

PyTree = Any


def layout(state: NamedTuple) -> NamedTuple:
    """The leading axes of a sweep state's fields: "hs" for a member's own, "s" for the data
    key, "" for the step."""
    return type(state)(*({"key": "s", "step": ""}.get(f, "hs") for f in state._fields))


def member_fields(state: NamedTuple) -> tuple[str, ...]:
    """The fields each member holds alone (all but the shared key and step)."""
    return tuple(f for f in state._fields if f not in SHARED_FIELDS)


def spec(axes: str) -> P:
    """The mesh axes of a layout string: "hs" -> P("hp", "seed")."""
    return P(*({"h": "hp", "s": "seed"}[c] for c in axes))


def mesh_for(devices: list, n_hp: int, n_seed: int) -> Mesh:
    """A ("hp", "seed") mesh over ``devices`` that pads the grid least (ties: shard hp)."""
    n = len(devices)

    def padded(d_hp):
        return -(-n_hp // d_hp) * d_hp * -(-n_seed // (n // d_hp)) * (n // d_hp)

    d_hp = min((d for d in range(n, 0, -1) if n % d == 0), key=padded)
    return Mesh(np.asarray(devices).reshape(d_hp, n // d_hp), ("hp", "seed"))


def cpu_devices(n: int | None = None) -> int:
    """Split this machine's CPU into ``n`` XLA devices (default: one per core this process may
    use), so that ``sweep``, which shares its members out over all devices, runs them on every
    core in parallel. Call it before JAX's first computation, which fixes the devices; calling
    it again with the count already in use does nothing. Returns n.

    Why: XLA:CPU parallelises each operation over its thread pool, which pays off for large
    products but not for the many small per-member ones of a vmapped sweep; with one device per
    core, each core runs whole members with no synchronisation between operations
    (``experiments/benchmark_sweep.py``: on 2 cores the digits and MNIST sweeps run 1.2-1.9x
    faster). A member's values then differ from its one-device run by float32 rounding (each
    device compiles blocks of another shape), which training can amplify: below 1e-5 for the
    sin-MLP's losses, 1e-3 for a GAN's after 200 steps. Equivalent to setting the environment
    variable JAX_NUM_CPU_DEVICES=n before starting Python, plus, for n > 1, the matrix
    products on Eigen instead of YNNPACK (``_eigen_dots``).

    Raises ValueError if n < 1, RuntimeError if JAX already runs with another number of CPU
    devices.
    """
    if n is None:  # the cores this process may use (Linux), else all of them
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n < 1:
        raise ValueError(f"cpu_devices: n must be at least 1, got {n}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
        if n > 1:
            _eigen_dots()
    except RuntimeError:  # JAX's backends are running: fine if they already have n CPU devices
        have = len(jax.devices("cpu"))
        if have != n:
            raise RuntimeError(
                f"cpu_devices({n}): JAX already runs with {have} CPU device(s); call it (or set "
                f"JAX_NUM_CPU_DEVICES={n}) before the first JAX computation, in a new "
                "process") from None
    return n


# With several CPU devices, XLA:CPU's YNNPACK products ran at about half their one-device speed,
# and Eigen's kept theirs: an LSTM's forward at batch 256 split over 2 devices took 34 ms with
# YNNPACK and 21 ms with Eigen, the digits sweep 0.79 s and 0.72 s at K = 64
# (docs/benchmarks.md). XLA reads XLA_FLAGS when its backend starts, and aborts the process on
# a flag it does not know.
EIGEN_DOTS_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_dot"


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib's XLA has ``flag`` (its name is in jaxlib's libraries)."""
    name = flag.lstrip("-").split("=")[0].encode()
    for lib in glob.glob(os.path.join(os.path.dirname(jaxlib.__file__), "*.so")):
        with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(name) >= 0:
                return True
    return False


def _eigen_dots() -> None:
    """Start JAX's backends with the CPU's matrix products on Eigen (``EIGEN_DOTS_FLAG``),
    unless XLA_FLAGS already chooses their library or this XLA lacks the flag; XLA_FLAGS is
    left as it was, for child processes."""
    before = os.environ.get("XLA_FLAGS")
    if "ynn_fusion_type" in (before or "") or not _xla_knows(EIGEN_DOTS_FLAG):
        return
    os.environ["XLA_FLAGS"] = f"{before or ''} {EIGEN_DOTS_FLAG}".strip()
    try:
        jax.devices()
    finally:
        if before is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = before


def _check_rows(batch: PyTree, n: int, where: str) -> None:
    """Every leaf of ``batch`` has the same number of rows, divisible by ``n`` devices."""
    rows = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(batch)}
    if len(rows) != 1 or None in rows or rows.pop() % n:
        shapes = [np.shape(a) for a in jax.tree.leaves(batch)]
        raise ValueError(f"{where}: every leaf of the batch needs the same number of rows, "
                         f"divisible by the {n} devices; got shapes {shapes}")


def put_over_devices(params: PyTree, batch: PyTree, devices: list | None = None
                     ) -> tuple[PyTree, PyTree]:
    """``params`` copied to every device and ``batch`` split by rows over them: where a jitted
    ``batch_over_devices(fn)`` wants its arguments. Arrays on one device are resharded at every
    call instead (on CPU about 0.2 ms a leaf), so a function called from Python in a loop
    should get its arguments placed once; ``fit`` needs nothing, as its batches are drawn
    inside the compiled run. A batch that does not split over the devices: ValueError."""
    devices = list(jax.devices() if devices is None else devices)
    _check_rows(batch, len(devices), "put_over_devices")
    mesh = Mesh(np.asarray(devices), ("batch",))
    return (jax.device_put(params, NamedSharding(mesh, P())),
            jax.device_put(batch, NamedSharding(mesh, P("batch"))))


def batch_over_devices(fn: Callable, devices: list | None = None) -> Callable:
    """``fn(params, batch)`` with the batch split over ``devices`` (default: all), data
    parallel: each device computes ``fn`` on its B / n rows (``jax.shard_map``, params
    replicated) and the outputs are averaged over the devices (``pmean``).

    For a loss that is a mean of per-example terms (every model loss in jaxnets; not one that
    uses statistics of the whole batch, such as batch norm's), the value and its gradient are
    the loss's own, to float32 rounding; pass it as ``fit(loss=batch_over_devices(loss))``,
    with the CPU split first (``cpu_devices``): on 2 cores an LSTM's loss and gradient at batch
    64 ran 1.6x (autodiff) to 2.0x (hand backward) faster
    (``experiments/benchmark_lstm.py --cpu-devices 0``). Every leaf of the batch
    is split along its first axis, which must divide by the number of devices (ValueError when
    traced otherwise). For ``fit``; a ``sweep`` already shares its members out over the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    mesh = Mesh(np.asarray(devices), ("batch",))

    def local(params, batch):
        return jax.tree.map(lambda a: jax.lax.pmean(a, "batch"), fn(params, batch))

    split = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("batch")), out_specs=P(),
                          check_vma=False)  # a scan's zero carry is not marked per-device

    def over_devices(params, batch):
        _check_rows(batch, len(devices), "batch_over_devices")
        return split(params, batch)

    return over_devices


def default_memory_limit(device) -> int:
    """Bytes a sweep block may use on ``device``: 90% of an accelerator's memory; on CPU half
    the machine's RAM shared by its CPU devices."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(0.9 * stats["bytes_limit"])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // 2 // max(1, len(jax.local_devices(backend="cpu")))


# On CPU a block whose members' params and optimizer state exceed this falls out of cache and
# runs slower than the same members in smaller blocks (experiments/benchmark_sweep.py).
CPU_BLOCK_STATE_BYTES = 4 * 2**20


def default_members_per_block(device, step: Step, key: Array) -> int:
    """Members per device per block: on CPU, as many as keep their params and optimizer state
    (``step.state_bytes_fields``) within ``CPU_BLOCK_STATE_BYTES``; elsewhere no cap."""
    if device.platform != "cpu":
        return 2**31 - 1
    nbytes = _state_bytes(step, jax.ShapeDtypeStruct(key.shape, key.dtype),
                          bool(jax.config.jax_enable_x64))
    return max(1, CPU_BLOCK_STATE_BYTES // max(1, nbytes))


@lru_cache(maxsize=32)
def _state_bytes(step: Step, key, x64: bool) -> int:
    """Bytes of one member's params + optimizer state (traced once per step and x64 mode, which
    sets init's default dtypes)."""
    state = jax.eval_shape(step.init_state, key)
    fields = [getattr(state, f) for f in step.state_bytes_fields]
    return sum(v.size * v.dtype.itemsize for v in jax.tree.leaves(fields))


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
def plan_blocks(fn: Callable, mesh: Mesh, n_h: int, n_s: int, avals: tuple, treedef,
                 memory_limit: int, members_per_block: int
                 ) -> tuple[int, int, Callable, int | None]:
    """Block sizes (b_h, b_s), the compiled block and XLA's bytes per device for it: at most
    ``members_per_block`` members per device, then halve the larger per-device axis until
    XLA's estimate fits ``memory_limit``.

    ``avals``/``treedef``: the abstract (state [n_h, n_s] as ``layout``, hps {name: [n_h]},
    train_data, eval_data).
    """
    d_h, d_s = mesh.devices.shape
    per_s = _split(-(-n_s // d_s), members_per_block)
    per_h = _split(-(-n_h // d_h), members_per_block // per_s)
    b_h, b_s = per_h * d_h, per_s * d_s
    state, hps, *data = jax.tree.unflatten(treedef, avals)
    while True:
        args = _block_avals((state, hps), (layout(state), "h"), b_h, b_s)
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


class Blocks(NamedTuple):
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

    def __call__(self, state: NamedTuple, hps: Hparams, data: tuple
                 ) -> tuple[NamedTuple, tuple[Any, dict[str, Array]]]:
        """Every block for ``steps_per_call`` steps: (state, (aux [H, S, steps_per_call, ...],
        metrics {k: [H, S, steps_per_call // eval_every]}, tracked {k: [H, S, steps_per_call //
        every, ...]}))."""
        in_shardings = self.compiled.input_shardings[0]
        rows = []
        for i in range(-(-self.n_h // self.b_h)):
            rows.append([])
            for j in range(-(-self.n_s // self.b_s)):
                block = _take_block((state, hps), (layout(state), "h"), i, j, self.b_h,
                                    self.b_s)
                if self.mesh.is_multi_process:  # every process gets the whole block back
                    specs = [spec(a) for a in layout(state)]
                    out = self.compiled(*multihost.put_global(block, self.mesh, specs), *data)
                    rows[-1].append(multihost_utils.process_allgather(out, tiled=True))
                else:
                    out = self.compiled(*jax.device_put((*block, *data), in_shardings))
                    # with several blocks the grid's state waits on the host: a device holds
                    # one block at a time, as the memory plan assumes
                    rows[-1].append(out if self.count == 1 else jax.device_get(out))
        members, outputs = jax.tree.map(
            lambda *leaves: _assemble(leaves, len(rows[0]), self.n_h, self.n_s),
            *[r for row in rows for r in row])
        state = state._replace(**dict(zip(member_fields(state), members, strict=True)),
                               step=state.step + self.steps_per_call)
        return state, outputs


def relead(state: NamedTuple, lead: int, shape: tuple[int, ...]) -> NamedTuple:
    """Reshape the first ``lead`` axes of a sweep state's member fields to ``shape`` (between
    the flat [n_h, n_s] the blocks use and the grid [n_lr, *n_hparam, n_seed])."""
    re = partial(jax.tree.map, lambda a: a.reshape(shape + a.shape[lead:]))
    return state._replace(**{f: re(getattr(state, f)) for f in member_fields(state)})


def _assemble(leaves, per_row: int, n_h: int, n_s: int) -> Array:
    """Blocks [b_h, b_s, ...] (row-major; host arrays if several) -> [n_h, n_s, ...], padding
    dropped."""
    if len(leaves) == 1:
        return leaves[0] if leaves[0].shape[:2] == (n_h, n_s) else leaves[0][:n_h, :n_s]
    rows = [np.concatenate(leaves[i:i + per_row], axis=1)
            for i in range(0, len(leaves), per_row)]
    return np.concatenate(rows, axis=0)[:n_h, :n_s]
