"""Checkpoints: a run's state and its metrics so far, in one self-checking file, written atomically.

A checkpoint file is

    MAGIC  (b"JAXNETS-CHECKPOINT\\n")
    8 bytes: n, the length of the header, little-endian
    32 bytes: SHA-256 of the header's n bytes
    header: UTF-8 JSON {"format": 2, "payload_bytes": p, "sha256": hex of the payload,
                        "arrays": {path: {"dtype": name, "shape": [...], "offset": bytes}},
                        "keys": {path: PRNG impl}, "meta": {...}}
    payload: the arrays' p bytes, C order, little-endian, end to end

the layout of safetensors (a JSON header describing raw little-endian arrays) with a checksum in
front. Loading executes no code: the header is JSON, the dtypes come from a fixed list of
numeric names and the arrays are ``np.frombuffer`` views. Every byte is checksummed (the header
by the digest in front of it, the payload by the digest in the header), and a file is trusted
in this order: a regular file (not a FIFO or a device), the magic, a header length within the
file, the header's digest, the header's JSON (nesting at most ``runs.MAX_JSON_DEPTH`` deep) and
its fields' types, the arrays laid out end to end exactly filling ``payload_bytes``, the file's
size equal to what the header says, and only then is the payload read and its digest checked.
Why not flax.serialization's msgpack (or the safetensors package): each builds the whole payload
as one more copy in memory; writing the arrays' buffers straight into the file took a 3.6 MiB
sweep state from 8.9 ms (safetensors + SHA-256 + write) or 10+ ms (msgpack) to 5.7 ms on this
2-core CPU, which keeps a save under 5% of a sweep's chunk. A file that does not start with
MAGIC, is cut short, fails either SHA-256, has a malformed header, or holds other leaves or
shapes than the run expects raises ``CheckpointError`` naming the file and what is wrong;
nothing on disk is changed.

Leaves are stored under their ``jax.tree_util.keystr`` paths, typed PRNG keys as their key data
(with the key implementation in the header), so a checkpoint restores bit for bit into a
template with the same structure. ``Checkpoints`` keeps the last k files of a folder and
restores one of them (``restore``: the file is read once). The training loop that writes them,
and every decision to resume, is ``jaxnets.loop.run_chunks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import runs

PyTree = Any
MAGIC = b"JAXNETS-CHECKPOINT\n"
FORMAT = 2
_LEN = struct.Struct("<Q")
_PREFIX = len(MAGIC) + _LEN.size + 32  # magic, header length, header SHA-256
MAX_HEADER_BYTES = 64 << 20
_NAME = re.compile(r"^step-(\d{9})\.ckpt$")
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                    "uint64", "float16", "bfloat16", "float32", "float64", "complex64",
                    "complex128"})


class CheckpointError(ValueError):
    """A checkpoint or run folder that cannot be used; the message names the file and why."""


def _is_key(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _paths(tree: PyTree) -> tuple[list[str], list[Any], Any]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in with_path], [v for _, v in with_path], treedef


def to_host(tree: PyTree) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The leaves of ``tree`` as host arrays by path, typed PRNG keys as key data, and the key
    implementation of each such path."""
    names, leaves, _ = _paths(tree)
    keys = {n: str(jax.random.key_impl(v)) for n, v in zip(names, leaves, strict=True)
            if _is_key(v)}
    arrays = {n: np.asarray(jax.random.key_data(v) if n in keys else v)
              for n, v in zip(names, leaves, strict=True)}
    return arrays, keys


def encode(tree: PyTree, meta: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a checkpoint holding ``tree`` (arrays, typed PRNG keys) and JSON ``meta``."""
    return encode_arrays(*to_host(tree), meta)


def encode_parts(arrays: Mapping[str, np.ndarray], keys: Mapping[str, str],
                 meta: Mapping[str, Any] | None = None) -> list:
    """A checkpoint as buffers to write one after another: MAGIC, length and header, then each
    array's bytes (no copy of the payload is made). ``arrays``: {path: array}; ``keys``:
    {path: PRNG impl} for the arrays that hold key data."""
    specs, views, offset, digest = {}, [], 0, hashlib.sha256()
    for name, a in arrays.items():
        a = np.asarray(a, order="C")
        if a.dtype.name not in DTYPES:
            raise TypeError(f"cannot checkpoint {name}: dtype {a.dtype} is not one of "
                            f"{sorted(DTYPES)}")
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        view = a.reshape(-1).view(np.uint8)
        specs[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset}
        digest.update(view)
        views.append(view)
        offset += a.nbytes
    header = json.dumps({"format": FORMAT, "payload_bytes": offset,
                         "sha256": digest.hexdigest(), "arrays": specs, "keys": dict(keys),
                         "meta": json.loads(runs.to_json(meta or {}))}, sort_keys=True).encode()
    return [MAGIC + _LEN.pack(len(header)) + hashlib.sha256(header).digest() + header, *views]


def encode_arrays(arrays: Mapping[str, np.ndarray], keys: Mapping[str, str],
                  meta: Mapping[str, Any] | None = None) -> bytes:
    """``encode`` for leaves given by path (see ``encode_parts``)."""
    return b"".join(bytes(v) for v in encode_parts(arrays, keys, meta))


def read_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The leaves of a checkpoint by path, keys as key data, and its header (all checked)."""
    path = Path(path)
    header, payload = _read(path)
    return _restore(header, payload, path), header


def _restore(header: dict, payload: memoryview, path: Path) -> dict[str, np.ndarray]:
    """The arrays the header describes (checked by ``_check_header``), as read-only views of the
    payload."""
    out = {}
    for name, spec in header["arrays"].items():
        dt, shape = jnp.dtype(spec["dtype"]), tuple(spec["shape"])
        count = math.prod(shape)
        flat = (np.frombuffer(payload, dt, count, spec["offset"]) if count
                else np.zeros(0, dt))
        out[name] = flat.reshape(shape)
    return out


def _is_int(v: Any) -> bool:
    return type(v) is int  # not bool, not float


def _check_header(header: Any, path: Path) -> dict:
    """``header`` after checking every field's type and the array table: known dtypes,
    shapes of non-negative ints, int offsets, the arrays (in the order of their offsets) each
    starting where the previous one ends, and together exactly ``payload_bytes``: no two
    overlap and no byte is unaccounted for."""
    def bad(why: str):
        return CheckpointError(f"{path}: corrupt header ({why})")

    if not isinstance(header, dict):
        raise bad(f"a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {header.get('format')!r}; this jaxnets reads "
                              f"format {FORMAT}" + (" (format 1 files, from jaxnets before "
                              "0.2, had no header checksum)" if header.get("format") == 1
                                                    else ""))
    for name, kind in (("arrays", dict), ("keys", dict), ("meta", dict), ("sha256", str)):
        if not isinstance(header.get(name), kind):
            raise bad(f"{name!r} must be a JSON {'object' if kind is dict else 'string'}")
    size = header.get("payload_bytes")
    if not (_is_int(size) and size >= 0):
        raise bad(f"payload_bytes {size!r}")
    sizes = {}
    for name, spec in header["arrays"].items():
        ok = (isinstance(spec, dict) and set(spec) == {"dtype", "shape", "offset"}
              and spec["dtype"] in DTYPES and isinstance(spec["shape"], list)
              and all(_is_int(d) and d >= 0 for d in spec["shape"]) and _is_int(spec["offset"]))
        if not ok:
            raise bad(f"entry {name!r}: {spec!r}")
        sizes[name] = math.prod(spec["shape"]) * jnp.dtype(spec["dtype"]).itemsize  # exact ints
    end = 0
    for name in sorted(sizes, key=lambda n: (header["arrays"][n]["offset"], sizes[n])):
        if header["arrays"][name]["offset"] != end:
            raise bad(f"entry {name!r} at offset {header['arrays'][name]['offset']}, not {end} "
                      "where the previous array ends")
        end += sizes[name]
        if end > size:
            raise bad(f"{name!r} lies past the payload")
    if end != size:
        raise bad(f"the arrays fill {end} of {size} payload bytes")
    for name, impl in header["keys"].items():
        if name not in header["arrays"] or not isinstance(impl, str):
            raise bad(f"key entry {name!r}: {impl!r}")
    return header


def describe(obj: Any) -> str:
    """A stable name for a function, partial, NamedTuple or dataclass in a checkpoint's meta:
    module.name(args, kwargs) with the fields of a NamedTuple or dataclass instance."""
    if obj is None:
        return "None"
    fields = (dict(zip(obj._fields, obj, strict=True)) if isinstance(obj, tuple)
              and hasattr(obj, "_fields") else
              {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
              if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else None)
    if fields is not None:
        shown = [f"{k}={describe(v) if callable(v) or hasattr(v, '_fields') else repr(v)}"
                 for k, v in fields.items()]
        return f"{describe(type(obj))}({', '.join(shown)})"
    if isinstance(obj, functools.partial):
        args = [describe(a) if callable(a) else repr(a) for a in obj.args]
        args += [f"{k}={describe(v) if callable(v) else repr(v)}"
                 for k, v in sorted(obj.keywords.items())]
        return f"{describe(obj.func)}({', '.join(args)})"
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', None) or type(obj).__module__}.{name}"


def _parse(f: BinaryIO, size: int, path: Path) -> tuple[dict, memoryview]:
    """(header, payload) of a checkpoint of ``size`` bytes read from ``f``, checked in the
    order of the module docstring: no byte of the payload is read before the header is known
    whole and consistent with the file's size."""
    prefix = f.read(_PREFIX)
    if not prefix.startswith(MAGIC[:len(prefix)]) or not prefix:
        what = "is empty" if not prefix else f"starts with {prefix[:len(MAGIC)]!r}"
        raise CheckpointError(f"{path}: not a jaxnets checkpoint (it {what}, not {MAGIC!r})")
    if len(prefix) < _PREFIX:
        raise CheckpointError(f"{path}: truncated: the file ends before its header")
    (n,) = _LEN.unpack_from(prefix, len(MAGIC))
    if n > min(size - _PREFIX, MAX_HEADER_BYTES):
        raise CheckpointError(f"{path}: truncated or corrupt: its header length {n} does not "
                              f"fit in the file's {size} bytes")
    raw = f.read(n)
    if hashlib.sha256(raw).digest() != prefix[-32:]:
        raise CheckpointError(f"{path}: corrupt header: its SHA-256 does not match the one in "
                              "front of it")
    try:
        header = runs.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt header ({e})") from None
    header = _check_header(header, path)
    want = _PREFIX + n + header["payload_bytes"]
    if size != want:
        raise CheckpointError(
            f"{path}: truncated: {size - _PREFIX - n} of {header['payload_bytes']} payload "
            "bytes (a save that did not finish?)" if size < want else
            f"{path}: {size} bytes, more than the {want} its header describes")
    payload = f.read(header["payload_bytes"])
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(f"{path}: truncated while it was read")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path}: corrupt: the payload's SHA-256 does not match the one "
                              "in its header")
    return header, memoryview(payload)


def _split(data: bytes, path: Path) -> tuple[dict, memoryview]:
    """``_parse`` of a checkpoint's bytes."""
    return _parse(io.BytesIO(data), len(data), path)


def read_meta(path: str | Path) -> dict:
    """The ``meta`` of the checkpoint at ``path`` (the whole file is checked)."""
    path = Path(path)
    return _read(path)[0]["meta"]


def _read(path: Path) -> tuple[dict, memoryview]:
    """``_parse`` of the file at ``path``: a regular file (opened without blocking, so a FIFO
    cannot hang the caller), its size from ``fstat``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: not a regular file; a checkpoint is a file")
    with os.fdopen(fd, "rb") as f:
        try:
            return _parse(f, st.st_size, path)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None


def _shape_dtype(leaf) -> tuple[tuple[int, ...], str]:
    if _is_key(leaf):
        leaf = jax.eval_shape(jax.random.key_data, leaf)
    return tuple(leaf.shape), np.dtype(leaf.dtype).name


def decode(data: bytes, template: PyTree, path: str | Path = "<bytes>") -> tuple[PyTree, dict]:
    """(tree, meta) from a checkpoint's bytes, restored into the structure of ``template``.

    ``template``'s leaves may be arrays or ``jax.ShapeDtypeStruct``s; every leaf path, shape and
    dtype must match the file's, else CheckpointError lists the differences.
    """
    path = Path(path)
    return _decode(*_split(data, path), template, path)


def _decode(header: dict, payload: memoryview, template: PyTree, path: Path
            ) -> tuple[PyTree, dict]:
    arrays = _restore(header, payload, path)
    names, leaves, treedef = _paths(template)
    want = {n: _shape_dtype(v) for n, v in zip(names, leaves, strict=True)}
    have = {n: (tuple(a.shape), a.dtype.name) for n, a in arrays.items()}
    problems = [f"missing {n!r}" for n in want if n not in have]
    problems += [f"unexpected {n!r}" for n in have if n not in want]
    problems += [f"{n!r}: {have[n][1]}{list(have[n][0])} in the file, {want[n][1]}"
                 f"{list(want[n][0])} expected" for n in want if n in have and have[n] != want[n]]
    problems += [f"{n!r}: a PRNG key expected" for n, v in zip(names, leaves, strict=True)
                 if _is_key(v) and n not in header["keys"]]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more"
                                           if len(problems) > 8 else "")
        raise CheckpointError(f"{path}: holds a different model or run than this one: {shown}")
    try:
        out = [jax.random.wrap_key_data(arrays[n], impl=header["keys"][n]) if _is_key(v)
               else arrays[n] for n, v in zip(names, leaves, strict=True)]
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: corrupt PRNG key ({type(e).__name__}: {e})") from None
    return jax.tree.unflatten(treedef, out), header["meta"]


def save(path: str | Path, tree: PyTree, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file, or none, intact)."""
    return runs.atomic_write(path, encode(tree, meta))


def load(path: str | Path, template: PyTree) -> tuple[PyTree, dict]:
    """(tree, meta) of the checkpoint at ``path``; see ``decode``."""
    path = Path(path)
    return _decode(*_read(path), template, path)


def check_meta(path: str | Path, saved: Mapping[str, Any], meta: Mapping[str, Any],
               ignore: tuple[str, ...] = ()) -> None:
    """CheckpointError listing the fields where a checkpoint's meta differs from ``meta``
    (keys in ``ignore`` aside)."""
    diff = differences({k: v for k, v in saved.items() if k not in ignore},
                       json.loads(runs.to_json({k: v for k, v in meta.items()
                                                if k not in ignore})))
    if diff:
        raise CheckpointError(f"{path}: the run was started with other settings; refusing to "
                              "resume it with these. Differences: " + "; ".join(diff))


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Fields where two JSON-like values differ, as 'a.b: saved vs current' lines."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [line for k in sorted(set(saved) | set(current), key=str)
                for line in differences(saved.get(k, "<absent>"), current.get(k, "<absent>"),
                                        f"{prefix}{k}." if prefix or k else "")]
    if saved == current:
        return []
    return [f"{prefix.rstrip('.') or 'value'}: {saved!r} in the run, {current!r} now"]


class Checkpoints:
    """The checkpoint files ``step-<step>.ckpt`` of one folder, the newest ``keep`` kept."""

    def __init__(self, directory: str | Path, keep: int = 3):
        if not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep must be a positive integer, got {keep!r}")
        self.directory, self.keep = Path(directory), keep

    def steps(self) -> list[int]:
        """Steps of the checkpoints present, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:09d}.ckpt"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    @contextlib.contextmanager
    def hold(self) -> Iterator[Checkpoints]:
        """Hold the folder for this process (``runs.lock``: another live process is refused)
        and clear the temporary files a killed save left behind, which no live process can be
        writing now."""
        with runs.lock(self.directory):
            for tmp in self.directory.glob(".step-*.tmp"):
                tmp.unlink(missing_ok=True)
            yield self

    def save(self, step: int, tree: PyTree, meta: Mapping[str, Any] | None = None) -> Path:
        """Write step's checkpoint atomically, then delete all but the newest ``keep``."""
        return self.write(step, encode(tree, meta))

    def write(self, step: int, data: bytes | list) -> Path:
        """``save`` for an encoded checkpoint (bytes, or the buffers of ``encode_parts``).
        Pruning keeps the newest ``keep`` up to ``step``; newer ones (left by a run resumed
        from an older checkpoint, which will write them again) stay until rewritten. Only
        checkpoint files are deleted, never another writer's temporary file."""
        path = runs.atomic_write(self.path(step), data)
        for old in [s for s in self.steps() if s <= step][:-self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def restore(self, step: int, template: PyTree | Callable[[dict], PyTree],
                meta: Mapping[str, Any] | None = None, ignore: tuple[str, ...] = ()
                ) -> tuple[PyTree, dict]:
        """(tree, meta) of step's checkpoint, the file read once: whole-file checks, then its
        meta compared with ``meta`` (``ignore``'s keys aside; ``check_meta``), then the arrays
        restored into ``template`` (``decode``; a callable gets the saved meta and returns the
        template, for trees whose shapes the meta fixes)."""
        path = self.path(step)
        header, payload = _read(path)
        if meta is not None:
            check_meta(path, header["meta"], meta, ignore)
        return _decode(header, payload, template(header["meta"]) if callable(template)
                       else template, path)


