"""Data: digits, MNIST IDX reading with checksums, atomic download from a local HTTP server."""

import gzip
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from jaxnets import data

needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in data.T10K_FILES),
    reason=f"MNIST t10k files not found in {MNIST_DIR}")


def test_digits_split_is_stratified_and_deterministic():
    a, b = data.digits(), data.digits()
    assert a.x_train.shape == (1437, 8, 8) and a.x_test.shape == (360, 8, 8)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    # stratified: every class has 35-37 test examples out of 360
    assert set(np.bincount(a.y_test, minlength=10)) <= {35, 36, 37}


@needs_mnist
def test_mnist_t10k_only_gives_documented_split():
    s = data.mnist(MNIST_DIR)
    assert s.x_train.shape == (8000, 28, 28) and s.x_test.shape == (2000, 28, 28)
    assert s.x_train.dtype == np.float32 and 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
    labels = data.read_idx(MNIST_DIR / data.T10K_FILES[1])
    perm = np.random.default_rng(0).permutation(10_000)
    np.testing.assert_array_equal(s.y_train, labels[perm[:8000]])
    np.testing.assert_array_equal(s.y_test, labels[perm[8000:]])
    images = data.read_idx(MNIST_DIR / data.T10K_FILES[0])
    np.testing.assert_array_equal(s.x_test[0], images[perm[8000]] / np.float32(255))


@needs_mnist
def test_shared_files_match_official_checksums():
    for name in data.T10K_FILES:
        assert data.md5(MNIST_DIR / name) == data.MNIST_MD5[name]


def test_missing_directory_and_files_are_named(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.mnist(tmp_path / "nope")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(data.DataError, match="missing t10k-images-idx3-ubyte.gz"):
        data.mnist(tmp_path)


def _idx_gz(path, arr, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return path


def test_read_idx_roundtrip_and_corruption(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 3, 4))
    np.testing.assert_array_equal(data.read_idx(_idx_gz(tmp_path / "i.gz", img, 0x0803)), img)
    raw = gzip.decompress((tmp_path / "i.gz").read_bytes())
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw[:-7]))
    with pytest.raises(data.DataError, match=r"t.gz: header says shape \(5, 3, 4\).*truncated"):
        data.read_idx(tmp_path / "t.gz")
    (tmp_path / "m.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x02" + raw[4:]))
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(tmp_path / "m.gz")
    (tmp_path / "n.gz").write_bytes(raw)
    with pytest.raises(data.DataError, match="cannot be read as gzip"):
        data.read_idx(tmp_path / "n.gz")


@needs_mnist
def test_corrupt_mnist_file_fails_its_checksum(tmp_path):
    for name in data.T10K_FILES:
        shutil.copy(MNIST_DIR / name, tmp_path / name)
    blob = bytearray((tmp_path / data.T10K_FILES[0]).read_bytes())
    blob[1000] ^= 0xFF
    (tmp_path / data.T10K_FILES[0]).write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: MD5 .* does not match"):
        data.mnist(tmp_path)


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good/NAME serves the file, /corrupt/NAME a byte-flipped copy, /truncated/NAME half of it
    under a Content-Length for all of it, then hangs up; /huge/NAME announces 1 GB,
    /endless/NAME streams 1 MB past the file with no Content-Length."""

    root: Path

    def do_GET(self):  # noqa: N802 (http.server's name)
        mode, name = self.path.strip("/").split("/")
        path = self.root / name
        if mode not in ("good", "corrupt", "truncated", "huge", "endless") or not path.is_file():
            self.send_error(404)
            return
        blob = bytearray(path.read_bytes())
        if mode in ("huge", "endless"):
            self.send_response(200)
            if mode == "huge":
                self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(bytes(blob) + b"\0" * (1 << 20))
            return
        if mode == "corrupt":
            blob[len(blob) // 2] ^= 0xFF
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        self.wfile.write(bytes(blob[: len(blob) // 2] if mode == "truncated" else blob))

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"root": MNIST_DIR})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@needs_mnist
def test_download_good_then_reuses_verified_files(tmp_path, server):
    paths = data.download_mnist(tmp_path, f"{server}/good", files=data.T10K_FILES)
    assert [p.name for p in paths] == list(data.T10K_FILES)
    assert data.mnist(tmp_path).x_train.shape == (8000, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(data.T10K_FILES)
    # present and verified: nothing is fetched (this URL would 404)
    data.download_mnist(tmp_path, f"{server}/absent", files=data.T10K_FILES)


@needs_mnist
@pytest.mark.parametrize("mode, match", [
    ("corrupt", "has MD5 .* expected 9fb629c4189551a2d022fa330f9573f3"),
    ("truncated", "cut short: 8"),
    ("absent", "HTTP Error 404"),
])
def test_bad_download_raises_and_leaves_nothing(tmp_path, server, mode, match):
    with pytest.raises(data.DataError, match=match):
        data.download_mnist(tmp_path, f"{server}/{mode}", files=data.T10K_FILES[:1])
    assert list(tmp_path.iterdir()) == []


@needs_mnist
@pytest.mark.parametrize("mode, match", [("huge", "announces 1000000000 bytes, more than"),
                                         ("endless", "sent more than the 70078 bytes")])
def test_a_download_larger_than_the_file_is_cut_off(tmp_path, server, mode, match):
    name = data.T10K_FILES[1]
    with pytest.raises(data.DataError, match=match):
        data.download_mnist(tmp_path, f"{server}/{mode}", files=(name,))
    assert list(tmp_path.iterdir()) == []  # no .part left


@needs_mnist
def test_a_part_file_left_by_a_killed_download_is_cleared_by_the_next(tmp_path, server):
    name = data.T10K_FILES[1]
    stale, live = tmp_path / f".{name}.dead.part", tmp_path / f".{name}.live.part"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    data.download_mnist(tmp_path, f"{server}/good", files=(name,))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, live.name])


@needs_mnist
def test_bad_download_keeps_previous_file(tmp_path, server):
    """A corrupt local copy is re-fetched; if the fetch fails the old bytes stay untouched."""
    name = data.T10K_FILES[1]
    (tmp_path / name).write_bytes(b"old bytes")
    with pytest.raises(data.DataError):
        data.download_mnist(tmp_path, f"{server}/truncated", files=(name,))
    assert (tmp_path / name).read_bytes() == b"old bytes"
    assert [p.name for p in tmp_path.iterdir()] == [name]
    data.download_mnist(tmp_path, f"{server}/good", files=(name,))
    assert data.md5(tmp_path / name) == data.MNIST_MD5[name]


@needs_mnist
def test_with_all_four_files_the_official_split_is_used(tmp_path, monkeypatch):
    """Stand-in train files (copies of t10k, their checksums registered) take the 4-file path."""
    for t10k, train in zip(data.T10K_FILES, data.TRAIN_FILES, strict=True):
        shutil.copy(MNIST_DIR / t10k, tmp_path / t10k)
        shutil.copy(MNIST_DIR / t10k, tmp_path / train)
        monkeypatch.setitem(data.MNIST_MD5, train, data.MNIST_MD5[t10k])
    s = data.mnist(tmp_path)
    assert s.x_train.shape == s.x_test.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(s.y_train, s.y_test)


def test_load_flat_flattens_and_rejects_unknown_names():
    split = data.load_flat("digits")
    assert split.x_train.shape[1:] == (64,) and split.x_test.shape[1:] == (64,)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load_flat("cifar")
    with pytest.raises(data.DataError, match="needs --data-dir"):
        data.load_flat("mnist")
