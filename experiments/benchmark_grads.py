"""Time the hand-derived sin-MLP gradient against jax.grad, side by side in one run.

    python -m experiments.benchmark_grads [--json PATH]

Both are jitted; compile time is measured apart (first call), then each is timed for
``--repeats`` rounds after ``--warmup`` calls, the two alternating in ABBA order so drift on
the machine and cache effects hit both alike. This is done for ``--trials`` fresh compilations;
reported are medians over all timed calls and the ratio manual / autodiff.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

import jax
import numpy as np
import tyro

from jaxnets import runs
from jaxnets.models import sin_mlp


@dataclasses.dataclass(frozen=True)
class Config:
    """Benchmark manual_grads vs jax.grad for the sin-MLP."""

    d: int = 784
    """Input size."""
    d_h: int = 256
    """Hidden units."""
    m: int = 10
    """Classes."""
    batch: int = 256
    """Batch size."""
    warmup: int = 20
    """Untimed calls after compiling."""
    repeats: int = 200
    """Timed calls of each function per trial."""
    trials: int = 5
    """Fresh compilations of both functions."""
    json: Path | None = None
    """Also write the figures to this JSON file."""


def _time(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def run(config: Config) -> dict:
    """Compile times and median step times (seconds) of both gradients, and their ratio."""
    k_p, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    params = sin_mlp.init(k_p, config.d, config.d_h, config.m)
    batch = (jax.random.normal(k_x, (config.batch, config.d)),
             jax.random.randint(k_y, (config.batch,), 0, config.m))
    grads = {"manual_grads": sin_mlp.manual_grads, "jax.grad": jax.grad(sin_mlp.loss)}
    compile_s = {name: [] for name in grads}
    times = {name: [] for name in grads}
    for _ in range(config.trials):
        # a new wrapper each trial, so jit compiles a fresh executable
        fns = {name: jax.jit(lambda p, b, g=g: g(p, b)) for name, g in grads.items()}
        for name, fn in fns.items():
            compile_s[name].append(_time(fn, params, batch))
        for _ in range(config.warmup):
            for fn in fns.values():
                _time(fn, params, batch)
        order = list(fns)
        for _ in range(config.repeats):
            order.reverse()  # ABBA: neither always runs first
            for name in order:
                times[name].append(_time(fns[name], params, batch))
    compile_s = {name: float(np.median(t)) for name, t in compile_s.items()}
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {
        "config": dataclasses.asdict(config) | {"json": None},
        "machine": f"{platform.node()} {platform.machine()} {jax.devices()[0].device_kind}",
        "jax": jax.__version__,
        "compile_s": compile_s,
        "median_s": median,
        "ratio_manual_over_autodiff": median["manual_grads"] / median["jax.grad"],
    }


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    res = run(config)
    c = config
    print(f"sin-MLP {c.d}-{c.d_h}-{c.m}, batch {c.batch}, {res['machine']}, jax {res['jax']}")
    print(f"{'':14s} {'compile ms':>11s} {'median us':>10s}")
    for name in res["median_s"]:
        compile_ms, median_us = res["compile_s"][name] * 1e3, res["median_s"][name] * 1e6
        print(f"{name:14s} {compile_ms:11.1f} {median_us:10.1f}")
    print(f"ratio manual / jax.grad: {res['ratio_manual_over_autodiff']:.3f}")
    if config.json:
        runs.write_json(config.json, res)


if __name__ == "__main__":
    main()
