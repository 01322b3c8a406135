"""Does an MLP-Mixer's cost grow linearly in the number of patches S (problem set 000 Q4(b))?

    python -m experiments.benchmark_mixer [--num-patches 16 64 256] [--json PATH]

At fixed P, C, D_S, D_C and depth N, the image side grows (side = P sqrt(S)) so that S takes
each value of ``--num-patches``. Per image, the matmul FLOPs are

    2 S P^2 C_in C            (patch embedding)
  + N (4 S D_S C + 4 S C D_C)  (token mixing, channel mixing: two matmuls each)
  + 2 C num_classes            (head, the one term that does not grow with S)

so FLOPs / S should be constant up to the head and the elementwise work (LN, GELU, pooling),
which is linear in S too except the token-mixing GELU over [D_S, C]: FLOPs = a S + b.

Two passes: the forward ``mixer.apply`` and the training step's forward + backward
``jax.value_and_grad(mixer.loss)``. Each is compiled twice:
- as used in training (layers under ``lax.scan``): timed, one warm-up call then the median of
  ``--repeats`` calls, compile time (lower + compile) reported apart. The timed calls run in
  rounds over every (S, pass), so that a busy machine slows each alike;
- with the scan unrolled (``unroll=True``, the same values): its FLOP count, since XLA's cost
  analysis counts a while-loop body once (the scan form's count, about one layer's, is kept
  in the JSON as ``scan_flops``). FLOPs are read from the compiled executable's cost analysis,
  and, as a cross-check, from the HLO before optimisation (fusion duplicates cheap elementwise
  work by an amount that varies with the shapes). Its wall time is in the JSON too.
The table gives FLOPs and time, per patch, and relative to the first S; below it, least-squares
fits F(S) = a S + b.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import time
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro

from jaxnets import runs
from jaxnets.models import mixer


@dataclasses.dataclass(frozen=True)
class Config:
    """Benchmark an MLP-Mixer's FLOPs and wall time against its number of patches S."""

    passes: tuple[Literal["forward", "forward_backward"], ...] = ("forward", "forward_backward")
    """Which passes to measure: the forward pass, the training step's forward + backward."""
    num_patches: tuple[int, ...] = (16, 64, 256)
    """Values of S, each a perfect square (square images of side P sqrt(S))."""
    patch: int = 4
    """P, the patch side, fixed across S."""
    in_channels: int = 3
    """C_in, channels of the random input images."""
    hidden: int = 128
    """C, channels per patch."""
    tokens_mlp_dim: int = 64
    """D_S, hidden width of the token-mixing MLP (fixed across S)."""
    channels_mlp_dim: int = 256
    """D_C, hidden width of the channel-mixing MLP."""
    depth: int = 4
    """N, number of Mixer layers."""
    num_classes: int = 10
    """Logits of the head."""
    batch: int = 16
    """Images per call."""
    repeats: int = 20
    """Timed calls per measurement, after one warm-up call; the median is reported."""
    seed: int = 0
    """PRNG seed of the params and the random batch."""
    json: Path | None = None
    """Also write the figures (with date, machine and config) to this JSON file."""


def matmul_flops(config: Config, s: int) -> float:
    """Forward matmul FLOPs of one batch, from the formula of the module docstring."""
    c, p = config.hidden, config.patch
    per_image = (2 * s * p * p * config.in_channels * c
                 + config.depth * 4 * s * c * (config.tokens_mlp_dim + config.channels_mlp_dim)
                 + 2 * c * config.num_classes)
    return float(config.batch * per_image)


def _flops(stage) -> float | None:
    """The "flops" of a Lowered or Compiled stage's cost analysis; None where the platform
    reports none (jax 0.11's compiled GPU executables, seen on an H200)."""
    cost = stage.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


FORMS = ("scan", "unrolled")


def _compile(fn, args: tuple) -> tuple[object, dict[str, float]]:
    """The executable of jax.jit(fn) on args, its compile time and XLA FLOP counts."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    return compiled, _flop_counts(lowered, compiled, partial(_cpu_stages, fn, args)) | {
        "compile_s": compile_s}


def _cpu_stages(fn, args: tuple) -> tuple[object, object]:
    """Lowered and Compiled stages of jax.jit(fn) on args placed on the CPU."""
    lowered = jax.jit(fn).lower(*jax.device_put(args, jax.devices("cpu")[0]))
    return lowered, lowered.compile()


def _flop_counts(lowered, compiled, cpu_stages) -> dict:
    """{"flops": the compiled executable's count, "hlo_flops": the count before optimisation,
    "flops_source"}. Where this platform reports none (jax 0.11 on an H200: neither stage
    has a cost analysis), both are counted on the CPU's compile of the same function
    (``cpu_stages()``), source "cpu"; XLA:CPU's fusion may count elementwise work otherwise."""
    counts, source = (_flops(lowered), _flops(compiled)), "platform"
    if None in counts:
        counts, source = tuple(_flops(s) for s in cpu_stages()), "cpu"
    if None in counts:
        raise RuntimeError("benchmark_mixer: XLA reports no FLOP count, on this platform or "
                           "on the CPU")
    return {"hlo_flops": counts[0], "flops": counts[1], "flops_source": source}


def _time(fn, args: tuple) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def prepare(config: Config, s: int) -> tuple[dict, dict]:
    """For S patches: {(pass, form): (executable, args)} and the figures known before timing."""
    side = config.patch * math.isqrt(s)
    params = mixer.init(jax.random.key(config.seed), image_size=(side, side),
                        in_channels=config.in_channels, patch=config.patch,
                        hidden=config.hidden, tokens_mlp_dim=config.tokens_mlp_dim,
                        channels_mlp_dim=config.channels_mlp_dim, depth=config.depth,
                        num_classes=config.num_classes)
    k_x, k_y = jax.random.split(jax.random.key(config.seed + 1))
    x = jax.random.normal(k_x, (config.batch, side, side, config.in_channels))
    y = jax.random.randint(k_y, (config.batch,), 0, config.num_classes)
    result = {"S": s, "image": [side, side], "params": mixer.num_params(params),
              "matmul_flops_formula": matmul_flops(config, s)}
    executables = {}
    for pass_ in config.passes:
        figures = {}
        for form in FORMS:
            unroll = form == "unrolled"
            if pass_ == "forward":
                fn, args = partial(mixer.apply, unroll=unroll), (params, x)
            else:
                fn, args = jax.value_and_grad(partial(mixer.loss, unroll=unroll)), (params, (x, y))
            compiled, figures[form] = _compile(fn, args)
            executables[pass_, form] = (compiled, args)
        sc, un = figures["scan"], figures["unrolled"]
        result[pass_] = {"flops": un["flops"], "hlo_flops": un["hlo_flops"],
                         "flops_source": un["flops_source"],
                         "scan_flops": sc["flops"], "compile_s": sc["compile_s"],
                         "unrolled_compile_s": un["compile_s"]}
    return executables, result


def bench(config: Config) -> list[dict]:
    """Figures for every S; timed in rounds over all (S, pass, form), so load hits each alike."""
    prepared = [prepare(config, s) for s in config.num_patches]
    times = [{key: [] for key in executables} for executables, _ in prepared]
    for _ in range(config.repeats):
        for (executables, _), t in zip(prepared, times, strict=True):
            for key, (compiled, args) in executables.items():
                t[key].append(_time(compiled, args))
    results = []
    for (_, result), t in zip(prepared, times, strict=True):
        for pass_ in config.passes:
            result[pass_]["median_s"] = float(np.median(t[pass_, "scan"]))
            result[pass_]["unrolled_median_s"] = float(np.median(t[pass_, "unrolled"]))
        results.append(result)
    return results


def affine_fit(s: list[int], v: list[float]) -> dict[str, float]:
    """Least squares v = a S + b; the largest residual relative to v."""
    a, b = np.polyfit(np.asarray(s, float), np.asarray(v, float), 1)
    resid = np.abs(a * np.asarray(s) + b - np.asarray(v)) / np.asarray(v)
    return {"per_patch": float(a), "intercept": float(b), "max_rel_residual": float(resid.max())}


def run(config: Config) -> dict:
    """Every S's measurements, with per-patch figures relative to the first S."""
    if not (config.num_patches and config.passes):
        raise ValueError("benchmark_mixer: give at least one S (--num-patches) and one pass")
    for s in config.num_patches:
        if s < 1 or math.isqrt(s) ** 2 != s:
            raise ValueError(f"benchmark_mixer: num_patches must be perfect squares, got {s}")
    results = bench(config)
    s0 = results[0]["S"]
    for r in results:
        for pass_ in config.passes:
            m, m0 = r[pass_], results[0][pass_]
            m["flops_per_patch"] = m["flops"] / r["S"]
            m["seconds_per_patch"] = m["median_s"] / r["S"]
            m["flops_per_patch_rel"] = m["flops_per_patch"] / (m0["flops"] / s0)
            m["hlo_flops_per_patch_rel"] = (m["hlo_flops"] / r["S"]) / (m0["hlo_flops"] / s0)
            m["time_per_patch_rel"] = m["seconds_per_patch"] / (m0["median_s"] / s0)
        if "forward" in r:
            r["xla_over_formula_forward"] = r["forward"]["flops"] / r["matmul_flops_formula"]
    ss = [r["S"] for r in results]
    fits = {f"{pass_} {what}": affine_fit(ss, [r[pass_][key] for r in results])
            for pass_ in config.passes
            for what, key in (("flops", "flops"), ("HLO flops", "hlo_flops"),
                              ("seconds", "median_s"))} if len(set(ss)) >= 2 else {}
    return {
        "config": dataclasses.asdict(config) | {"json": None},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''} "
                   f"{os.cpu_count()} CPUs, {jax.devices()[0].device_kind} "
                   f"({len(jax.devices())} device(s))",
        "jax": jax.__version__,
        "results": results,
        "affine_fits": fits,
    }


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    res = run(config)
    print(f"{res['date']}  {res['machine']}  jax {res['jax']}")
    print(f"MLP-Mixer P={config.patch} C={config.hidden} D_S={config.tokens_mlp_dim} "
          f"D_C={config.channels_mlp_dim} N={config.depth} C_in={config.in_channels} "
          f"classes={config.num_classes}, batch {config.batch}, median of {config.repeats}")
    print("rel = per-patch figure / the same at the first S (1.00 = exactly linear in S)")
    print("GFLOP: the compiled (unrolled) executable's cost analysis; HLO rel: the same count "
          "before XLA's\noptimisation; ms: median wall time of the scan form (as trained)")
    if any(r[p]["flops_source"] == "cpu" for r in res["results"] for p in config.passes):
        print("NOTE: this platform reports no FLOP counts; both are the CPU compile's of the "
              "same functions")
    head = (f"{'pass':16s} {'S':>4s} {'image':>7s} {'GFLOP':>7s} {'MFLOP/S':>8s} {'rel':>5s} "
            f"{'HLO rel':>7s} {'ms':>8s} {'us/S':>7s} {'rel':>5s} {'compile s':>9s}")
    print(head)
    print("-" * len(head))
    for pass_ in config.passes:
        for r in res["results"]:
            m = r[pass_]
            print(f"{pass_:16s} {r['S']:4d} {r['image'][0]:3d}x{r['image'][1]:<3d} "
                  f"{m['flops'] / 1e9:7.3f} {m['flops_per_patch'] / 1e6:8.2f} "
                  f"{m['flops_per_patch_rel']:5.2f} {m['hlo_flops_per_patch_rel']:7.2f} "
                  f"{m['median_s'] * 1e3:8.2f} "
                  f"{m['seconds_per_patch'] * 1e6:7.1f} {m['time_per_patch_rel']:5.2f} "
                  f"{m['compile_s']:9.2f}")
    print("least squares F(S) = a S + b over these S (b > 0: a fixed cost, per-patch falls):")
    for name, f in res["affine_fits"].items():
        unit, scale = ("MFLOP", 1e6) if name.endswith("flops") else ("ms", 1e-3)
        print(f"  {name:26s} a = {f['per_patch'] / scale:9.4f} {unit}/patch, "
              f"b = {f['intercept'] / scale:9.3f} {unit}, max residual "
              f"{100 * f['max_rel_residual']:.1f}%")
    if "forward" in config.passes:
        print("forward FLOPs, XLA / matmul formula: " + ", ".join(
            f"S={r['S']} {r['xla_over_formula_forward']:.3f}" for r in res["results"]))
    print("unrolled form, ms: " + "; ".join(
        f"{pass_} " + ", ".join(f"S={r['S']} {r[pass_]['unrolled_median_s'] * 1e3:.2f}"
                                for r in res["results"]) for pass_ in config.passes))
    print("scan form as XLA counts it (loop body once), GFLOP: " + "; ".join(
        f"{pass_} " + ", ".join(f"{r[pass_]['scan_flops'] / 1e9:.3f}" for r in res["results"])
        for pass_ in config.passes))
    if config.json:
        runs.write_json(config.json, res)
        print(f"wrote {config.json}")


if __name__ == "__main__":
    main()
