"""jaxnets.checkpoint: exact round trips, clear errors for bad files (which stay untouched),
keep-last-k, and resumable chunked loops (run_chunks, train.sweep) equal to uninterrupted runs."""

import hashlib
import json
import pickle
import re
import shutil
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import checkpoint, loop, optim, runs, train
from jaxnets.checkpoint import CheckpointError
from jaxnets.models import sin_mlp

ROOT = Path(__file__).resolve().parents[1]


def _state(optimizer="adam", seed=0, d_h=8):
    init = partial(sin_mlp.init, d=5, d_h=d_h, m=3)
    return train.init_state(jax.random.key(seed), init=init, optimizer=optim.get(optimizer))


def _assert_bits_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(la, lb, strict=True):
        if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(u) == jax.random.key_impl(v)
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes()


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != runs.LOCK_NAME}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "adam"])
def test_train_state_round_trips_bit_for_bit(tmp_path, optimizer):
    state = _state(optimizer)
    state = state._replace(params=jax.tree.map(lambda a: a + 0.1, state.params))
    path = checkpoint.save(tmp_path / "a.ckpt", state, {"note": "x", "n": [1, 2]})
    template = jax.eval_shape(lambda: _state(optimizer))
    restored, meta = checkpoint.load(path, template)
    _assert_bits_equal(restored, state)
    assert meta == {"note": "x", "n": [1, 2]}


@pytest.mark.parametrize("dtype, shape", [
    ("float16", (3, 2)), ("float32", ()), ("float64", (2, 0)), ("int8", (4,)),
    ("int64", (2, 2)), ("uint32", (5,)), ("bool", (3,)), ("complex64", (2,)),
    ("bfloat16", (3, 1)), ("uint8", ()),
])
def test_arrays_of_every_dtype_and_shape_round_trip(tmp_path, x64, dtype, shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 100).astype(jnp.dtype(dtype))
    tree = {"a": a, "keys": jax.vmap(jax.random.key)(jnp.arange(3)),
            "rbg": jax.random.key(7, impl="rbg")}
    restored, _ = checkpoint.load(checkpoint.save(tmp_path / "x.ckpt", tree), tree)
    _assert_bits_equal(restored, tree)


HEAD = len(checkpoint.MAGIC) + 8 + 32  # magic, header length, header SHA-256


def _bad_files(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the phrase the error must contain)."""
    n = int.from_bytes(good[len(checkpoint.MAGIC):len(checkpoint.MAGIC) + 8], "little")
    body = HEAD + n
    flipped = bytearray(good)
    flipped[body + (len(good) - body) // 2] ^= 0x01
    header_flip = bytearray(good)
    header_flip[HEAD + 1] = ord("#")
    future = _with_header(good, good[body:], format=9)
    return {
        "empty": (b"", "not a jaxnets checkpoint (it is empty"),
        "png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a jaxnets checkpoint (it starts with"),
        "pickle": (pickle.dumps({"W1": np.ones(3)}), "not a jaxnets checkpoint"),
        "params msgpack": (None, "not a jaxnets checkpoint"),  # filled in by the test
        "cut in the length": (good[:len(checkpoint.MAGIC) + 3], "truncated"),
        "cut in the header": (good[:body - 5], "does not fit in the file's"),
        "cut in the payload": (good[:body + 10], "truncated: 10 of"),
        "cut at the last byte": (good[:-1], "truncated"),
        "payload bit flip": (bytes(flipped), "corrupt: the payload's SHA-256 does not match"),
        "header damaged": (bytes(header_flip), "corrupt header: its SHA-256 does not match"),
        "newer format": (future, "format 9; this jaxnets reads format 2"),
    }


def test_bad_files_get_clear_errors_and_are_left_as_they_were(tmp_path):
    template = _state()
    good = checkpoint.encode(template, {"chunks": 1})
    cases = _bad_files(good)
    runs.save_params(tmp_path / "params.msgpack", template.params)
    cases["params msgpack"] = ((tmp_path / "params.msgpack").read_bytes(),
                               cases["params msgpack"][1])
    for name, (data, phrase) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(data)
        before = _snapshot(tmp_path)
        with pytest.raises(CheckpointError) as e:
            checkpoint.load(path, template)
        assert str(path) in str(e.value) and phrase in str(e.value), (name, str(e.value))
        assert _snapshot(tmp_path) == before, name


def test_loading_never_unpickles(tmp_path):
    """A pickle that would write a file when unpickled is refused without running."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="not a jaxnets checkpoint"):
        checkpoint.load(path, _state())
    # a valid header around a pickled payload: its bytes are read as numbers, never unpickled
    payload = pickle.dumps(Evil())[:16]
    path.write_bytes(_with_header(checkpoint.encode({"a": np.ones(2)}), payload))
    restored, _ = checkpoint.load(path, {"a": np.ones(2)})
    np.testing.assert_array_equal(restored["a"], np.frombuffer(payload[:16], np.float64))
    assert not marker.exists()


def _with_header(good: bytes, payload: bytes, raw: bytes | None = None, **change) -> bytes:
    """A checkpoint whose header is that of ``good`` with ``change`` (or the bytes ``raw``), both
    checksums matching: only the header's contents can be wrong."""
    n = int.from_bytes(good[len(checkpoint.MAGIC):len(checkpoint.MAGIC) + 8], "little")
    header = json.loads(good[HEAD:HEAD + n])
    header.update(payload_bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                  **change)
    h = json.dumps(header).encode() if raw is None else raw
    return (checkpoint.MAGIC + len(h).to_bytes(8, "little") + hashlib.sha256(h).digest() + h
            + payload)


@pytest.mark.parametrize("spec, needle", [
    ({"dtype": "object", "shape": [2], "offset": 0}, "corrupt header (entry"),
    ({"dtype": "float64", "shape": [-1], "offset": 0}, "corrupt header (entry"),
    ({"dtype": "float64", "shape": [2], "offset": 8}, "at offset 8, not 0"),
    ({"dtype": "float64", "shape": [2]}, "corrupt header (entry"),
    ({"dtype": "float64", "shape": [2**70, 2**70], "offset": 0}, "lies past the payload"),
    ({"dtype": "float64", "shape": [True, 2], "offset": 0}, "corrupt header (entry"),
    ({"dtype": "float64", "shape": [2], "offset": True}, "corrupt header (entry"),
    ({"dtype": "float64", "shape": [1], "offset": 0}, "fill 8 of 16 payload bytes"),
])
def test_a_header_that_lies_about_its_arrays_is_refused(tmp_path, spec, needle):
    good = checkpoint.encode({"a": np.ones(2)})
    path = tmp_path / "lying.ckpt"
    path.write_bytes(_with_header(good, np.ones(2).tobytes(), arrays={"['a']": spec}))
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        checkpoint.load(path, {"a": np.ones(2)})


def test_a_header_without_its_tables_is_refused(tmp_path):
    good = checkpoint.encode({"a": np.ones(2)})
    for change in ({"meta": []}, {"keys": None}, {"arrays": "x"}):
        path = tmp_path / "bad.ckpt"
        path.write_bytes(_with_header(good, np.ones(2).tobytes(), **change))
        with pytest.raises(CheckpointError, match="corrupt header .*must be a JSON object"):
            checkpoint.load(path, {"a": np.ones(2)})


def test_no_module_uses_pickle():
    """Checkpoints, params and configs load without executing code: nothing imports pickle (or
    its relatives) or lets numpy unpickle."""
    pattern = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|cloudpickle|dill|joblib|shelve)\b"
                         r"|allow_pickle\s*=\s*True|torch\.load", re.M)
    for path in [*ROOT.glob("jaxnets/**/*.py"), *ROOT.glob("experiments/*.py")]:
        assert not pattern.search(path.read_text()), path


def test_another_model_is_refused_with_the_differences(tmp_path):
    path = checkpoint.save(tmp_path / "a.ckpt", _state(d_h=8))
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, _state(d_h=16))
    msg = str(e.value)
    assert str(path) in msg and "holds a different model or run" in msg
    assert "['W1']\": float32[8, 5] in the file, float32[16, 5] expected" in msg
    with pytest.raises(CheckpointError,
                       match=r"missing \"\.opt_state\[0\]\.mu\['W1'\]\"; .*; and 1 more"):
        checkpoint.load(checkpoint.save(tmp_path / "sgd.ckpt", _state("sgd")), _state("adam"))
    with pytest.raises(CheckpointError, match=r"'\.key': a PRNG key expected"):
        checkpoint.load(checkpoint.save(tmp_path / "k.ckpt", _state()._replace(
            key=np.zeros(2, np.uint32))), _state())


def test_differences_lists_nested_fields():
    saved = {"config": {"hidden": 32, "lr": 0.1, "opts": ["sgd"]}, "part": "a"}
    now = {"config": {"hidden": 64, "lr": 0.1, "opts": ["sgd", "adam"], "new": 1}, "part": "a"}
    assert checkpoint.differences(saved, now) == [
        "config.hidden: 32 in the run, 64 now",
        "config.new: '<absent>' in the run, 1 now",
        "config.opts: ['sgd'] in the run, ['sgd', 'adam'] now"]
    assert checkpoint.differences(saved, saved) == []


def test_checkpoints_keep_the_newest_k_and_clear_dead_temp_files(tmp_path):
    store = checkpoint.Checkpoints(tmp_path, keep=2)
    assert store.latest() is None and store.steps() == []
    (tmp_path / ".step-000000009.ckpt.abc.tmp").write_bytes(b"half a save")
    (tmp_path / "notes.txt").write_text("mine")
    for step in (10, 20, 30):
        store.save(step, {"x": np.full(3, step)})
    assert store.steps() == [20, 30] and store.latest() == tmp_path / "step-000000030.ckpt"
    # saving never deletes a temporary file: it may be another writer's
    assert (tmp_path / ".step-000000009.ckpt.abc.tmp").exists()
    with store.hold():  # the folder held: no live writer but us, so a leftover is cleared
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".lock", "notes.txt", "step-000000020.ckpt", "step-000000030.ckpt"]
    with pytest.raises(ValueError, match="keep must be a positive integer"):
        checkpoint.Checkpoints(tmp_path, keep=0)


# ----------------------------------------------------------------------------------------------
# run_chunks


def _toy_chunk(state):
    """A chunk that uses the key and the step, as the training loops do."""
    k = jax.random.fold_in(state["key"], state["step"])
    x = state["x"] * 0.9 + jax.random.normal(k, state["x"].shape)
    return {"key": state["key"], "x": x, "step": state["step"] + 1}, {"mean": x.mean(), "x": x}


_TOY = jax.jit(_toy_chunk)


def _toy_state():
    return {"key": jax.random.key(3), "x": jnp.zeros(4), "step": jnp.zeros((), jnp.int32)}


class Interrupt(Exception):
    pass


def _interrupted(at: int):
    calls = {"n": 0}

    def chunk(state):
        calls["n"] += 1
        if calls["n"] == at:
            raise Interrupt
        return _TOY(state)

    return chunk


def test_run_chunks_resumes_bit_identical_after_an_interruption(tmp_path):
    whole = loop.run_chunks(_toy_state(), _TOY, 6, progress=False)
    with pytest.raises(Interrupt):  # dies during chunk 4: chunks 1-3 are saved
        loop.run_chunks(_toy_state(), _interrupted(4), 6, directory=tmp_path, keep=10,
                              steps_per_chunk=5, meta={"a": 1}, progress=False)
    assert checkpoint.Checkpoints(tmp_path).steps() == [5, 10, 15]
    again = loop.run_chunks(_toy_state(), _TOY, 6, directory=tmp_path, keep=10,
                                  steps_per_chunk=5, meta={"a": 1}, progress=False)
    assert again.resumed_from == 3 and len(again.chunk_seconds) == 3
    _assert_bits_equal((again.state, again.outputs), (whole.state, whole.outputs))
    assert checkpoint.Checkpoints(tmp_path).steps() == [5, 10, 15, 20, 25, 30]
    done = loop.run_chunks(_toy_state(), _TOY, 6, directory=tmp_path, meta={"a": 1},
                                 progress=False)  # a finished run: nothing left to do
    assert done.resumed_from == 6 and done.chunk_seconds == []
    _assert_bits_equal(done.outputs, whole.outputs)


def test_run_chunks_resumes_from_the_step_it_is_given(tmp_path):
    whole = loop.run_chunks(_toy_state(), _TOY, 6, directory=tmp_path, keep=10,
                                  steps_per_chunk=5, progress=False)
    kw = dict(directory=tmp_path, keep=10, steps_per_chunk=5, progress=False)
    older = loop.run_chunks(_toy_state(), _TOY, 6, resume_step=15, **kw)
    assert older.resumed_from == 3 and len(older.chunk_seconds) == 3
    afresh = loop.run_chunks(_toy_state(), _TOY, 6, resume_step=0, **kw)
    assert afresh.resumed_from == 0 and len(afresh.chunk_seconds) == 6
    for r in (older, afresh):
        _assert_bits_equal((r.state, r.outputs), (whole.state, whole.outputs))
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 12 to resume from \(it "
                                              r"holds steps \[5, 10, 15, 20, 25, 30\]\)"):
        loop.run_chunks(_toy_state(), _TOY, 6, resume_step=12, **kw)
    with pytest.raises(ValueError, match="resume_step needs a directory and every >= 1"):
        loop.run_chunks(_toy_state(), _TOY, 6, resume_step=5, progress=False)


def test_saves_of_a_run_resumed_from_an_older_checkpoint_are_kept(tmp_path):
    """Pruning keeps the newest ``keep`` up to the step just saved, so a run resumed from
    before the newest three does not delete its own saves."""
    kw = dict(directory=tmp_path, keep=3, steps_per_chunk=5, progress=False)
    whole = loop.run_chunks(_toy_state(), _TOY, 6, **kw)
    assert checkpoint.Checkpoints(tmp_path).steps() == [20, 25, 30]
    with pytest.raises(Interrupt):
        loop.run_chunks(_toy_state(), _interrupted(3), 6, resume_step=0, **kw)
    assert checkpoint.Checkpoints(tmp_path).steps() == [5, 10, 20, 25, 30]
    again = loop.run_chunks(_toy_state(), _TOY, 6, resume_step=0, **kw)
    _assert_bits_equal((again.state, again.outputs), (whole.state, whole.outputs))
    assert checkpoint.Checkpoints(tmp_path).steps() == [20, 25, 30]


def test_run_chunks_saves_every_k_chunks_and_after_the_last(tmp_path):
    r = loop.run_chunks(_toy_state(), _TOY, 5, directory=tmp_path, every=2, keep=10,
                              progress=False)
    assert checkpoint.Checkpoints(tmp_path).steps() == [2, 4, 5]
    assert len(r.save_seconds) == 3 and r.checkpoint_bytes == (tmp_path / "step-000000005.ckpt"
                                                               ).stat().st_size
    loop.run_chunks(_toy_state(), _TOY, 5, directory=tmp_path / "none", every=0,
                          progress=False)
    assert not (tmp_path / "none").exists()


def test_run_chunks_refuses_other_settings_and_leaves_the_folder(tmp_path):
    loop.run_chunks(_toy_state(), _TOY, 2, directory=tmp_path,
                          meta={"config": {"hidden": 8, "lr": 0.1}}, progress=False)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"step-000000002.ckpt: the run was started "
                                              r"with other settings.*config.hidden: 8 in the "
                                              r"run, 9 now"):
        loop.run_chunks(_toy_state(), _TOY, 4, directory=tmp_path,
                              meta={"config": {"hidden": 9, "lr": 0.1}}, progress=False)
    with pytest.raises(CheckpointError, match="holds 2 chunks, more than the 1 of this run"):
        loop.run_chunks(_toy_state(), _TOY, 1, directory=tmp_path,
                              meta={"config": {"hidden": 8, "lr": 0.1}}, progress=False)
    with pytest.raises(CheckpointError, match=r"\['x'\]\": float32\[4\] in the file, "
                                              r"float32\[5\] expected"):
        loop.run_chunks(dict(_toy_state(), x=jnp.zeros(5)), _TOY, 4, directory=tmp_path,
                              meta={"config": {"hidden": 8, "lr": 0.1}}, progress=False)
    assert _snapshot(tmp_path) == before


def test_run_chunks_stops_early_and_stays_stopped(tmp_path):
    stop = lambda s: int(s["step"]) >= 2  # noqa: E731
    r = loop.run_chunks(_toy_state(), _TOY, 5, directory=tmp_path, stop=stop,
                              progress=False)
    assert r.outputs["mean"].shape == (2,) and checkpoint.Checkpoints(tmp_path).steps() == [1, 2]
    again = loop.run_chunks(_toy_state(), _TOY, 5, directory=tmp_path, stop=stop,
                                  progress=False)
    assert again.chunk_seconds == [] and again.outputs["mean"].shape == (2,)


# ----------------------------------------------------------------------------------------------
# train.sweep with checkpoints


def _data(n=96, d=5, m=3):
    k1, k2 = jax.random.split(jax.random.key(11))
    return jax.random.normal(k1, (n, d)), jax.random.randint(k2, (n,), 0, m)


SWEEP = dict(init=partial(sin_mlp.init, d=5, d_h=8, m=3), loss=sin_mlp.loss,
             optimizer=optim.get("adam"), steps=60, batch_size=16, evaluate=sin_mlp.metrics,
             eval_every=10, seeds=2)
LRS = np.array([1e-3, 1e-2, 1e38], np.float32)  # the last diverges


def _sweep(directory=None, **kw):
    data = _data()
    return train.sweep(kw.pop("lrs", LRS), data, {"train": data}, checkpoint_dir=directory,
                       **{**SWEEP, **kw})


def _results(r):
    return r.params, r.train_loss, r.eval_metrics, r.diverged_at


def test_checkpointed_sweep_equals_the_plain_one_and_resumes_bit_identical(tmp_path):
    plain = _sweep()
    full = _sweep(tmp_path / "a", keep=10)
    diverged = np.asarray(full.diverged_at)
    assert (diverged[:2] == -1).all() and (diverged[2] >= 0).all()
    for a, b in zip(jax.tree.leaves(_results(full)), jax.tree.leaves(_results(plain)),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert checkpoint.Checkpoints(tmp_path / "a").steps() == list(range(10, 61, 10))
    # as if killed after step 20: only the first two checkpoints exist
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for step in (30, 40, 50, 60):
        (tmp_path / "b" / f"step-{step:09d}.ckpt").unlink()
    resumed = _sweep(tmp_path / "b", keep=10)
    assert resumed.checkpoint.resumed_from == 2
    _assert_bits_equal(_results(resumed), _results(full))
    # blocks of one member resume too (state cut into blocks and put back together)
    small = _sweep(tmp_path / "c", members_per_block=1, keep=10)
    assert small.blocks == 6
    (tmp_path / "c" / "step-000000060.ckpt").unlink()
    _assert_bits_equal(_results(_sweep(tmp_path / "c", members_per_block=1)), _results(small))


@pytest.mark.parametrize("change, needle", [
    (dict(lrs=LRS[:2]), "grid.learning_rate"),
    (dict(seeds=3), "grid.seed"),
    (dict(init=partial(sin_mlp.init, d=5, d_h=16, m=3)), "init: 'jaxnets.models.sin_mlp.init("),
    (dict(optimizer=optim.get("sgd")), "optimizer:"),
    (dict(batch_size=8), "batch_size: 16 in the run, 8 now"),
])
def test_a_sweep_checkpoint_of_another_sweep_is_refused(tmp_path, change, needle):
    _sweep(tmp_path, steps=20)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="the run was started with other settings") as e:
        _sweep(tmp_path, steps=20, **change)
    assert needle in str(e.value)
    assert _snapshot(tmp_path) == before


def test_extracted_member_is_the_members_own_run(tmp_path):
    """Member (lr 1e-2, seed 1) at step 30, cut out of the sweep checkpoint, equals train.fit of
    that member for 30 steps; the file loads into a single run's template."""
    _sweep(tmp_path, keep=10)
    dest = train.extract_member(tmp_path / "step-000000030.ckpt", (1, 1), tmp_path / "m.ckpt",
                                {"who": "member"})
    data = _data()
    kw = {k: v for k, v in SWEEP.items() if k != "seeds"} | {"steps": 30}
    alone = train.fit(jax.random.key(1), jnp.float32(1e-2), data, {"train": data}, **kw)
    state0 = train.init_state(jax.random.key(1), init=SWEEP["init"], optimizer=SWEEP["optimizer"])
    template = {"state": state0, "outputs": (jax.ShapeDtypeStruct((3, 10), jnp.float32), {
        k: jax.ShapeDtypeStruct((3,), jnp.float32) for k in ("train/accuracy", "train/loss")})}
    tree, meta = checkpoint.load(dest, template)
    # the sweep's spec travels with the member, so fit with the same settings resumes it
    spec = checkpoint.read_meta(tmp_path / "step-000000030.ckpt")["spec"]
    assert meta == {"chunks": 3, "who": "member", "spec": spec}
    member = tree["state"]
    assert int(member.step) == 30 and int(member.diverged_at) == -1
    _assert_bits_equal(member.key, state0.key)
    for a, b in zip(jax.tree.leaves(member.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    losses, metrics = tree["outputs"]
    np.testing.assert_allclose(losses.reshape(-1), alone.train_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["train/loss"], alone.eval_metrics["train/loss"], rtol=1e-5)
    with pytest.raises(IndexError, match=r"not in the grid \{'learning_rate': 3, 'seed': 2\}"):
        train.extract_member(tmp_path / "step-000000030.ckpt", (3, 0), tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="not a sweep checkpoint"):
        train.extract_member(dest, (0, 0), tmp_path / "x.ckpt")


def test_extract_member_follows_the_grid_axes_in_order(tmp_path):
    """With an hparam axis between learning rate and seed (names not in alphabetical order),
    member (lr 1, beta 0, seed 1) is the run alone with that lr, beta and seed."""
    lrs, betas = np.array([1e-3, 1e-2, 3e-2], np.float32), [0.5, 0.9]
    kw = {k: v for k, v in SWEEP.items() if k != "seeds"} | {"optimizer": optim.get("momentum"),
                                                             "steps": 20}
    data = _data()
    train.sweep(lrs, data, {"train": data}, seeds=2, hparams={"beta": betas},
                checkpoint_dir=tmp_path, **kw)
    dest = train.extract_member(tmp_path / "step-000000020.ckpt", (1, 0, 1), tmp_path / "m.ckpt")
    alone = train.fit(jax.random.key(1), lrs[1], data, {"train": data},
                      hparams={"beta": betas[0]}, **kw)
    arrays, _ = checkpoint.read_arrays(dest)
    np.testing.assert_allclose(arrays["['state'].params['W1']"], alone.params["W1"], rtol=1e-5)
    np.testing.assert_allclose(arrays["['outputs'][0]"].reshape(-1), alone.train_loss,
                               rtol=1e-5)
    with pytest.raises(IndexError, match=r"\{'learning_rate': 3, 'beta': 2, 'seed': 2\}"):
        train.extract_member(tmp_path / "step-000000020.ckpt", (0, 2, 0), tmp_path / "x.ckpt")
