"""Every checkable claim of the problem sets, checked, as one report.

    python -m experiments.claims [--problem sets 004 --match Q6]

Runs each claim of ``jaxnets.theory.claims.ALL`` (computation decides: autodiff, float64,
quadrature, exhaustive enumeration) and prints, per claim: problem set and question, the claim in
one line, how it was checked, the measured error or outcome, pass/fail, and, where the problem set
states a number, the problem set's number beside the computed one, flagged DIFFERS when they
differ. Writes the same table as Markdown (claims.md) and the rows as JSON (results.json) into
runs/claims-<date>-<time>/. Exits with status 1 if any check fails. Each claim is also a test
(tests/test_claims.py).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import tyro
from tqdm.auto import tqdm

from jaxnets import runs
from jaxnets.theory import claims as C


@dataclasses.dataclass(frozen=True)
class Config:
    """Check every claim of the problem sets and write the report."""

    problem_sets: Annotated[tuple[str, ...], tyro.conf.arg(aliases=("--seeds",))] = ()
    """Only these problem sets (e.g. 000 004); default: all. (--seeds is an older spelling.)"""
    match: str = ""
    """Only claims whose question or statement contains this text (case-insensitive)."""
    out: Path = Path("runs")
    """Parent folder of the run folder (claims-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed)."""


def select(config: Config) -> list[C.Claim]:
    """The claims the flags pick; a filter that picks none is an error."""
    known = sorted({c.problem_set for c in C.ALL})
    unknown = [s for s in config.problem_sets if s not in known]
    if unknown:
        raise ValueError(f"--problem-sets: unknown problem set(s) {unknown}; the problem sets "
                         f"are {known}")
    m = config.match.lower()
    picked = [c for c in C.ALL if (not config.problem_sets or c.problem_set in config.problem_sets)
              and (m in c.question.lower() or m in c.statement.lower())]
    if not picked:
        raise ValueError(f"no claim matches --problem-sets {list(config.problem_sets)} --match "
                         f"{config.match!r}")
    return picked


def run(config: Config, progress: bool = True) -> dict:
    """Check the selected claims; write claims.md and results.json."""
    picked = select(config)
    run_dir = config.run_dir or runs.new_run_dir(config.out, "claims")
    rows = [C.check(c) for c in tqdm(picked, desc="claims", unit="claim", delay=3,
                                     disable=not progress)]
    summary = C.summary(rows)
    runs.atomic_write(run_dir / "claims.md", (
        f"# The problem sets' claims, checked\n\n{summary}\n\n{C.markdown(rows)}\n").encode())
    results = {"run_dir": str(run_dir), "summary": summary,
               "failed": sum(not r.outcome.passed for r in rows),
               "rows": [{"problem_set": r.claim.problem_set, "question": r.claim.question,
                         "claim": r.claim.statement, "how": r.claim.how,
                         "measured": r.outcome.measured, "passed": r.outcome.passed,
                         "stated_value": r.outcome.stated_value, "computed": r.outcome.computed,
                         "differs": r.outcome.differs, "seconds": round(r.seconds, 3)}
                        for r in rows]}
    runs.write_json(run_dir / "results.json", results)
    return results


def table(results: dict, width: int = 100) -> str:
    """One block per claim: "set Q  pass/FAIL  claim", then how, measured, stated vs computed."""
    lines = []
    for r in results["rows"]:
        head = f"{r['problem_set']} {r['question']:<10s} {'pass' if r['passed'] else 'FAIL'}  "
        lines.append(textwrap.fill(r["claim"], width, initial_indent=head,
                                   subsequent_indent=" " * len(head)))
        pad = " " * len(head)
        lines.append(textwrap.fill(f"checked: {r['how']}; {r['measured']}", width,
                                   initial_indent=pad, subsequent_indent=pad + "  "))
        if r["stated_value"] is not None:
            flag = "  DIFFERS" if r["differs"] else ""
            lines.append(f"{pad}the problem set says {r['stated_value']}; computed "
                         f"{r['computed']}{flag}")
    return "\n".join(lines + ["", results["summary"], f"run folder: {results['run_dir']}"])


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(Config, args=argv)
    try:
        results = run(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(table(results))
    if results["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
