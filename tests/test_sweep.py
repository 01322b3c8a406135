"""train.sweep: member k equals fit alone, divergence isolated, one compile per grid shape,
memory blocks, devices."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from conftest import assert_same_run
from test_train import INIT, _data

from jaxnets import optim, train
from jaxnets.models import sin_mlp
from jaxnets.train import driver, plan

DATA = _data()
KW = dict(init=INIT, loss=sin_mlp.loss, steps=40, batch_size=16, evaluate=sin_mlp.metrics,
          eval_every=20)


def _sweep(lrs, optimizer="sgd", **kw):
    return train.sweep(lrs, DATA, {"train": DATA}, optimizer=optim.get(optimizer), **KW | kw)


def _fit(seed, lr, optimizer="sgd", **kw):
    return train.fit(jax.random.key(seed), lr, DATA, {"train": DATA},
                     optimizer=optim.get(optimizer), **KW | kw)


def _assert_member_is(member: train.FitResult, alone: train.FitResult):
    """A vmapped member equals the run alone to float32 rounding (not bit for bit: batched
    matmuls may sum in another order)."""
    chex.assert_trees_all_close(member, alone, rtol=1e-5, atol=1e-6)
    assert int(member.diverged_at) == int(alone.diverged_at)


def test_member_equals_fit_alone():
    lrs, seeds = np.array([0.01, 0.05, 0.2], np.float32), [0, 3]
    r = _sweep(lrs, seeds=seeds)
    assert r.shape == (3, 2) and list(r.grid) == ["learning_rate", "seed"]
    chex.assert_shape(r.train_loss, (3, 2, 40))
    chex.assert_shape(r.eval_metrics["train/accuracy"], (3, 2, 2))
    chex.assert_shape(r.params["W1"], (3, 2, 16, 6))
    for i, lr in enumerate(lrs):
        for j, seed in enumerate(seeds):
            _assert_member_is(r.member(i, j), _fit(seed, float(lr)))


def test_other_traced_hyperparameters_form_grid_axes():
    """momentum's beta as a grid axis: [n_lr, n_beta, n_seed, ...], members equal fit."""
    lrs, betas = np.array([0.05, 0.2], np.float32), np.array([0.5, 0.9], np.float32)
    r = _sweep(lrs, "momentum", seeds=2, hparams={"beta": betas})
    assert r.shape == (2, 2, 2) and list(r.grid) == ["learning_rate", "beta", "seed"]
    for i, j, k in np.ndindex(r.shape):
        alone = _fit(k, float(lrs[i]), "momentum", hparams={"beta": float(betas[j])})
        _assert_member_is(r.member(i, j, k), alone)


def test_fit_hparams_equal_a_bound_factory():
    a = _fit(0, 0.1, "momentum", hparams={"beta": 0.5})
    b = train.fit(jax.random.key(0), 0.1, DATA, {"train": DATA},
                  optimizer=partial(optim.momentum, beta=0.5), **KW)
    assert_same_run(a, b)


def test_one_absurd_learning_rate_diverges_alone():
    """Same grid shape (so the same program) with a sane rate in the middle: the other members
    are bit for bit the same."""
    r = _sweep(np.array([0.01, 1e38, 0.05], np.float32), seeds=2)
    ref = _sweep(np.array([0.01, 0.1, 0.05], np.float32), seeds=2)
    chex.assert_trees_all_equal(
        jax.tree.map(lambda a: a[np.array([0, 2])], (r.params, r.train_loss, r.eval_metrics)),
        jax.tree.map(lambda a: a[np.array([0, 2])], (ref.params, ref.train_loss,
                                                     ref.eval_metrics)))
    np.testing.assert_array_equal(np.asarray(r.diverged_at)[[0, 2]], -1)
    for j in range(2):
        step = int(r.diverged_at[1, j])
        assert 0 <= step < 40
        assert np.all(np.isfinite(r.train_loss[1, j, :step]))
        assert np.all(np.isnan(r.train_loss[1, j, step:]))
        evals = np.asarray(r.eval_metrics["train/loss"][1, j])  # after steps 20 and 40
        assert np.all(np.isnan(evals[step // 20:]))
        assert all(np.all(np.isfinite(v[1, j])) for v in jax.tree.leaves(r.params))


def test_new_grid_values_of_the_same_shape_do_not_recompile():
    _sweep(np.array([0.01, 0.02], np.float32), seeds=2)
    before = plan.plan_blocks.cache_info()
    _sweep(np.array([0.3, 0.4], np.float32), seeds=[5, 6])
    after = plan.plan_blocks.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 1


def test_a_grid_over_the_memory_limit_runs_in_blocks_with_the_same_results():
    lrs = np.array([0.01, 0.03, 0.1, 0.3], np.float32)
    whole = _sweep(lrs, seeds=3)
    assert whole.blocks == 1 and whole.bytes_per_device > 0
    limit = whole.bytes_per_device - 1
    cut = _sweep(lrs, seeds=3, memory_limit=limit)
    assert cut.blocks > 1 and cut.bytes_per_device <= limit
    assert_same_run(cut[:4], whole[:4], cpu_rtol=1e-6)
    small = _sweep(lrs, seeds=3, members_per_block=2)  # blocks of 1 lr x 2 seeds (3 padded to 4)
    assert small.blocks == 4 * 2
    # a block of one learning rate runs its products unbatched over learning rates, which XLA
    # rounds otherwise (5e-6 relative seen on one weight of 1e-2)
    assert_same_run(small[:4], whole[:4], cpu_rtol=1e-5)


def test_a_member_that_cannot_fit_is_refused_with_its_size():
    with pytest.raises(MemoryError, match=r"one member per device needs [0-9.]+ MiB, over the "
                                          r"memory limit of [0-9.e-]+ MiB"):
        _sweep(np.array([0.1], np.float32), memory_limit=1000)


@pytest.mark.parametrize("kw, match", [
    (dict(learning_rates=np.ones((2, 2))), "learning_rate must be a non-empty 1-D array"),
    (dict(learning_rates=[]), "learning_rate must be a non-empty 1-D array"),
    (dict(learning_rates=[0.1, np.nan]), "learning_rate must be a non-empty 1-D array of finite"),
    (dict(seeds=[0.5, 1.5]), "seeds must be a positive int or a 1-D array of ints"),
    (dict(hparams={"betta": [0.9]}),
     r"the optimizer does not take the hyperparameters \['betta'\]"),
    (dict(steps=30), r"sweep: steps \(30\) must be a multiple of eval_every \(20\)"),
])
def test_bad_sweep_arguments_fail_before_compiling(kw, match):
    lrs = kw.pop("learning_rates", [0.1])
    with pytest.raises(ValueError, match=match):
        _sweep(lrs, "momentum", **kw)


def test_member_takes_one_index_per_axis():
    r = _sweep([0.1], seeds=2)
    with pytest.raises(IndexError, match=r"one index per grid axis \['learning_rate', 'seed'\]"):
        r.member(0)


FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from jaxnets import optim, train
    from jaxnets.models import sin_mlp
    from test_train import INIT, _data
    data = _data()
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("momentum"), steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20)
    lrs = np.array([0.01, 0.05, 1e38, 0.2, 0.3], np.float32)
    runs = {{n: train.sweep(lrs, data, {{"train": data}}, seeds=3, devices=jax.devices()[:n],
                           **kw) for n in (4, 1)}}
    fit = train.fit(jax.random.key(2), 0.2, data, {{"train": data}}, **kw)
    diff = lambda a, b: max(float(np.nanmax(np.abs(np.asarray(u, float) - np.asarray(v, float))))
                            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    no_pad = train.sweep(lrs[:4], data, seeds=2, **kw).train_loss
    print(json.dumps({{
        "devices": len(jax.devices()),
        "sharded_over": len(no_pad.sharding.device_set),
        "loss_4_vs_1": diff(runs[4].train_loss, runs[1].train_loss),
        "metrics_4_vs_1": diff(runs[4].eval_metrics, runs[1].eval_metrics),
        "params_4_vs_1": diff(jax.tree.map(lambda a: np.asarray(a)[[0, 1, 3, 4]], runs[4].params),
                              jax.tree.map(lambda a: np.asarray(a)[[0, 1, 3, 4]], runs[1].params)),
        "diverged_same": bool(np.array_equal(runs[4].diverged_at, runs[1].diverged_at)),
        "member_vs_fit": diff(runs[4].member(3, 2).train_loss, fit.train_loss),
    }}))
""")


def test_sweep_shards_over_four_cpu_devices_and_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", FOUR_DEVICES.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4 and res["sharded_over"] == 4
    assert res["diverged_same"]
    for k in ("loss_4_vs_1", "metrics_4_vs_1", "params_4_vs_1", "member_vs_fit"):
        assert res[k] <= 1e-5, (k, res[k])


TWO_HOSTS = textwrap.dedent("""
    import json, pathlib, sys, warnings
    import jax, numpy as np
    from jax.experimental import multihost_utils
    process_id, port, tmp = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{{port}}", num_processes=2, process_id=process_id)
    sys.path.insert(0, {tests!r})
    from jaxnets import checkpoint, optim, train
    from jaxnets.models import sin_mlp
    from test_train import INIT, _data
    data = _data()
    kw = dict(init=INIT, loss=sin_mlp.loss, optimizer=optim.get("momentum"), steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=20, seeds=3)
    lrs = np.array([0.01, 0.05, 1e38, 0.2, 0.3], np.float32)
    run = lambda lrs, **more: train.sweep(lrs, data, {{"train": data}}, **kw | more)
    one = run(lrs, devices=jax.local_devices()[:1])
    runs = {{"spanning": run(lrs), "blocks": run(lrs, members_per_block=1),
             "checkpointed": run(lrs, checkpoint_dir=tmp)}}
    # hosts whose default memory limits differ plan the same blocks (the smallest limit)
    tight = runs["spanning"].bytes_per_device - 1
    runs["one_tight_host"] = run(lrs, memory_limit=tight if process_id == 1 else None)
    # killed while saving: process 1 lacks the last checkpoint, so both resume from the one
    # before it
    multihost_utils.sync_global_devices("saved")
    if process_id == 1:
        max((tmp / "process-1").glob("step-*.ckpt")).unlink()
    multihost_utils.sync_global_devices("removed")
    runs["resumed"] = run(lrs, checkpoint_dir=tmp)
    # a damaged checkpoint in one process: every process refuses (none waits for the other)
    multihost_utils.sync_global_devices("resumed")
    if process_id == 1:
        newest = max((tmp / "process-1").glob("step-*.ckpt"))
        newest.write_bytes(newest.read_bytes()[:-8])
    multihost_utils.sync_global_devices("damaged")
    try:
        run(lrs, checkpoint_dir=tmp)
        refused = None
    except checkpoint.CheckpointError as e:
        refused = str(e)
    # keep=1 and process 1 lost its only checkpoint: no step in common, both start afresh
    run(lrs, checkpoint_dir=tmp / "keep1", keep=1)
    if process_id == 1:
        max((tmp / "keep1" / "process-1").glob("step-*.ckpt")).unlink()
    multihost_utils.sync_global_devices("lost")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs["afresh"] = run(lrs, checkpoint_dir=tmp / "keep1", keep=1)
    afresh = [str(w.message) for w in caught if "no step in common" in str(w.message)]
    try:  # another grid in one process: both refuse
        run(lrs * (1 + process_id))
        mismatch = None
    except ValueError as e:
        mismatch = str(e)
    share = np.array_split(np.arange(len(lrs)), jax.process_count())[process_id]
    here = run(lrs[share], devices=jax.local_devices())
    def diff(a, b):  # largest |a - b| / (1 + |b|): the diverged member's params are ~1e38
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return max(float(np.nanmax(np.abs(np.asarray(u, float) - np.asarray(v, float))
                                   / (1 + np.abs(np.asarray(v, float))))) for u, v in pairs)
    fields = lambda r: (r.train_loss, r.eval_metrics, r.params, r.diverged_at)
    print(json.dumps({{
        "devices": [len(jax.devices()), len(jax.local_devices())],
        "blocks": {{k: r.blocks for k, r in runs.items()}},
        "vs_one_device": {{k: diff(fields(r), fields(one)) for k, r in runs.items()}},
        "share_vs_one_device": diff(fields(here), jax.tree.map(lambda a: np.asarray(a)[share],
                                                               fields(one))),
        "diverged": np.asarray(runs["spanning"].diverged_at).tolist(),
        "resumed_from": runs["resumed"].checkpoint.resumed_from,
        "files": sorted(p.name for p in tmp.glob("process-*/step-*.ckpt")),
        "refused": refused,
        "mismatch": mismatch,
        "afresh": [runs["afresh"].checkpoint.resumed_from, afresh],
    }}))
""")


@pytest.mark.slow  # two processes, each compiling the sweep (30 s)
def test_sweep_on_a_mesh_spanning_two_processes_matches_one_device(tmp_path):
    """jax.distributed.initialize with two processes of two CPU devices each (as two hosts):
    one sweep over all four devices, in one block, in several, checkpointed, and resumed after
    one process lost its newest checkpoint, and each process's share of the grid on its own
    devices, all equal one device's sweep."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    script = tmp_path / "host.py"
    script.write_text(TWO_HOSTS.format(tests=str(Path(__file__).parent)))
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(port),
                               str(tmp_path / "ckpt")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:  # processes that disagree on the program they run wait for each other forever
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    for out, _ in outs:
        res = json.loads(out.strip().splitlines()[-1])
        assert res["devices"] == [4, 2]
        assert res["blocks"]["blocks"] > res["blocks"]["spanning"] == 1
        assert res["blocks"]["one_tight_host"] > 1
        assert min(res["diverged"][2]) >= 0 and res["diverged"][0] == [-1, -1, -1]
        # float32 rounding: the devices run blocks of other shapes than one device does, and
        # XLA:CPU's kernels depend on the CPU (7.4e-5 on an AVX2 machine, < 1e-5 with AVX-512)
        for k, v in res["vs_one_device"].items():
            assert v <= 2e-4, (k, v)
        assert res["share_vs_one_device"] <= 2e-4
        assert "processes [1] passed another grid, model, setting or data than process 0" in res[
            "mismatch"]
        assert res["resumed_from"] == 1  # of 2 chunks: step 20, the newest both processes held
        assert res["afresh"] == [0, ["sweep: the processes hold checkpoints but no step in "
                                     "common ([[40], [-1]]); starting afresh"]]
    refusals = [json.loads(out.strip().splitlines()[-1])["refused"] for out, _ in outs]
    assert "step-000000040.ckpt" in refusals[1]  # its own error: the file is cut short
    assert "process(es) [1] refused their checkpoint of step 40" in refusals[0]
    assert set(res["files"]) == {"step-000000020.ckpt", "step-000000040.ckpt"}
    assert len(res["files"]) == 4  # each process's folder holds the whole grid's checkpoints


def test_memory_plan_counts_the_outputs_gathered_to_every_device():
    """On a mesh spanning processes every device receives the whole block's outputs."""
    compiled = jax.jit(lambda a: jax.numpy.tile(a, 64)).lower(np.ones(1000, np.float32)).compile()
    out = compiled.memory_analysis().output_size_in_bytes
    assert out == 64 * 4000
    assert plan._compiled_bytes(compiled, gathered_from=3) == 4 * out
    assert plan._compiled_bytes(compiled) < 2 * out


def test_validate_false_skips_the_argument_checks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validate_spec called")

    monkeypatch.setattr(driver, "validate_spec", refuse)
    r = _sweep([0.1], seeds=1, validate=False)
    assert r.train_loss.shape == (1, 1, 40) and np.all(np.isfinite(r.train_loss))
    with pytest.raises(AssertionError, match="validate_spec called"):
        _sweep([0.1], seeds=1)


def _default_dtype_init(key):
    return {"w": jax.random.normal(key, (1000,))}  # float32, or float64 with x64 on


def test_members_per_block_follows_the_x64_mode():
    """The cached per-member state size depends on the x64 mode where init uses default
    dtypes: float64 members are twice as large, so half as many fit the CPU block budget."""
    cpu, opt = jax.devices("cpu")[0], optim.get("sgd")
    step = train.SupervisedStep(_default_dtype_init, lambda p, b: 0.0, opt, 1)
    narrow = train.default_members_per_block(cpu, step, jax.random.key(0))
    with jax.enable_x64(True):
        wide = train.default_members_per_block(cpu, step, jax.random.key(0))
    assert narrow == train.CPU_BLOCK_STATE_BYTES // 4000 and wide == narrow // 2
