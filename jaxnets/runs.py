"""Run folders: config, metrics (JSON lines), plots and params, every file written atomically.

Each file is written to a temporary file in the same folder, fsynced and renamed into place
(``os.replace``; the folder is fsynced too), so a crash mid-write leaves either the old file or
the new one, never a part; the file gets the mode ``open()`` would give it (0644 under umask
022). JSON is strict: NaN and infinities are written as ``null`` (``jq`` and ``JSON.parse``
read every file), and JSON is read with its nesting limited to ``MAX_JSON_DEPTH``.
A folder is held by one process at a time (``lock``). Params are stored with
``flax.serialization`` (msgpack): loading them executes no code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

MAX_JSON_DEPTH = 64


class FolderInUse(RuntimeError):
    """Another live process holds the folder (``lock``)."""


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | Iterable) -> Path:
    """Write ``data`` (bytes, or buffers written one after another) to ``path`` via a temporary
    file, fsync and an atomic rename. The file's mode is 0666 less the umask, as ``open()``
    gives. An OSError (a full disk, say) names the file; the previous file stays whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            for part in [data] if isinstance(data, bytes | bytearray) else data:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    fd = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.ndarray | np.generic) or hasattr(v, "__array__"):
        return np.asarray(v).tolist()
    return v


def _finite(v: Any) -> Any:
    """``v`` with every NaN and infinity replaced by None (JSON null)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def to_json(obj: Any) -> str:
    """Strict JSON for configs and metrics: dataclasses, paths and arrays become plain values,
    NaN and infinities null."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    loose = json.dumps(obj, default=_jsonable, sort_keys=True)
    return json.dumps(_finite(json.loads(loose)), sort_keys=True, allow_nan=False)


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def loads(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses, with ValueError, JSON nested deeper than ``max_depth`` and
    the non-standard tokens NaN and Infinity."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    b = np.frombuffer(_STRINGS.sub(b"", raw), np.uint8)
    depth = np.cumsum(np.isin(b, _OPEN).astype(np.int64) - np.isin(b, _CLOSE))
    if depth.size and depth.max() > max_depth:
        raise ValueError(f"JSON nested {int(depth.max())} deep, more than {max_depth}")
    return json.loads(raw, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON holds {name}, which strict JSON has no token for")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write(path, (json.dumps(json.loads(to_json(obj)), indent=2) + "\n").encode())


def write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically write one JSON object per line."""
    return atomic_write(path, "".join(to_json(r) + "\n" for r in rows).encode())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows written by ``write_jsonl``."""
    return [loads(line) for line in Path(path).read_text().splitlines() if line]


LOCK_NAME = ".lock"
_held: dict[Path, list] = {}  # folder -> [open lock file, depth] of this process


@contextlib.contextmanager
def lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for the duration: ``fcntl.flock`` on
    ``folder/.lock``, which records the holder's PID. While another live process holds it,
    raise ``FolderInUse`` at once naming the folder and that PID; the kernel drops a dead
    holder's lock, so a stale lock is simply taken over. Re-entrant within a process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        _held[key][1] += 1
    else:
        f = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (held until released below)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise FolderInUse(f"{folder} is in use by another process (PID {holder}); "
                                  "wait for it to finish, or choose another folder") from None
            raise
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        _held[key] = [f, 1]
    try:
        yield folder
    finally:
        _held[key][1] -= 1
        if not _held[key][1]:
            _held.pop(key)[0].close()  # closing releases the flock


def save_params(path: str | os.PathLike, params: Any) -> Path:
    """Atomically store a params pytree as msgpack (``flax.serialization.to_bytes``)."""
    return atomic_write(path, serialization.to_bytes(params))


def load_params(path: str | os.PathLike, template: Any) -> Any:
    """Params saved by ``save_params``, restored into the structure of ``template``."""
    return serialization.from_bytes(template, Path(path).read_bytes())


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """A fresh folder ``root/name-YYYYmmdd-HHMMSS[-k]`` (never an existing one)."""
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for k in range(1000):
        path = Path(root) / (stem if k == 0 else f"{stem}-{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {root} for {stem}")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Atomically save a matplotlib figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write(path, buf.getvalue())
