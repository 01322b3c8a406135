"""A learning-rate sweep as one ``train.sweep`` against a Python loop of jitted ``train.fit``.

    python -m experiments.benchmark_sweep [--ks 16 64] [--json PATH]

Two cases, K learning rates each, ``--steps`` steps of ``--optimizer``:
- compute-bound: the sin-MLP 784-256-10 at batch 256 on the MNIST t10k split (8,000 training
  images) from ``--data-dir``; without the files, random inputs of the same shape (said in the
  output);
- small: the sin-MLP 64-256-10 at batch 64 on scikit-learn's digits (1,437 training images).
(a) loop: ``fit(key, lr)`` for each lr, one executable compiled once, arguments checked once;
(b) sweep: ``sweep(lrs, seeds=[0])``, one executable, arguments checked once (before timing,
as for the loop), its members shared out over this machine's CPU split into ``--cpu-devices``
XLA devices (default one per core, ``train.cpu_devices``); with several devices, also
``sweep_1dev``, the same sweep on the first device alone. All use the same model code;
(c) with torch installed (and sgd), the ensembles a PyTorch user would write, on the same
data order, initial params and steps (``torch_variants``): ``torch_bmm``, stacked weights and
``torch.baddbmm``, one autograd backward per step; ``torch_func``, ``torch.func.vmap`` of
``torch.func.grad_and_value`` over the stacked params, a functional SGD update; torch runs
``--threads`` threads (default os.cpu_count(), as XLA:CPU).
The script asserts that the loop and the sweep produce the same losses and params, and that
each torch ensemble's per-step losses and final params agree with the sweep's members
(``agreement``: max relative L2 difference per member and leaf, max loss difference, both under
2e-3; measured about 5e-7), then times all variants round-robin, the order reversed every
other pass (ABCD DCBA), for ``--repeats`` rounds after one warm-up round; reported are
medians, compile time apart (the seconds JAX reports tracing, lowering and compiling during
the first call; torch compiles nothing: '-'), the ratios loop / sweep and best torch / sweep,
and achieved GFLOP/s (the matmul FLOPs of the
model, 2B(2 d d_h + 3 d_h m) per step: forward, weight gradients, hidden-input gradient) against
this machine's float32 matmul GFLOP/s measured here (the best of square matmuls 1024 and 2048,
on accelerators also 4096 and 8192, and of the model's own first-layer product). It also
times the sin activation: jnp.sin against ``functional.sin`` (the float32 polynomial) per
element. The header and the JSON record the machine: CPU model, its vector units (AVX2,
AVX-512, from /proc/cpuinfo), CPU count, the load average at start and end (other work on the
machine slows every variant, torch's OpenMP threads the most), JAX and torch versions.
"""

from __future__ import annotations

import dataclasses
import os
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
    """Timed rounds (each runs every variant twice, ABCD DCBA)."""
    data_dir: Path = Path("../shared/data/mnist")
    """MNIST IDX files for the compute-bound case."""
    torch: bool = True
    """Also time the PyTorch ensembles (when torch is installed)."""
    threads: int | None = None
    """torch.set_num_threads (default os.cpu_count(), the threads XLA:CPU's pool uses)."""
    cpu_devices: int = 0
    """XLA:CPU devices to split the machine into (jaxnets.train.cpu_devices; 0: one per core).
    The sweep runs on all of them and, when there are several, on the first alone too."""
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


def cpu_info() -> dict[str, str]:
    """The CPU model and its vector units (from /proc/cpuinfo's first processor on Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "Model name", "cpu model") and value:
            model = value
        elif key in ("flags", "Features"):  # x86, aarch64
            flags = set(value.split())
            break
    units = [name for flag, name in (("avx512f", "AVX-512F"), ("avx512_bf16", "AVX-512 BF16"),
                                     ("avx2", "AVX2"), ("fma", "FMA"), ("asimd", "NEON"),
                                     ("sve", "SVE")) if flag in flags]
    if flags & {"avx", "avx2"} and "avx512f" not in flags:
        units.append("no AVX-512")
    return {"cpu": model, "vector_units": " ".join(units) or "unknown",
            "cpus": str(os.cpu_count())}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


TORCH_VARIANTS = ("torch_bmm", "torch_func")


def torch_variants(params0: dict, lrs: np.ndarray, x: np.ndarray, y: np.ndarray,
                   idx: np.ndarray, threads: int) -> dict:
    """The K-member SGD ensemble in PyTorch, as {name: fn() -> (params, losses [steps, K])}:
    ``torch_bmm``, stacked weights [K, in, out], ``torch.baddbmm`` for both layers (the shared
    minibatch expanded to [K, B, d], a view), one autograd backward of the members' summed
    losses per step, an in-place update; ``torch_func``, ``vmap(grad_and_value(loss))`` over
    the same stacked params and a functional update. Both start from ``params0`` (jaxnets'
    initial params of one member, shared by all, as in the sweep) and step t trains on rows
    ``idx[t]`` of (x, y), jaxnets' minibatch order; params come back in jaxnets' layout.
    (Weights [K, out, in] with transposed products, and ``torch.matmul`` broadcasting the
    minibatch, timed within noise of this on the 2-core EPYC.)"""
    torch = _torch()
    F_ = torch.nn.functional
    torch.set_num_threads(threads)
    k, steps = len(lrs), len(idx)
    layout = lambda name, a: a.transpose(-1, -2) if name.startswith("W") else a  # noqa: E731
    stacked0 = {name: layout(name, torch.from_numpy(np.array(v))).expand(k, *v.shape[::-1])
                .contiguous() for name, v in params0.items()}  # W [K, in, out], b [K, out]
    lr = {name: torch.from_numpy(np.asarray(lrs, np.float32)).view(k, *(1,) * v.ndim)
          for name, v in params0.items()}
    x, y = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    idx = torch.from_numpy(np.array(idx)).long()

    def jaxnets_layout(p):
        return {name: layout(name, v.detach()) for name, v in p.items()}

    def bmm():
        p = {name: v.clone().requires_grad_() for name, v in stacked0.items()}
        losses = torch.empty(steps, k)
        for t in range(steps):
            xb, yb = x[idx[t]], y[idx[t]]
            h = torch.sin(torch.baddbmm(p["b1"].unsqueeze(1), xb.expand(k, -1, -1), p["W1"]))
            o = torch.baddbmm(p["b2"].unsqueeze(1), h, p["W2"])  # [K, B, m]
            loss = F_.cross_entropy(o.transpose(1, 2), yb.expand(k, -1),
                                    reduction="none").mean(1)  # [K]: each member's mean
            loss.sum().backward()
            with torch.no_grad():
                for name, v in p.items():
                    v.sub_(lr[name] * v.grad)
                    v.grad = None
            losses[t] = loss.detach()
        return jaxnets_layout(p), losses

    def member_loss(p, xb, yb):
        h = torch.sin(xb @ p["W1"] + p["b1"])
        return F_.cross_entropy(h @ p["W2"] + p["b2"], yb)

    step = torch.func.vmap(torch.func.grad_and_value(member_loss), in_dims=(0, None, None))

    def func():
        p = {name: v.clone() for name, v in stacked0.items()}
        losses = torch.empty(steps, k)
        with torch.no_grad():  # for the update only: torch.func.grad differentiates inside
            for t in range(steps):
                g, losses[t] = step(p, x[idx[t]], y[idx[t]])
                p = {name: v - lr[name] * g[name] for name, v in p.items()}
        return jaxnets_layout(p), losses

    return {"torch_bmm": bmm, "torch_func": func}


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def jaxnets_start(key, init, optimizer, steps: int, n: int, batch_size: int):
    """A run's initial params and its minibatch indices [steps, batch_size], as ``train.fit``
    and ``train.sweep`` draw them from ``key`` (``init_state``, ``chunk_indices``)."""
    state = train.init_state(key, init=init, optimizer=optimizer)
    return state.params, train.chunk_indices(state.key, state.step, steps, n, batch_size)


def agreement(params_sweep: dict, loss_sweep: np.ndarray, out, tol: float = 2e-3) -> dict:
    """How far a torch run's final params and per-step losses are from the sweep's members:
    max over members and leaves of |p_torch - p_sweep|_2 / |p_sweep|_2 (``max_rel_params``)
    and the max |loss difference|. Raises AssertionError above ``tol`` (float32 over a few
    hundred SGD steps, other summation orders and other sin: about 1e-5 measured)."""
    params, losses = out
    rel = max(float(np.max(np.linalg.norm((np.asarray(params[name]) - a).reshape(len(a), -1),
                                          axis=1)
                           / np.linalg.norm(a.reshape(len(a), -1), axis=1)))
              for name, a in params_sweep.items())
    loss_diff = float(np.max(np.abs(np.asarray(losses).T - loss_sweep)))
    assert rel < tol and loss_diff < tol, (
        f"torch differs from the sweep: params {rel:.1e} (relative), losses {loss_diff:.1e}")
    return {"max_rel_params": rel, "max_abs_loss": loss_diff}


def bench_case(case: str, k: int, config: Config, train_data, bar) -> dict:
    d, d_h, m, batch = CASES[case]
    x = train_data[0].reshape(len(train_data[0]), -1)
    train_data = (x, train_data[1])
    kw = dict(init=partial(sin_mlp.init, d=d, d_h=d_h, m=m), loss=sin_mlp.loss,
              optimizer=optim.get(config.optimizer), steps=config.steps, batch_size=batch)
    lrs = np.geomspace(config.lr_min, config.lr_max, k).astype(np.float32)
    key = jax.random.key(0)
    train.validate_run(key, train_data, {}, init=kw["init"], loss=sin_mlp.loss,
                       evaluate=sin_mlp.metrics, steps=config.steps,
                       batch_size=batch, eval_every=config.steps)

    def loop():
        return [train.fit(key, float(lr), train_data, validate=False, **kw) for lr in lrs]

    fns = {"loop": loop, "sweep": partial(train.sweep, lrs, train_data, seeds=[0],
                                          validate=False, **kw)}
    if len(jax.devices()) > 1:
        fns["sweep_1dev"] = partial(fns["sweep"], devices=jax.devices()[:1])
    with_torch = config.torch and config.optimizer == "sgd" and _torch() is not None
    if with_torch:  # jaxnets' own initial params and minibatch order, computed once here
        params0, idx = jaxnets_start(key, kw["init"], kw["optimizer"], config.steps, len(x),
                                     batch)
        fns |= torch_variants(params0, lrs, *train_data, idx, config.threads or os.cpu_count())
    # the first call of each: JAX's compile events; torch compiles nothing (a warm-up run)
    compile_s = {name: common.compile_seconds(fn) for name, fn in fns.items()}
    compile_s |= {name: None for name in compile_s if name in TORCH_VARIANTS}
    runs_loop = loop()
    loss_loop = np.stack([np.asarray(r.train_loss) for r in runs_loop])
    sweeps = {name: fns[name]() for name in ("sweep_1dev", "sweep") if name in fns}
    for swept in sweeps.values():  # the last is the sweep on every device
        loss_sweep = np.asarray(swept.train_loss[:, 0])
        np.testing.assert_allclose(loss_sweep, loss_loop, rtol=2e-4, atol=2e-5)
        for i, r in enumerate(runs_loop):
            jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(
                np.asarray(b)[i, 0], a, rtol=2e-3, atol=2e-4), r.params, swept.params)
    diverged = np.asarray(swept.diverged_at[:, 0]) >= 0
    if with_torch and diverged.any():  # torch would carry the NaNs on: compare only if none
        raise AssertionError(f"{diverged.sum()} sweep members diverged; lower --lr-max")
    swept_params = {name: np.asarray(v[:, 0]) for name, v in swept.params.items()}
    agree = {name: agreement(swept_params, loss_sweep, fns[name]()) for name in fns
             if name in TORCH_VARIANTS}
    times = {name: [] for name in fns}
    order = list(fns)
    for _ in range(config.repeats):
        for _ in range(2):
            order.reverse()  # ABCD DCBA: no variant always follows the same one
            for name in order:
                times[name].append(_time(fns[name]))
                bar.update()
    median = {name: float(np.median(t)) for name, t in times.items()}
    flops = 2 * batch * (2 * d * d_h + 3 * d_h * m) * config.steps * k
    best_torch = min((median[name] for name in agree), default=None)
    return {
        "case": case, "K": k, "model": f"{d}-{d_h}-{m}", "batch": batch,
        "median_s": median,
        "compile_s": compile_s,
        "ratio_loop_over_sweep": median["loop"] / median["sweep"],
        "ratio_over_sweep": {name: t / median["sweep"] for name, t in median.items()},
        "best_torch_over_sweep": None if best_torch is None else best_torch / median["sweep"],
        "gflops": {name: flops / t / 1e9 for name, t in median.items()},
        "max_abs_loss_diff": float(np.nanmax(np.abs(loss_sweep - loss_loop))),
        "torch_agreement": agree,
        "diverged": int(diverged.sum()),
    }


def machine() -> dict:
    """Where the figures come from: host, CPU model and vector units, JAX device, torch."""
    torch = _torch()
    return common.environment() | cpu_info() | {
        "torch": torch and torch.__version__,
        "load_avg": [round(v, 2) for v in os.getloadavg()]}


def run(config: Config) -> dict:
    """Every (case, K) measurement, the machine's matmul and sin figures."""
    env = machine()
    datasets = {case: load_case(case, config.data_dir) for case in config.cases}
    d, d_h, _, batch = CASES[config.cases[0]]
    peak = matmul_gflops((batch, d, max(config.ks) * d_h))
    results = []
    with_torch = config.torch and config.optimizer == "sgd" and _torch() is not None
    n_variants = 2 + (len(jax.devices()) > 1) + 2 * with_torch
    total = len(config.cases) * len(config.ks) * config.repeats * 2 * n_variants
    with tqdm(total=total, desc="benchmark_sweep", unit="run", delay=3) as bar:
        for case in config.cases:
            for k in config.ks:
                results.append(bench_case(case, k, config, datasets[case][0], bar))
    torch = _torch()
    return {
        "config": dataclasses.asdict(config) | {"json": None, "data_dir": str(config.data_dir)},
        "machine": f"{platform.node()} {platform.machine()}, {env['cpu']} ({env['cpus']} CPUs, "
                   f"{env['vector_units']}), {jax.devices()[0].device_kind}, "
                   f"{len(jax.devices())} device(s)",
        "environment": env | {"load_avg_end": [round(v, 2) for v in os.getloadavg()]},
        "jax": jax.__version__,
        "torch": torch and torch.__version__,
        "torch_threads": torch and torch.get_num_threads(),
        "data": {case: src for case, (_, src) in datasets.items()},
        "matmul_gflops": peak,
        "sin_ns_per_element": sin_ns_per_element(),
        "results": results,
    }


def table(res: dict, config: Config) -> str:
    peak = max(res["matmul_gflops"].values())
    env = res["environment"]
    torch = (f"torch {res['torch']} ({res['torch_threads']} threads)" if res["torch"]
             else "torch not installed")
    lines = [f"{env['date']}  {res['machine']}",
             f"jax {res['jax']}, {torch}; load average {env['load_avg']} at start, "
             f"{env['load_avg_end']} at end; {config.steps} steps of {config.optimizer}"]
    lines += [f"  {case}: {src}" for case, src in res["data"].items()]
    lines.append("float32 matmul GFLOP/s: " + ", ".join(
        f"{k} {v:.0f}" for k, v in res["matmul_gflops"].items()) + f" (peak {peak:.0f})")
    lines.append("sin: " + ", ".join(f"{k} {v:.3g}" for k, v in
                                     res["sin_ns_per_element"].items())
                 + " (ns per element; error absolute)")
    names = list(res["results"][0]["median_s"]) if res["results"] else []
    short = {"loop": "loop", "sweep": "sweep", "sweep_1dev": "sw.1dev", "torch_bmm": "t.bmm",
             "torch_func": "t.func"}
    lines.append(f"{'case':7s} {'K':>3s} " + " ".join(f"{short[n] + ' s':>8s}" for n in names)
                 + f" {'loop/sweep':>10s} {'torch/sweep':>11s} "
                 + " ".join(f"{'compile ' + short[n]:>14s}" for n in names)
                 + " " + " ".join(f"{'GF/s ' + short[n]:>11s}" for n in names)
                 + f" {'% peak sweep':>12s}")
    for r in res["results"]:
        t, c, g = r["median_s"], r["compile_s"], r["gflops"]
        best = r["best_torch_over_sweep"]
        lines.append(
            f"{r['case']:7s} {r['K']:3d} " + " ".join(f"{t[n]:8.3f}" for n in names)
            + f" {r['ratio_loop_over_sweep']:10.2f} {'-' if best is None else f'{best:.2f}':>11s} "
            + " ".join(f"{'-' if c[n] is None else f'{c[n]:.2f}':>14s}" for n in names)
            + " " + " ".join(f"{g[n]:11.0f}" for n in names)
            + f" {100 * g['sweep'] / peak:11.0f}%")
    agree = [f"{r['case']} K={r['K']} {name}: params {a['max_rel_params']:.1e}, "
             f"losses {a['max_abs_loss']:.1e}"
             for r in res["results"] for name, a in r["torch_agreement"].items()]
    if agree:
        lines.append("torch vs jaxnets' sweep (max relative L2 params per member, max abs "
                     "loss per step): " + "; ".join(agree))
    lines.append("torch/sweep: the faster torch ensemble's median over the sweep's "
                 "(> 1: the sweep is faster); sweep: on every device, sw.1dev: on the first")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(common.plain_help(Config), args=argv)
    train.cpu_devices(config.cpu_devices or None)  # before anything runs on JAX
    res = run(config)
    print(table(res, config))
    if config.json:
        runs.write_json(config.json, res)


if __name__ == "__main__":
    main()
