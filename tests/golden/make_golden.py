"""Golden values of the training engine, saved from the code before its redesign.

Each case trains a small model for a few steps on fixed seeds through a public entry point
(``train.fit``, ``train.sweep``, ``experiments.<name>.run``, ``experiments.extract_member.extract``)
and returns its results as flat {"name/path": array}: the metrics, the final params and the
numeric leaves of the returned results (paths, strings, timings and checkpoint bookkeeping are
left out). ``tests/test_golden.py`` runs the same cases with the current code and compares.

Write the golden files with the code under test first on the path (check that it is the one
imported; the script prints where ``jaxnets`` and ``experiments`` come from):

    cd OLD_CHECKOUT && PYTHONPATH=$PWD python /path/to/tests/golden/make_golden.py \
        --out /path/to/tests/golden

This writes <case>.npz per case (deterministic bytes: fixed zip dates, sorted keys) and
MANIFEST.json (date, CPU model, avx512f, jax/jaxlib versions, commit of the code). Compare two
outputs (reproducibility): ``make_golden.py --compare DIR_A DIR_B``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import io
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# As tests/conftest.py sets it: the generator and the test compile the same programs.
jax.config.update("jax_default_matmul_precision", "highest")

Arrays = dict[str, np.ndarray]

# Result keys that are paths, wall-clock timings or checkpoint bookkeeping, not results.
SKIP_KEYS = {"run_dir", "checkpoint", "source", "blocks", "bytes_per_device"}
SKIP_PARTS = ("seconds", "time", "date", "bytes")


# ---------------------------------------------------------------------------------------------
# Flattening results into {"a/b/c": array}


def _skip(key: str) -> bool:
    return key in SKIP_KEYS or any(p in key.lower() for p in SKIP_PARTS)


def _is_number(v) -> bool:
    return isinstance(v, bool | int | float | np.bool_ | np.number)


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def flatten(obj, prefix: str, out: Arrays | None = None) -> Arrays:
    """The numeric leaves of nested dicts, lists, tuples and NamedTuples as {"prefix/k/0": array}.

    Strings, paths and None are left out, and so are keys named in SKIP_KEYS or holding one of
    SKIP_PARTS. Lists of numbers (nested, rectangular) become one array.
    """
    out = {} if out is None else out
    if obj is None or isinstance(obj, str | bytes | Path):
        return out
    if _is_number(obj):
        out[prefix] = np.asarray(obj)
        return out
    if isinstance(obj, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        a = np.asarray(obj)
        if _numeric(a):
            out[prefix] = a
        return out
    if hasattr(obj, "_asdict"):  # NamedTuple
        obj = obj._asdict()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not _skip(str(k)):
                flatten(v, f"{prefix}/{k}", out)
        return out
    if isinstance(obj, list | tuple):
        try:
            a = np.asarray(obj)
        except ValueError:  # ragged
            a = None
        if a is not None and a.dtype != object and _numeric(a):
            out[prefix] = a
            return out
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}/{i}", out)
    return out


def jsonl_arrays(path: Path, prefix: str = "metrics") -> Arrays:
    """Every numeric field of a metrics.jsonl as one array over its rows (NaN where a row lacks
    a field that others have)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    out = {}
    for k in fields:
        values = [r.get(k) for r in rows]
        present = [v for v in values if v is not None]
        if not present or not all(_is_number(v) for v in present):
            continue
        if len(present) < len(values):
            values = [np.nan if v is None else v for v in values]
        out[f"{prefix}/{k}"] = np.asarray(values)
    return out


def params_arrays(path: Path, prefix: str = "params") -> Arrays:
    """A params.msgpack (flax.serialization) decoded without a template, as flat arrays."""
    from flax import serialization

    return flatten(serialization.msgpack_restore(Path(path).read_bytes()), prefix)


def run_folder_arrays(run_dir: Path, results: dict) -> Arrays:
    """What an experiment leaves: metrics.jsonl, params.msgpack (if any), returned results."""
    run_dir = Path(run_dir)
    out = jsonl_arrays(run_dir / "metrics.jsonl")
    if (run_dir / "params.msgpack").exists():
        out |= params_arrays(run_dir / "params.msgpack")
    return out | flatten(results, "results")


# ---------------------------------------------------------------------------------------------
# Cases: each (tmp: Path) -> Arrays, only public entry points


def _digits_flat(n_train: int, n_test: int):
    from jaxnets import data

    s = data.load_flat("digits")
    train = (jnp.asarray(s.x_train[:n_train]), jnp.asarray(s.y_train[:n_train]))
    test = (jnp.asarray(s.x_test[:n_test]), jnp.asarray(s.y_test[:n_test]))
    return train, test


def _fit_arrays(r) -> Arrays:
    return flatten({"params": r.params, "train_loss": r.train_loss,
                    "eval_metrics": r.eval_metrics, "diverged_at": r.diverged_at}, "fit")


def _sweep_arrays(r) -> Arrays:
    return flatten({"params": r.params, "train_loss": r.train_loss,
                    "eval_metrics": r.eval_metrics, "diverged_at": r.diverged_at,
                    "grid": r.grid}, "sweep")


def case_fit_sin_mlp_adam(tmp: Path) -> Arrays:
    """train.fit: sin-MLP on 512 digits, Adam, eval on train and test every 10 of 40 steps."""
    from jaxnets import optim, train
    from jaxnets.models import sin_mlp

    tr, te = _digits_flat(512, 128)
    r = train.fit(jax.random.key(7), 3e-3, tr, {"train": tr, "test": te},
                  init=partial(sin_mlp.init, d=64, d_h=32, m=10), loss=sin_mlp.loss,
                  optimizer=optim.get("adam"), steps=40, batch_size=32,
                  evaluate=sin_mlp.metrics, eval_every=10)
    return _fit_arrays(r)


def shift_flat_digits(key, batch):
    """``augment.random_shift`` by up to 1 pixel of flattened 8x8 digits [B, 64]."""
    from jaxnets import augment

    x, y = batch
    images, y = augment.random_shift(key, (x.reshape(-1, 8, 8, 1), y), max_shift=1)
    return images.reshape(x.shape), y


def case_fit_sin_mlp_momentum_augment(tmp: Path) -> Arrays:
    """train.fit with augment (each image shifted by up to 1 pixel) and hparams {"beta": 0.8}:
    sin-MLP on 256 digits, momentum, eval on test every 10 of 30 steps."""
    from jaxnets import optim, train
    from jaxnets.models import sin_mlp

    tr, te = _digits_flat(256, 128)
    r = train.fit(jax.random.key(3), 0.05, tr, {"test": te},
                  init=partial(sin_mlp.init, d=64, d_h=24, m=10), loss=sin_mlp.loss,
                  optimizer=optim.get("momentum"), steps=30, batch_size=32,
                  evaluate=sin_mlp.metrics, eval_every=10, hparams={"beta": 0.8},
                  augment=shift_flat_digits)
    return _fit_arrays(r)


def _sweep_model():
    """Sin-MLP (d_h 16) on 256 digits, 40 steps of 16, eval on train and test every 10."""
    from jaxnets.models import sin_mlp

    tr, te = _digits_flat(256, 64)
    kw = dict(init=partial(sin_mlp.init, d=64, d_h=16, m=10), loss=sin_mlp.loss, steps=40,
              batch_size=16, evaluate=sin_mlp.metrics, eval_every=10)
    return tr, {"train": tr, "test": te}, kw


def case_sweep_lr_seeds(tmp: Path) -> Arrays:
    """train.sweep: 3 SGD learning rates (the last absurd: it diverges) x 2 seeds."""
    from jaxnets import optim, train

    tr, ev, kw = _sweep_model()
    r = train.sweep(np.array([0.05, 0.5, 1e38], np.float32), tr, ev,
                    optimizer=optim.get("sgd"), seeds=[0, 5], **kw)
    return _sweep_arrays(r)


def case_sweep_momentum_beta(tmp: Path) -> Arrays:
    """train.sweep with hparams: 2 learning rates x momentum beta {0.5, 0.9} x 2 seeds."""
    from jaxnets import optim, train

    tr, ev, kw = _sweep_model()
    r = train.sweep(np.array([0.05, 0.2], np.float32), tr, ev, optimizer=optim.get("momentum"),
                    seeds=2, hparams={"beta": np.array([0.5, 0.9], np.float32)}, **kw)
    return _sweep_arrays(r)


def case_sweep_checkpointed(tmp: Path) -> Arrays:
    """train.sweep with checkpoint_dir: 2 Adam learning rates x 2 seeds in chunks of 10 steps
    (checkpoint.run_chunks), a save every 2nd chunk."""
    from jaxnets import optim, train

    tr, ev, kw = _sweep_model()
    r = train.sweep(np.array([1e-3, 1e-2], np.float32), tr, ev, optimizer=optim.get("adam"),
                    seeds=2, checkpoint_dir=tmp / "ckpt", checkpoint_every=2, keep=2,
                    progress=False, **kw)
    return _sweep_arrays(r)


def case_exp_sin_mlp(tmp: Path) -> Arrays:
    from experiments import sin_mlp

    r = sin_mlp.run(sin_mlp.Config(hidden=16, steps=100, eval_every=25, checkpoint_every=2,
                                   run_dir=tmp / "run"), progress=False)
    return run_folder_arrays(tmp / "run", r)


def case_exp_lenet(tmp: Path) -> Arrays:
    from experiments import lenet

    r = lenet.run(lenet.Config(steps=20, eval_every=10, batch_size=16, optimizer="momentum",
                               learning_rate=0.05, run_dir=tmp / "run"), progress=False)
    return run_folder_arrays(tmp / "run", r)


def case_exp_mixer(tmp: Path) -> Arrays:
    from experiments import mixer

    r = mixer.run(mixer.Config(steps=20, eval_every=10, batch_size=16, patch=7, hidden=8,
                               tokens_mlp_dim=8, channels_mlp_dim=16, depth=1,
                               optimizer="nesterov", learning_rate=0.05, run_dir=tmp / "run"),
                  progress=False)
    return run_folder_arrays(tmp / "run", r)


def case_exp_adding(tmp: Path) -> Arrays:
    from experiments import adding

    r = adding.run(adding.Config(T=5, cells=("lstm",), hidden=4, count=2, seeds=2, steps=40,
                                 eval_every=10, n_train=64, n_test=32, run_dir=tmp / "run"),
                   progress=False)
    return run_folder_arrays(tmp / "run", r)


def case_exp_gan(tmp: Path) -> Arrays:
    """The ring (minimax and wgan-gp, 2 seeds) and the image GAN."""
    from experiments import gan

    r = gan.run(gan.Config(seeds=2, steps=40, chunk=10, hidden=8, samples=200, batch_size=16,
                           image_steps=20, image_latent=4, image_hidden=8,
                           variants=("minimax", "wgan-gp"), run_dir=tmp / "run"),
                progress=False)
    return run_folder_arrays(tmp / "run", r)


def _drop_checkpoints_after(folder: Path, step: int) -> None:
    """Delete the checkpoint files of ``folder`` whose name holds a step number above ``step``
    (as a sweep killed then would have left it)."""
    for p in sorted(folder.iterdir()):
        numbers = [int(n) for n in re.findall(r"\d+", p.name)]
        if numbers and max(numbers) > step:
            p.unlink()


def case_exp_lr_sweep_extract_member(tmp: Path) -> Arrays:
    """lr_sweep of Adam (3 learning rates 1e-3 .. 10 x 2 seeds, 60 steps); then its checkpoints
    cut back to the checkpoint of step 20 (as if killed), member (lr 0.1, seed 1)
    extracted (extract_member) and resumed as a sin_mlp run to step 60."""
    from experiments import extract_member, lr_sweep, sin_mlp
    from jaxnets import runs

    cfg = lr_sweep.Config(optimizers=("adam",), lr_min=1e-3, lr_max=10.0, count=3,
                          seeds=2, steps=60, eval_every=20, hidden=16, keep=10,
                          run_dir=tmp / "sweep")
    r = lr_sweep.run(cfg, progress=False)
    # metrics.jsonl now holds every member's learning curve: its final rows are what it held
    rows = runs.read_jsonl(tmp / "sweep" / "metrics.jsonl")
    runs.write_jsonl(tmp / "final.jsonl", [row for row in rows if row["step"] == cfg.steps])
    out = {f"sweep/{k}": v for k, v in (jsonl_arrays(tmp / "final.jsonl")
                                        | flatten(r, "results")).items()}
    _drop_checkpoints_after(tmp / "sweep" / "checkpoints" / "adam", 20)
    e = extract_member.extract(extract_member.Config(tmp / "sweep", optimizer="adam",
                                                     lr_index=1, seed=1, run_dir=tmp / "member"))
    single = sin_mlp.Config(learning_rate=e["learning_rate"], steps=cfg.steps,
                            batch_size=cfg.batch_size, optimizer="adam", seed=1,
                            eval_every=cfg.eval_every, hidden=cfg.hidden, resume=tmp / "member")
    m = sin_mlp.run(single, progress=False)
    member = {f"member/{k}": v for k, v in run_folder_arrays(tmp / "member", m).items()}
    return out | member | flatten(e, "extract")


CASES: dict[str, Callable[[Path], Arrays]] = {
    "fit_sin_mlp_adam": case_fit_sin_mlp_adam,
    "fit_sin_mlp_momentum_augment": case_fit_sin_mlp_momentum_augment,
    "sweep_lr_seeds": case_sweep_lr_seeds,
    "sweep_momentum_beta": case_sweep_momentum_beta,
    "sweep_checkpointed": case_sweep_checkpointed,
    "exp_sin_mlp": case_exp_sin_mlp,
    "exp_lenet": case_exp_lenet,
    "exp_mixer": case_exp_mixer,
    "exp_lr_sweep_extract_member": case_exp_lr_sweep_extract_member,
    "exp_adding": case_exp_adding,
    "exp_gan": case_exp_gan,
}


# ---------------------------------------------------------------------------------------------
# Files, fingerprint, comparison


def write_npz(path: Path, arrays: Arrays) -> Path:
    """``np.savez_compressed`` with fixed zip dates and sorted keys: the same arrays give the
    same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k in sorted(arrays):
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            a = io.BytesIO()
            np.lib.format.write_array(a, np.array(arrays[k], order="C"), allow_pickle=False)
            z.writestr(info, a.getvalue())
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def read_npz(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def fingerprint() -> dict:
    """What decides whether bit-for-bit equality can be expected: CPU model, avx512f, jax and
    jaxlib versions."""
    model, avx512f = platform.processor() or platform.machine(), False
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                      if line.startswith("model name")), model)
        avx512f = any(line.startswith("flags") and "avx512f" in line.split()
                      for line in text.splitlines())
    except OSError:
        pass
    return {"cpu_model": model, "avx512f": avx512f, "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib")}


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def compare(a: Arrays, b: Arrays) -> list[str]:
    """Differences between two outputs of a case, bit for bit: [] if none."""
    problems = []
    if set(a) != set(b):
        problems.append(f"keys differ: only in first {sorted(set(a) - set(b))}, only in second "
                        f"{sorted(set(b) - set(a))}")
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            problems.append(f"{k}: differs")
    return problems


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    p.add_argument("--cases", nargs="*", choices=sorted(CASES), default=None)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"),
                   help="compare the .npz files of two outputs bit for bit, write nothing")
    args = p.parse_args(argv)
    if args.compare:
        bad = 0
        for path in sorted(args.compare[0].glob("*.npz")):
            problems = compare(read_npz(path), read_npz(args.compare[1] / path.name))
            bad += bool(problems)
            print(f"{path.stem}: {'identical' if not problems else '; '.join(problems[:5])}")
        sys.exit(1 if bad else 0)

    import experiments
    import jaxnets

    code = Path(jaxnets.__file__).resolve().parents[1]
    print(f"jaxnets from {Path(jaxnets.__file__).resolve()}")
    print(f"experiments from {Path(experiments.__file__).resolve()}")
    commit = _git(code, "rev-parse", "HEAD")
    dirty = _git(code, "status", "--porcelain", "--", "jaxnets", "experiments")
    if dirty:
        print(f"warning: {code} has uncommitted changes:\n{dirty}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = {}
    if args.cases and (args.out / "MANIFEST.json").exists():  # a subset: keep the others
        cases = json.loads((args.out / "MANIFEST.json").read_text()).get("cases", {})
    for name in args.cases or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            arrays = CASES[name](Path(tmp))
            seconds = time.perf_counter() - t0
        path = write_npz(args.out / f"{name}.npz", arrays)
        cases[name] = {"arrays": len(arrays), "npz_bytes": path.stat().st_size,
                       "seconds_to_generate": round(seconds, 2)}
        print(f"{name}: {len(arrays)} arrays, {path.stat().st_size} bytes, {seconds:.1f} s")
    manifest = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **fingerprint(), "numpy": np.__version__, "python": platform.python_version(),
        "backend": jax.default_backend(), "matmul_precision": "highest",
        "commit": commit, "uncommitted_changes": bool(dirty), "cases": cases}
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
