"""Run folders that lose nothing: every bit flip and cut of a checkpoint refused, crafted headers
and special files refused fast, one process per folder, Ctrl-C saved and resumed bit for bit,
a full disk reported in one line with the previous checkpoint intact, strict JSON, readable
files, and learning-rate flags checked. README's reliability table counts these cases."""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import ROOT, run_experiment, subprocess_env

from experiments import common, extract_member, lr_sweep, sin_mlp
from jaxnets import checkpoint, loop, runs
from jaxnets.checkpoint import CheckpointError

HEAD = len(checkpoint.MAGIC) + 8 + 32


def _small() -> tuple[dict, bytes]:
    """A small checkpoint: two arrays, a PRNG key and meta."""
    tree = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int32),
            "key": jax.random.key(3)}
    return tree, checkpoint.encode(tree, {"chunks": 2, "config": {"lr": 0.1}})


def _accepted(data: bytes, tree: dict) -> bool:
    """Whether ``data`` decodes (into ``tree``'s structure) without an error; a decode that
    raised anything but CheckpointError fails the test."""
    try:
        checkpoint.decode(data, tree)
    except CheckpointError:
        return False
    return True


def test_every_bit_flip_and_every_cut_of_a_checkpoint_is_refused():
    tree, good = _small()
    restored, meta = checkpoint.decode(good, tree)
    assert meta["chunks"] == 2 and np.array_equal(restored["W"], tree["W"])
    flips = accepted = 0
    for i in range(len(good)):
        for bit in range(8):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            flips += 1
            accepted += _accepted(bytes(bad), tree)
    assert flips == 8 * len(good) > 3000
    assert accepted == 0
    assert not any(_accepted(good[:n], tree) for n in range(len(good)))
    assert not _accepted(good + b"\0", tree)  # nor a byte more


def _crafted(header: dict | None = None, raw: bytes | None = None, payload: bytes = b"",
             length: int | None = None) -> bytes:
    """A file with a valid magic and checksums around ``header`` (or ``raw`` header bytes)."""
    import hashlib

    h = json.dumps(header).encode() if raw is None else raw
    n = len(h) if length is None else length
    return checkpoint.MAGIC + n.to_bytes(8, "little") + hashlib.sha256(h).digest() + h + payload


def _header(arrays: dict, payload: bytes, **change) -> dict:
    import hashlib

    return {"format": 2, "payload_bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(), "arrays": arrays, "keys": {},
            "meta": {}} | change


ONE = {"['a']": {"dtype": "float64", "shape": [2], "offset": 0}}
TWO = np.ones(2).tobytes()
CRAFTED = {
    "nested 10,000 deep": _crafted(raw=b'{"meta": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    "nested meta": _crafted(_header(ONE, TWO, meta={"a": json.loads("[" * 70 + "]" * 70)}),
                            payload=TWO),
    "huge shape": _crafted(_header({"['a']": {"dtype": "float64", "shape": [2**62, 2**62],
                                              "offset": 0}}, TWO), payload=TWO),
    "huge offset": _crafted(_header({"['a']": {"dtype": "float64", "shape": [2],
                                               "offset": 2**63}}, TWO), payload=TWO),
    "offset true": _crafted(_header({"['a']": {"dtype": "float64", "shape": [2],
                                               "offset": True}}, TWO), payload=TWO),
    "shape [true]": _crafted(_header({"['a']": {"dtype": "float64", "shape": [True],
                                                "offset": 0}}, TWO), payload=TWO),
    "aliased offsets": _crafted(_header(
        ONE | {"['b']": {"dtype": "float64", "shape": [2], "offset": 0}}, TWO), payload=TWO),
    "float length": _crafted(_header(ONE, TWO, payload_bytes=16.0), payload=TWO),
    "arrays a list": _crafted(_header([], TWO), payload=TWO),
    "header a list": _crafted(raw=b"[1, 2]"),
    "NaN in the header": _crafted(raw=b'{"format": NaN}'),
    "not UTF-8": _crafted(raw=b'{"format": "\xff"}'),
    "header length 2**63": _crafted(_header(ONE, TWO), payload=TWO, length=2**63),
    "key entry of no array": _crafted(_header(ONE, TWO, keys={"['k']": "fry"}), payload=TWO),
    "escape codes in a name": _crafted(_header(
        {"\x1b[2J\x1b[31m": {"dtype": "float64", "shape": [2], "offset": 0}}, TWO),
        payload=TWO),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_headers_are_refused_within_a_second(tmp_path, name):
    path = tmp_path / "crafted.ckpt"
    path.write_bytes(CRAFTED[name])
    t = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, {"a": np.ones(2)})
    assert time.perf_counter() - t < 1.0
    assert str(path) in str(e.value)
    assert "\x1b" not in str(e.value)  # names are shown with repr, escapes and all


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_files_that_are_not_regular_are_refused_without_reading(tmp_path, kind):
    path = tmp_path / "step-000000010.ckpt"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer came
    elif kind == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    else:
        path.mkdir()
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="not a regular file"):
        checkpoint.read_meta(path)
    assert time.perf_counter() - t < 1.0


def test_a_sparse_file_larger_than_its_header_says_is_refused_before_reading(tmp_path):
    _, good = _small()
    path = tmp_path / "big.ckpt"
    with open(path, "wb") as f:
        f.write(good)
        f.truncate(6 << 30)  # 6 GiB, sparse: reading it whole would exhaust memory
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="more than the"):
        checkpoint.read_meta(path)
    assert time.perf_counter() - t < 1.0


def test_config_json_nested_too_deep_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not a readable JSON config .*nested"):
        common.load_config(sin_mlp.Config, tmp_path)


# ----------------------------------------------------------------------------------------------
# One process per folder.

HOLD = ("import sys, time\nfrom jaxnets import runs\nwith runs.lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT,
                         env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    folder = tmp_path / "ckpts"
    holder = _holder(folder)
    try:
        t = time.perf_counter()
        with pytest.raises(runs.FolderInUse, match=f"in use by another process \\(PID "
                                                    f"{holder.pid}\\)"):
            loop.run_chunks({"x": np.zeros(2)}, lambda s: (s, {}), 2, directory=folder,
                            progress=False)
        assert time.perf_counter() - t < 1.0
    finally:
        holder.kill()
        holder.wait()
    # the holder died holding it (SIGKILL): the kernel released the lock, a new run takes over
    out = loop.run_chunks({"x": np.zeros(2)}, lambda s: ({"x": s["x"] + 1}, {}), 2,
                          directory=folder, progress=False)
    assert np.array_equal(out.state["x"], [2.0, 2.0])
    assert (folder / ".lock").read_text().strip() == str(os.getpid())


def test_two_experiments_on_one_run_dir_the_second_refused_the_first_intact(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--steps", "20000", "--eval-every", "1000", "--hidden", "32", "--run-dir",
            str(run_dir)]
    first = subprocess.Popen([sys.executable, "-m", "experiments.sin_mlp", *args,
                              "--seed", "1"], cwd=ROOT, env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # until the first holds the folder (its config.json written)
        if (run_dir / "config.json").exists() or first.poll() is not None:
            break
        time.sleep(0.1)
    second = run_experiment("sin_mlp", *args, "--seed", "2")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert f"in use by another process (PID {first.pid})" in second.stderr, second.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 1 and config["run"]["sessions"][-1]["finished"]
    results = json.loads((run_dir / "results.json").read_text())
    metrics = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert results["final"] == metrics[-1] and metrics[-1]["step"] == 20000


def test_a_new_run_refuses_a_folder_with_a_run_unless_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--steps", "20", "--eval-every", "10", "--hidden", "8", "--checkpoint-every", "0",
            "--run-dir", str(run_dir)]
    sin_mlp.main(args)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match=f"{run_dir} already holds a run .*--overwrite"):
        sin_mlp.main([*args, "--seed", "1"])
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    sin_mlp.main([*args, "--seed", "1", "--overwrite"])
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1
    with pytest.raises(SystemExit, match="continues the run in its own folder; leave out "
                                         "--run-dir"):
        sin_mlp.main(["--resume", str(run_dir), "--run-dir", str(tmp_path / "elsewhere")])


# ----------------------------------------------------------------------------------------------
# Ctrl-C.

SIN = ["--hidden", "32", "--eval-every", "50", "--checkpoint-every", "1", "--keep", "200"]


def _outputs(run_dir: Path) -> dict:
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()
             if p.name in ("metrics.jsonl", "params.msgpack")}
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("run_dir")
    return files | {"results": results}


def _cached_env(cache: Path) -> dict:
    """Subprocesses share a persistent compilation cache, so each restart compiles quickly."""
    return subprocess_env() | {"JAX_COMPILATION_CACHE_DIR": str(cache),
                               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _sessions(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "config.json").read_text())["run"]["sessions"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait(p: subprocess.Popen, ready) -> None:
    """Poll every 5 ms until ``ready()`` or the process ended."""
    while not ready() and p.poll() is None:
        time.sleep(0.005)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="bit-for-bit is a CPU promise")
def test_ctrl_c_at_ten_random_moments_then_resume_is_bit_identical(tmp_path):
    """The uninterrupted run, then the same run interrupted by SIGINT ten times, each time
    resumed: twice while it starts (tracing, compiling, the first chunk: it stops at once), eight
    times at random steps of training (it stops at the next chunk boundary after saving). Every
    stop exits 130 with the resume command as its last line and no traceback; the end result
    equals the uninterrupted run bit for bit."""
    env = _cached_env(tmp_path / "cache")
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    args, total = [*SIN, "--steps", "3000"], 3000
    done = subprocess.run([sys.executable, "-m", "experiments.sin_mlp", *args, "--run-dir",
                           str(reference)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rng = np.random.default_rng(0)
    moments = ["start", "start"] + ["train"] * 8
    rng.shuffle(moments)
    store = checkpoint.Checkpoints(run_dir / "checkpoints" / "sin_mlp")
    cmd, reached = [*args, "--run-dir", str(run_dir)], []
    for moment in moments:
        sessions = _sessions(run_dir)
        p = subprocess.Popen([sys.executable, "-m", "experiments.sin_mlp", *cmd], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cmd = ["--resume", str(run_dir)]
        _wait(p, lambda s=sessions: _sessions(run_dir) > s)  # the run holds its folder
        if moment == "start":
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            done_step = max(store.steps(), default=0)
            target = done_step + 50 * int(rng.integers(1, 5))  # 1 to 4 chunks on
            _wait(p, lambda t=target: max(store.steps(), default=0) >= t)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 130, (moment, p.returncode, err)
        assert (f"resume with: python -m experiments.sin_mlp --resume {run_dir}"
                in err.strip().splitlines()[-1]), err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        reached.append(max(store.steps(), default=0))
        if reached[-1]:  # the metrics so far are on disk
            assert runs.read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] == reached[-1]
    assert 0 < reached[-1] < total, reached
    final = subprocess.run([sys.executable, "-m", "experiments.sin_mlp", *cmd], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert _outputs(run_dir) == _outputs(reference)
    sessions = json.loads((run_dir / "config.json").read_text())["run"]["sessions"]
    assert len(sessions) == 11 and "finished" in sessions[-1]


# ----------------------------------------------------------------------------------------------
# Full disks and other write errors.

def test_a_full_disk_while_saving_is_one_clear_error_and_the_previous_checkpoint_survives(
        tmp_path, monkeypatch):
    folder = tmp_path / "ckpts"
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # the third checkpoint's data cannot be flushed
        calls.append(fd)
        if len(calls) == 5:  # (file, folder) per save: the third save's file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as e:
        loop.run_chunks({"x": np.zeros(3)}, lambda s: ({"x": s["x"] + 1}, {}), 5,
                        directory=folder, progress=False)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(folder /
                                                                    "step-000000003.ckpt")
    monkeypatch.setattr(os, "fsync", real_fsync)
    store = checkpoint.Checkpoints(folder)
    assert store.steps() == [1, 2] and not list(folder.glob(".*.tmp"))
    state, meta = checkpoint.load(store.path(2), {"state": {"x": np.zeros(3)}, "outputs": {}})
    assert meta["chunks"] == 2 and np.array_equal(state["state"]["x"], np.full(3, 2.0))


def test_a_full_disk_in_an_experiment_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    real = runs.atomic_write

    def atomic_write(path, data):
        if Path(path).name == "params.msgpack":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(runs, "atomic_write", atomic_write)
    with pytest.raises(SystemExit) as e:
        sin_mlp.main(["--steps", "20", "--eval-every", "10", "--hidden", "8", "--run-dir",
                      str(run_dir)])
    msg = str(e.value.code)
    assert msg.startswith(f"error: cannot write {run_dir / 'params.msgpack'}: "
                          f"{os.strerror(errno.ENOSPC)}") and "\n" not in msg
    assert f"--resume {run_dir}" in msg
    assert checkpoint.Checkpoints(run_dir / "checkpoints" / "sin_mlp").steps() == [20]


# ----------------------------------------------------------------------------------------------
# Files people and tools can read.

def test_run_files_follow_the_umask_and_metrics_are_strict_json(tmp_path):
    run_dir = tmp_path / "run"
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit, match="NaN/inf at step"):  # a run that diverges
            sin_mlp.main(["--steps", "40", "--eval-every", "10", "--hidden", "8",
                          "--learning-rate", "1e30", "--optimizer", "sgd", "--run-dir",
                          str(run_dir)])
    finally:
        os.umask(old)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 4
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p

    def refuse(name):
        raise ValueError(f"non-standard JSON token {name}")

    rows = [json.loads(line, parse_constant=refuse)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train/loss"] is None and rows[-1]["diverged_at"] >= 0
    json.loads((run_dir / "config.json").read_text(), parse_constant=refuse)


def test_config_json_records_what_produced_the_run(tmp_path):
    run_dir = tmp_path / "run"
    sin_mlp.main(["--steps", "20", "--eval-every", "10", "--hidden", "8", "--run-dir",
                  str(run_dir)])
    record = json.loads((run_dir / "config.json").read_text())["run"]
    assert record["experiment"] == "experiments.sin_mlp"
    assert record["versions"]["jax"] == jax.__version__ and record["versions"]["jaxlib"]
    assert record["versions"]["optax"] and record["versions"]["jaxnets"]
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True)
    assert record["commit"] == (git.stdout.strip() or None)
    (session,) = record["sessions"]
    assert session["started"] <= session["finished"] and session["wall_seconds"] > 0
    out = run_experiment("lr_sweep", "--resume", str(run_dir))
    assert out.returncode == 1
    assert "a run of experiments.sin_mlp, not of experiments.lr_sweep" in out.stderr


# ----------------------------------------------------------------------------------------------
# Flags.

@pytest.mark.parametrize("flag, value", [
    ("--learning-rate", "0"), ("--learning-rate", "-1e-3"), ("--learning-rate", "nan"),
    ("--learning-rate", "inf"),
])
def test_learning_rates_that_are_not_positive_and_finite_are_refused(flag, value):
    with pytest.raises(SystemExit) as e:
        sin_mlp.main([flag, value])
    assert str(e.value.code).startswith(f"error: {flag} must be a finite number > 0, got")
    with pytest.raises(SystemExit, match="--lr-min must be a finite number > 0"):
        lr_sweep.main(["--lr-min", value])


def test_extract_member_refuses_checkpoints_of_another_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    r = lr_sweep.run(lr_sweep.Config(steps=20, eval_every=10, count=2, seeds=1, hidden=8,
                                     optimizers=("sgd",), run_dir=sweep), progress=False)
    assert len(r["learning_rates"]) == 2
    config = json.loads((sweep / "config.json").read_text())
    config["lr_max"] = 5.0  # the checkpoints now belong to another grid than config.json's
    (sweep / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a checkpoint of the sweep .*lr_max: 10.0 in "
                                              "the run, 5.0 now"):
        extract_member.extract(extract_member.Config(sweep, run_dir=tmp_path / "member"))
    assert not (tmp_path / "member").exists()
