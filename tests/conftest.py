"""Shared test settings: hypothesis profile, float64 scope, relative-error helper, and running an
experiment module as a user would."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# With JAXNETS_TESTS_CACHE=1: one persistent XLA compilation cache per test session, shared by
# the xdist workers and by the experiments run as subprocesses (set before jax is imported,
# which reads these variables). Off by default: with it, jaxlib 0.10.2 crashes (SIGSEGV in
# compilation_cache.put_executable_and_time) in test_train.py::test_chunked_run_equals_fit
# (2 runs of 3 on a 2-core Xeon); the suite takes 17.6 min there without it.
if os.environ.get("JAXNETS_TESTS_CACHE") == "1" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxnets-tests-xla-")
    os.environ["JAXNETS_TESTS_OWN_CACHE"] = "1"
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import chex
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Jitted functions compile on first call, so no per-example deadline; few examples keep CI short
# (each drawn shape compiles anew: two thirds of these tests' time is compiling). Run
# HYPOTHESIS_PROFILE=thorough for 200 examples per property.
settings.register_profile(
    "jaxnets", deadline=None, max_examples=5, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
settings.register_profile("thorough", parent=settings.get_profile("jaxnets"), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "jaxnets"))

# float32 tolerances assume float32 products; GPUs multiply float32 in TF32 (10-bit mantissas)
# by default, which failed test_apply_is_vmappable_and_batch_first on an H200. No-op on CPU.
jax.config.update("jax_default_matmul_precision", "highest")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")  # for experiment subprocesses

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


def subprocess_env() -> dict[str, str]:
    """os.environ with the repo root in front of PYTHONPATH (kept: packages may live there)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


def run_experiment(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m experiments.<module> *args`` in a subprocess from the repo root (text output
    captured)."""
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)


def memory_maps() -> tuple[int, int] | None:
    """How many memory mappings this process holds (Linux), and the kernel's limit on them."""
    try:
        with open("/proc/self/maps") as f, open("/proc/sys/vm/max_map_count") as g:
            return sum(1 for _ in f), int(g.read())
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After a test module, free every compiled program (``jax.clear_caches``) once this process
    holds half the kernel's limit on memory mappings. XLA:CPU maps about six regions for each
    executable and keeps them while its jit cache does: an xdist worker running half the suite
    reached 64,189 of the 65,530 allowed. Past the limit mmap fails, which we take to be why
    CI's workers died late in the run, each time in another test (SIGSEGV in XLA's
    backend_compile_and_load)."""
    yield
    maps = memory_maps()
    if maps is not None and maps[0] > maps[1] // 2:
        jax.clear_caches()


@pytest.fixture
def x64():
    """Enable float64 for the duration of one test."""
    with jax.enable_x64(True):
        yield


def assert_same_run(a, b, cpu_rtol: float = 0.0) -> None:
    """Two runs of one computation compiled as different programs (a chunked loop and one
    scan, a traced and a constant hyperparameter, other block sizes): on CPU bit for bit (or to
    cpu_rtol, atol cpu_rtol / 10); on a GPU XLA may round differently across programs (1-ulp
    differences seen on an H200), so to float32 rounding there (rtol 1e-5, atol 1e-6)."""
    if jax.default_backend() != "cpu":
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    elif cpu_rtol:
        chex.assert_trees_all_close(a, b, rtol=cpu_rtol, atol=cpu_rtol / 10)
    else:
        chex.assert_trees_all_equal(a, b)


# What a finished run folder holds besides an experiment's own files: TensorBoard event files
# when tensorboardX (jaxnets[tb]) is installed.
TB = {"tensorboard"} if importlib.util.find_spec("tensorboardX") else set()


def rel_err(a, b) -> float:
    """max over leaves of ||a - b|| / ||b|| (Frobenius norms)."""
    errs = jax.tree.leaves(jax.tree.map(
        lambda u, v: np.linalg.norm(np.asarray(u, np.float64) - np.asarray(v, np.float64))
        / max(np.linalg.norm(np.asarray(v, np.float64)), 1e-300), a, b))
    return max(float(e) for e in errs)


def all_eqns(jaxpr):
    """Every equation of a jaxpr, those of its sub-jaxprs (pjit, custom_vjp, scan...) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else [value]:
                if hasattr(sub, "eqns"):
                    yield from all_eqns(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub, "consts"):
                    yield from all_eqns(sub.jaxpr)


@pytest.fixture
def drives(monkeypatch):
    """The list of (spec, lead) of every ``jaxnets.train.driver.drive`` call while the test
    runs: every training loop goes through that one driver."""
    from jaxnets.train import driver

    calls, real = [], driver.drive

    def counted(spec, state, run, **kw):
        calls.append((spec, kw.get("lead", 0)))
        return real(spec, state, run, **kw)

    monkeypatch.setattr(driver, "drive", counted)
    return calls


def step_kinds(drives) -> list[str]:
    """The step class of each recorded driver call."""
    return [type(spec.step).__name__ for spec, _ in drives]


def pytest_sessionfinish(session):
    """The session's compilation cache goes when the session ends (in the controller)."""
    if not hasattr(session.config, "workerinput") and os.environ.get("JAXNETS_TESTS_OWN_CACHE"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

