"""TensorBoard event files from a run folder (optional: ``pip install "jaxnets[tb]"``).

``export(run_dir)`` writes <run_dir>/tensorboard/ from what the run folder already holds:

* every metrics*.jsonl at the top level: each number of each row as a scalar, tagged with its
  field name ("train/loss"; nested dicts are flattened with "/", lists, strings, booleans, null
  and NaN/inf are skipped) at the row's "step" (the row's index in the file when it has no
  integer "step"). A file other than metrics.jsonl prefixes its tags with its stem
  ("metrics_eval/train/loss"). Sweeps write several rows per step (one per member): TensorBoard
  then shows all their values at that step under one tag;
* config.json as text (tag "config", the JSON pretty-printed in a Markdown code block);
* every *.png at the top level as an image, tagged with the file's stem.

The export is written into a temporary folder beside it and renamed into place, so a crash leaves
the previous export or the new one, never a part. ``tensorboardX`` is imported only by
``export``; ``available()`` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jaxnets import runs

FOLDER = "tensorboard"
INSTALL_HINT = 'TensorBoard export needs tensorboardX: pip install "jaxnets[tb]"'


def available() -> bool:
    """Whether tensorboardX is installed (without importing it)."""
    return importlib.util.find_spec("tensorboardX") is not None


def metrics_files(run_dir: str | Path) -> list[Path]:
    """The metrics*.jsonl files at the top level of ``run_dir``, sorted by name."""
    return sorted(p for p in Path(run_dir).glob("metrics*.jsonl") if p.is_file())


def scalars(row: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number of ``row`` (not "step" at the top level), nested
    dicts flattened with "/"; lists, strings, booleans, null and NaN/inf skipped."""
    for key, value in row.items():
        if not prefix and key == "step":
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from scalars(value, tag + "/")
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value)):
            yield tag, float(value)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics*.jsonl file (NaN and Infinity accepted, to be skipped);
    ValueError naming the file and line for anything else."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{path}: line {n} is not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {n} is not a JSON object")
        rows.append(row)
    return rows


def _step(row: Mapping[str, Any], index: int) -> int:
    step = row.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else index


def config_text(path: Path) -> str:
    """config.json pretty-printed in a Markdown code block; ValueError naming the file if it is
    not JSON."""
    try:
        config = runs.loads(path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return "```json\n" + json.dumps(config, indent=2) + "\n```"


def read_image(path: Path) -> Any:
    """A PNG as a [H, W, C] uint8 array (C = 3, or 4 when it has transparency); ValueError
    naming the file when it is not a readable image."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            return np.asarray(image.convert("RGBA" if alpha else "RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # PIL: UnidentifiedImageError, truncated
        raise ValueError(f"{path}: not a readable image ({e})") from None


def export(run_dir: str | Path) -> Path:
    """Write <run_dir>/tensorboard/ (replacing an earlier export) from the run folder's
    metrics*.jsonl, config.json and *.png (see the module docstring); return its path.

    Raises ImportError without tensorboardX, ValueError when ``run_dir`` is not a folder or a
    file is not valid JSON, FileNotFoundError when it holds no metrics*.jsonl."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run folder (no such directory)")
    files = metrics_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{run_dir / 'metrics.jsonl'}: missing; {run_dir} holds no "
                                "metrics*.jsonl to export")
    try:
        from tensorboardX import FileWriter, summary
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    metrics = {p: read_rows(p) for p in files}  # every file checked before anything is written
    config = run_dir / "config.json"
    text = config_text(config) if config.is_file() else None

    dest = run_dir / FOLDER
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", suffix=".tmp", dir=run_dir))
    try:
        writer = FileWriter(str(tmp), max_queue=1000, flush_secs=3600)
        try:
            for path, rows in metrics.items():
                prefix = "" if path.stem == "metrics" else path.stem + "/"
                for i, row in enumerate(rows):
                    for tag, value in scalars(row, prefix):
                        writer.add_summary(summary.scalar(tag, value), _step(row, i))
            if text is not None:
                config_summary = summary.text("config", text)
                config_summary.value[0].tag = "config"  # not tensorboardX's "config/text_summary"
                writer.add_summary(config_summary, 0)
            for png in sorted(run_dir.glob("*.png")):
                image = summary.image(png.stem, read_image(png), dataformats="HWC")
                writer.add_summary(image, 0)
        finally:
            writer.close()
        _replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return dest


def _replace(new: Path, dest: Path) -> None:
    """Rename the folder ``new`` to ``dest``, an existing ``dest`` moved aside first and deleted
    after."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        old.rmdir()
        dest.rename(old)
    try:
        new.rename(dest)
    except BaseException:
        if old is not None:
            old.rename(dest)  # the earlier export back in place
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
