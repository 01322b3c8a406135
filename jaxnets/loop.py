"""The training loop: a run in chunks, a progress bar between them, checkpoints written in the
background, and every decision to resume.

``run_chunks(state, chunk, num_chunks, directory=..., meta=...)`` calls ``state, out =
chunk(state)`` ``num_chunks`` times. With a folder, it first resumes from the checkpoint that
``resume_point`` picks (the newest, unless told otherwise; its meta must equal the run's), and
saves {state, outputs so far, chunk count} after every ``every``-th chunk. ``chunk`` is pure in
the state, so a resumed run equals an uninterrupted one bit for bit. ``jaxnets.train``'s driver
runs every training loop of the project through this one function.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxnets import interrupt, runs
from jaxnets.checkpoint import (
    CheckpointError,
    Checkpoints,
    check_meta,
    encode_parts,
    read_meta,
    to_host,
)

PyTree = Any


class Chunked(NamedTuple):
    """What ``run_chunks`` returns."""

    state: PyTree
    outputs: PyTree  # each chunk's outputs stacked on a new leading axis [num_chunks, ...]
    resumed_from: int  # chunks restored from a checkpoint (0 for a fresh run)
    chunk_seconds: list[float]  # wall time of each chunk run now (outputs on the host)
    save_seconds: list[float]  # wall time of each save in the background writer
    save_cpu_seconds: list[float]  # CPU time of each save (the writer thread's)
    blocked_seconds: list[float]  # time the loop spent handing each save over (and waiting)
    checkpoint_bytes: int  # size of the last checkpoint written (0 if none)
    interrupted: bool = False  # stopped early by Ctrl-C (``jaxnets.interrupt``), saved first
    saved_step: int = 0  # the step of the last checkpoint written (0 if none)


class _Writer:
    """Saves checkpoints on one background thread, one at a time.

    The loop hands over the state (device arrays) and the host metrics; copying the state to
    the host, stacking the metrics, encoding, hashing, writing, fsync, rename and pruning then
    overlap the next chunk, which the loop dispatches first. A new save first waits for the
    previous one, and the loop waits for the last before it returns (also when it fails), so no
    two saves race and a finished run's files are on disk. A killed process loses at most the
    save in flight; the previous checkpoint is whole (atomic rename). The thread lives as long
    as the loop: handing over to a waiting thread is cheaper than starting one per save.
    """

    def __init__(self, store: Checkpoints | None):
        self.store, self.error = store, None
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        self.blocked: list[float] = []
        self.nbytes = self.step = 0
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="jaxnets-checkpoint",
                                       daemon=True)
        if store is not None:
            self.thread.start()

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            self._write(*job)
            self.jobs.task_done()
        self.jobs.task_done()

    def submit(self, step: int, state: PyTree, outputs: list[PyTree], meta: dict) -> None:
        t = time.perf_counter()
        self.wait()  # one save at a time; a failed one stops the run here
        self.jobs.put((step, state, list(outputs), meta))
        self.blocked.append(time.perf_counter() - t)

    def _write(self, step, state, outputs, meta) -> None:
        t, cpu = time.perf_counter(), time.thread_time()
        try:
            arrays, keys = to_host({"state": state, "outputs": _stack(outputs)})
            path = self.store.write(step, encode_parts(arrays, keys, meta))
            self.nbytes, self.step = path.stat().st_size, step
        except BaseException as e:  # noqa: BLE001  (re-raised on the loop's thread)
            self.error = e
        self.seconds.append(time.perf_counter() - t)
        self.cpu.append(time.thread_time() - cpu)

    def wait(self) -> None:
        """Block until the save in flight is on disk; re-raise its error, if any."""
        self.jobs.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self, reraise: bool = True) -> None:
        """Finish the save in flight and end the thread; re-raise a save's error if asked."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        if reraise:
            self.wait()


def run_chunks(state: PyTree, chunk: Callable[[PyTree], tuple[PyTree, PyTree]], num_chunks: int,
               *, directory: str | Path | None = None, meta: Mapping[str, Any] | None = None,
               every: int = 1, keep: int = 3, steps_per_chunk: int = 1, desc: str = "train",
               progress: bool = True, outputs_like: PyTree | None = None,
               stop: Callable[[PyTree], bool] | None = None,
               resume_step: int | None = None) -> Chunked:
    """``state, out = chunk(state)`` ``num_chunks`` times, saving a checkpoint as it goes.

    With ``directory``: if it holds a checkpoint, the run resumes from the newest one (its meta
    must equal ``meta``, else CheckpointError lists the differing fields); after every
    ``every``-th chunk and after the last one, {state, outputs so far, chunk count} is saved
    there as ``step-<chunks * steps_per_chunk>.ckpt`` (the newest ``keep`` files kept), written
    in the background while the next chunk runs (``_Writer``).
    ``chunk`` must be a pure function of the state (all randomness from keys in it; data order
    from (key, step)), so a resumed run equals an uninterrupted one bit for bit.
    ``every = 0`` never saves (nor resumes).
    ``outputs_like``: one chunk's outputs as ``jax.ShapeDtypeStruct``s, needed to resume when
    ``chunk`` cannot be traced by ``jax.eval_shape`` (default: traced).
    ``stop(state)``: end early after a chunk where it is true (e.g. the run diverged); the
    outputs then hold fewer than ``num_chunks`` chunks.
    ``resume_step``: resume from the checkpoint of this step instead of the newest (0: start
    afresh); processes of one multi-host run use it to agree on a checkpoint they all hold.
    """
    if not (isinstance(num_chunks, int) and num_chunks >= 1):
        raise ValueError(f"num_chunks must be a positive integer, got {num_chunks!r}")
    if not (isinstance(every, int) and every >= 0):
        raise ValueError(f"every must be an integer >= 0, got {every!r}")
    meta = json.loads(runs.to_json(dict(meta or {})))
    store = Checkpoints(directory, keep) if directory is not None and every else None
    if resume_step is not None and store is None:
        raise ValueError("resume_step needs a directory and every >= 1")
    with store.hold() if store is not None else contextlib.nullcontext():
        return _run(state, chunk, num_chunks, store, meta, every, steps_per_chunk, desc,
                    progress, outputs_like, stop, resume_step)


def _run(state, chunk, num_chunks, store, meta, every, steps_per_chunk, desc, progress,
         outputs_like, stop, resume_step) -> Chunked:
    """``run_chunks`` with its folder held."""
    outputs: list[PyTree] = []
    step = None if store is None else resume_point(store.directory, meta, resume_step,
                                                    check=False)
    if step is not None:
        per_chunk = jax.eval_shape(chunk, state)[1] if outputs_like is None else outputs_like
        state, outputs = _resume(store, step, state, per_chunk, meta)
    start = len(outputs)
    if start > num_chunks:
        raise CheckpointError(f"{store.path(step)}: holds {start} chunks, more than the "
                              f"{num_chunks} of this run")
    writer = _Writer(store)
    chunk_s, end = [], start if start > 0 and stop is not None and stop(state) else num_chunks
    interrupted = interrupt.requested()
    end = start if interrupted else end
    try:
        with contextlib.ExitStack() as deferred:
            bar = deferred.enter_context(tqdm(desc=desc, unit="chunk", delay=3, initial=start,
                                              total=num_chunks, disable=not progress))
            compiled = deferred.callback(_compiling(bar))
            t = time.perf_counter()
            running = chunk(state) if start < end else None  # chunk i runs while i - 1 saves
            for i in range(start, end):
                state, out = running
                outputs.append(jax.tree.map(np.asarray, out))
                chunk_s.append(time.perf_counter() - t)
                if i == start:  # compiled and ran once: from here a Ctrl-C waits for a boundary
                    deferred.enter_context(interrupt.deferring())
                    compiled()
                bar.update()
                interrupted = interrupt.requested()
                last = (i + 1 == num_chunks or interrupted
                        or (stop is not None and stop(state)))
                try:
                    t = time.perf_counter()
                    running = None if last else chunk(state)
                finally:  # the save is handed over after the next chunk's dispatch (or failure)
                    if store is not None and ((i + 1) % every == 0 or last):
                        writer.submit((i + 1) * steps_per_chunk, state, outputs,
                                      {**meta, "chunks": i + 1})
                if last:
                    break
            writer.close()  # the last save is on disk before a Ctrl-C is acted on
    except BaseException:
        writer.close(reraise=False)  # the save in flight lands; the loop's error is the one
        raise
    return Chunked(state, _stack(outputs) if outputs else None, start, chunk_s, writer.seconds,
                   writer.cpu, writer.blocked, writer.nbytes, interrupted, writer.step)


def _compiling(bar: tqdm) -> Callable[[], None]:
    """Show "compiling..." after ``bar``'s counts until the returned function is called (once the
    first chunk, which compiles for seconds, is done). On a terminal the bar is drawn at once,
    not after tqdm's delay; elsewhere tqdm draws as usual."""
    bar.set_postfix_str("compiling...", refresh=False)
    if not bar.disable and getattr(bar.fp, "isatty", lambda: False)():
        bar.refresh()

    def done() -> None:
        bar.set_postfix_str("", refresh=False)

    return done


def resume_point(directory: str | Path, meta: Mapping[str, Any],
                 resume_step: int | None = None, *, check: bool = True) -> int | None:
    """The step to resume from in ``directory``, or None to start afresh: the newest checkpoint
    (``resume_step`` None), none (0), or that step's. With ``check``, the chosen file is read
    and checked whole and written by ``run_chunks`` with this ``meta`` (CheckpointError lists
    the differences), so a run refuses another run's folder before anything is compiled
    (``run_chunks`` leaves that to its one read of the file)."""
    store = Checkpoints(directory)
    held = store.steps()
    if resume_step is None:
        step = held[-1] if held else None
    elif resume_step == 0:
        step = None
    elif resume_step not in held:
        raise CheckpointError(f"{store.directory}: no checkpoint of step {resume_step} to "
                              f"resume from (it holds steps {held})")
    else:
        step = resume_step
    if step is not None and check:
        path = store.path(step)
        saved = read_meta(path)
        _chunks(path, saved)
        check_meta(path, saved, meta, ignore=("chunks",))
    return step


def _chunks(path: Path, saved: dict) -> int:
    """The chunk count a run_chunks checkpoint's meta holds."""
    done = saved.get("chunks")
    if not isinstance(done, int) or isinstance(done, bool) or done < 1:
        raise CheckpointError(f"{path}: its meta has no chunk count; not written by run_chunks")
    return done


def check_resumable(directory: str | Path, meta: Mapping[str, Any]) -> Path | None:
    """The newest checkpoint in ``directory`` (None if none) after ``resume_point``'s checks."""
    step = resume_point(directory, meta)
    return None if step is None else Checkpoints(directory).path(step)


def _stack(outputs: list[PyTree]) -> PyTree:
    return jax.tree.map(lambda *xs: np.stack(xs), *outputs)


def _resume(store: Checkpoints, step: int, state: PyTree, per_chunk: PyTree, meta: dict
            ) -> tuple[PyTree, list]:
    """(state, outputs of each chunk done) from step's checkpoint (the file read once)."""
    def template(saved: dict) -> PyTree:
        done = _chunks(store.path(step), saved)
        return {"state": state, "outputs": jax.tree.map(
            lambda s: jax.ShapeDtypeStruct((done, *s.shape), s.dtype), per_chunk)}

    tree, saved = store.restore(step, template, meta, ignore=("chunks",))
    outputs = [jax.tree.map(lambda a, i=i: a[i], tree["outputs"]) for i in range(saved["chunks"])]
    return tree["state"], outputs
