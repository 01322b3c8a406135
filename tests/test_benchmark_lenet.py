"""experiments/benchmark_lenet.py at a tiny size: its JSON, ratios and compile column."""

import json

import pytest

from experiments import benchmark_lenet


def test_benchmark_lenet_runs_small_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "lenet.json"
    benchmark_lenet.main(["--steps", "2", "--epochs", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    rows = {r["variant"]: r for r in res["rows"]}
    jax_rows = [f"{m}/{c}/{layout}" for m in ("step", "scan")
                for c, layout in (("manual", "NHWC"), ("autodiff", "NHWC"), ("autodiff", "NCHW"))]
    assert set(jax_rows) <= set(rows) and set(rows) - set(jax_rows) <= {"torch/eager"}
    base = rows["step/autodiff/NHWC"]
    for name in jax_rows:
        r = rows[name]
        # every variant is its own jit, so each first call compiles (JAX's compile events)
        assert r["compile_s"] > 0
        assert r["images_per_s"] == pytest.approx(2 * 128 / (r["ms_per_step"] * 2 / 1e3))
        assert r["vs_step_autodiff_nhwc"] == pytest.approx(r["images_per_s"]
                                                           / base["images_per_s"])
        assert name in printed
    if "torch/eager" in rows:
        assert rows["torch/eager"]["compile_s"] is None
        assert rows["torch/eager"]["vs_torch_eager"] == 1.0
