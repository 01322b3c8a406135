"""A learning-rate sweep as one ``train.sweep`` against a Python loop of jitted ``train.fit``.

    python -m experiments.benchmark_sweep [--ks 16 64] [--json PATH]

Two cases, K learning rates each, ``--steps`` steps of ``--optimizer``:
- compute-bound: the sin-MLP 784-256-10 at batch 256 on the MNIST t10k split (8,000 training
  images) from ``--data-dir``; without the files, random inputs of the same shape (said in the
  output);
- small: the sin-MLP 64-256-10 at batch 64 on scikit-learn's digits (1,437 training images).
(a) loop: ``fit(key, lr)`` for each lr, one executable compiled once, arguments checked once;
(b) sweep: ``sweep(lrs, seeds=[0])``, one executable, arguments checked once (before timing,
as for the loop). Both use the same model code. The script
asserts that they produce the same losses and params, then times them alternately (ABBA) for
``--repeats`` rounds after one warm-up round; reported are medians, compile time apart (the
seconds JAX reports tracing, lowering and compiling during the first call), the ratio
loop / sweep, and achieved GFLOP/s (the matmul FLOPs of the
model, 2B(2 d d_h + 3 d_h m) per step: forward, weight gradients, hidden-input gradient) against
this machine's float32 matmul GFLOP/s measured here (the best of square matmuls 1024 and 2048,
on accelerators also 4096 and 8192, and of the model's own first-layer product). It also
times the sin activation: jnp.sin against ``functional.sin`` (the float32 polynomial) per
element.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from tqdm import tqdm

from experiments import common
from jaxnets import data, optim, runs, train
from jaxnets import functional as F
from jaxnets.models import sin_mlp

CASES = {"mnist": (784, 256, 10, 256), "digits": (64, 256, 10, 64)}  # d, d_h, m, batch


@dataclasses.dataclass(frozen=True)
class Config:
    """Benchmark train.sweep against a loop of jitted train.fit."""

    cases: tuple[Literal["mnist", "digits"], ...] = ("mnist", "digits")
    """Which cases to run."""
    ks: tuple[int, ...] = (16, 64)
    """Numbers of learning rates K."""
    steps: int = 200
    """Training steps per run."""
    optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "adam"] = "sgd"
    """Optimizer of every run."""
    lr_min: float = 1e-3
    """Smallest learning rate (log grid)."""
    lr_max: float = 1e-1
    """Largest learning rate."""
    repeats: int = 3
    """Timed rounds (each runs the loop and the sweep twice, ABBA)."""
    data_dir: Path = Path("../shared/data/mnist")
    """MNIST IDX files for the compute-bound case."""
    json: Path | None = None
    """Also write the figures to this JSON file."""


def _time(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _median_time(fn, repeats: int = 20) -> float:
    fn()
    return float(np.median([_time(fn) for _ in range(repeats)]))


def matmul_gflops(model_shape: tuple[int, int, int]) -> dict[str, float]:
    """float32 GFLOP/s of jitted a @ b for square 1024, 2048 (on accelerators also 4096 and
    8192: on an H200 a 2048^3 product, 0.3-0.8 ms, read 22-35 TFLOP/s, below what the MNIST
    sweep itself reached) and the model's [B, d] @ [d, K d_h]."""
    sides = (1024, 2048) + ((4096, 8192) if jax.default_backend() != "cpu" else ())
    shapes = {f"{s}^3": (s, s, s) for s in sides} | {"model": model_shape}
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
        f = jax.jit(jnp.matmul)
        out[name] = 2 * m * k * n / _median_time(lambda f=f, a=a, b=b: f(a, b)) / 1e9
    return out


def sin_ns_per_element(n: int = 1 << 20) -> dict[str, float]:
    """ns per float32 element of jnp.sin and of functional.sin, and the latter's max abs error."""
    x = jax.random.uniform(jax.random.key(0), (n,), jnp.float32, -20.0, 20.0)
    fns = {"jnp.sin": jax.jit(jnp.sin), "functional.sin": jax.jit(F.sin)}
    out = {name: _median_time(lambda f=f: f(x)) / n * 1e9 for name, f in fns.items()}
    err = np.abs(np.asarray(F.sin(x), np.float64) - np.sin(np.asarray(x, np.float64))).max()
    return out | {"functional.sin max abs err on [-20, 20]": float(err)}


def load_case(case: str, data_dir: Path) -> tuple[tuple, str]:
    """(x [n, d] float32, y [n] int32) training data and a line saying where it came from."""
    if case == "digits":
        split = data.digits()
        return (jnp.asarray(split.x_train), jnp.asarray(split.y_train)), "digits"
    try:
        split = data.mnist(data_dir)
        return (jnp.asarray(split.x_train), jnp.asarray(split.y_train)), f"MNIST from {data_dir}"
    except data.DataError as e:
        k_x, k_y = jax.random.split(jax.random.key(0))
        x = jax.random.uniform(k_x, (8000, 28, 28))
        y = jax.random.randint(k_y, (8000,), 0, 10)
        return (x, y), f"RANDOM inputs of MNIST's shape (no MNIST files: {e})"


def bench_case(case: str, k: int, config: Config, train_data, bar) -> dict:
    d, d_h, m, batch = CASES[case]
    x = train_data[0].reshape(len(train_data[0]), -1)
    train_data = (x, train_data[1])
    kw = dict(init=partial(sin_mlp.init, d=d, d_h=d_h, m=m), loss=sin_mlp.loss,
              optimizer=optim.get(config.optimizer), steps=config.steps, batch_size=batch)
    lrs = np.geomspace(config.lr_min, config.lr_max, k).astype(np.float32)
    key = jax.random.key(0)
    train.validate_run(key, train_data, {}, init=kw["init"], loss=sin_mlp.loss,
                       evaluate=train._LossMetric(sin_mlp.loss), steps=config.steps,
                       batch_size=batch, eval_every=config.steps)

    def loop():
        return [train.fit(key, float(lr), train_data, validate=False, **kw) for lr in lrs]

    def one_sweep():
        return train.sweep(lrs, train_data, seeds=[0], validate=False, **kw)

    fns = {"loop": loop, "sweep": one_sweep}
    compile_s = {name: common.compile_seconds(fn) for name, fn in fns.items()}
    runs_loop, swept = loop(), one_sweep()
    loss_loop = np.stack([np.asarray(r.train_loss) for r in runs_loop])
    loss_sweep = np.asarray(swept.train_loss[:, 0])
    np.testing.assert_allclose(loss_sweep, loss_loop, rtol=2e-4, atol=2e-5)
    for i, r in enumerate(runs_loop):
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(
            np.asarray(b)[i, 0], a, rtol=2e-3, atol=2e-4), r.params, swept.params)
    times = {name: [] for name in fns}
    order = list(fns)
    for _ in range(config.repeats):
        for _ in range(2):
            order.reverse()  # ABBA
            for name in order:
                times[name].append(_time(fns[name]))
                bar.update()
    median = {name: float(np.median(t)) for name, t in times.items()}
    flops = 2 * batch * (2 * d * d_h + 3 * d_h * m) * config.steps * k
    return {
        "case": case, "K": k, "model": f"{d}-{d_h}-{m}", "batch": batch,
        "median_s": median,
        "compile_s": compile_s,
        "ratio_loop_over_sweep": median["loop"] / median["sweep"],
        "gflops": {name: flops / t / 1e9 for name, t in median.items()},
        "max_abs_loss_diff": float(np.nanmax(np.abs(loss_sweep - loss_loop))),
        "diverged": int(np.sum(np.asarray(swept.diverged_at) >= 0)),
    }


def run(config: Config) -> dict:
    """Every (case, K) measurement, the machine's matmul and sin figures."""
    datasets = {case: load_case(case, config.data_dir) for case in config.cases}
    d, d_h, _, batch = CASES[config.cases[0]]
    peak = matmul_gflops((batch, d, max(config.ks) * d_h))
    results = []
    total = len(config.cases) * len(config.ks) * config.repeats * 4
    with tqdm(total=total, desc="benchmark_sweep", unit="run", delay=3) as bar:
        for case in config.cases:
            for k in config.ks:
                results.append(bench_case(case, k, config, datasets[case][0], bar))
    return {
        "config": dataclasses.asdict(config) | {"json": None, "data_dir": str(config.data_dir)},
        "machine": f"{platform.node()} {platform.machine()} {jax.devices()[0].device_kind}, "
                   f"{len(jax.devices())} device(s)",
        "jax": jax.__version__,
        "data": {case: src for case, (_, src) in datasets.items()},
        "matmul_gflops": peak,
        "sin_ns_per_element": sin_ns_per_element(),
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    res = run(config)
    peak = max(res["matmul_gflops"].values())
    print(f"{res['machine']}, jax {res['jax']}, {config.steps} steps of {config.optimizer}")
    for case, src in res["data"].items():
        print(f"  {case}: {src}")
    print("float32 matmul GFLOP/s: " + ", ".join(
        f"{k} {v:.0f}" for k, v in res["matmul_gflops"].items()) + f" (peak {peak:.0f})")
    print("sin: " + ", ".join(f"{k} {v:.3g}" for k, v in res["sin_ns_per_element"].items())
          + " (ns per element; error absolute)")
    print(f"{'case':7s} {'K':>3s} {'loop s':>8s} {'sweep s':>8s} {'loop/sweep':>10s} "
          f"{'compile loop/sweep s':>21s} {'GFLOP/s loop':>12s} {'sweep':>6s} "
          f"{'% peak loop':>11s} {'sweep':>6s}")
    for r in res["results"]:
        t, c, g = r["median_s"], r["compile_s"], r["gflops"]
        print(f"{r['case']:7s} {r['K']:3d} {t['loop']:8.3f} {t['sweep']:8.3f} "
              f"{r['ratio_loop_over_sweep']:10.2f} {c['loop']:10.2f}/{c['sweep']:<10.2f} "
              f"{g['loop']:12.0f} {g['sweep']:6.0f} {100 * g['loop'] / peak:10.0f}% "
              f"{100 * g['sweep'] / peak:5.0f}%")
    if config.json:
        runs.write_json(config.json, res)


if __name__ == "__main__":
    main()
