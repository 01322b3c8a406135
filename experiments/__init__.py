"""Experiments: ``python -m experiments.NAME --help``."""
