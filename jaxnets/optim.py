"""The optimizers under study, built from optax, each a factory ``learning_rate -> transform``.

A factory takes the learning rate as its first argument, so ``train.fit`` can build the optimizer
inside a jitted run from a traced learning rate (no recompile per value).
"""

from __future__ import annotations

from collections.abc import Callable

import optax

OptimizerFactory = Callable[..., optax.GradientTransformation]


def momentum(learning_rate, beta: float = 0.9) -> optax.GradientTransformation:
    """Momentum in EMA form: v <- beta v + (1 - beta) g, theta <- theta - alpha v (seed 004 11.1).

    optax.ema with debias=False keeps exactly this v (zero-initialised, no bias correction).
    """
    return optax.chain(optax.ema(beta, debias=False), optax.scale_by_learning_rate(learning_rate))


def adagrad(learning_rate, eps: float = 1e-7) -> optax.GradientTransformation:
    """Adagrad as in seed 004 11.1.2: G <- G + g^2, theta <- theta - alpha g / sqrt(G + eps).

    optax.adagrad starts its accumulator at 0.1 by default; the seed starts it at 0.
    """
    return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=eps)


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": optax.sgd,
    "momentum": momentum,
    "adagrad": adagrad,
    "adam": optax.adam,  # already the seed's rule (004 11.3), bias correction included
}


def get(name: str) -> OptimizerFactory:
    """The factory registered under ``name``; a clear error lists the known names."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        known = sorted(OPTIMIZERS)
        raise ValueError(f"unknown optimizer {name!r}; expected one of {known}") from None
