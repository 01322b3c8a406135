"""README promises: CI runs its test command, its code runs, the tree passes ruff."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_two_commands_and_ci_runs_the_test_command():
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert "python -m experiments.sin_mlp" in commands[0]
    assert commands[1].endswith("python -m pytest -n auto --maxprocesses 4")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_python_block_runs():
    (code,) = _blocks("python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].train_loss.shape == (4, 2, 3, 500)
    member, alone = namespace["result"].member(1, 1, 2), namespace["alone"]
    np.testing.assert_allclose(member.train_loss, alone.train_loss, rtol=1e-5, atol=1e-6)
    assert namespace["logits"].shape == (1437, 10)


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
