"""List the experiments: ``python -m experiments`` prints one line per runnable module, the
benchmarks apart. The summaries are read from the sources, so nothing heavy is imported."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

PACKAGE = Path(__file__).parent
NOT_RUNNABLE = frozenset({"common", "__main__"})
# A full stop that ends a sentence: followed by a capital, not the one of "et al.".
SENTENCE_END = re.compile(r"(?<!\bal)(?<=\.)\s+(?=[A-Z])")


def summary(path: Path) -> str:
    """The first sentence of the module docstring of the source file at ``path``, its lines
    joined ("" if none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(doc.strip().partition("\n\n")[0].split())
    return SENTENCE_END.split(paragraph, maxsplit=1)[0]


def modules() -> list[str]:
    """The names of the runnable modules of the package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)])
                  if not m.ispkg and m.name not in NOT_RUNNABLE)


def listing(names: list[str]) -> str:
    """``python -m experiments.NAME  — summary`` per name, aligned, the ``benchmark_*`` ones in a
    second group headed "Benchmarks"."""
    commands = {n: f"python -m experiments.{n}" for n in names}
    width = max(map(len, commands.values()))
    lines = {n: f"{c:<{width}}  — {summary(PACKAGE / f'{n}.py')}" for n, c in commands.items()}
    benchmarks = [lines[n] for n in names if n.startswith("benchmark_")]
    others = [lines[n] for n in names if not n.startswith("benchmark_")]
    return "\n".join(["Experiments", *others, "", "Benchmarks", *benchmarks])


if __name__ == "__main__":
    print(listing(modules()))
