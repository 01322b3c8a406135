"""End to end: python -m experiments.edge_of_stability, its analysis, run folder and errors;
python -m experiments.benchmark_curvature's figures."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import MNIST_DIR, run_experiment, step_kinds

from experiments import benchmark_curvature
from experiments import edge_of_stability as exp
from jaxnets import runs


def test_a_short_run_reaches_its_threshold_and_hovers_while_the_control_stays_below(
        tmp_path, drives):
    cfg = exp.Config(learning_rates=(2 / 50, 2 / 1000), steps=600, run_dir=tmp_path)
    res = exp.run(cfg, progress=False)
    assert step_kinds(drives) == ["SupervisedStep"]  # one sweep through the one driver
    fast, control = res["rows"]
    assert fast["threshold"] == pytest.approx(50) and control["threshold"] == pytest.approx(1000)
    assert fast["reached_step"] is not None and 0.9 <= fast["median_ratio"] <= 1.15
    assert fast["final_loss"] < fast["loss_at_reach"]
    assert control["reached_step"] is None and control["max_ratio"] < 0.1
    assert res["goals"] == {"hovers": True, "loss_fell": True, "control_below": True}
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 2 * 600 // 50
    first = [r for r in rows if r["learning_rate"] == pytest.approx(0.04)]
    assert [r["step"] for r in first] == list(range(50, 601, 50))
    assert (tmp_path / "eos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "results.json").read_text())["goals"] == res["goals"]


def test_analysis_of_made_up_curves():
    steps = np.arange(1, 11) * 50
    sharp = np.array([10, 20, 30, 45, 52, 49, 50, 51, 48, 50], float)
    loss = np.array([9, 8, 7, 6, 5, 5.5, 4, 4.2, 3, 2.5])
    acc = np.array([.5, .6, .7, .8, .9, .95, .97, .98, .995, .999])
    row = exp.analyse(steps, sharp, loss, acc, 50.0, target=0.99)
    # reached 0.9 x 50 = 45 at step 200; the run counts up to step 450 (99 %)
    assert row["reached_step"] == 200 and row["target_step"] == 450
    assert row["median_ratio"] == pytest.approx(np.median([45, 52, 49, 50, 51, 48]) / 50)
    assert row["loss_at_reach"] == 6 and row["final_loss"] == 3 and row["loss_fell"]
    never = exp.analyse(steps, sharp / 10, loss, acc, 50.0, target=0.99)
    assert never["reached_step"] is None and never["max_ratio"] == pytest.approx(0.104)


def test_adam_tracks_the_preconditioned_sharpness_against_38_over_eta(tmp_path):
    cfg = exp.Config(optimizer="adam", learning_rates=(38 / 20_000,), steps=300, every=50,
                     run_dir=tmp_path)
    res = exp.run(cfg, progress=False)
    (row,) = res["rows"]
    assert row["threshold"] == pytest.approx(20_000)
    assert row["reached_step"] is not None  # Adam reaches 38 / eta within 300 steps here
    assert 0.5 < row["max_ratio"] < 2.0


@pytest.mark.target
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_mnist_uses_the_first_examples(tmp_path):
    cfg = exp.Config(dataset="mnist", data_dir=MNIST_DIR, examples=500, steps=100,
                     learning_rates=(0.02,), run_dir=tmp_path)
    assert exp.load(cfg)[0].shape == (500, 784)
    assert exp.run(cfg, progress=False)["rows"][0]["threshold"] == pytest.approx(100)


def test_help_lists_every_flag():
    out = run_experiment("edge_of_stability", "--help")
    assert out.returncode == 0
    for f in dataclasses.fields(exp.Config):
        assert "--" + f.name.replace("_", "-") in out.stdout


@pytest.mark.parametrize("args, code, needle", [
    (["--optimizer", "lion"], 2, "invalid choice 'lion'"),
    (["--learning-rates", "0.1", "-1"], 1, "--learning-rates must be a finite number > 0, got -1"),
    (["--steps", "120"], 1, "steps (120) must be a multiple of eval_every (50)"),
    (["--every", "0"], 1, "eval_every must be a positive integer, got 0"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], 1, "does not exist"),
])
def test_bad_flags_get_clear_errors(args, code, needle, tmp_path):
    out = run_experiment("edge_of_stability", *args, "--out", str(tmp_path))
    assert out.returncode == code, out.stderr
    assert needle in " ".join(out.stderr.split())


@pytest.mark.slow
def test_benchmark_curvature_reports_every_case(tmp_path):
    cfg = benchmark_curvature.Config(rounds=1, min_time=0, hidden=(14, 40), eos_steps=100,
                                     torch=False, json=tmp_path / "b.json")
    benchmark_curvature.main(["--rounds", "1", "--min-time", "0", "--hidden", "14", "40",
                              "--eos-steps", "100", "--no-torch", "--json", str(cfg.json)])
    res = json.loads(cfg.json.read_text())
    for case in res["hvp"]:
        assert {"grad", "hvp", "reverse-over-reverse"} <= set(case["times"])
        assert case["ratio_to_grad"]["grad"] == 1.0
    assert [r["P"] for r in res["lanczos"]["sizes"]] == [75 * 14 + 10, 75 * 40 + 10]
    assert all(r["rel_error"] < 1e-6 for r in res["lanczos"]["sizes"])
    assert res["lanczos"]["error_against_iters"]["lanczos"]["40"] < 1e-8  # float64
    assert set(res["tracking"]["overhead"]) == {"iters 20", "iters 3"}
    assert res["tracking"]["steps"] == 100
