"""Every checkable claim of the problem sets, gathered from the topic modules of ``jaxnets.theory``.

``ALL`` lists them in report order (by problem set, then question); ``run`` checks them and
``markdown`` / ``format_table`` render the report (``python -m experiments.claims``).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import time

from jaxnets.theory.claim import Claim, Outcome

TOPICS = ("activations", "information", "convergence", "linalg", "constructions", "permutations",
          "boolean", "worked", "conv_arith", "backprop", "gan")


def _order(c: Claim) -> tuple:
    nums = [int(n) for n in re.findall(r"\d+", c.question)]
    return c.problem_set, nums


def gather(topics: tuple[str, ...] = TOPICS) -> list[Claim]:
    """The CLAIMS of each topic module, sorted by problem set and question (stable within one)."""
    claims = [c for t in topics
              for c in importlib.import_module(f"jaxnets.theory.{t}").CLAIMS]
    return sorted(claims, key=_order)


ALL: list[Claim] = gather()


@dataclasses.dataclass(frozen=True)
class Row:
    """A checked claim."""

    claim: Claim
    outcome: Outcome
    seconds: float


def check(claim: Claim) -> Row:
    """Run one claim's check; an exception inside it is a failed row, not a crash."""
    t = time.perf_counter()
    try:
        outcome = claim.check()
    except Exception as e:  # noqa: BLE001 - the report shows it
        outcome = Outcome(False, f"raised {type(e).__name__}: {e}")
    return Row(claim, outcome, time.perf_counter() - t)


def _cells(row: Row) -> list[str]:
    c, o = row.claim, row.outcome
    stated = "" if o.stated_value is None else o.stated_value
    computed = "" if o.computed is None else o.computed
    return [f"{c.problem_set} {c.question}", c.statement, c.how, o.measured, stated, computed,
            "DIFFERS" if o.differs else "", "pass" if o.passed else "FAIL"]


HEADER = ["problem set", "claim", "how checked", "measured", "stated", "computed", "", "result"]


def markdown(rows: list[Row]) -> str:
    """The report as a Markdown table (Markdown's special characters in cells escaped, so that
    "w*" or "a_i" read as written)."""
    esc = lambda s: re.sub(r"([\\`*_\[\]|])", r"\\\1", s)  # noqa: E731
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(esc(x) for x in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """"N claims: P pass, F fail; D where the problem set's number differs"."""
    failed = sum(not r.outcome.passed for r in rows)
    differs = sum(r.outcome.differs for r in rows)
    return (f"{len(rows)} claims: {len(rows) - failed} pass, {failed} fail; {differs} where the "
            f"problem set's stated answer differs from the computed one")
