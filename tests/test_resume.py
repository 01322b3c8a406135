"""Killed experiments resume bit-identically: SIGKILL of a real run (mid-training and mid-save),
--resume refusing other flags and bad checkpoints, and every training experiment's resume."""

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from conftest import ROOT, run_experiment, subprocess_env
from flax import serialization

from experiments import adding, common, extract_member, gan, lenet, lr_sweep, mixer, sin_mlp
from jaxnets import checkpoint, runs

# Small enough that a chunk is ~10 ms; long enough (~3 s) to be killed while it trains.
SIN = ["--hidden", "32", "--eval-every", "50", "--checkpoint-every", "1", "--keep", "200"]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != runs.LOCK_NAME}


def _outputs(run_dir: Path) -> dict:
    """What a resumed run must reproduce bit for bit (results.json names its own folder)."""
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()
             if p.name in ("metrics.jsonl", "params.msgpack")}
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("run_dir")
    return files | {"results": results}


def _assert_same_outputs(run_dir: Path, reference: Path) -> None:
    """Bit for bit on CPU. On a GPU two processes running the same program can differ by
    float32 rounding (seen on an H200: a few metrics in the last digit), so there the metrics
    and params are compared to rtol 1e-5."""
    if jax.default_backend() == "cpu":
        assert _outputs(run_dir) == _outputs(reference)
        return
    metrics = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
               for d in (run_dir, reference)]
    params = [serialization.msgpack_restore((d / "params.msgpack").read_bytes())
              for d in (run_dir, reference)]
    assert [sorted(m) for m in metrics[0]] == [sorted(m) for m in metrics[1]]
    chex.assert_trees_all_close(metrics[0], metrics[1], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(params[0], params[1], rtol=1e-5, atol=1e-6)


def _popen(*args: str, script: str | None = None) -> subprocess.Popen:
    env = subprocess_env()
    cmd = ([sys.executable, "-c", script, *args] if script
           else [sys.executable, "-m", "experiments.sin_mlp", *args])
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _steps(run_dir: Path) -> list[int]:
    return checkpoint.Checkpoints(run_dir / "checkpoints" / "sin_mlp").steps()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted sin_mlp run the killed ones must equal (5,000 steps)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    out = run_experiment("sin_mlp", *SIN, "--steps", "5000", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr
    return run_dir


def test_sigkill_while_training_then_resume_is_bit_identical(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = _popen(*SIN, "--steps", "5000", "--run-dir", str(run_dir))
    deadline = time.time() + 120
    while len(_steps(run_dir)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = _steps(run_dir)
    assert saved and saved[-1] < 5000 and not (run_dir / "results.json").exists()
    # the kill may land mid-save; the resumed run's next save clears that temporary file
    before = {k: v for k, v in _snapshot(run_dir / "checkpoints").items()
              if not k.name.endswith(".tmp")}
    out = run_experiment("sin_mlp", "--resume", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert _steps(run_dir) == list(range(50, 5001, 50))
    after = _snapshot(run_dir / "checkpoints")
    assert not [k for k in after if k.name.endswith(".tmp")]
    assert all(after[k] == v for k, v in before.items())  # continued from them, not redone
    _assert_same_outputs(run_dir, reference)


KILL_IN_THIRD_SAVE = textwrap.dedent("""
    import os, signal, sys
    real_replace, saves = os.replace, [0]

    def replace(src, dst):
        if str(dst).endswith(".ckpt"):
            saves[0] += 1
            if saves[0] == 3:  # half of the checkpoint written, not yet renamed: die
                os.truncate(src, os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    os.replace = replace
    from experiments import sin_mlp
    sin_mlp.main(sys.argv[1:])
""")


def test_sigkill_in_the_middle_of_a_save_then_resume_is_bit_identical(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = _popen(*SIN, "--steps", "5000", "--run-dir", str(run_dir), script=KILL_IN_THIRD_SAVE)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    folder = run_dir / "checkpoints" / "sin_mlp"
    assert _steps(run_dir) == [50, 100]  # the third save never landed ...
    assert len(list(folder.glob(".step-000000150.ckpt.*.tmp"))) == 1  # ... its half is left
    for step in (50, 100):  # the saves before it are whole
        checkpoint.read_meta(folder / f"step-{step:09d}.ckpt")
    out = run_experiment("sin_mlp", "--resume", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert not list(folder.glob("*.tmp"))  # the dead save's temporary file is cleared
    _assert_same_outputs(run_dir, reference)


@pytest.fixture
def finished(tmp_path) -> Path:
    run_dir = tmp_path / "run"
    sin_mlp.run(sin_mlp.Config(hidden=16, steps=200, eval_every=50, run_dir=run_dir),
                progress=False)
    return run_dir


@pytest.mark.parametrize("args, needle", [
    (["--hidden", "64"], "hidden: 16 in the run, 64 now"),
    (["--learning-rate", "0.1", "--seed", "2"],
     "learning_rate: 0.003 in the run, 0.1 now; seed: 0 in the run, 2 now"),
])
def test_resume_with_other_flags_is_refused_listing_them(finished, args, needle):
    before = _snapshot(finished)
    out = run_experiment("sin_mlp", "--resume", str(finished), *args)
    assert out.returncode == 1
    assert "refusing to continue it with other settings" in out.stderr and needle in out.stderr
    assert _snapshot(finished) == before


@pytest.mark.parametrize("damage, needle", [
    (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:-7] + b"garbage"), "SHA-256 does not match"),
    (lambda p: p.write_bytes(b"PK\x03\x04 a zip file"), "not a jaxnets checkpoint"),
])
def test_resume_from_a_damaged_checkpoint_names_it_and_changes_nothing(finished, damage, needle):
    newest = finished / "checkpoints" / "sin_mlp" / "step-000000200.ckpt"
    damage(newest)
    before = _snapshot(finished)
    out = run_experiment("sin_mlp", "--resume", str(finished))
    assert out.returncode == 1
    assert str(newest) in out.stderr and needle in out.stderr
    assert _snapshot(finished) == before


def test_resume_refuses_foreign_folders_and_a_new_run_keeps_off_old_checkpoints(finished,
                                                                                tmp_path):
    out = run_experiment("lr_sweep", "--resume", str(finished))
    assert out.returncode == 1
    assert "a run of experiments.sin_mlp, not of experiments.lr_sweep" in out.stderr
    out = run_experiment("sin_mlp", "--resume", str(tmp_path / "nowhere"))
    assert out.returncode == 1 and "no such run folder" in out.stderr
    before = _snapshot(finished)
    out = run_experiment("sin_mlp", "--run-dir", str(finished))
    assert out.returncode == 1
    assert f"already holds a run (checkpoints, config.json, curves.png, metrics.jsonl, ...); " \
           f"continue it with --resume {finished}, replace it with --overwrite" in out.stderr
    assert _snapshot(finished) == before


def test_config_json_round_trips_for_every_experiment(tmp_path):
    for module in (sin_mlp, lenet, mixer, adding, gan, lr_sweep):
        cfg = module.Config(data_dir=tmp_path) if hasattr(module.Config, "data_dir") else (
            module.Config())
        runs.write_json(tmp_path / "config.json", cfg)
        assert common.load_config(module.Config, tmp_path) == cfg


def _cut_to(src: Path, dst: Path, keep: dict[str, int]) -> Path:
    """A copy of a finished run folder as it was when killed: checkpoints of each part kept up to
    the given step (parts not named: none), no outputs written yet."""
    shutil.copytree(src / "checkpoints", dst / "checkpoints")
    shutil.copy(src / "config.json", dst / "config.json")
    for part in (dst / "checkpoints").iterdir():
        for p in part.iterdir():
            if p.name == runs.LOCK_NAME:
                continue
            if part.name not in keep or int(p.name[5:14]) > keep[part.name]:
                p.unlink()
    return dst


def test_lr_sweep_resumes_bit_identical_and_a_member_extracts_to_its_own_run(tmp_path):
    cfg = lr_sweep.Config(optimizers=("sgd", "adam"), lr_min=1e-3, lr_max=1e-2, count=2,
                          seeds=2, steps=100, eval_every=20, hidden=16, keep=10,
                          run_dir=tmp_path / "a")
    lr_sweep.run(cfg, progress=False)
    resumed = _cut_to(tmp_path / "a", tmp_path / "b", {"sgd": 60, "adam": 40})
    # a damaged checkpoint of the second part is found before the first part resumes
    newest = resumed / "checkpoints" / "adam" / "step-000000040.ckpt"
    good = newest.read_bytes()
    newest.write_bytes(good[:-1])
    before = _snapshot(resumed)
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(f"{newest}: truncated")):
        lr_sweep.run(dataclasses.replace(cfg, run_dir=None, resume=resumed), progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="--checkpoint-every 0 would start"):
        lr_sweep.run(dataclasses.replace(cfg, run_dir=None, resume=resumed, checkpoint_every=0),
                     progress=False)
    assert _snapshot(resumed) == before
    newest.write_bytes(good)
    lr_sweep.run(dataclasses.replace(cfg, run_dir=None, resume=resumed), progress=False)
    assert _outputs(resumed) == _outputs(tmp_path / "a")
    # adam's member (lr 0.01, seed 1) at step 40, extracted and resumed as a sin_mlp run ...
    _cut_to(tmp_path / "a", tmp_path / "c", {"adam": 40})
    r = extract_member.extract(extract_member.Config(tmp_path / "c", optimizer="adam",
                                                     lr_index=1, seed=1, run_dir=tmp_path / "m"))
    assert r["step"] == 40
    member = sin_mlp.run(common.parse(sin_mlp.Config, ["--resume", r["run_dir"]]),
                         progress=False)
    # ... equals that member run alone from the start, up to vmap's float rounding
    alone = sin_mlp.run(dataclasses.replace(common.load_config(sin_mlp.Config, tmp_path / "m"),
                                            run_dir=tmp_path / "alone"), progress=False)
    np.testing.assert_allclose(member["train_loss"], alone["train_loss"], rtol=1e-4)
    for k, v in alone["final"].items():
        assert member["final"][k] == pytest.approx(v, rel=1e-4), k
    mine = runs.read_jsonl(tmp_path / "m" / "metrics.jsonl")
    assert [row["step"] for row in mine] == [20, 40, 60, 80, 100]
    # bad requests are refused before any folder is made
    for kw, needle in ((dict(optimizer="momentum"), "the sweep ran ['sgd', 'adam']"),
                       (dict(lr_index=2), "--lr-index must be in [0, 1], got 2"),
                       (dict(seed=5), "--seed must be in [0, 1], got 5"),
                       (dict(optimizer="sgd"), "no checkpoint to extract from")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            extract_member.extract(extract_member.Config(tmp_path / "c", run_dir=tmp_path / "x",
                                                         **kw))
    assert not (tmp_path / "x").exists()


def test_extract_member_help_lists_every_flag():
    out = run_experiment("extract_member", "--help")
    assert out.returncode == 0
    for f in dataclasses.fields(extract_member.Config):
        name = f.name.replace("_", "-")
        assert ("SWEEP_DIR" if f.name == "sweep_dir" else f"--{name}") in out.stdout, name


def test_gan_and_adding_resume_bit_identical(tmp_path):
    g = gan.Config(seeds=2, steps=40, chunk=10, hidden=8, samples=200, batch_size=16,
                   image_steps=20, image_latent=4, image_hidden=8, variants=("minimax",),
                   keep=10, run_dir=tmp_path / "g")
    gan.run(g, progress=False)
    cut = _cut_to(tmp_path / "g", tmp_path / "g2", {"ring-minimax": 20})
    gan.run(dataclasses.replace(g, run_dir=None, resume=cut), progress=False)
    assert _outputs(cut) == _outputs(tmp_path / "g")
    a = adding.Config(T=5, hidden=4, count=2, seeds=2, steps=40, eval_every=10, n_train=64,
                      n_test=32, keep=10, run_dir=tmp_path / "a")
    adding.run(a, progress=False)
    cut = _cut_to(tmp_path / "a", tmp_path / "a2", {"lstm": 40, "rnn": 10})
    adding.run(dataclasses.replace(a, run_dir=None, resume=cut), progress=False)
    assert _outputs(cut) == _outputs(tmp_path / "a")
