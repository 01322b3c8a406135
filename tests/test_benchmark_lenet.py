"""experiments/benchmark_lenet.py at a tiny size: its JSON, ratios and compile column."""

import json

import pytest

from experiments import benchmark_lenet


@pytest.mark.slow  # a benchmark script end to end (25 s)
def test_benchmark_lenet_runs_small_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "lenet.json"
    benchmark_lenet.main(["--steps", "2", "--epochs", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    rows = {r["variant"]: r for r in res["rows"]}
    jax_rows = [f"{m}/{c}/{layout}" for m in ("step", "scan")
                for c, layout in (("manual", "NHWC"), ("autodiff", "NHWC"), ("autodiff", "NCHW"))]
    assert set(jax_rows) <= set(rows) and set(rows) - set(jax_rows) <= {"torch/eager"}
    for name in jax_rows:
        # every variant is its own jit, so each first call compiles (JAX's compile events;
        # first call minus median, the old column, could read 0 or be noise)
        assert rows[name]["compile_s"] > 0
        assert name in printed
    if "torch/eager" in rows:
        assert rows["torch/eager"]["compile_s"] is None
