"""End to end: python -m experiments.sin_mlp, its run folder, flags and errors."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from conftest import MNIST_DIR, assert_same_run, run_experiment, step_kinds

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
                     "results.json", "checkpoints", ".lock"}
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
    seen = {}

    def fake_tqdm(iterable, **kw):
        seen.update(kw, ticks=0)
        for item in iterable:
            seen["ticks"] += 1
            yield item

    monkeypatch.setattr(loop, "tqdm", fake_tqdm)
    exp.run(exp.Config(steps=300, eval_every=100, run_dir=tmp_path))
    assert seen["total"] == seen["ticks"] == 3 and seen["initial"] == 0
    assert seen["disable"] is False and seen["delay"] > 0
