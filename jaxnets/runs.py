"""Run folders: config, metrics (JSON lines), plots and params, every file written atomically.

Each file is written to a temporary file in the same folder, fsynced and renamed into place
(``os.replace``; the folder is fsynced too), so a crash mid-write leaves either the old file or
the new one, never a part.
Params are stored with ``flax.serialization`` (msgpack): loading them executes no code.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization


def atomic_write(path: str | os.PathLike, data: bytes | Iterable) -> Path:
    """Write ``data`` (bytes, or buffers written one after another) to ``path`` via a temporary
    file, fsync and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in [data] if isinstance(data, bytes | bytearray) else data:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def to_json(obj: Any) -> str:
    """JSON for configs and metrics: dataclasses, paths and arrays become plain values."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, default=_jsonable, sort_keys=True)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write(path, (json.dumps(json.loads(to_json(obj)), indent=2) + "\n").encode())


def write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically write one JSON object per line."""
    return atomic_write(path, "".join(to_json(r) + "\n" for r in rows).encode())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows written by ``write_jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


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
