"""The optimizers under study, built from optax, each a factory ``learning_rate -> transform``.

A factory takes the learning rate as its first argument, so ``train.fit`` can build the optimizer
inside a jitted run from a traced learning rate (no recompile per value). The other
hyperparameters (``beta``) may be traced too, e.g. ``jax.vmap`` over ``beta`` in a sweep.

Relation to optax's own momentum (problem set 004 11.1 uses the EMA form, alpha the learning rate):

* Momentum. v <- beta v + (1 - beta) g, theta <- theta - alpha v is exactly
  ``optax.sgd(alpha * (1 - beta), momentum=beta)``; its trace m <- beta m + g is v / (1 - beta).
* Nesterov. The problem set (004 11.1.1) takes the gradient at theta_t - alpha v_t, a look-ahead by
the whole
  last step. ``optax.sgd(alpha * (1 - beta), momentum=beta, nesterov=True)`` (Sutskever et al.
  2013) is, in the same units, v_{t+1} = beta v_t + (1 - beta) grad f(theta_t - alpha beta v_t),
  theta_{t+1} = theta_t - alpha v_{t+1}, its params being phi = theta - alpha beta v: it looks
  ahead only by the momentum part alpha beta v_t of the next step. In look-ahead coordinates both
  are phi <- phi - alpha ((1 - nu) g + nu v_{t+1}) (quasi-hyperbolic momentum), with nu = beta
  for optax and nu = 2 - 1/beta for the problem set. So they differ for 0 < beta < 1 (from the first
  step) and no learning rate and momentum of optax give the problem set's rule, except at beta = 1/2
  where it is plain gradient descent on phi, ``optax.sgd(alpha)``. Hence ``nesterov`` below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

OptimizerFactory = Callable[..., optax.GradientTransformation]


def momentum(learning_rate, beta=0.9) -> optax.GradientTransformation:
    """Momentum in EMA form: v <- beta v + (1 - beta) g, theta <- theta - alpha v (problem set 004
    11.1).

    optax.ema with debias=False keeps exactly this v (zero-initialised, no bias correction).
    """
    return optax.chain(optax.ema(beta, debias=False), optax.scale_by_learning_rate(learning_rate))


class NesterovState(NamedTuple):
    """The problem set's momentum v (same tree as the params), zero at the start."""

    v: optax.Params


def scale_by_problem_set_nesterov(beta) -> optax.GradientTransformation:
    """The problem set's Nesterov step before the learning rate, in look-ahead coordinates.

    Given g_t = grad f(phi_t) at the look-ahead point phi_t = theta_t - alpha v_t:
    v_{t+1} = beta v_t + (1 - beta) g_t, output 2 v_{t+1} - v_t, so that scaling by -alpha gives
    phi_{t+1} = theta_{t+1} - alpha v_{t+1} = phi_t - alpha (2 v_{t+1} - v_t).

    Args:
      beta: momentum parameter (a float or a traced scalar).

    Returns:
      A transformation whose state is ``NesterovState(v)``; v keeps the params' dtype.
    """

    def init_fn(params):
        return NesterovState(v=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        v = optax.tree.cast_like(optax.tree.update_moment(updates, state.v, beta, order=1), state.v)
        return jax.tree.map(lambda v_new, v_old: 2 * v_new - v_old, v, state.v), NesterovState(v)

    return optax.GradientTransformation(init_fn, update_fn)


def nesterov(learning_rate, beta=0.9) -> optax.GradientTransformation:
    """Nesterov momentum exactly as problem set 004 11.1.1 writes it, for a constant learning rate
    alpha.

    v_{t+1} = beta v_t + (1 - beta) grad f(theta_t - alpha v_t),
    theta_{t+1} = theta_t - alpha v_{t+1}.

    An optax transformation only sees the gradient at the params the loop holds, so those params
    are the look-ahead point phi_t = theta_t - alpha v_t (and the loss the loop reports is
    f(phi_t)); the problem set's theta_t = phi_t + alpha v_t is ``nesterov_theta``. Since v_0 = 0,
    phi_0 = theta_0. This is the change of coordinates of Sutskever et al. (2013), but the
    look-ahead is the problem set's alpha v_t, not optax's alpha beta v_t (see the module
    docstring).

    Args:
      learning_rate: alpha, a float or a traced scalar; not a schedule, since phi = theta - alpha v
        holds only for a constant alpha.
      beta: momentum parameter (a float or a traced scalar).

    Returns:
      ``chain(scale_by_problem_set_nesterov(beta), scale_by_learning_rate(alpha))``; its state's
      first element is ``NesterovState(v)``.
    """
    if callable(learning_rate):
        raise TypeError("nesterov needs a constant learning rate, not a schedule")
    return optax.chain(scale_by_problem_set_nesterov(beta),
                       optax.scale_by_learning_rate(learning_rate))


def nesterov_theta(params, opt_state, learning_rate):
    """The problem set's theta = phi + alpha v from the look-ahead ``params`` phi of ``nesterov``.

    Args:
      params: the params the training loop holds, phi = theta - alpha v.
      opt_state: the state of ``nesterov(learning_rate, beta)`` after the same step.
      learning_rate: alpha, the one the optimizer was built with.

    Returns:
      theta, a tree like ``params``.
    """
    return jax.tree.map(lambda phi, v: phi + learning_rate * v, params, opt_state[0].v)


def adagrad(learning_rate, eps: float = 1e-7) -> optax.GradientTransformation:
    """Adagrad as in problem set 004 11.1.2: G <- G + g^2, theta <- theta - alpha g / sqrt(G + eps).

    optax.adagrad starts its accumulator at 0.1 by default; the problem set starts it at 0.
    """
    return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=eps)


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": optax.sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "adam": optax.adam,  # already the problem set's rule (004 11.3), bias correction included
}


def get(name: str) -> OptimizerFactory:
    """The factory registered under ``name``; a clear error lists the known names."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        known = sorted(OPTIMIZERS)
        raise ValueError(f"unknown optimizer {name!r}; expected one of {known}") from None
