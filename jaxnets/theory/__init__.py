"""Executable theory: results from the seeds as tested functions.

- conv arithmetic (output size, parameters, multiplications, receptive field, a (k, s, p, d)
  solver, stack summaries): jaxnets.theory.conv_arith
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
