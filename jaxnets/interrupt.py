"""Ctrl-C for long runs: the first one stops at the next chunk boundary after saving; a second
one stops at once.

Python's own SIGINT handling raises ``KeyboardInterrupt`` wherever the interpreter happens to
be, and where that is a garbage-collection callback of XLA's objects the exception is printed
and dropped ("Exception ignored in: _xla_gc_callback"): the run goes on as if nothing happened.
Inside ``handling()`` (the experiments' command line installs it) a Ctrl-C is first recorded,
so it cannot be lost:

- while a chunked run is past its first chunk (``deferring``), the loop sees the request at the
  next chunk boundary, saves its checkpoint, and stops (``jaxnets.loop.run_chunks``);
- elsewhere (imports, tracing, compiling, the first chunk, writing results) it also raises
  ``KeyboardInterrupt`` at once; if that exception lands where Python can only drop it (a
  garbage-collection callback, a ``__del__``), it is dropped silently, the request still
  stands, and the loop stops at its next boundary (the command line checks once more at the
  end);
- a second Ctrl-C ends the process at once with exit status 130, printing ``hint()``. Files
  are written atomically, so every file on disk is whole (a half-written temporary file is
  cleared by the next run in the folder).

Outside ``handling()`` (a notebook, a script of your own) nothing changes: Ctrl-C raises
``KeyboardInterrupt`` as usual and ``requested()`` stays false.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

_state = {"requested": False, "deferring": 0, "hint": None}
_lock = threading.Lock()


class Interrupted(Exception):
    """A run stopped by Ctrl-C at a chunk boundary, its checkpoint saved (``step``)."""

    def __init__(self, step: int | None):
        self.step = step
        super().__init__("interrupted" + ("" if step is None else f" at step {step}"))


def requested() -> bool:
    """Whether Ctrl-C was pressed inside ``handling()`` since it began."""
    return bool(_state["requested"])


def _on_sigint(signum, frame) -> None:
    if _state["requested"]:  # the second Ctrl-C
        hint = _state["hint"]() if _state["hint"] else ""
        sys.stderr.write(f"\ninterrupted again: stopped at once{hint}\n")
        sys.stderr.flush()
        os._exit(130)
    _state["requested"] = True
    if _state["deferring"]:
        sys.stderr.write("\nCtrl-C: stopping after this chunk, once its checkpoint is saved "
                         "(Ctrl-C again to stop at once)\n")
        sys.stderr.flush()
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def handling(hint: Callable[[], str] | None = None) -> Iterator[None]:
    """Handle Ctrl-C as the module docstring says, in the main thread; ``hint()`` gives the text
    printed after "stopped at once" (for example how to resume). Elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    hook = sys.unraisablehook
    _state.update(requested=False, hint=hint)

    def unraisable(u) -> None:  # a dropped KeyboardInterrupt of ours: already recorded
        if not (isinstance(u.exc_value, KeyboardInterrupt) and _state["requested"]):
            hook(u)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        _state.update(requested=False, hint=None)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """A stretch (a chunked loop past its first chunk) in which a first Ctrl-C only records the
    request, for the loop to act on at its next boundary."""
    with _lock:
        _state["deferring"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["deferring"] -= 1
