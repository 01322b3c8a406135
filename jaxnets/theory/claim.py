"""A checkable claim from the problem sets, and the outcome of checking it.

Each topic module of ``jaxnets.theory`` lists its claims as ``CLAIMS: list[Claim]``;
``jaxnets.theory.claims.ALL`` gathers them, ``experiments.claims`` prints the report and
``tests/test_claims.py`` runs each one as a test. A claim's ``check`` is a function of no
arguments that computes (float64 where it matters: it may turn x64 on inside) and returns an
``Outcome``; it never raises for a failed claim, it says so. It is deterministic, so a claim
caches its outcome.

Where a problem set states a number, the outcome carries the problem set's number and the computed
one; they are flagged when they differ, whether or not the check passed (a check can pass while the
problem set's worked answer is wrong: the claim is then stated correctly and the problem set's
number is shown beside the computed one).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What checking a claim found."""

    passed: bool
    measured: str  # the measured error or outcome, one line ("max |err| 2.2e-16")
    stated_value: str | None = None  # the number the problem set states, if it states one
    computed: str | None = None  # the computed number to set beside it

    @property
    def differs(self) -> bool:
        """True when the problem set states a number and the computed one is not it."""
        return self.stated_value is not None and self.stated_value != self.computed


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of the report."""

    problem_set: str  # "000" .. "004"
    question: str  # "Q1", "Q5(a)", "15.1.3"
    statement: str  # the claim, one line, as the code states it (corrected where the set errs)
    how: str  # how it is checked, one line
    check: Callable[[], Outcome]

    def __post_init__(self):
        # A check is deterministic: compute it once per process (the report and the tests that
        # read the same claim share the result).
        object.__setattr__(self, "check", functools.cache(self.check))

    @property
    def name(self) -> str:
        """A unique, test-id friendly name: "004 Q9: <statement>"."""
        return f"{self.problem_set} {self.question}: {self.statement}"


def within(error: float, tol: float, what: str = "max |err|") -> Outcome:
    """Passed when error <= tol; measured reads "<what> <error> (tol <tol>)"."""
    return Outcome(bool(error <= tol), f"{what} {error:.2g} (tol {tol:.0g})")
