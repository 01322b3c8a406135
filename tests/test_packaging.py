"""Packaging: the license, ``jaxnets.__version__``, and ``python -m experiments``'s listing."""

import ast
import re
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

import jaxnets


def test_version_is_pyprojects_and_the_license_is_mit():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert jaxnets.__version__ == project["version"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the jaxnets authors" in text


def test_python_m_experiments_lists_every_experiment_with_its_summary():
    out = subprocess.run([sys.executable, "-m", "experiments"], cwd=ROOT, capture_output=True,
                         text=True, env=subprocess_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    split = lines.index("Benchmarks")
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                   if p.stem not in ("common", "__init__", "__main__"))
    assert len(lines) == len(names) + 3  # two headings and a blank line
    for name in names:
        doc = ast.get_docstring(ast.parse((ROOT / "experiments" / f"{name}.py").read_text()))
        paragraph = " ".join(doc.split("\n\n")[0].split())  # the first sentence, whole
        first = re.split(r"(?<!\bal)(?<=\.)\s+(?=[A-Z])", paragraph, maxsplit=1)[0]
        [i] = [i for i, line in enumerate(lines) if f"python -m experiments.{name} " in line]
        assert lines[i].endswith(f"— {first}")
        assert not lines[i].rstrip().endswith((" of", " the", " a", " and"))  # not cut mid-way
        assert (i > split) == name.startswith("benchmark_")
    assert len({line.index("—") for line in lines if "—" in line}) == 1  # aligned
