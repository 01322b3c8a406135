"""Run-folder files: atomic writes, JSON lines, params round trip without pickle."""

import os

import jax
import numpy as np
import pytest

from jaxnets import runs
from jaxnets.models import sin_mlp


def test_atomic_write_keeps_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = runs.atomic_write(tmp_path / "a.json", b"old")

    def boom(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        runs.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_jsonl_roundtrip_with_arrays(tmp_path):
    rows = [{"step": 1, "loss": np.float32(0.5)}, {"step": 2, "v": np.arange(3)}]
    runs.write_jsonl(tmp_path / "m.jsonl", rows)
    assert runs.read_jsonl(tmp_path / "m.jsonl") == [{"step": 1, "loss": 0.5},
                                                      {"step": 2, "v": [0, 1, 2]}]


def test_params_roundtrip(tmp_path):
    params = sin_mlp.init(jax.random.key(0), 5, 4, 3)
    runs.save_params(tmp_path / "p.msgpack", params)
    template = sin_mlp.init(jax.random.key(1), 5, 4, 3)
    back = runs.load_params(tmp_path / "p.msgpack", template)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


def test_new_run_dir_never_reuses_a_folder(tmp_path):
    a, b = runs.new_run_dir(tmp_path, "x"), runs.new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()
