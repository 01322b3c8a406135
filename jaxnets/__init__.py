"""jaxnets: classic deep-learning derivations as pure, jittable JAX functions."""

import importlib.metadata


def _version() -> str:
    """The installed distribution's version ("0+unknown" when jaxnets is not installed)."""
    try:
        return importlib.metadata.version("jaxnets")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
