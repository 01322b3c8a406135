"""README promises: CI runs its test command, its examples run, the tree passes ruff."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnets.models import rnn

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang, text=README):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_two_commands_and_ci_runs_the_test_command():
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert "python -m experiments.sin_mlp" in commands[0]
    assert commands[1].endswith("python -m pytest -n auto --maxprocesses 4")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 250
    for word in ("session", "the issue"):
        assert word not in README.lower()


def test_readme_python_blocks_run():
    """The sweep, then the pure functions, in one namespace (the second block uses the first's
    names)."""
    namespace: dict = {}
    for code in _blocks("python"):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].train_loss.shape == (4, 2, 3, 500)
    member, alone = namespace["result"].member(1, 1, 2), namespace["alone"]
    np.testing.assert_allclose(member.train_loss, alone.train_loss, rtol=1e-5, atol=1e-6)
    assert namespace["logits"].shape == (1437, 10)
    auto = jax.value_and_grad(rnn.loss)(namespace["lstm"], (namespace["xs"], namespace["target"]))
    np.testing.assert_allclose(namespace["loss"], auto[0], rtol=1e-6)
    for k, g in auto[1].items():
        np.testing.assert_allclose(namespace["lstm_grads"][k], g, rtol=2e-4, atol=1e-6)


def test_readme_experiment_command_runs(tmp_path):
    """The 'run an experiment with flags' command, in a scratch folder."""
    (command,) = [b.strip() for b in _blocks("bash") if b.strip().startswith("python -m")]
    args = command.split()[1:]
    out = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir = tmp_path / "runs" / "momentum"
    config = (run_dir / "config.json").read_text()
    assert '"optimizer": "momentum"' in config and '"steps": 400' in config
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4  # 400 / 100


def test_every_experiment_in_the_table_exists():
    names = set(re.findall(r"`experiments\.(\w+)`", README))
    assert names and all((ROOT / "experiments" / f"{n}.py").exists() for n in names)
    listed = {p.stem for p in (ROOT / "experiments").glob("*.py")
              if not p.stem.startswith(("benchmark_", "_")) and p.stem != "common"}
    assert listed <= names, listed - names


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
