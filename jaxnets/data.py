"""Data sets as numpy arrays: images [N, H, W] float32 in [0, 1], labels [N] int32.

- ``digits()``: scikit-learn's bundled 8x8 digits (1,797 images); works on any machine.
- ``mnist(data_dir)``: the standard IDX .gz files, checksums verified. With all four files, the
  official 60,000 / 10,000 split. With only the t10k pair (the official test set), a fixed split
  of it: a permutation drawn with ``numpy.random.default_rng(0)``, its first 8,000 images for
  training and the remaining 2,000 for testing (``T10K_SPLIT``).
- ``download_mnist(data_dir)``: fetches missing files, each written to a temporary file in
  ``data_dir``, checked against its official MD5, then renamed into place: an interrupted or
  corrupt download raises ``DataError`` and leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np


class DataError(Exception):
    """A data set is missing, corrupt or not what its name says."""


class Split(NamedTuple):
    """Train and test arrays: x [N, H, W] float32 in [0, 1], y [N] int32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits, pixel values 0..16 scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)  # [1797, 8, 8]
    y = bunch.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Split(x_tr, y_tr, x_te, y_te)


# Official MD5 sums of the four MNIST files.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_BYTES = {  # sizes of the official files; a download is cut off past them (plus a margin)
    "train-images-idx3-ubyte.gz": 9912422,
    "train-labels-idx1-ubyte.gz": 28881,
    "t10k-images-idx3-ubyte.gz": 1648877,
    "t10k-labels-idx1-ubyte.gz": 4542,
}
T10K_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
T10K_SPLIT = (8000, 2000)
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# IDX magic numbers: 0x00000803 = unsigned bytes, 3 dims; 0x00000801 = unsigned bytes, 1 dim.
_IDX_NDIM = {0x0803: 3, 0x0801: 1}


def load_flat(dataset: str, data_dir: str | os.PathLike | None = None) -> Split:
    """"digits" or "mnist" (from ``data_dir``), images flattened to [N, H * W]."""
    split = _load(dataset, data_dir)
    flat = lambda x: x.reshape(len(x), -1)  # [N, H, W] -> [N, H * W]  # noqa: E731
    return Split(flat(split.x_train), split.y_train, flat(split.x_test), split.y_test)


def _load(dataset: str, data_dir: str | os.PathLike | None) -> Split:
    if dataset == "mnist":
        if data_dir is None:
            raise DataError("--dataset mnist needs --data-dir (a folder with the IDX files)")
        split = mnist(data_dir)
    elif dataset == "digits":
        split = digits()
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'digits' or 'mnist'")
    return split


def load_images(dataset: str, data_dir: str | os.PathLike | None = None, size: int | None = None
                ) -> Split:
    """"digits" or "mnist" (from ``data_dir``) as NHWC images [N, size, size, 1].

    MNIST's 28x28 digits are zero-padded to ``size`` (by 2 on each side for 32, as LeNet had
    them); digits' 8x8 images are resized to ``size`` (bilinear, ``jax.image.resize``).
    ``size=None`` keeps the native size.
    """
    split = _load(dataset, data_dir)
    side = split.x_train.shape[1]
    if size is None or size == side:
        fit = lambda x: x  # noqa: E731
    elif not (isinstance(size, int) and size >= 1):
        raise ValueError(f"image size must be a positive int, got {size!r}")
    elif dataset == "mnist":
        if size < side or (size - side) % 2:
            raise ValueError(f"MNIST images are {side}x{side}; they are zero-padded evenly, so "
                             f"size must be {side} + an even number, got {size}")
        p = (size - side) // 2
        fit = lambda x: np.pad(x, ((0, 0), (p, p), (p, p)))  # noqa: E731
    else:
        fit = lambda x: _resize(x, size)  # noqa: E731
    return Split(fit(split.x_train)[..., None], split.y_train,  # [N, H, W] -> [N, H, W, 1]
                 fit(split.x_test)[..., None], split.y_test)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """[N, h, w] -> [N, size, size], bilinear, float32."""
    import jax

    return np.asarray(jax.image.resize(x, (len(x), size, size), "linear"), np.float32)


def md5(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: Path) -> None:
    expected = MNIST_MD5.get(path.name)
    if expected is not None and (got := md5(path)) != expected:
        raise DataError(f"{path}: MD5 {got} does not match the official {expected}; "
                        "the file is corrupt or not the MNIST file of that name")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) of unsigned bytes: images [N, H, W] or labels [N]."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'IDX'}"
                        f" ({e})") from e
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    ndim = _IDX_NDIM.get(magic)
    if ndim is None:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#010x}, "
                        "expected 0x00000803 or 0x00000801)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) but "
                        f"{len(body)} bytes follow; the file is truncated or corrupt")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _load_pair(data_dir: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    for name in (images, labels):
        _check_md5(data_dir / name)
    x = read_idx(data_dir / images)
    y = read_idx(data_dir / labels)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{data_dir}: {images} {x.shape} and {labels} {y.shape} do not pair up")
    return (x / np.float32(255)).astype(np.float32), y.astype(np.int32)


def mnist(data_dir: str | os.PathLike) -> Split:
    """MNIST from the IDX .gz files in ``data_dir`` (see the module docstring for the splits)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"MNIST data directory {data_dir} does not exist; expected the IDX files "
                        f"{', '.join(T10K_FILES)} (and optionally {', '.join(TRAIN_FILES)}) "
                        "there; jaxnets.data.download_mnist(dir) fetches them")
    missing = [f for f in T10K_FILES if not (data_dir / f).is_file()]
    if missing:
        raise DataError(f"{data_dir}: missing {', '.join(missing)}; "
                        "jaxnets.data.download_mnist(dir) fetches them")
    x_te, y_te = _load_pair(data_dir, *T10K_FILES)
    if all((data_dir / f).is_file() for f in TRAIN_FILES):
        return Split(*_load_pair(data_dir, *TRAIN_FILES), x_te, y_te)
    n_train, n_test = T10K_SPLIT
    perm = np.random.default_rng(0).permutation(len(y_te))
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    return Split(x_te[tr], y_te[tr], x_te[te], y_te[te])


def download(url: str, dest: Path, expected_md5: str, timeout: float = 60.0,
             max_bytes: int | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically: temp file (``.<name>.*.part``) in dest's folder, MD5
    check, rename. A transfer longer than ``max_bytes`` is cut off. On any failure the temp file
    is removed; one left by a killed process (untouched for ``timeout`` seconds, so no live
    download is writing it) is removed by the next try."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.part"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > timeout:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            expected_size, size = resp.headers.get("Content-Length"), 0
            if max_bytes is not None and expected_size is not None and int(
                    expected_size) > max_bytes:
                raise DataError(f"download of {url} announces {expected_size} bytes, more than "
                                f"the {max_bytes} expected; {dest} was not written")
            while block := resp.read(1 << 20):
                out.write(block)
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise DataError(f"download of {url} sent more than the {max_bytes} bytes "
                                    f"expected; cut off, {dest} was not written")
        if expected_size is not None and size != int(expected_size):
            raise DataError(f"download of {url} was cut short: {size} of {expected_size} bytes; "
                            f"{dest} was not written")
        got = md5(Path(tmp))
        if got != expected_md5:
            raise DataError(f"download of {url} has MD5 {got}, expected {expected_md5}; "
                            f"the transfer was corrupted, {dest} was not written")
        os.replace(tmp, dest)
    except DataError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except BaseException as e:  # network errors, truncated transfers, disk full, Ctrl-C
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise
        raise DataError(f"download of {url} failed ({type(e).__name__}: {e}); "
                        f"{dest} was not written") from e
    return dest


def download_mnist(data_dir: str | os.PathLike, base_url: str = MNIST_MIRROR,
                   files: tuple[str, ...] = tuple(MNIST_MD5), timeout: float = 60.0
                   ) -> list[Path]:
    """Download the named MNIST files that ``data_dir`` lacks (or holds corrupt); return paths."""
    data_dir = Path(data_dir)
    paths = []
    for name in files:
        dest = data_dir / name
        if not (dest.is_file() and md5(dest) == MNIST_MD5[name]):
            download(base_url.rstrip("/") + "/" + name, dest, MNIST_MD5[name], timeout,
                     max_bytes=MNIST_BYTES[name] + (64 << 10))
        paths.append(dest)
    return paths


def adding_problem(n: int, T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter and Schmidhuber 1997, as in Le et al. 2015).

    Each sequence has T steps of (value, marker): values uniform in [0, 1], markers 0 except two
    1s, one at a uniform step of the first half [0, T // 2) and one in the second [T // 2, T).
    The target is the sum of the two marked values. Predicting the mean 1 gives MSE = Var(U1 + U2)
    = 2/12 = 1/6. Drawn with ``numpy.random.default_rng(seed)``.

    Returns:
      x [n, T, 2] float32, y [n, 1] float32.
    """
    for name, v, lo in (("n", n, 1), ("T", T, 2)):
        if not (isinstance(v, int | np.integer) and v >= lo):
            raise ValueError(f"adding_problem: {name} must be an integer >= {lo}, got {v!r}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, T), dtype=np.float32)
    half = T // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, T, n)
    markers = np.zeros((n, T), np.float32)
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1
    y = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), y[:, None]
