"""train.cpu_devices: the CPU split into several XLA devices, a sweep's members shared out over
them, and the sweep experiments' --cpu-devices flag."""

import json
import subprocess
import sys
import textwrap

import jax
import pytest
from conftest import ROOT, run_experiment, subprocess_env

from experiments import lr_sweep as exp
from jaxnets import runs, train


def test_cpu_devices_refuses_a_bad_count_and_another_count_once_jax_runs():
    jax.numpy.zeros(1).block_until_ready()  # the backend is running
    have = len(jax.devices("cpu"))
    assert train.cpu_devices(have) == have  # the count in use: nothing to do
    with pytest.raises(ValueError, match="at least 1, got 0"):
        train.cpu_devices(0)
    with pytest.raises(RuntimeError, match=f"already runs with {have} CPU device"):
        train.cpu_devices(have + 1)


TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import numpy as np
    from jaxnets import optim, train
    n = train.cpu_devices(2)
    import jax
    sys.path.insert(0, {tests!r})
    from jaxnets.models import sin_mlp
    from test_train import INIT, _data
    data = _data()
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("momentum"), steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20, seeds=2)
    lrs = np.array([0.01, 0.05, 0.2], np.float32)
    every = train.sweep(lrs, data, {{"train": data}}, **kw)
    first = train.sweep(lrs, data, {{"train": data}}, devices=jax.devices()[:1], **kw)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(u, float) - np.asarray(v, float))))
                            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({{
        "n": n, "again": train.cpu_devices(2), "devices": len(jax.devices()),
        "sharded_over": len(every.train_loss.sharding.device_set),
        "vs_one_device": diff((every.train_loss, every.eval_metrics, every.params),
                              (first.train_loss, first.eval_metrics, first.params)),
    }}))
""")


def test_cpu_devices_splits_the_cpu_and_a_sweep_runs_on_every_device():
    """In a fresh process: two CPU devices, the sweep's grid sharded over both, every member
    equal to the sweep on one device to float32 rounding."""
    script = TWO_DEVICES.format(tests=str(ROOT / "tests"))
    out = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == res["again"] == res["devices"] == res["sharded_over"] == 2
    assert res["vs_one_device"] <= 1e-5


SMALL = ["--optimizers", "sgd", "--lr-min", "0.01", "--lr-max", "0.3", "--count", "3",
         "--seeds", "2", "--steps", "40", "--eval-every", "20", "--hidden", "16"]


def test_lr_sweep_on_two_cpu_devices_matches_one_and_resumes(tmp_path):
    """python -m experiments.lr_sweep --cpu-devices 2: the count in config.json, the metrics of
    the one-device run to float32 rounding; resuming the finished run restores its two-device
    checkpoint and changes nothing; another count on resume and a negative count are refused."""
    two, one = tmp_path / "two", tmp_path / "one"
    out = run_experiment("lr_sweep", *SMALL, "--cpu-devices", "2", "--run-dir", str(two))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((two / "config.json").read_text())["cpu_devices"] == 2
    exp.run(exp.Config(optimizers=("sgd",), lr_min=0.01, lr_max=0.3, count=3, seeds=2,
                       steps=40, eval_every=20, hidden=16, run_dir=one), progress=False)
    rows2, rows1 = (runs.read_jsonl(d / "metrics.jsonl") for d in (two, one))
    assert len(rows2) == len(rows1) == 3 * 2 * 2
    for r2, r1 in zip(rows2, rows1, strict=True):
        assert (r2["learning_rate"], r2["seed"], r2["step"]) == (r1["learning_rate"],
                                                                 r1["seed"], r1["step"])
        for k in ("train/loss", "test/loss", "test/accuracy"):
            assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-6), k
    before = (two / "metrics.jsonl").read_bytes()
    again = run_experiment("lr_sweep", "--resume", str(two))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (two / "metrics.jsonl").read_bytes() == before
    other = run_experiment("lr_sweep", "--resume", str(two), "--cpu-devices", "1")
    assert other.returncode != 0 and "cpu" in other.stderr.lower()
    bad = run_experiment("lr_sweep", *SMALL, "--cpu-devices", "-1", "--run-dir",
                         str(tmp_path / "bad"))
    assert bad.returncode == 1
    assert "--cpu-devices must be 0 (one per core) or more, got -1" in bad.stderr
    assert not (tmp_path / "bad").exists()
