"""The training engine before and after a change, side by side in one process: speed, compile
time and agreement.

    git worktree add --detach /tmp/old <commit>      # the older engine (jaxnets/train.py)
    python -m experiments.benchmark_engine --old /tmp/old [--json OUT] [--rounds N] [--cases ...]

The old jaxnets is loaded from ``--old`` under another package name: ``<old>/jaxnets`` (and
``<old>/experiments``, for the old GAN experiment's setup) are copied into a temporary folder as
``jaxnets_old`` (``experiments_old``), their absolute imports rewritten (``from jaxnets`` /
``import jaxnets`` / ``jaxnets.`` -> ``jaxnets_old``), and imported beside this checkout's
``jaxnets``. Each case runs the old and the new code on identical inputs (the same data arrays,
keys and settings):

- ``fit``: one ``train.fit`` call (validate=False in both), the sin-MLP 64-256-10 on
  scikit-learn's digits, sgd at ``--fit-learning-rate``, batch 64, ``--steps`` steps;
- ``sweep``: benchmark_sweep's cases, one ``train.sweep`` of K learning rates (``--ks``;
  geometric from 1e-3 to 1e-1, seeds [0], validate=False, sgd, ``--steps`` steps): digits
  (sin-MLP 64-256-10, batch 64) and MNIST (784-256-10, batch 256, the t10k split's 8,000
  training images from ``--data-dir``; skipped with a note when the files are missing);
- ``lenet``: ``train.train_step`` on ``jaxnets.models.lenet`` (its defaults: relu, max pool,
  hand-derived gradients) with Adam 1e-3, batch 128, random 32x32x1 images: ``lenet/step`` an
  epoch of ``--lenet-steps`` calls of the jitted step (carry donated, minibatches sliced
  beforehand, as benchmark_lenet's ``step`` variant), ``lenet/scan`` the epoch in one
  ``lax.scan`` (benchmark_lenet's ``scan``). LeNet's layers are not part of the engine: both
  sides use this checkout's model (``--lenet-model own``: each side its own), so the case
  compares only the step and scan machinery;
- ``gan``: the ring GAN of experiments/gan.py at its defaults but ``--gan-seeds`` seeds,
  ``--gan-steps`` steps, variant ``--gan-variant``: old = the old experiment's path
  (``experiments_old.gan.ring_setup``, params and states initialised vmapped, one jitted
  ``vmap(gan.train_chunk)`` of all steps through ``common.run_loop`` without checkpoints:
  ``train_seeds`` with its jit built once instead of per call), new =
  ``train.sweep([lr], None, step=experiments.gan.ring_step(config, variant), steps=...,
  seeds=..., eval_every=steps)``; the same seeds.

Before timing, the script checks that old and new give the same numbers (final params and
every per-step loss): ``agreement`` is the max absolute difference and whether they are bit
for bit equal; a difference above ``--tolerance`` (relative to the largest magnitude) stops
the run with an error. The GAN is checked on its first ``--gan-check-steps`` steps' losses
only: its old and new programs round differently in the last bit after a few steps, and the
game amplifies that over the run (the whole run's difference is reported).

Compile time is measured apart: the seconds of JAX's compile events (trace, lower, compile)
during a first call made after clearing every cache (JAX's and the ``lru_cache`` s of both
packages), ``--compile-rounds`` times per side, alternating which side goes first; the median
is reported. Then one warm-up round, and ``--rounds`` timed rounds, paired and interleaved (old
first in even rounds, new first in odd ones); a timing is the mean of ``number`` calls, chosen
at warm-up so one timing lasts at least ``--min-time`` seconds. Reported per case: median
seconds per call of each side, new/old (the median of the rounds' paired ratios; the ratio of
the medians is in the JSON), each side's median compile seconds and their ratio. Goals: new/old
<= 1.03, compile new/old <= 1.10. The header records the date, the machine (CPU model and
vector units from /proc/cpuinfo), JAX/jaxlib versions and the load average at start and end
(other work on the machine slows both sides, not always equally).
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import math
import os
import re
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from jax import lax

import jaxnets
from experiments import benchmark_sweep, common
from experiments import gan as gan_experiment
from jaxnets import data, optim, runs, train
from jaxnets.models import lenet, sin_mlp

CaseName = Literal["fit", "sweep", "lenet", "gan"]
GOAL_RATIO, GOAL_COMPILE = 1.03, 1.10
LENET_BATCH = 128


@dataclasses.dataclass(frozen=True)
class Config:
    """Time the old engine (a checkout given by --old) against this checkout's, side by side."""

    old: Path
    """Checkout of the older commit (its jaxnets/ is loaded as jaxnets_old), e.g. made with
    `git worktree add --detach /tmp/old <commit>`."""
    cases: tuple[CaseName, ...] = ("fit", "sweep", "lenet", "gan")
    """Cases to run: fit, sweep (each of --sweep-data x --ks), lenet (step and scan), gan."""
    rounds: int = 9
    """Timed rounds after the warm-up round (each times old and new once, the order alternating);
    medians are reported."""
    compile_rounds: int = 3
    """First calls per side for the compile time (all caches cleared before each; median). 0:
    one first call per side without clearing caches (the side second may reuse JAX's caches
    of helpers the first traced; cheaper, for tests)."""
    min_time: float = 0.2
    """Seconds one timing lasts at least: a short case's timing averages several calls."""
    steps: int = 200
    """Training steps of the fit and sweep cases (benchmark_sweep's default)."""
    fit_learning_rate: float = 0.03
    """Learning rate of the fit case."""
    ks: tuple[int, ...] = (16, 64)
    """Numbers of learning rates K of the sweep cases."""
    sweep_data: tuple[Literal["digits", "mnist"], ...] = ("digits", "mnist")
    """Data sets of the sweep cases (benchmark_sweep's cases)."""
    data_dir: Path = Path("../shared/data/mnist")
    """MNIST IDX files for the sweep's MNIST case (skipped with a note when missing)."""
    lenet_steps: int = 62
    """Minibatches per LeNet epoch (62 x 128: the 8,000-image MNIST split)."""
    lenet_model: Literal["shared", "own"] = "shared"
    """LeNet model code: shared = this checkout's for both sides (only the engine differs);
    own = each side its own jaxnets.models.lenet."""
    gan_seeds: int = 8
    """Seeds of the GAN ring case."""
    gan_steps: int = 500
    """Generator steps of the GAN ring case."""
    gan_variant: Literal["minimax", "nonsaturating", "wgan-gp"] = "nonsaturating"
    """Loss variant of the GAN ring case."""
    gan_check_steps: int = 10
    """The GAN's old and new runs must agree in the losses of this many first steps (the two
    programs round differently in the last bit from step 3-7 on, which the GAN's dynamics
    amplify: on an AMD EPYC (AVX2) about 1e-7 relative up to step 50 and 1e-2 by step 200; on
    an Intel Xeon (AVX-512) 7e-8 at step 10 but 9e-5 by step 50); the whole run's difference is
    reported."""
    tolerance: float = 1e-5
    """Largest old/new difference accepted, relative to the largest magnitude of each compared
    array (0 demands bit-identical numbers)."""
    json: Path | None = None
    """Also write the figures to this JSON file (atomically)."""


# ----------------------------------------------------------------------------------------------
# The old code, imported under other package names.

def _rewrite(text: str, names: tuple[str, ...]) -> str:
    """Absolute imports and dotted references of each package name -> <name>_old."""
    for name in names:
        text = re.sub(rf"\b(from|import)(\s+){name}\b", rf"\1\2{name}_old", text)
        text = re.sub(rf"(?<![\w.]){name}\.", f"{name}_old.", text)
    return text


def load_old(path: Path, packages: tuple[str, ...] = ("jaxnets", "experiments")
             ) -> dict[str, types.ModuleType]:
    """``<path>/<package>`` copied into a temporary folder (removed at exit) as
    ``<package>_old`` with rewritten imports, and imported: {package: module}."""
    path = Path(path).expanduser().resolve()
    if not (path / "jaxnets" / "__init__.py").is_file():
        raise ValueError(f"--old {path}: no jaxnets/ package there (give a checkout of an older "
                         "commit, e.g. made with `git worktree add --detach /tmp/old <commit>`)")
    if not (path / "jaxnets" / "train.py").is_file():
        raise ValueError(f"--old {path}: jaxnets/train.py (the engine before jaxnets/train/ "
                         "became a package) is missing; this benchmark calls that API")
    tmp = Path(tempfile.mkdtemp(prefix="benchmark_engine-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    for package in packages:
        dst = tmp / f"{package}_old"
        shutil.copytree(path / package, dst, ignore=shutil.ignore_patterns("__pycache__"))
        for f in dst.rglob("*.py"):
            f.write_text(_rewrite(f.read_text(), packages))
    for name in [m for m in sys.modules if m.split(".")[0] in {f"{p}_old" for p in packages}]:
        del sys.modules[name]  # an earlier load (of maybe another checkout) in this process
    sys.path.insert(0, str(tmp))
    importlib.invalidate_caches()
    mods = {p: importlib.import_module(f"{p}_old") for p in packages}
    assert Path(mods["jaxnets"].__file__).is_relative_to(tmp), mods["jaxnets"].__file__
    return mods


def clear_caches() -> None:
    """JAX's caches, and every ``functools.lru_cache`` at module level in both packages (e.g.
    the sweep's compiled blocks): the next call of anything compiles as the first did."""
    jax.clear_caches()
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] not in ("jaxnets", "jaxnets_old", "experiments", "experiments_old"):
            continue
        for value in list(vars(mod).values()):
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


# ----------------------------------------------------------------------------------------------
# Cases: (old, new) functions of no arguments returning {"params": ..., "loss": ...}, waited for.

Fn = Callable[[], dict]


def _done(out: dict) -> dict:
    return jax.block_until_ready(out)


def _old_module(old: dict, name: str) -> types.ModuleType:
    """``jaxnets_old.<name>`` (``load_old`` has put it on the path)."""
    return importlib.import_module(f"{old['jaxnets'].__name__}.{name}")


def fit_case(config: Config, old: dict) -> tuple[Fn, Fn, dict]:
    train_data = _flat(data.digits())
    d, d_h, m, batch = benchmark_sweep.CASES["digits"]
    key, lr = jax.random.key(0), jnp.float32(config.fit_learning_rate)

    def make(train_mod, optim_mod, model):
        kw = dict(init=partial(model.init, d=d, d_h=d_h, m=m), loss=model.loss,
                  optimizer=optim_mod.get("sgd"), steps=config.steps, batch_size=batch)
        return lambda: _done(_fit_out(train_mod.fit(key, lr, train_data, validate=False, **kw)))

    return (make(_old_module(old, "train"), _old_module(old, "optim"),
                 _old_module(old, "models.sin_mlp")),
            make(train, optim, sin_mlp),
            {"model": f"{d}-{d_h}-{m}", "batch": batch, "steps": config.steps, "data": "digits"})


def _flat(split: data.Split) -> tuple[jax.Array, jax.Array]:
    """(x [n, d] float32, y [n]): the training split, images flattened (as benchmark_sweep)."""
    x = jnp.asarray(split.x_train)
    return x.reshape(len(x), -1), jnp.asarray(split.y_train)


def _fit_out(r) -> dict:
    return {"params": r.params, "loss": r.train_loss}


def sweep_case(config: Config, old: dict, case: str, k: int, train_data) -> tuple[Fn, Fn, dict]:
    d, d_h, m, batch = benchmark_sweep.CASES[case]
    bs = benchmark_sweep.Config()
    lrs = np.geomspace(bs.lr_min, bs.lr_max, k).astype(np.float32)

    def make(train_mod, optim_mod, model):
        kw = dict(init=partial(model.init, d=d, d_h=d_h, m=m), loss=model.loss,
                  optimizer=optim_mod.get("sgd"), steps=config.steps, batch_size=batch)
        return lambda: _done(_fit_out(train_mod.sweep(lrs, train_data, seeds=[0],
                                                      validate=False, **kw)))

    return (make(_old_module(old, "train"), _old_module(old, "optim"),
                 _old_module(old, "models.sin_mlp")),
            make(train, optim, sin_mlp),
            {"model": f"{d}-{d_h}-{m}", "batch": batch, "steps": config.steps, "K": k,
             "learning_rates": f"{bs.lr_min:g} .. {bs.lr_max:g} (geometric)", "data": case})


def lenet_cases(config: Config, old: dict) -> dict[str, tuple[Fn, Fn, dict]]:
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.random((config.lenet_steps, LENET_BATCH, 32, 32, 1), dtype=np.float32))
    Y = jnp.asarray(rng.integers(0, 10, (config.lenet_steps, LENET_BATCH)), jnp.int32)
    batches = [(X[i], Y[i]) for i in range(config.lenet_steps)]  # as a data loader yields them
    hp = {"learning_rate": jnp.float32(1e-3)}
    key = jax.random.key(0)
    old_lenet = _old_module(old, "models.lenet") if config.lenet_model == "own" else lenet

    def make(train_mod, optim_mod, model):
        kw = dict(loss=model.loss, optimizer=optim_mod.get("adam"))
        state0 = train_mod.init_state(key, init=model.init, optimizer=kw["optimizer"])
        step = jax.jit(partial(train_mod.train_step, **kw), donate_argnums=0)

        def per_step():
            s, losses = jax.tree.map(jnp.copy, state0), []  # each step donates its carry
            for b in batches:
                s, loss = step(s, hp, b)
                losses.append(loss)
            return _done({"params": s.params, "loss": losses})

        scan = jax.jit(lambda s, hp, X, Y: lax.scan(
            lambda s, b: train_mod.train_step(s, hp, b, **kw), s, (X, Y)))

        def scanned():
            s, losses = scan(state0, hp, X, Y)
            return _done({"params": s.params, "loss": losses})
        return per_step, scanned

    old_step, old_scan = make(_old_module(old, "train"), _old_module(old, "optim"), old_lenet)
    new_step, new_scan = make(train, optim, lenet)
    info = {"model": f"LeNet ({config.lenet_model} model code)", "batch": LENET_BATCH,
            "steps": config.lenet_steps, "optimizer": "adam 1e-3", "data": "random 32x32x1"}
    return {"lenet/step": (old_step, new_step, info | {"mode": "jitted step per minibatch"}),
            "lenet/scan": (old_scan, new_scan, info | {"mode": "lax.scan of the epoch"})}


def gan_case(config: Config, old: dict) -> tuple[Fn, Fn, dict]:
    eg_old = importlib.import_module("experiments_old.gan")
    common_old = importlib.import_module("experiments_old.common")
    gan_old = _old_module(old, "models.gan")
    settings = dict(seeds=config.gan_seeds, steps=config.gan_steps, chunk=config.gan_steps,
                    variants=(config.gan_variant,), images=False)
    old_cfg = eg_old.Config(**settings)
    new_cfg = gan_experiment.Config(**settings)
    assert (old_cfg.learning_rate,) == new_cfg.learning_rates, "the defaults differ"
    steps, variant = config.gan_steps, config.gan_variant

    setup = eg_old.ring_setup(old_cfg, variant)
    keys = jax.vmap(jax.random.key)(jnp.arange(config.gan_seeds))
    h = old_cfg.hidden
    init_params = jax.jit(jax.vmap(lambda k: gan_old.init(k, old_cfg.latent, 2,
                                                          g_hidden=(h,) * 2, d_hidden=(h,) * 2)))
    init_states = jax.jit(jax.vmap(partial(gan_old.init_state, setup=setup)))
    run_chunk = jax.jit(jax.vmap(partial(gan_old.train_chunk, setup=setup, num_steps=steps),
                                 in_axes=(0, None)))

    def old_fn():  # experiments_old.gan.train_seeds, its jit built once
        params = init_params(keys)
        gan_old.validate(jax.tree.map(lambda a: a[0], params), None, setup)
        c = common_old.run_loop(init_states(keys, params), lambda s: run_chunk(s, None), 1,
                                steps, "gan", False, None)
        d_loss, g_loss = (np.moveaxis(v, 0, 1).reshape(len(keys), -1) for v in c.outputs)
        return _done({"params": c.state.params, "loss": (d_loss, g_loss)})

    step = gan_experiment.ring_step(new_cfg, variant)

    def new_fn():
        r = train.sweep(list(new_cfg.learning_rates), None, step=step, steps=steps,
                        seeds=config.gan_seeds, eval_every=steps)
        return _done({"params": jax.tree.map(lambda a: a[0], r.params),
                      "loss": tuple(v[0] for v in r.train_loss)})

    n = min(steps, config.gan_check_steps)
    return old_fn, new_fn, {"model": f"ring GAN, G and D 2x{h} hidden", "variant": variant,
                            "seeds": config.gan_seeds, "steps": steps,
                            "batch": old_cfg.batch_size,
                            "check": (lambda out: [v[:, :n] for v in out["loss"]],
                                      f"the losses of the first {n} steps")}


# ----------------------------------------------------------------------------------------------
# Measurement.

def _diff(old_out, new_out) -> dict:
    """Max |old - new|, max of that relative to each array's largest magnitude, bit equality.
    AssertionError where the structures, shapes or NaN positions differ."""
    if jax.tree.structure(old_out) != jax.tree.structure(new_out):
        raise AssertionError(f"old and new outputs differ in structure: "
                             f"{jax.tree.structure(old_out)} != {jax.tree.structure(new_out)}")
    diff, rel, identical = 0.0, 0.0, True
    for u, v in zip(jax.tree.leaves(old_out), jax.tree.leaves(new_out), strict=True):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        if u.shape != v.shape or not np.array_equal(np.isnan(u), np.isnan(v)):
            raise AssertionError(f"old and new outputs differ in shape or NaN positions: "
                                 f"{u.shape} vs {v.shape}")
        identical &= bool(np.array_equal(u, v, equal_nan=True))
        d = float(np.nanmax(np.abs(u - v), initial=0.0))
        diff = max(diff, d)
        rel = max(rel, d / max(float(np.nanmax(np.abs(v), initial=0.0)), 1e-30))
    return {"max_abs_diff": diff, "max_rel_diff": rel, "identical": identical}


def agreement(old_out: dict, new_out: dict, tolerance: float,
              checked: Callable[[dict], Any] | None = None, what: str = "everything") -> dict:
    """How far the old outputs are from the new (``_diff`` of all of them: ``max_abs_diff``,
    ``max_rel_diff``, ``identical``), and the part ``checked(out)`` (default: all) that must
    agree: AssertionError when its relative difference exceeds ``tolerance``."""
    full = _diff(old_out, new_out)
    part = full if checked is None else _diff(checked(old_out), checked(new_out))
    if part["max_rel_diff"] > tolerance:
        raise AssertionError(f"old and new differ in {what}: max abs difference "
                             f"{part['max_abs_diff']:.3g} (relative {part['max_rel_diff']:.3g} > "
                             f"tolerance {tolerance:g})")
    return full | {"checked": what, "checked_max_rel_diff": part["max_rel_diff"]}


def _timed(fn: Fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure(name: str, old_fn: Fn, new_fn: Fn, info: dict, config: Config) -> dict:
    """Compile rounds, agreement, warm-up, paired timed rounds of one case."""
    load = [round(v, 2) for v in os.getloadavg()]
    fns = {"old": old_fn, "new": new_fn}
    compile_s: dict[str, list[float]] = {"old": [], "new": []}
    outs: dict[str, dict] = {}
    for r in range(max(1, config.compile_rounds)):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for side in order:
            if config.compile_rounds:
                clear_caches()
            compile_s[side].append(common.compile_seconds(
                lambda side=side: outs.__setitem__(side, fns[side]())))
    agree = agreement(outs["old"], outs["new"], config.tolerance,
                      *info.pop("check", (None, "params and every step's loss")))
    if config.compile_rounds:
        fns[order[0]]()  # compiles again what the last clear_caches dropped
    warm = {side: _timed(fn, 1) for side, fn in fns.items()}
    number = max(1, math.ceil(config.min_time / max(min(warm.values()), 1e-9)))
    times: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(config.rounds):
        for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
            times[side].append(_timed(fns[side], number))
    med = {side: float(np.median(t)) for side, t in times.items()}
    comp = {side: float(np.median(c)) for side, c in compile_s.items()}
    paired = float(np.median(np.divide(times["new"], times["old"])))
    return {"case": name, **info, "load_avg": load, "calls_per_timing": number,
            "median_s": med, "times_s": times, "ratio": paired,
            "ratio_of_medians": med["new"] / med["old"],
            "compile_s": comp, "compile_s_rounds": compile_s,
            "compile_ratio": comp["new"] / comp["old"] if comp["old"] > 0 else None,
            "agreement": agree,
            "ratio_ok": paired <= GOAL_RATIO,
            "compile_ok": None if not comp["old"] else comp["new"] / comp["old"] <= GOAL_COMPILE}


def _positive(config: Config) -> None:
    if not (isinstance(config.compile_rounds, int) and config.compile_rounds >= 0):
        raise ValueError(f"--compile-rounds must be an integer >= 0, got {config.compile_rounds!r}")
    for name in ("rounds", "steps", "lenet_steps", "gan_seeds", "gan_steps",
                 "gan_check_steps"):
        v = getattr(config, name)
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if not config.ks or not all(isinstance(k, int) and k >= 1 for k in config.ks):
        raise ValueError(f"--ks must be positive integers, got {config.ks}")
    if not config.tolerance >= 0 or not config.min_time >= 0:
        raise ValueError("--tolerance and --min-time must be >= 0")


def machine() -> dict:
    """Date, host, CPU model and vector units, JAX versions, load average."""
    return common.environment() | benchmark_sweep.cpu_info() | {
        "load_avg": [round(v, 2) for v in os.getloadavg()]}


def run(config: Config, progress: bool = True) -> dict:
    """Every case, old against new; returns the figures."""
    _positive(config)
    env = machine()
    old = load_old(config.old)
    cases: list[tuple[str, Callable[[], tuple[Fn, Fn, dict]]]] = []
    notes = []
    if "fit" in config.cases:
        cases.append(("fit", lambda: fit_case(config, old)))
    if "sweep" in config.cases:
        for case in config.sweep_data:
            if case == "digits":
                split = data.digits()
            else:
                try:
                    split = data.mnist(config.data_dir)
                except data.DataError as e:
                    notes.append(f"sweep mnist skipped: no MNIST files ({e})")
                    continue
            train_data = _flat(split)
            for k in config.ks:
                cases.append((f"sweep/{case}/K={k}", partial(sweep_case, config, old, case, k,
                                                             train_data)))
    if "lenet" in config.cases:
        cases.append(("lenet", lambda: lenet_cases(config, old)))
    if "gan" in config.cases:
        cases.append(("gan/ring", lambda: gan_case(config, old)))
    results = []
    for name, build in cases:
        built = build()
        for sub, (old_fn, new_fn, info) in (built.items() if isinstance(built, dict)
                                            else [(name, built)]):
            if progress:
                print(f"[benchmark_engine] {sub} ...", file=sys.stderr, flush=True)
            results.append(measure(sub, old_fn, new_fn, info, config))
    return {
        "config": dataclasses.asdict(config) | {"json": None, "old": str(config.old),
                                                "data_dir": str(config.data_dir)},
        "machine": f"{env['cpu']} ({env['cpus']} CPUs, {env['vector_units']})",
        "environment": env | {"load_avg_end": [round(v, 2) for v in os.getloadavg()]},
        "old": {"path": str(Path(config.old).resolve()),
                "loaded_as": str(Path(old["jaxnets"].__file__).parent)},
        "new": str(Path(jaxnets.__file__).parent),
        "goals": {"ratio": GOAL_RATIO, "compile_ratio": GOAL_COMPILE},
        "notes": notes, "results": results,
        "all_ok": all(r["ratio_ok"] and r["compile_ok"] is not False for r in results),
    }


def table(res: dict) -> str:
    env, n = res["environment"], res["config"]["compile_rounds"]
    compiles = (f"median of {n} first calls, caches cleared" if n else
                "one first call per side, caches not cleared")
    lines = [f"{env['date']}  {env['machine']}",
             f"CPU: {res['machine']}; jax {env['jax']}, jaxlib {env['jaxlib']}; load average "
             f"{env['load_avg']} at start, {env['load_avg_end']} at end",
             f"old: {res['old']['path']}   new: {res['new']}",
             f"{res['config']['rounds']} paired rounds (median; new/old = median of the paired "
             f"ratios), compile = {compiles}; goals new/old <= {GOAL_RATIO}, compile <= "
             f"{GOAL_COMPILE}"]
    lines += [f"note: {n}" for n in res["notes"]]
    lines.append(f"{'case':18s} {'old s':>9s} {'new s':>9s} {'new/old':>8s} {'old comp s':>10s} "
                 f"{'new comp s':>10s} {'comp n/o':>8s} {'max abs diff':>12s} {'identical':>9s} "
                 f"goals")
    for r in res["results"]:
        c, t, a = r["compile_s"], r["median_s"], r["agreement"]
        cr = "-" if r["compile_ratio"] is None else f"{r['compile_ratio']:.3f}"
        ok = ("ok" if r["ratio_ok"] else "SLOWER") + "/" + (
            "ok" if r["compile_ok"] is not False else "COMPILE")
        lines.append(f"{r['case']:18s} {t['old']:9.4f} {t['new']:9.4f} {r['ratio']:8.3f} "
                     f"{c['old']:10.2f} {c['new']:10.2f} {cr:>8s} {a['max_abs_diff']:12.3g} "
                     f"{'yes' if a['identical'] else 'no':>9s} {ok}")
    lines += [f"{r['case']}: agreement checked on {r['agreement']['checked']} (relative "
              f"difference {r['agreement']['checked_max_rel_diff']:.2g}); max abs diff is the "
              "whole run's" for r in res["results"]
              if r["agreement"]["checked"] != "params and every step's loss"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(common.plain_help(Config), args=argv)
    try:
        res = run(config)
    except (ValueError, data.DataError) as e:
        sys.exit(f"error: {e}")
    print(table(res))
    if config.json:
        runs.write_json(config.json, res)
        print(f"wrote {config.json}")


if __name__ == "__main__":
    main()
