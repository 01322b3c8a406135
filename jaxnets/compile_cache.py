"""Opt-in persistent XLA compilation cache: a second run of the same program loads its compiled
executables from disk instead of compiling them again (seconds for each experiment).

    from jaxnets import compile_cache
    compile_cache.enable("~/.cache/jaxnets-xla")  # or JAXNETS_CACHE_DIR=... and from_env()

Call it before the first compilation you want cached (earlier ones are compiled as usual). The
cache is trusted: executables in it run as your code, so keep it in a folder only you can write.
Experiments take ``--compilation-cache DIR`` or the ``JAXNETS_CACHE_DIR`` environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "JAXNETS_CACHE_DIR"
# Programs compiled faster than this are not written (JAX's default is 1 s); a user's own
# JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS wins.
MIN_COMPILE_SECONDS = 0.5


def enable(path: str | Path) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (created if needed); return it
    resolved. ValueError if ``path`` exists and is not a folder."""
    folder = Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"compilation cache {path}: not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder


def from_env() -> Path | None:
    """``enable`` the folder named by ``JAXNETS_CACHE_DIR``; None (cache left off) when unset or
    empty."""
    path = os.environ.get(ENV)
    return enable(path) if path else None
