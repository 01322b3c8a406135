"""experiments/benchmark_engine.py at a tiny size against the engine of an older commit, checked
out with ``git worktree add``: every case timed on both sides, and old and new agreeing."""

import json
import math
import shutil
import subprocess

import jax
import numpy as np
import pytest
from conftest import ROOT

from experiments import benchmark_engine as be


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=60)


def old_engine_commit() -> str:
    """HEAD where it still holds the old engine (jaxnets/train.py, a module), else the parent of
    the commit that removed it; skips the test when git, the repository or the commit is
    unavailable."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: no old checkout to compare with")
    head = _git("rev-parse", "HEAD")
    if head.returncode:
        pytest.skip(f"{ROOT} is not a git checkout with a commit: {head.stderr.strip()}")
    commit = head.stdout.strip()
    if _git("cat-file", "-e", f"{commit}:jaxnets/train.py").returncode:
        removed = _git("rev-list", "-1", commit, "--", "jaxnets/train.py").stdout.strip()
        if not removed or _git("cat-file", "-e", f"{removed}^:jaxnets/train.py").returncode:
            pytest.skip("no commit in this repository's history holds the old engine "
                        "(jaxnets/train.py)")
        commit = _git("rev-parse", f"{removed}^").stdout.strip()
    return commit


@pytest.fixture
def old_checkout(tmp_path):
    commit = old_engine_commit()
    path = tmp_path / "old"
    added = _git("worktree", "add", "--detach", str(path), commit)
    if added.returncode:
        pytest.skip(f"git worktree add of {commit} failed: {added.stderr.strip()}")
    try:
        yield path
    finally:
        _git("worktree", "remove", "--force", str(path))
        _git("worktree", "prune")


@pytest.mark.slow
def test_benchmark_engine_runs_small_and_old_and_new_agree(old_checkout, tmp_path, capsys):
    out = tmp_path / "bench.json"
    be.main(["--old", str(old_checkout), "--steps", "8", "--ks", "2", "--sweep-data", "digits",
             "mnist", "--data-dir", str(tmp_path / "no-mnist"), "--lenet-steps", "2",
             "--gan-seeds", "2", "--gan-steps", "8", "--rounds", "2", "--compile-rounds", "0",
             "--min-time", "0", "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    names = ["fit", "sweep/digits/K=2", "lenet/step", "lenet/scan", "gan/ring"]
    assert [r["case"] for r in res["results"]] == names
    assert len(res["notes"]) == 1 and "sweep mnist skipped" in res["notes"][0]
    assert res["old"]["path"] == str(old_checkout.resolve())
    assert res["old"]["loaded_as"].endswith("jaxnets_old")
    env = res["environment"]
    assert env["cpu"] in printed.splitlines()[1] and env["vector_units"] in res["machine"]
    for r in res["results"]:
        for side in ("old", "new"):
            assert math.isfinite(r["median_s"][side]) and r["median_s"][side] > 0
            assert len(r["times_s"][side]) == 2 and all(t > 0 for t in r["times_s"][side])
            assert r["compile_s"][side] > 0  # each case's functions are new: both compile
        assert r["ratio"] == pytest.approx(float(np.median(
            np.divide(r["times_s"]["new"], r["times_s"]["old"]))))
        assert r["compile_ratio"] == pytest.approx(r["compile_s"]["new"] / r["compile_s"]["old"])
        # old and new compute the same numbers: bit for bit on CPU for the supervised steps;
        # the GAN's two programs round differently in the last bit after a few steps, so it is
        # checked on its first steps' losses (here all 8 steps)
        a = r["agreement"]
        assert a["checked_max_rel_diff"] <= 1e-5 and a["max_rel_diff"] <= 1e-5
        if r["case"] == "gan/ring":
            assert a["checked"] == "the losses of the first 8 steps"
        elif jax.default_backend() == "cpu":
            assert a["identical"] and a["max_abs_diff"] == 0
        assert r["case"] in printed


def test_agreement_fails_when_old_and_new_differ():
    out = {"params": {"W": np.ones((3, 2), np.float32)}, "loss": np.arange(4.0)}
    assert be.agreement(out, out, 0.0) == {
        "max_abs_diff": 0.0, "max_rel_diff": 0.0, "identical": True, "checked": "everything",
        "checked_max_rel_diff": 0.0}
    other = {"params": {"W": np.ones((3, 2), np.float32)}, "loss": np.arange(4.0) + 1e-3}
    with pytest.raises(AssertionError, match="old and new differ"):
        be.agreement(out, other, 1e-5)
    assert be.agreement(out, other, 1e-3)["identical"] is False
    # only the checked part must agree; the rest is reported
    later = {**out, "loss": np.array([0.0, 1.0, 2.0, 3.5])}
    a = be.agreement(out, later, 1e-5, lambda o: o["loss"][:3], "the first 3 losses")
    assert a["checked_max_rel_diff"] == 0 and a["max_abs_diff"] == 0.5
    with pytest.raises(AssertionError, match="differ in the first 4 losses"):
        be.agreement(out, later, 1e-5, lambda o: o["loss"][:4], "the first 4 losses")
    with pytest.raises(AssertionError, match="NaN positions"):
        be.agreement(out, {**out, "loss": np.array([0.0, np.nan, 2.0, 3.0])}, 1.0)


def test_old_imports_are_rewritten():
    src = ("from jaxnets import data, train\nimport jaxnets.models.gan as g\n"
           "from experiments import common\nx = jaxnets.train.fit\ny = 'jaxnets_old.x'\n"
           "from myjaxnets import z\n")
    assert be._rewrite(src, ("jaxnets", "experiments")) == (
        "from jaxnets_old import data, train\nimport jaxnets_old.models.gan as g\n"
        "from experiments_old import common\nx = jaxnets_old.train.fit\ny = 'jaxnets_old.x'\n"
        "from myjaxnets import z\n")


def test_a_checkout_without_the_old_engine_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no jaxnets/ package"):
        be.load_old(tmp_path)
    (tmp_path / "jaxnets" / "train").mkdir(parents=True)
    (tmp_path / "jaxnets" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="jaxnets/train.py"):
        be.load_old(tmp_path)
