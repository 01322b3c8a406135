"""The opt-in persistent compilation cache (jaxnets.compile_cache): an experiment's
--compilation-cache or JAXNETS_CACHE_DIR, and a clear error for a path that is not a folder.

The cache runs only in subprocesses: the suite keeps it off (conftest.py: a jaxlib 0.10.2
SIGSEGV writing to it with many compilations in one process)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

from experiments import common, sin_mlp
from jaxnets import compile_cache

# Parse an experiment's flags (argv: module, flags...), which turns the cache on, compile a new
# function, and print the cache events: written ("cache_misses") and loaded ("cache_hits").
SCRIPT = """
import collections, importlib, json, sys
import jax
from experiments import common

events = collections.Counter()
jax.monitoring.register_event_listener(lambda event, **_: events.update([event]))
common.parse(importlib.import_module(sys.argv[1]).Config, sys.argv[2:])
jax.block_until_ready(jax.jit(lambda x: jax.numpy.sin(x) * 3 + 1)(jax.numpy.ones(7)))
print(json.dumps({k.rsplit("/", 1)[-1]: v for k, v in events.items() if "compilation_cache" in k}))
"""


def _compile(module: str, *args: str, **env: str) -> dict:
    """The cache events of SCRIPT in a fresh process (every compilation written to the cache)."""
    outer = {k: v for k, v in subprocess_env().items()  # the suite's cache, if on, stays out
             if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV)}
    env = outer | {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"} | env
    out = subprocess.run([sys.executable, "-c", SCRIPT, module, *args], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "new" / "xla"
    first = _compile("experiments.sin_mlp", "--compilation-cache", str(cache))
    assert first.get("cache_misses", 0) >= 1 and not first.get("cache_hits")
    written = sorted(p.name for p in cache.iterdir())
    assert written
    again = _compile("experiments.sin_mlp", JAXNETS_CACHE_DIR=str(cache))  # named by the env
    assert again.get("cache_hits", 0) >= 1 and not again.get("cache_misses")
    assert sorted(p.name for p in cache.iterdir()) == written  # nothing compiled anew
    off = _compile("experiments.sin_mlp")  # neither the flag nor the variable: no cache
    assert not off.get("cache_hits") and not off.get("cache_misses")


def test_benchmarks_ignore_the_environment_variable(tmp_path):
    """They time compiling: a cache would hide it."""
    events = _compile("experiments.benchmark_lenet", JAXNETS_CACHE_DIR=str(tmp_path / "xla"))
    assert not events.get("cache_hits") and not events.get("cache_misses")
    assert not (tmp_path / "xla").exists()


def test_a_path_that_is_not_a_folder_is_refused(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    with pytest.raises(ValueError, match=f"compilation cache {path}: not a folder"):
        compile_cache.enable(path)
    out = subprocess.run([sys.executable, "-m", "experiments.sin_mlp", "--compilation-cache",
                          str(path), "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, env=subprocess_env(), timeout=120)
    assert out.returncode == 1
    assert f"error: compilation cache {path}: not a folder" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no run folder made


def test_the_cache_folder_is_no_setting_of_a_run():
    """A resumed run may use another cache (or none): the folder changes no result."""
    cached = sin_mlp.Config(compilation_cache=ROOT / "xla")
    assert common.settings(cached) == common.settings(sin_mlp.Config())
