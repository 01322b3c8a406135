"""experiments/benchmark_sweep.py at a tiny size: its JSON, its ratios and its compile column."""

import json

import pytest

from experiments import benchmark_sweep as bs
from experiments import common


def test_benchmark_sweep_runs_small_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bs.main(["--cases", "digits", "--ks", "2", "3", "--steps", "10", "--repeats", "1",
             "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["data"] == {"digits": "digits"}
    assert [(r["case"], r["K"]) for r in res["results"]] == [("digits", 2), ("digits", 3)]
    d, d_h, m, batch = bs.CASES["digits"]
    for r in res["results"]:
        t = r["median_s"]
        assert r["ratio_loop_over_sweep"] == pytest.approx(t["loop"] / t["sweep"])
        flops = 2 * batch * (2 * d * d_h + 3 * d_h * m) * 10 * r["K"]
        for name in ("loop", "sweep"):
            assert r["gflops"][name] == pytest.approx(flops / t[name] / 1e9)
        assert r["max_abs_loss_diff"] < 1e-4 and r["diverged"] == 0
        assert f"digits  {r['K']:3d}" in printed
        # each case builds its own model partial, so both sides compile in every case (the
        # column is JAX's compile-event time, never the first-call-minus-median difference,
        # which noise made negative)
        assert all(c > 0 for c in r["compile_s"].values())
    assert common.compile_seconds(lambda: bs.jnp.ones(3) + 1) > 0
    assert common.compile_seconds(lambda: bs.jnp.ones(3) + 1) == 0  # cached: nothing compiled
