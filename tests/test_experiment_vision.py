"""The LeNet and MLP-Mixer experiments: run folders, accuracy targets, flags and errors."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from conftest import MNIST_DIR, TB, run_experiment, step_kinds

from experiments import lenet as lenet_exp
from experiments import mixer as mixer_exp
from jaxnets import data, runs
from jaxnets.models import lenet, mixer

RUN_FILES = {"config.json", "metrics.jsonl", "curves.png", "params.msgpack", "results.json",
             "checkpoints", ".lock"} | TB  # .lock: the folder is held by one process at a time


def test_lenet_on_digits_resized_to_32(tmp_path, drives):
    res = lenet_exp.run(lenet_exp.Config(steps=300, eval_every=100, run_dir=tmp_path),
                        progress=False)
    assert step_kinds(drives) == ["SupervisedStep"]  # trained by the one driver, once
    assert res["final"]["test/accuracy"] >= 0.9
    assert {p.name for p in tmp_path.iterdir()} == RUN_FILES
    # the saved params reproduce the reported test accuracy on digits resized to 32x32
    split = data.load_images("digits", size=32)
    params = runs.load_params(tmp_path / "params.msgpack", lenet.init(jax.random.key(0)))
    acc = lenet.metrics(params, (jnp.asarray(split.x_test), jnp.asarray(split.y_test)))
    assert float(acc["accuracy"]) == pytest.approx(res["final"]["test/accuracy"], abs=1e-6)


def test_mixer_on_digits_same_seed_same_numbers(tmp_path, drives):
    """A small Mixer (D_C 32, D_S 64, depth 2: 94 % on digits after 200 steps, 8 s), twice."""
    cfg = mixer_exp.Config(steps=200, eval_every=100, hidden=32, tokens_mlp_dim=32,
                           channels_mlp_dim=64, depth=2, run_dir=tmp_path / "a")
    a = mixer_exp.run(cfg, progress=False)
    assert step_kinds(drives) == ["SupervisedStep"]  # trained by the one driver, once
    mixer_exp.run(dataclasses.replace(cfg, run_dir=tmp_path / "b"), progress=False)
    assert a["final"]["test/accuracy"] >= 0.9
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == \
        (tmp_path / "b" / "metrics.jsonl").read_bytes()
    assert {p.name for p in (tmp_path / "a").iterdir()} == RUN_FILES


def test_mixer_defaults_are_the_named_config():
    """The experiment's architecture flags default to mixer.CONFIGS["mnist/7"], one source."""
    assert mixer_exp.model_config(mixer_exp.Config()) == mixer.CONFIGS["mnist/7"]


@pytest.mark.target
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_lenet_reaches_98_percent_on_the_mnist_split(tmp_path):
    """The issue's target, with the experiment's defaults (about a minute on 2 cores); evaluated
    every 1,500 steps instead of 250, which leaves the training itself as it is."""
    res = lenet_exp.run(lenet_exp.Config(dataset="mnist", data_dir=MNIST_DIR, run_dir=tmp_path,
                                         eval_every=1500), progress=False)
    assert (res["n_train"], res["n_test"]) == (8000, 2000)
    assert res["final"]["test/accuracy"] >= 0.98


@pytest.mark.target
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_mixer_reaches_96_percent_on_the_mnist_split(tmp_path):
    """The issue's target, with the experiment's defaults (P = 7; 2-3 minutes on 2 cores),
    evaluated every 1,500 steps instead of 250 (the training is the same)."""
    res = mixer_exp.run(mixer_exp.Config(dataset="mnist", data_dir=MNIST_DIR, run_dir=tmp_path,
                                         eval_every=1500), progress=False)
    assert res["final"]["test/accuracy"] >= 0.96
    sizes = mixer.sizes(runs.load_params(
        tmp_path / "params.msgpack",
        mixer.init_from_config(jax.random.key(0), mixer_exp.model_config(mixer_exp.Config()))))
    assert (sizes.patch, sizes.num_patches) == (7, 16)


@pytest.mark.parametrize("module, config", [("lenet", lenet_exp.Config),
                                            ("mixer", mixer_exp.Config)])
def test_help_lists_every_flag(module, config):
    out = run_experiment(module, "--help")
    assert out.returncode == 0
    for f in dataclasses.fields(config):
        assert "--" + f.name.replace("_", "-") in out.stdout


@pytest.mark.parametrize("module, args, code, needle", [
    ("lenet", ["--pool", "median"], 2, "invalid choice 'median' for argument '--pool'"),
    ("lenet", ["--activation", "gelu"], 2, "invalid choice 'gelu'"),
    ("lenet", ["--shift", "-1"], 1, "--shift must be an integer >= 0, got -1"),
    ("lenet", ["--dataset", "mnist", "--data-dir", "/no/such/dir"], 1, "does not exist"),
    ("mixer", ["--patch", "5"], 1, "multiples of the patch size P = 5"),
    ("mixer", ["--steps", "300"], 1, "steps (300) must be a multiple of eval_every (250)"),
])
def test_bad_flags_get_clear_errors(module, args, code, needle, tmp_path):
    out = run_experiment(module, *args, "--out", str(tmp_path))
    assert out.returncode == code
    assert needle in " ".join(out.stderr.split())
