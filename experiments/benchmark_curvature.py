"""What curvature costs: a Hessian-vector product against a gradient, Lanczos against a dense
eigendecomposition, and the sharpness tracker's share of an edge-of-stability run.

    python -m experiments.benchmark_curvature [--json PATH] [--rounds N] [--dense-max P]

Cases, each timed side by side in one process (jitted; compile seconds apart, from JAX's
compile events on the first call; then ``--rounds`` rounds in alternating order, a timing being
the mean of enough calls to last ``--min-time`` s; medians reported):

- ``hvp``: ``curvature.hvp`` (forward over reverse) against ``jax.grad`` of the same loss, on
  the sin-MLP 784-256-10 (batch 256) and LeNet-5 (batch 128, 32x32x1); beside them
  reverse-over-reverse (``grad`` of ``grad . v``), the sin-MLP's hand-derived R-operator
  (``sin_mlp.manual_hvp``) and, when PyTorch is installed, ``torch.func.jvp`` of
  ``torch.func.grad`` on the same sin-MLP (the tool a PyTorch user reaches for). Goal:
  hvp / grad <= 3.
- ``lanczos``: the top eigenvalue of the sin-MLP's Hessian on scikit-learn's digits (d 64, m 10,
  batch 256, float64) for hidden sizes giving P from about 10^3 up: ``top_eigenvalues``
  (Lanczos, 20 iterations) against dense ``jax.hessian`` + ``eigh`` (while P <= --dense-max),
  its time and relative error.
- ``tracking``: ``experiments.edge_of_stability``'s default sweep (6 learning rates, full batch,
  --eos-steps steps) without and with ``curvature.sharpness(every=50, iters=...)`` for each
  of --eos-iters (each measurement warm-started from the last one's eigenvector). Goal:
  overhead <= 15 %.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from experiments import benchmark_sweep, common
from experiments import edge_of_stability as eos
from jaxnets import curvature, data, optim, train
from jaxnets.models import fc_tanh, lenet, sin_mlp


@dataclasses.dataclass(frozen=True)
class Config:
    """Benchmark Hessian-vector products, Lanczos and the sharpness tracker."""

    cases: tuple[str, ...] = ("hvp", "lanczos", "tracking")
    """Cases to run: hvp, lanczos, tracking."""
    rounds: int = 7
    """Timed rounds per case (medians reported)."""
    min_time: float = 0.2
    """Seconds one timing lasts at least (short calls are averaged)."""
    hidden: tuple[int, ...] = (14, 40, 133, 400, 2666)
    """Hidden sizes of the lanczos case's sin-MLP (P = 75 d_h + 10: 1,060 to 200,000)."""
    dense_max: int = 3_100
    """Largest P for which the dense Hessian is formed and diagonalised (P^2 float64 values)."""
    eos_steps: int = 1000
    """Steps of the tracking case's sweep."""
    eos_iters: tuple[int, ...] = (20, 3)
    """Lanczos iterations per measurement in the tracking case (one tracked sweep each)."""
    accuracy_iters: tuple[int, ...] = (5, 10, 20, 40)
    """Iterations at which the lanczos case reports each method's error (at the largest P
    that gets a dense reference)."""
    torch: bool = True
    """Time torch.func's Hessian-vector product too, when PyTorch is installed."""
    json: Path | None = None
    """Also write the figures to this JSON file."""


def _time(fn: Callable[[], object], number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t) / number


def timed(fns: dict[str, Callable[[], object]], config: Config) -> dict[str, dict]:
    """{name: {"s": median seconds per call, "compile_s": ...}}, the functions interleaved."""
    compile_s = {name: common.compile_seconds(fn) for name, fn in fns.items()}
    number = {name: max(1, int(config.min_time / max(_time(fn, 1), 1e-6))) if config.min_time
              else 1 for name, fn in fns.items()}
    times = {name: [] for name in fns}
    order = list(fns)
    for _ in range(config.rounds):
        order.reverse()
        for name in order:
            times[name].append(_time(fns[name], number[name]))
    return {name: {"s": float(np.median(times[name])), "compile_s": compile_s[name]}
            for name in fns}


def _torch_hvp(params: dict, batch: tuple) -> Callable[[], object] | None:
    """torch.func.jvp of torch.func.grad for the sin-MLP's loss, or None without torch."""
    torch = benchmark_sweep._torch()
    if torch is None:
        return None
    tp = {k: torch.tensor(np.asarray(v)) for k, v in params.items()}
    x, y = torch.tensor(np.asarray(batch[0])), torch.tensor(np.asarray(batch[1]), dtype=torch.long)
    v = {k: torch.ones_like(a) for k, a in tp.items()}

    def loss(p):
        logits = torch.sin(x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
        return torch.nn.functional.cross_entropy(logits, y)

    return lambda: torch.func.jvp(torch.func.grad(loss), (tp,), (v,))[1]


def hvp_case(config: Config) -> list[dict]:
    """hvp / grad on the sin-MLP and LeNet (float32)."""
    k_p, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    models = {
        "sin_mlp 784-256-10, batch 256": (
            sin_mlp.init(k_p, 784, 256, 10), sin_mlp.loss,
            (jax.random.normal(k_x, (256, 784)), jax.random.randint(k_y, (256,), 0, 10))),
        "LeNet-5, batch 128": (
            lenet.init(k_p), lenet.loss,
            (jax.random.normal(k_x, (128, 32, 32, 1)), jax.random.randint(k_y, (128,), 0, 10))),
    }
    return [_hvp_model(name, *m, config) for name, m in models.items()]


def _hvp_model(name: str, params, loss, batch, config: Config) -> dict:
    """One model's gradient and Hessian-vector products, timed side by side."""
    v = jax.tree.map(jnp.ones_like, params)
    grad, hvp = jax.jit(jax.grad(loss)), jax.jit(partial(curvature.hvp, loss))
    rr = jax.jit(lambda p, b, v: jax.grad(lambda q: jnp.vdot(
        ravel_pytree(jax.grad(loss)(q, b))[0], ravel_pytree(v)[0]))(p))
    calls = {"grad": lambda: grad(params, batch), "hvp": lambda: hvp(params, batch, v),
             "reverse-over-reverse": lambda: rr(params, batch, v)}
    if loss is sin_mlp.loss:
        manual = jax.jit(sin_mlp.manual_hvp)
        calls["manual_hvp (R-operator)"] = lambda: manual(params, batch, v)
        torch_fn = _torch_hvp(params, batch) if config.torch else None
        if torch_fn is not None:
            calls["torch.func jvp(grad)"] = torch_fn
    t = timed(calls, config)
    return {"model": name, "times": t,
            "ratio_to_grad": {k: t[k]["s"] / t["grad"]["s"] for k in t}}


def _dense_top(loss, params, batch) -> Callable[[], object]:
    flat, unravel = ravel_pytree(params)
    H = jax.jit(jax.hessian(lambda f: loss(unravel(f), batch)))
    return lambda: jnp.linalg.eigvalsh(H(flat))[-1]


def lanczos_case(config: Config) -> dict:
    """Lanczos (20 iterations) against dense eigh, float64, P from 10^3 up; and the error of
    Lanczos and power iteration against ``--accuracy-iters``."""
    with jax.enable_x64(True):
        return _lanczos_case(config)


def _lanczos_case(config: Config) -> dict:
    split = data.digits()
    x = jnp.asarray(split.x_train[:256].reshape(256, -1), jnp.float64)
    y = jnp.asarray(split.y_train[:256])
    out = []
    for d_h in config.hidden:
        params = sin_mlp.init(jax.random.key(0), 64, d_h, 10, jnp.float64)
        P = ravel_pytree(params)[0].size
        lanczos = jax.jit(lambda p: curvature.top_eigenvalues(sin_mlp.loss, p, (x, y), k=1,
                                                              iters=20)[0][0])
        calls = {"lanczos (20)": lambda f=lanczos, p=params: f(p)}
        if P <= config.dense_max:
            calls["dense eigh"] = _dense_top(sin_mlp.loss, params, (x, y))
        t = timed(calls, dataclasses.replace(config, rounds=min(config.rounds, 3)))
        row = {"P": int(P), "d_h": d_h, "times": t, "dense_bytes": 8 * P * P}
        if "dense eigh" in calls:
            exact = float(calls["dense eigh"]())
            row["rel_error"] = abs(float(calls["lanczos (20)"]()) - exact) / abs(exact)
            row["speedup"] = t["dense eigh"]["s"] / t["lanczos (20)"]["s"]
        out.append(row)
    with_dense = [d_h for d_h, r in zip(config.hidden, out, strict=True) if "rel_error" in r]
    errors = {}
    if with_dense:
        params = sin_mlp.init(jax.random.key(0), 64, with_dense[-1], 10, jnp.float64)
        exact = float(_dense_top(sin_mlp.loss, params, (x, y))())
        for method in ("lanczos", "power"):
            errors[method] = {it: abs(float(curvature.top_eigenvalues(
                sin_mlp.loss, params, (x, y), iters=it, method=method)[0][0]) - exact) / exact
                for it in config.accuracy_iters}
        errors["P"] = int(ravel_pytree(params)[0].size)
    return {"sizes": out, "error_against_iters": errors}


def tracking_case(config: Config) -> dict:
    """The edge-of-stability sweep with and without the tracker."""
    ec = eos.Config(steps=config.eos_steps)
    x, y = eos.load(ec)
    lrs = eos.learning_rates(ec)
    kw = dict(init=partial(fc_tanh.init, widths=(x.shape[1], ec.hidden, ec.hidden, 10)),
              loss=fc_tanh.loss, optimizer=optim.get("sgd"), steps=ec.steps,
              batch_size=x.shape[0], evaluate=fc_tanh.metrics, eval_every=ec.every,
              seeds=[0], validate=False)
    calls = {"untracked": lambda: train.sweep(lrs, (x, y), {"train": (x, y)}, **kw).params}
    for iters in config.eos_iters:
        track = curvature.sharpness(fc_tanh.loss, every=ec.every, iters=iters)
        calls[f"iters {iters}"] = lambda t=track: train.sweep(lrs, (x, y), {"train": (x, y)},
                                                             track=t, **kw).params
    t = timed(calls, dataclasses.replace(config, rounds=min(config.rounds, 3), min_time=0))
    return {"learning_rates": len(lrs), "steps": ec.steps, "every": ec.every, "times": t,
            "overhead": {k: t[k]["s"] / t["untracked"]["s"] - 1 for k in t if k != "untracked"}}


def run(config: Config) -> dict:
    if not (config.rounds >= 1 and config.eos_steps >= 50 and config.eos_steps % 50 == 0):
        raise ValueError("--rounds must be >= 1 and --eos-steps a positive multiple of 50")
    env = common.environment() | benchmark_sweep.cpu_info() | {
        "load_avg": [round(v, 2) for v in os.getloadavg()]}
    res = {"environment": env, "config": dataclasses.asdict(config) | {"json": None}}
    if "hvp" in config.cases:
        res["hvp"] = hvp_case(config)
    if "lanczos" in config.cases:
        res["lanczos"] = lanczos_case(config)
    if "tracking" in config.cases:
        res["tracking"] = tracking_case(config)
    res["environment"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    return res


def table(res: dict) -> str:
    env = res["environment"]
    lines = [f"{env['date']}  {env['cpu']} ({env['cpus']} CPUs, {env['vector_units']}); "
             f"jax {env['jax']}; load {env['load_avg']} -> {env['load_avg_end']}"]
    for case in res.get("hvp", []):
        lines.append(f"\nhvp, {case['model']}:  {'ms':>8s} {'/ grad':>7s} {'compile s':>9s}")
        for name, t in case["times"].items():
            lines.append(f"  {name:26s} {t['s'] * 1e3:8.2f} {case['ratio_to_grad'][name]:7.2f} "
                         f"{t['compile_s']:9.2f}")
    if "lanczos" in res:
        lines.append(f"\ntop eigenvalue, sin-MLP on digits (float64):\n  {'P':>8s} "
                     f"{'lanczos s':>10s} {'dense s':>9s} {'dense/lanczos':>13s} {'rel err':>9s}")
        for r in res["lanczos"]["sizes"]:
            dense = r["times"].get("dense eigh")
            lines.append(f"  {r['P']:8d} {r['times']['lanczos (20)']['s']:10.4f} "
                         + (f"{dense['s']:9.3f} {r['speedup']:13.1f} {r['rel_error']:9.1e}"
                            if dense else f"{'-':>9s} {'-':>13s} {'-':>9s}  (dense needs "
                            f"{r['dense_bytes'] / 2**30:.1f} GiB)"))
        err = res["lanczos"]["error_against_iters"]
        if err:
            lines.append(f"  relative error of the top eigenvalue at P = {err['P']}, by "
                         "iterations:")
            for method in ("lanczos", "power"):
                lines.append(f"  {method:8s} " + "  ".join(
                    f"{it}: {e:.1e}" for it, e in err[method].items()))
    if "tracking" in res:
        tr = res["tracking"]
        lines.append(f"\nedge-of-stability sweep ({tr['learning_rates']} lrs, {tr['steps']} "
                     f"steps, sharpness every {tr['every']}): untracked "
                     f"{tr['times']['untracked']['s']:.2f} s")
        for k, o in tr["overhead"].items():
            lines.append(f"  tracked, Lanczos {k}: {tr['times'][k]['s']:.2f} s, overhead {o:.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
