"""What checkpointing costs: time per save and its share of the run, for every training
experiment at its default chunk size, with and without checkpoints side by side in one run.

    python -m experiments.benchmark_checkpoint [--repeats 2] [--json PATH]

Each case is an experiment's ``run`` with its default model, data (bundled digits or generated)
and chunk (--eval-every or --chunk), with fewer steps where the default run is long: the cost
per chunk does not depend on how many chunks there are. After a warm-up run, each case runs
``--repeats`` times with checkpoints at its default --checkpoint-every and as many times without
(--checkpoint-every 0), alternating (ABBA). Every ``loop.run_chunks``
call is recorded: the wall time of each chunk (the first of a run left out), of each save in
the background writer (stack the metrics, serialise, SHA-256, write, fsync, rename, prune) and
of the loop's wait per save (hand-over; waiting for the previous save), and the writer's CPU
time. The save runs beside the next chunk, so what it takes from a run whose chunks keep every
core busy is its CPU time plus the loop's wait: the share reported, (median save CPU + median
wait) / (chunks per save x median chunk without checkpoints), is what jaxnets keeps
under 5%; chunks per save is the experiment's default --checkpoint-every. Whole runs
with and without checkpoints are timed too; they are noisy at this scale (a sin_mlp run is half
a second), and without checkpoints ``lr_sweep`` runs each sweep as one compiled call instead of
chunks.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

from experiments import adding, common, gan, lenet, lr_sweep, sin_mlp
from jaxnets import loop

# name -> (experiment run function, config at the default chunk size)
CASES: dict[str, tuple[Callable, object]] = {
    "sin_mlp": (sin_mlp.run, sin_mlp.Config()),
    "lenet": (lenet.run, lenet.Config(steps=750)),
    "lr_sweep (adam)": (lr_sweep.run, lr_sweep.Config(optimizers=("adam",))),
    "adding (lstm)": (adding.run, adding.Config(cells=("lstm",), steps=300)),
    "gan ring (nonsaturating)": (gan.run, gan.Config(variants=("nonsaturating",), steps=2000,
                                                     images=False)),
}
GOAL = 0.05


@dataclasses.dataclass(frozen=True)
class Config:
    """Time checkpoint saves against the chunks they follow, for every training experiment."""

    cases: tuple[str, ...] = tuple(CASES)
    """Which experiments to time."""
    repeats: int = 2
    """Runs with and without checkpoints per case (alternating)."""
    json: Path | None = None
    """Also write the figures (with date, machine and versions) to this JSON file."""


def _timed_run(run: Callable, config, every: int) -> tuple[float, list[loop.Chunked]]:
    """Wall time of one run in a fresh folder, and the run_chunks results it produced."""
    calls, real = [], loop.run_chunks

    def recording(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(loop, "run_chunks",
                                                                 recording):
        cfg = dataclasses.replace(config, run_dir=Path(tmp) / "run", checkpoint_every=every)
        t = time.perf_counter()
        run(cfg, progress=False)
        return time.perf_counter() - t, calls


def _median(v: list[float]) -> float | None:
    return float(np.median(v)) if v else None


def bench_case(name: str, repeats: int) -> dict:
    """One case: a warm-up run, then ``repeats`` runs with and without checkpoints (ABBA)."""
    run, config = CASES[name]
    every = config.checkpoint_every  # the experiment's default
    _timed_run(run, config, every)  # compiles what later runs reuse
    _timed_run(run, config, 0)
    wall, chunks = {every: [], 0: []}, {every: [], 0: []}
    save_s, cpu_s, blocked_s, nbytes = [], [], [], 0
    for i in range(repeats):
        for e in ((every, 0) if i % 2 == 0 else (0, every)):
            seconds, calls = _timed_run(run, config, e)
            wall[e].append(seconds)
            for c in calls:
                chunks[e] += c.chunk_seconds[1:]
                save_s += c.save_seconds
                cpu_s += c.save_cpu_seconds
                blocked_s += c.blocked_seconds
                nbytes = max(nbytes, c.checkpoint_bytes)
    without = _median(chunks[0]) or _median(chunks[every])  # a plain sweep has no chunks
    share = (_median(cpu_s) + _median(blocked_s)) / (every * without)
    return {"case": name, "checkpoint_every": every, "checkpoint_bytes": nbytes,
            "saves": len(save_s),
            "save_median_s": _median(save_s), "save_cpu_median_s": _median(cpu_s),
            "blocked_median_s": _median(blocked_s),
            "chunk_with_median_s": _median(chunks[every]),
            "chunk_without_median_s": _median(chunks[0]), "share": share,
            "run_with_s": float(np.median(wall[every])),
            "run_without_s": float(np.median(wall[0])),
            "run_ratio": float(np.median(wall[every]) / np.median(wall[0])),
            "goal_met": share < GOAL}


def run(config: Config) -> dict:
    unknown = sorted(set(config.cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown --cases {unknown}; choose from {list(CASES)}")
    if config.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {config.repeats}")
    rows = [bench_case(name, config.repeats) for name in config.cases]
    return {**common.environment(), "repeats": config.repeats, "goal_share": GOAL, "rows": rows,
            "all_goals_met": all(r["goal_met"] for r in rows)}


def table(res: dict) -> str:
    ms = lambda v: "-" if v is None else f"{v * 1e3:.2f}"  # noqa: E731
    lines = [f"{res['date']}  {res['machine']}  {res['device']}  jax {res['jax']}",
             f"medians over {res['repeats']} run(s) with and without checkpoints (ABBA) after a "
             "warm-up run; chunk times leave out each run's first chunk",
             f"{'case':25s} {'every':>5s} {'KiB':>6s} {'saves':>5s} {'save ms':>7s} {'cpu ms':>6s} "
             f"{'wait ms':>7s} {'chunk ms':>8s} {'w/o ms':>8s} {'share':>6s} {'run s':>6s} "
             f"{'w/o s':>6s} {'ratio':>5s}"]
    for r in res["rows"]:
        lines.append(
            f"{r['case']:25s} {r['checkpoint_every']:5d} {r['checkpoint_bytes'] / 1024:6.0f} "
            f"{r['saves']:5d} "
            f"{ms(r['save_median_s']):>7s} {ms(r['save_cpu_median_s']):>6s} "
            f"{ms(r['blocked_median_s']):>7s} {ms(r['chunk_with_median_s']):>8s} "
            f"{ms(r['chunk_without_median_s']):>8s} {r['share']:6.1%} {r['run_with_s']:6.2f} "
            f"{r['run_without_s']:6.2f} {r['run_ratio']:5.2f}")
    lines += ["save: wall time of a save in the background writer; cpu: its CPU time; wait: the "
              "loop's time handing it over;",
              "every: the experiment's default --checkpoint-every (chunks per save); share: "
              "(cpu + wait) / (every x chunk without checkpoints),",
              "the time saves take from a run whose chunks keep every core busy;",
              "run, w/o, ratio: whole runs with and without checkpoints (lr_sweep without them "
              "is one call, not chunks)",
              f"goal: share < {res['goal_share']:.0%} at the default chunk size: "
              + ("PASS" if res["all_goals_met"] else "FAIL")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
