"""Executable theory: the problem sets' checkable claims as tested functions, grouped by topic.

- conv arithmetic (output size, parameters, multiplications, receptive field, a (k, s, p, d)
  solver, stack summaries): jaxnets.theory.conv_arith (its names are re-exported here)
- activations and softmax (bounds, identities, invariances, limits, H' = delta):
  jaxnets.theory.activations
- cross-entropy, KL and maximum entropy: jaxnets.theory.information
- gradient descent and Newton's method: jaxnets.theory.convergence
- moments and trace minimisation over orthonormal frames: jaxnets.theory.linalg
- networks rewritten (sigmoid -> tanh, interpolation, conv -> dense): jaxnets.theory.constructions
- the Mixer's patch permutations: jaxnets.theory.permutations
- boolean functions as threshold networks: jaxnets.theory.boolean
- worked examples (chain rule, one backprop step): jaxnets.theory.worked
- the hand-derived gradients of the other modules, as claims: jaxnets.theory.backprop
- the optimal discriminator, V(D) and the JSD by quadrature: jaxnets.theory.gan

Each topic module ends with ``CLAIMS``; ``jaxnets.theory.claims.ALL`` gathers them for the
report (``python -m experiments.claims``) and tests/test_claims.py runs each one.
"""

from jaxnets.theory.conv_arith import (
    KSPD,
    Conv,
    Pool,
    conv_multiplications,
    conv_params,
    dilated_kernel,
    format_summary,
    output_size,
    receptive_field,
    solve,
    summarize,
)

__all__ = [
    "KSPD",
    "Conv",
    "Pool",
    "conv_multiplications",
    "conv_params",
    "dilated_kernel",
    "format_summary",
    "output_size",
    "receptive_field",
    "solve",
    "summarize",
]
