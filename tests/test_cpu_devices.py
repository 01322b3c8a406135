"""train.cpu_devices: the CPU split into several XLA devices, a sweep's members shared out over
them, and the sweep experiments' --cpu-devices flag."""

import json
import subprocess
import sys
import textwrap

import jax
import pytest
from conftest import ROOT, run_experiment, subprocess_env

from experiments import lr_sweep as exp
from jaxnets import runs, train


def test_cpu_devices_refuses_a_bad_count_and_another_count_once_jax_runs():
    jax.numpy.zeros(1).block_until_ready()  # the backend is running
    have = len(jax.devices("cpu"))
    assert train.cpu_devices(have) == have  # the count in use: nothing to do
    with pytest.raises(ValueError, match="at least 1, got 0"):
        train.cpu_devices(0)
    with pytest.raises(RuntimeError, match=f"already runs with {have} CPU device"):
        train.cpu_devices(have + 1)


TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import numpy as np
    from jaxnets import optim, train
    n = train.cpu_devices(2)
    import jax
    sys.path.insert(0, {tests!r})
    from jaxnets.models import sin_mlp
    from test_train import INIT, _data
    data = _data()
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("momentum"), steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20, seeds=2)
    lrs = np.array([0.01, 0.05, 0.2], np.float32)
    every = train.sweep(lrs, data, {{"train": data}}, **kw)
    first = train.sweep(lrs, data, {{"train": data}}, devices=jax.devices()[:1], **kw)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(u, float) - np.asarray(v, float))))
                            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({{
        "n": n, "again": train.cpu_devices(2), "devices": len(jax.devices()),
        "sharded_over": len(every.train_loss.sharding.device_set),
        "vs_one_device": diff((every.train_loss, every.eval_metrics, every.params),
                              (first.train_loss, first.eval_metrics, first.params)),
    }}))
""")


def test_cpu_devices_splits_the_cpu_and_a_sweep_runs_on_every_device():
    """In a fresh process: two CPU devices, the sweep's grid sharded over both, every member
    equal to the sweep on one device to float32 rounding."""
    script = TWO_DEVICES.format(tests=str(ROOT / "tests"))
    out = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == res["again"] == res["devices"] == res["sharded_over"] == 2
    assert res["vs_one_device"] <= 1e-5


DOTS = textwrap.dedent("""
    import json, os, sys
    from jaxnets import train
    train.cpu_devices(int(sys.argv[1]))
    import jax, jax.numpy as jnp
    hlo = jax.jit(jnp.matmul).lower(jnp.ones((64, 128)), jnp.ones((128, 512))).compile()
    print(json.dumps({"ynn": "ynn" in hlo.as_text(), "env": os.environ.get("XLA_FLAGS"),
                      "devices": len(jax.devices())}))
""")


def _dots(n: int, xla_flags: str | None) -> dict:
    env = subprocess_env()
    env.pop("XLA_FLAGS", None)
    env |= {"XLA_FLAGS": xla_flags} if xla_flags is not None else {}
    out = subprocess.run([sys.executable, "-c", DOTS, str(n)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cpu_devices_puts_the_products_on_eigen_unless_told_otherwise():
    """With several devices the CPU's products leave YNNPACK (``train.plan.EIGEN_DOTS_FLAG``)
    and XLA_FLAGS is left as it was; one device, or XLA_FLAGS choosing the library itself,
    keeps this jaxlib's default."""
    if not train.plan._xla_knows(train.plan.EIGEN_DOTS_FLAG):
        pytest.skip("this jaxlib has no YNNPACK fusion flag")
    one = _dots(1, None)
    if not one["ynn"]:
        pytest.skip("this jaxlib does not run products on YNNPACK by default")
    assert one == {"ynn": True, "env": None, "devices": 1}
    assert _dots(2, None) == {"ynn": False, "env": None, "devices": 2}
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert _dots(2, mine) == {"ynn": True, "env": mine, "devices": 2}


def test_xla_knows_its_flags_only():
    assert train.plan._xla_knows("--xla_cpu_multi_thread_eigen=false")
    assert not train.plan._xla_knows("--xla_cpu_no_such_flag_in_any_jaxlib=1")


SMALL = ["--optimizers", "sgd", "--lr-min", "0.01", "--lr-max", "0.3", "--count", "3",
         "--seeds", "2", "--steps", "40", "--eval-every", "20", "--hidden", "16"]


def test_lr_sweep_on_two_cpu_devices_matches_one_and_resumes(tmp_path):
    """python -m experiments.lr_sweep --cpu-devices 2: the count in config.json, the metrics of
    the one-device run to float32 rounding; resuming the finished run restores its two-device
    checkpoint and changes nothing; another count on resume and a negative count are refused."""
    two, one = tmp_path / "two", tmp_path / "one"
    out = run_experiment("lr_sweep", *SMALL, "--cpu-devices", "2", "--run-dir", str(two))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((two / "config.json").read_text())["cpu_devices"] == 2
    exp.run(exp.Config(optimizers=("sgd",), lr_min=0.01, lr_max=0.3, count=3, seeds=2,
                       steps=40, eval_every=20, hidden=16, run_dir=one), progress=False)
    rows2, rows1 = (runs.read_jsonl(d / "metrics.jsonl") for d in (two, one))
    assert len(rows2) == len(rows1) == 3 * 2 * 2
    for r2, r1 in zip(rows2, rows1, strict=True):
        assert (r2["learning_rate"], r2["seed"], r2["step"]) == (r1["learning_rate"],
                                                                 r1["seed"], r1["step"])
        for k in ("train/loss", "test/loss", "test/accuracy"):
            assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-6), k
    before = (two / "metrics.jsonl").read_bytes()
    again = run_experiment("lr_sweep", "--resume", str(two))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (two / "metrics.jsonl").read_bytes() == before
    other = run_experiment("lr_sweep", "--resume", str(two), "--cpu-devices", "1")
    assert other.returncode == 1 and "cpu_devices: 2 in the run, 1 now" in other.stderr
    bad = run_experiment("lr_sweep", *SMALL, "--cpu-devices", "-1", "--run-dir",
                         str(tmp_path / "bad"))
    assert bad.returncode == 1
    assert "--cpu-devices must be 0 (one per core) or more, got -1" in bad.stderr
    assert not (tmp_path / "bad").exists()


BATCH_SPLIT = textwrap.dedent("""
    import json, pathlib, sys
    from functools import partial
    import jax
    from jaxnets import optim, train
    train.cpu_devices(2)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jaxnets.models import rnn, sin_mlp
    tmp = pathlib.Path(sys.argv[1])
    k = jax.random.split(jax.random.key(0), 6)
    rel = lambda a, b: max(float(jnp.linalg.norm(jnp.ravel(u - v)) / jnp.linalg.norm(jnp.ravel(v)))
                           for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    out = {}
    # an LSTM's summed per-step MSE (a mean over sequences) and the sin-MLP's cross-entropy
    lstm = rnn.init(k[0], 3, 5, 2, cell="lstm", dtype=jnp.float64)
    seqs = (jax.random.normal(k[1], (6, 7, 3)), jax.random.normal(k[2], (6, 7, 2)))
    mlp = sin_mlp.init(k[3], d=4, d_h=8, m=3, dtype=jnp.float64)
    rows = (jax.random.normal(k[4], (10, 4)), jax.random.randint(k[5], (10,), 0, 3))
    cases = {"lstm": (partial(rnn.loss, kind="mse", target="sequence"), lstm, seqs),
             "sin_mlp": (sin_mlp.loss, mlp, rows)}
    for name, (loss, params, batch) in cases.items():
        want = jax.value_and_grad(loss)(params, batch)
        split = jax.value_and_grad(train.batch_over_devices(loss))
        out[name] = max(rel(split(params, batch), want), rel(jax.jit(split)(params, batch), want))
    # fit on the split loss: the plain loss's run; checkpointed, resumed bit for bit
    kw = dict(init=partial(sin_mlp.init, d=4, d_h=8, m=3, dtype=jnp.float64),
              optimizer=optim.get("momentum"), steps=30, batch_size=4, eval_every=10)
    split = train.batch_over_devices(sin_mlp.loss)
    plain = train.fit(jax.random.key(1), 0.3, rows, loss=sin_mlp.loss, **kw)
    run = lambda: train.fit(jax.random.key(1), 0.3, rows, loss=split, checkpoint_dir=tmp, **kw)
    first = run()
    max(tmp.glob("step-*.ckpt")).unlink()
    resumed = run()
    out["fit"] = rel((first.params, first.train_loss), (plain.params, plain.train_loss))
    out["resumed_from"] = resumed.checkpoint.resumed_from
    out["resumed_same"] = all(bool(jnp.array_equal(u, v)) for u, v in zip(
        jax.tree.leaves((first.params, first.train_loss)),
        jax.tree.leaves((resumed.params, resumed.train_loss))))
    # placed once (params on every device, rows split): the same value and gradient
    params, batch = train.put_over_devices(mlp, rows)
    out["placed"] = rel(jax.jit(jax.value_and_grad(split))(params, batch),
                        jax.value_and_grad(sin_mlp.loss)(mlp, rows))
    out["replicated"] = all(a.sharding.is_fully_replicated and len(a.sharding.device_set) == 2
                            for a in jax.tree.leaves(params))
    out["shards"] = [list(a.sharding.shard_shape(a.shape)) for a in batch]
    try:
        split(mlp, (rows[0][:5], rows[1][:5]))
        out["odd"] = None
    except ValueError as e:
        out["odd"] = str(e)
    try:
        train.put_over_devices(mlp, (rows[0][:5], rows[1][:5]))
        out["odd_put"] = None
    except ValueError as e:
        out["odd_put"] = str(e)
    print(json.dumps(out))
""")


def test_batch_over_devices_gives_the_loss_and_gradient_and_trains_with_fit(tmp_path):
    """float64, two CPU devices: the split loss's value and gradient equal the loss's (an LSTM
    over sequences, the sin-MLP), jitted and not; ``fit`` on it equals ``fit`` on the loss and
    resumes from its checkpoint bit for bit; ``put_over_devices`` replicates the params and
    splits the rows, with the same result; a batch that does not split is refused by both."""
    out = subprocess.run([sys.executable, "-c", BATCH_SPLIT, str(tmp_path)],
                         env=subprocess_env(), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["lstm"] <= 1e-12 and res["sin_mlp"] <= 1e-12
    assert res["fit"] <= 1e-10
    assert res["resumed_from"] == 2 and res["resumed_same"]  # chunks of 10 steps
    assert res["placed"] <= 1e-12 and res["replicated"] and res["shards"] == [[5, 4], [5]]
    assert "divisible by the 2 devices" in res["odd"] and "(5, 4)" in res["odd"]
    assert res["odd_put"].startswith("put_over_devices:") and "(5, 4)" in res["odd_put"]


def test_batch_over_one_device_is_the_loss():
    from functools import partial

    from jaxnets.models import rnn
    loss = partial(rnn.loss, kind="mse", target="last")
    params = rnn.init(jax.random.key(0), 3, 4, 1)
    batch = (jax.random.normal(jax.random.key(1), (5, 6, 3)),
             jax.random.normal(jax.random.key(2), (5, 1)))
    split = train.batch_over_devices(loss, jax.devices()[:1])
    want, got = jax.value_and_grad(loss)(params, batch), jax.value_and_grad(split)(params, batch)
    for u, v in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert jax.numpy.allclose(u, v, rtol=1e-6, atol=1e-7)
