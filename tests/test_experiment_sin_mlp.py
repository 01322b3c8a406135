"""End to end: python -m experiments.sin_mlp, its run folder, flags and errors."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from conftest import MNIST_DIR, TB, assert_same_run, run_experiment, step_kinds

from experiments import common
from experiments import sin_mlp as exp
from jaxnets import data, loop, optim, runs, train
from jaxnets.models import sin_mlp


def test_defaults_reach_95_percent_on_digits_and_write_the_run_folder(tmp_path, drives):
    res = exp.run(exp.Config(run_dir=tmp_path), progress=False)
    assert step_kinds(drives) == ["SupervisedStep"]  # trained by the one driver, once
    assert res["final"]["test/accuracy"] >= 0.95
    assert res["final"]["step"] == 2000
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.json", "metrics.jsonl", "curves.png", "params.msgpack",
                     "results.json", "checkpoints", ".lock"} | TB
    # a checkpoint every fifth chunk of eval_every steps, the newest three kept
    assert [p.name for p in sorted((tmp_path / "checkpoints" / "sin_mlp").iterdir())] == [
        ".lock", *(f"step-{s:09d}.ckpt" for s in (1000, 1500, 2000))]
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(100, 2001, 100))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved params reproduce the reported test accuracy
    split = data.digits()
    template = sin_mlp.init(jax.random.key(0), 64, 128, 10)
    params = runs.load_params(tmp_path / "params.msgpack", template)
    x_test = jnp.asarray(split.x_test.reshape(len(split.x_test), -1))
    acc = float(sin_mlp.metrics(params, (x_test, jnp.asarray(split.y_test)))["accuracy"])
    assert acc == pytest.approx(rows[-1]["test/accuracy"], abs=1e-6)


def test_same_seed_bit_identical_metrics(tmp_path):
    cfg = exp.Config(steps=300, eval_every=100, run_dir=tmp_path / "a")
    exp.run(cfg, progress=False)
    exp.run(dataclasses.replace(cfg, run_dir=tmp_path / "b"), progress=False)
    exp.run(dataclasses.replace(cfg, run_dir=tmp_path / "c", seed=1), progress=False)
    a, b, c = ((tmp_path / n / "metrics.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c


@pytest.mark.parametrize("source", ["params.msgpack", "checkpoint"])
def test_init_from_starts_a_new_run_from_a_runs_final_params(tmp_path, source):
    """--init-from DIR: DIR's params.msgpack, else its newest checkpoint (all a member cut out by
    extract_member has); another model's params are refused before a folder is made."""
    first = exp.Config(steps=200, eval_every=100, run_dir=tmp_path / "a")
    a = exp.run(first, progress=False)
    if source == "checkpoint":
        (tmp_path / "a" / "params.msgpack").unlink()
    # SGD at a rate too small to move a float32 weight: the new run keeps the params it starts
    # from, so its evaluations are the first run's last
    again = dataclasses.replace(first, run_dir=tmp_path / "b", init_from=tmp_path / "a",
                                steps=100, optimizer="sgd", learning_rate=1e-30)
    b = exp.run(again, progress=False)
    for k in ("train/loss", "train/accuracy", "test/loss", "test/accuracy"):
        assert b["final"][k] == pytest.approx(a["final"][k], rel=1e-6), k
    assert b["final"]["test/accuracy"] > 0.9  # not a fresh init's 10 %
    saved = runs.read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in saved] == [100]  # a new run, counted from step 0
    with pytest.raises(ValueError, match=r"\['W1'\] is float32\[128, 64\] there, "
                                         r"float32\[32, 64\] here"):
        exp.run(dataclasses.replace(again, run_dir=tmp_path / "c", hidden=32), progress=False)
    assert not (tmp_path / "c").exists()


def test_init_from_is_in_the_settings_only_when_given(tmp_path):
    """Unset, it is left out, so that checkpoints written before the flag existed resume."""
    assert "init_from" not in common.settings(exp.Config())
    given = common.settings(exp.Config(init_from=tmp_path))
    assert given == common.settings(exp.Config()) | {"init_from": str(tmp_path)}


def test_experiment_equals_train_fit(tmp_path):
    """The experiment's chunked loop is train.fit, step for step."""
    cfg = exp.Config(steps=200, eval_every=100, optimizer="momentum", learning_rate=0.1,
                     run_dir=tmp_path)
    res = exp.run(cfg, progress=False)
    split = exp.load_data(cfg)
    tr = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    r = train.fit(jax.random.key(0), jnp.float32(0.1), tr, {"train": tr},
                  init=lambda k: sin_mlp.init(k, 64, 128, 10), loss=sin_mlp.loss,
                  optimizer=optim.get("momentum"), steps=200, batch_size=64,
                  evaluate=sin_mlp.metrics, eval_every=100)
    assert_same_run(res["train_loss"], r.train_loss)
    assert_same_run(res["final"]["train/accuracy"], float(r.eval_metrics["train/accuracy"][-1]))


def test_help_lists_every_flag_with_its_default():
    out = run_experiment("sin_mlp", "--help")
    assert out.returncode == 0
    for f in dataclasses.fields(exp.Config):
        assert "--" + f.name.replace("_", "-") in out.stdout
    assert "(default: 0.003)" in out.stdout and "(default: adam)" in out.stdout


@pytest.mark.parametrize("args, code, needle", [
    (["--optimizer", "adamw"], 2, "invalid choice 'adamw' for argument '--optimizer'"),
    (["--dataset", "cifar"], 2, "invalid choice 'cifar'"),
    (["--steps", "ten"], 2, "--steps"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], 1, "/no/such/dir does not exist"),
    (["--dataset", "mnist"], 1, "--dataset mnist needs --data-dir"),
    (["--steps", "150"], 1, r"steps (150) must be a multiple of eval_every (100)"),
])
def test_bad_flags_get_clear_errors(args, code, needle, tmp_path):
    out = run_experiment("sin_mlp", *args, "--out", str(tmp_path))
    assert out.returncode == code
    assert needle in " ".join(out.stderr.split())


def test_divergence_stops_with_a_clear_error_and_keeps_metrics(tmp_path):
    out = run_experiment("sin_mlp", "--optimizer", "sgd", "--learning-rate", "1e38",
                         "--steps", "200", "--run-dir", str(tmp_path))
    assert out.returncode == 1
    assert "training diverged with learning rate 1e+38" in out.stderr
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert rows and not (tmp_path / "params.msgpack").exists()


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_mnist_run_from_the_shared_files(tmp_path):
    res = exp.run(exp.Config(dataset="mnist", data_dir=MNIST_DIR, steps=300, eval_every=100,
                             hidden=64, run_dir=tmp_path), progress=False)
    assert (res["n_train"], res["n_test"]) == (8000, 2000)
    assert res["final"]["test/accuracy"] > 0.85


def test_progress_bar_advances_once_per_chunk(tmp_path, monkeypatch):
    """The loop runs under tqdm (shown after 3 s), one tick per jitted chunk."""
    seen, real = [], loop.tqdm

    def bar(**kw):
        seen.append((kw, real(**kw)))
        return seen[-1][1]

    monkeypatch.setattr(loop, "tqdm", bar)
    exp.run(exp.Config(steps=300, eval_every=100, run_dir=tmp_path))
    [(kw, made)] = seen
    assert kw["total"] == made.n == 3 and kw["initial"] == 0
    assert kw["disable"] is False and kw["delay"] > 0
