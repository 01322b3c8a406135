"""experiments/benchmark_sweep.py at a tiny size: its JSON, its ratios, its compile column and,
with torch installed, the torch ensembles' columns and their agreement with the sweep."""

import importlib.util
import json
from functools import partial

import pytest

from experiments import benchmark_sweep as bs
from experiments import common


@pytest.mark.slow  # a benchmark script end to end (13 s)
def test_benchmark_sweep_runs_small_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bs.main(["--cases", "digits", "--ks", "2", "3", "--steps", "10", "--repeats", "1",
             "--threads", "1", "--cpu-devices", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["data"] == {"digits": "digits"}
    assert [(r["case"], r["K"]) for r in res["results"]] == [("digits", 2), ("digits", 3)]
    d, d_h, m, batch = bs.CASES["digits"]
    env = res["environment"]
    assert env["cpu"] and env["vector_units"] and env["cpu"] in res["machine"]
    assert env["vector_units"] in printed.splitlines()[0]
    with_torch = importlib.util.find_spec("torch") is not None
    names = ["loop", "sweep"] + list(bs.TORCH_VARIANTS) * with_torch
    for r in res["results"]:
        t = r["median_s"]
        assert list(t) == names
        assert r["ratio_loop_over_sweep"] == pytest.approx(t["loop"] / t["sweep"])
        flops = 2 * batch * (2 * d * d_h + 3 * d_h * m) * 10 * r["K"]
        for name in names:
            assert r["gflops"][name] == pytest.approx(flops / t[name] / 1e9)
            assert r["ratio_over_sweep"][name] == pytest.approx(t[name] / t["sweep"])
        assert list(r["torch_agreement"]) == names[2:]
        for a in r["torch_agreement"].values():
            assert a["max_rel_params"] < 1e-5 and a["max_abs_loss"] < 1e-5
        if with_torch:
            assert r["best_torch_over_sweep"] == pytest.approx(
                min(t["torch_bmm"], t["torch_func"]) / t["sweep"])
            assert r["compile_s"]["torch_bmm"] is None is r["compile_s"]["torch_func"]
        assert r["max_abs_loss_diff"] < 1e-4 and r["diverged"] == 0
        assert f"digits  {r['K']:3d}" in printed
        # each case builds its own model partial, so both sides compile in every case (the
        # column is JAX's compile-event time, never the first-call-minus-median difference,
        # which noise made negative)
        assert r["compile_s"]["loop"] > 0 and r["compile_s"]["sweep"] > 0
    assert common.compile_seconds(lambda: bs.jnp.ones(3) + 1) > 0
    assert common.compile_seconds(lambda: bs.jnp.ones(3) + 1) == 0  # cached: nothing compiled


def test_torch_ensembles_agree_with_the_sweep_and_the_check_can_fail():
    """Both torch ensembles, from jaxnets' initial params on jaxnets' minibatch order, end
    where the sweep's members end; on another order (the same batches one step later) the
    agreement check fails."""
    pytest.importorskip("torch")
    import jax
    import numpy as np

    from jaxnets import optim, train
    from jaxnets.models import sin_mlp

    d, d_h, m, batch, steps = 5, 8, 3, 4, 6
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, d)).astype(np.float32)
    y = rng.integers(0, m, 20).astype(np.int32)
    lrs = np.array([0.05, 0.5], np.float32)
    kw = dict(init=partial(sin_mlp.init, d=d, d_h=d_h, m=m), loss=sin_mlp.loss,
              optimizer=optim.get("sgd"), steps=steps, batch_size=batch)
    swept = train.sweep(lrs, (x, y), seeds=[0], **kw)
    params0, idx = bs.jaxnets_start(jax.random.key(0), kw["init"], kw["optimizer"],
                                    steps + 1, len(x), batch)
    params = {k: np.asarray(v[:, 0]) for k, v in swept.params.items()}
    loss = np.asarray(swept.train_loss[:, 0])
    fns = bs.torch_variants(params0, lrs, x, y, idx[:steps], threads=1)
    for fn in fns.values():
        a = bs.agreement(params, loss, fn())
        assert a["max_rel_params"] < 1e-5 and a["max_abs_loss"] < 1e-5
    shifted = bs.torch_variants(params0, lrs, x, y, idx[1:], threads=1)
    for fn in shifted.values():
        with pytest.raises(AssertionError, match="torch differs from the sweep"):
            bs.agreement(params, loss, fn())


@pytest.mark.slow  # a benchmark script in a fresh process (15 s)
def test_benchmark_sweep_on_two_cpu_devices_times_the_sweep_on_one_beside_it(tmp_path):
    """--cpu-devices 2: the sweep runs on both devices, and again on the first alone
    (``sweep_1dev``); both agree with the loop (the script asserts it) and are timed."""
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "experiments.benchmark_sweep", "--cases",
                           "digits", "--ks", "4", "--steps", "10", "--repeats", "1",
                           "--no-torch", "--cpu-devices", "2", "--json", str(out)],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["machine"].endswith("2 device(s)")
    (r,) = res["results"]
    assert list(r["median_s"]) == ["loop", "sweep", "sweep_1dev"]
    assert r["ratio_over_sweep"]["sweep_1dev"] == pytest.approx(
        r["median_s"]["sweep_1dev"] / r["median_s"]["sweep"])
    assert "sw.1dev" in done.stdout
