"""experiments/benchmark_lstm.py at a tiny size: its JSON, its ratios, and its agreement check."""

import json
import math
from functools import partial

import flax.linen as nn
import jax
import numpy as np
import pytest

from experiments import benchmark_lstm as bl
from jaxnets.models import rnn

SMALL = dict(batch=4, time=5, hidden=8, features=3, outputs=2, repeats=2, warmup=1)
ARGV = [f"--{k}={v}" for k, v in SMALL.items()]
VARIANTS = {"lstm ours", "lstm ours (hand vjp)", "lstm hand BPTT", "lstm flax LSTMCell",
            "lstm flax OptimizedLSTMCell", "rnn jax.grad", "rnn hand BPTT", "lstm ours [fwd]",
            "lstm flax LSTMCell [fwd]", "lstm flax OptimizedLSTMCell [fwd]",
            "rnn jax.grad [grad]", "rnn hand BPTT [grad]"}
TORCH_VARIANTS = {"lstm torch.nn.LSTM", "lstm torch.nn.LSTM [fwd]", "rnn torch.nn.RNN"}
HAS_TORCH = bl._torch() is not None


@pytest.mark.slow  # a benchmark script end to end (10 s)
def test_benchmark_lstm_runs_small_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bl.main([*ARGV, "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert {"date", "machine", "device", "jax", "jaxlib", "flax", "config", "rows", "ratios",
            "agreement_max_rel_err", "agreement_rtol", "all_goals_met"} <= set(res)
    assert res["config"] == {**SMALL, "models": ["lstm", "rnn"], "extras": True,
                             "dtype": "float32", "rtol": None, "seed": 0, "torch": True,
                             "threads": None, "cpu_devices": None, "json": None}
    rows = {r["variant"]: r for r in res["rows"]}
    assert set(rows) == VARIANTS | (TORCH_VARIANTS if HAS_TORCH else set())
    for name, r in rows.items():
        for key in ("median_s", "q25_s", "q75_s", "min_s", "compile_s"):
            if key == "compile_s" and name in TORCH_VARIANTS:
                assert r[key] is None  # torch compiles nothing
                continue
            assert math.isfinite(r[key]) and r[key] > 0, (name, key, r[key])
        assert r["min_s"] <= r["q25_s"] <= r["median_s"] <= r["q75_s"]
        assert name in printed
    assert [(r["numerator"], r["denominator"], r["goal"]) for r in res["ratios"]] == [
        ratio for ratio in bl.RATIOS if {ratio[0], ratio[1]} <= set(rows)]
    for r in res["ratios"]:
        assert r["ratio"] == pytest.approx(
            rows[r["numerator"]]["median_s"] / rows[r["denominator"]]["median_s"], rel=1e-12)
        assert r["met"] == (None if r["goal"] is None else r["ratio"] <= r["goal"])
        verdict = "" if r["met"] is None else ("PASS" if r["met"] else "FAIL")
        assert f"{r['ratio']:5.2f}x" in printed and verdict in printed
    assert res["all_goals_met"] == all(r["met"] for r in res["ratios"] if r["goal"] is not None)
    assert len(res["agreement_max_rel_err"]) == sum({a, b} <= set(rows) for a, b in bl.AGREE)
    assert all(0 <= e <= res["agreement_rtol"] == 1e-4
               for e in res["agreement_max_rel_err"].values())


def test_flax_layout_round_trips():
    params = rnn.init(jax.random.key(1), 3, 5, 2, cell="lstm")
    back = bl.from_flax_params(bl.to_flax_params(params))
    assert set(back) == set(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


def _outputs(scale: float = 1.0, key: str = "W_h") -> dict:
    g = {k: np.arange(1.0, 7.0).reshape(2, 3) + i for i, k in enumerate(("W_h", "W_x", "b"))}
    other = g | {key: g[key] * scale}
    return {"rnn jax.grad": (2.0, g), "rnn hand BPTT": (2.0, other)}


def test_check_agreement_passes_within_and_raises_beyond_the_tolerance():
    assert bl.check_agreement(_outputs(1 + 1e-6), 1e-4) == {
        "rnn hand BPTT vs rnn jax.grad": pytest.approx(1e-6, rel=1e-3)}
    with pytest.raises(bl.Disagreement, match="rnn hand BPTT disagrees .* relative error of b "):
        bl.check_agreement(_outputs(1.001, "b"), 1e-4)
    with pytest.raises(bl.Disagreement, match="W_x"):
        bl.check_agreement(_outputs(np.nan, "W_x"), 1e-4)
    bad_loss = _outputs() | {"rnn hand BPTT": (2.1, _outputs()["rnn jax.grad"][1])}
    with pytest.raises(bl.Disagreement, match="relative error of loss"):
        bl.check_agreement(bad_loss, 1e-4)


def test_the_benchmark_refuses_to_time_a_wrong_hand_bptt(monkeypatch):
    real = rnn.rnn_value_and_bptt

    def wrong(params, batch, **kw):
        value, g = real(params, batch, **kw)
        return value, g | {"W_h": g["W_h"] * 1.01}  # a 1% error in one leaf

    monkeypatch.setattr(rnn, "rnn_value_and_bptt", wrong)
    with pytest.raises(bl.Disagreement, match=r"rnn hand BPTT disagrees .* of W_h is 1\.00e-02"):
        bl.run(bl.Config(**SMALL, models=("rnn",), extras=False))


def test_the_benchmark_refuses_to_time_a_flax_lstm_that_computes_something_else(monkeypatch):
    # a cell with the same params but relu for tanh: the mapped gradients cannot agree
    monkeypatch.setitem(bl.FLAX_CELLS, "OptimizedLSTMCell",
                        partial(nn.OptimizedLSTMCell, activation_fn=nn.relu))
    with pytest.raises(bl.Disagreement, match="lstm flax OptimizedLSTMCell disagrees"):
        bl.run(bl.Config(**SMALL, models=("lstm",), extras=False))


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_lstm_and_rnn_compute_our_loss_and_gradients():
    """The weight mapping onto torch.nn.LSTM / RNN: their loss and gradients equal ours in
    float64, and a wrong mapping (a gate order swapped) is caught."""
    config = bl.Config(**SMALL, dtype="float64")
    with jax.enable_x64(True):
        vs = bl.variants(config)
        outputs = {name: v.to_ours(v.fn(*v.args)) for name, v in vs.items()
                   if name in ("lstm ours", "rnn jax.grad") or name in TORCH_VARIANTS}
        errs = bl.check_agreement(outputs, 1e-10)
        assert set(errs) == {"lstm torch.nn.LSTM vs lstm ours", "rnn torch.nn.RNN vs rnn jax.grad"}
        torch_lstm = vs["lstm torch.nn.LSTM"]
        loss, grads = torch_lstm.to_ours(torch_lstm.fn())
        d_h = SMALL["hidden"]
        swapped = dict(grads, W_h=np.concatenate([grads["W_h"][d_h:2 * d_h], grads["W_h"][:d_h],
                                                  grads["W_h"][2 * d_h:]]))
        with pytest.raises(bl.Disagreement, match="W_h"):
            bl.check_agreement({"lstm ours": outputs["lstm ours"],
                                "lstm torch.nn.LSTM": (loss, swapped)}, 1e-10)


@pytest.mark.slow  # a benchmark script in a fresh process (20 s)
def test_benchmark_lstm_times_ours_with_the_batch_split_over_two_cpu_devices(tmp_path):
    """--cpu-devices 2: the "[batch over devices]" rows, each agreeing with ours (the script
    checks it before timing), and their ratios to torch; a batch that does not split is
    refused."""
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "experiments.benchmark_lstm", *ARGV,
                               "--cpu-devices", "2", *args], cwd=ROOT, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)

    out = tmp_path / "bench.json"
    done = bench("--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    split = {f"{name} [batch over devices]" for name in bl.SPLIT}
    assert split <= {r["variant"] for r in res["rows"]}
    checked = {f"{other} vs {ref}" for ref, other in bl.AGREE if other in split}
    assert len(checked) == len(split)
    assert all(res["agreement_max_rel_err"][k] < 1e-4 for k in checked)
    if HAS_TORCH:
        assert {r["numerator"] for r in res["ratios"]} >= split
    odd = bench("--batch", "3")
    assert odd.returncode == 1 and "--batch 3 does not split over 2 devices" in odd.stderr
