"""End to end: python -m experiments.lr_sweep, its run folder, table, flags and errors."""

import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TB, run_experiment

from experiments import lr_sweep as exp
from jaxnets import curvature, data, optim, runs, train
from jaxnets.models import sin_mlp

SMALL = dict(optimizers=("sgd", "adam"), lr_min=1e-3, lr_max=1e38, count=3, seeds=2,
             steps=100, eval_every=50, hidden=32)


def test_run_folder_table_and_members_equal_fit(tmp_path, drives):
    """lrs 1e-3, 3e17, 1e38: the last two diverge for both optimizers (marked, never 'best'), and
    a member's final metrics equal the same run done alone with train.fit."""
    res = exp.run(exp.Config(**SMALL, run_dir=tmp_path), progress=False)
    assert [lead for _, lead in drives] == [2, 2]  # one sweep (lrs x seeds) per optimizer
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "metrics.jsonl",
                                                     "sweep.png", "results.json", "checkpoints",
                                                     ".lock"} | TB
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"sgd", "adam"}
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")  # learning curves: every member, every eval
    assert len(rows) == 2 * 3 * 2 * 2
    assert [r["step"] for r in rows[:4]] == [50, 100, 50, 100]
    assert rows[0]["learning_rate"] == 1e-3  # as given, not its float32 rounding
    blown = [r for r in rows if r["diverged_at"] >= 0 and r["step"] == 100]
    assert blown and all(r["train/loss"] is None for r in blown)  # strict JSON: null, not NaN
    for name in ("sgd", "adam"):
        diverged = res["per_optimizer"][name]["diverged"]
        assert diverged[1:].all() and not diverged[0].any()
        assert res["best"][name]["learning_rate"] != pytest.approx(1e38)
    row = next(r for r in rows if r["optimizer"] == "adam" and r["seed"] == 1
               and r["learning_rate"] == pytest.approx(1e-3) and r["step"] == 100)
    split = data.digits()
    flat = lambda x: jnp.asarray(x.reshape(len(x), -1))  # noqa: E731
    tr, te = (flat(split.x_train), jnp.asarray(split.y_train)), (flat(split.x_test),
                                                                  jnp.asarray(split.y_test))
    alone = train.fit(jax.random.key(1), float(np.float32(1e-3)), tr, {"train": tr, "test": te},
                      init=partial(sin_mlp.init, d=64, d_h=32, m=10), loss=sin_mlp.loss,
                      optimizer=optim.get("adam"), steps=100, batch_size=64,
                      evaluate=sin_mlp.metrics, eval_every=50)
    assert row["test/accuracy"] == pytest.approx(float(alone.eval_metrics["test/accuracy"][-1]),
                                                 abs=1e-6)
    assert row["train/loss"] == pytest.approx(float(alone.eval_metrics["train/loss"][-1]),
                                              rel=1e-5)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["best"] == res["best"] and saved["diverged"] == {"sgd": 2, "adam": 2}


def test_sharpness_of_every_member_at_every_evaluation(tmp_path):
    cfg = exp.Config(optimizers=("sgd",), lr_min=0.01, lr_max=1.0, count=3, seeds=1, steps=100,
                     eval_every=50, hidden=16, sharpness=True, run_dir=tmp_path)
    exp.run(cfg, progress=False)
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 3 * 2 and all(r["sharpness"] > 0 for r in rows)
    split = data.digits()
    tr = (jnp.asarray(split.x_train.reshape(len(split.x_train), -1)), jnp.asarray(split.y_train))
    init = partial(sin_mlp.init, d=64, d_h=16, m=10)
    for r in (rows[1], rows[5]):  # after 100 steps at lr 0.01 and 1.0
        p = train.fit(jax.random.key(0), r["learning_rate"], tr, init=init, loss=sin_mlp.loss,
                      optimizer=optim.get("sgd"), steps=100, batch_size=64).params
        want = curvature.top_eigenvalues(sin_mlp.loss, p, tr, iters=20, key=jax.random.key(0))
        assert r["step"] == 100
        assert r["sharpness"] == pytest.approx(float(want[0][0]), rel=1e-3)


def test_best_skips_diverged_rates_and_reports_none_when_all_diverge():
    lrs = np.array([0.1, 1.0, 10.0])
    loss = np.array([[0.5, 0.6], [0.1, 0.2], [0.0, np.nan]])
    acc = np.array([[0.8, 0.8], [0.9, 0.95], [0.1, np.nan]])
    div = np.array([[False, False], [False, False], [False, True]])
    b = exp.best(lrs, loss, acc, div)
    assert b["learning_rate"] == 1.0 and b["test_accuracy"] == pytest.approx(0.925)
    assert exp.best(lrs, loss, acc, np.ones_like(div))["learning_rate"] is None


def test_cli_prints_the_table(tmp_path):
    out = run_experiment("lr_sweep", "--optimizers", "nesterov", "--count", "2", "--seeds", "2",
                         "--steps", "50", "--eval-every", "50", "--lr-min", "0.01",
                         "--lr-max", "0.1", "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()[:2]
    assert header.split()[:3] == ["optimizer", "best", "lr"]
    assert line.split()[0] == "nesterov" and float(line.split()[1]) in (
        pytest.approx(0.01), pytest.approx(0.1))


@pytest.mark.parametrize("args, code, match", [
    (["--optimizers", "adamw"], 2, "adamw"),
    (["--lr-min", "1", "--lr-max", "0.1"], 1, "error: need 0 < --lr-min <= --lr-max"),
    (["--count", "0"], 1, "error: --count and --seeds must be >= 1"),
    (["--dataset", "mnist"], 1, "error: --dataset mnist needs --data-dir"),
])
def test_bad_flags_get_clear_errors(args, code, match):
    out = run_experiment("lr_sweep", *args)
    assert out.returncode == code
    assert match in out.stderr


def test_help_explains_every_flag():
    out = run_experiment("lr_sweep", "--help")
    assert out.returncode == 0
    for field in exp.Config.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in out.stdout
