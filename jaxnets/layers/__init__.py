"""Layers as pure functions on batched NHWC / [..., C] arrays, each forward paired with its
hand-derived backward where the problem sets derive one.

- ``dense``, ``dense_init``, ``gelu``: jaxnets.layers.dense
- ``conv2d``, ``conv2d_backward`` (backward as convolutions) and ``conv2d_manual`` (conv2d
  differentiated by the hand-derived gradients): jaxnets.layers.conv
- ``max_pool``, ``avg_pool`` and their backward passes, ``max_pool_manual`` (max_pool
  differentiated by max_pool_backward): jaxnets.layers.pool
- the manual-gradient functions take ``impl``: None (the default) reaches the fast paths of
  jaxnets.kernels where they pay, "xla" runs the maths as written here
- ``conv1d``, ``correlate1d`` (numpy.convolve's full / valid / same): jaxnets.layers.conv1d
- ``layer_norm``, ``batch_norm`` and ``batch_norm_backward``: jaxnets.layers.norm
"""

from jaxnets.layers.conv import ConvGrads, conv2d, conv2d_backward, conv2d_manual, conv_config
from jaxnets.layers.conv1d import conv1d, correlate1d
from jaxnets.layers.dense import dense, dense_init, gelu
from jaxnets.layers.norm import BatchNormGrads, batch_norm, batch_norm_backward, layer_norm
from jaxnets.layers.pool import (
    avg_pool,
    avg_pool_backward,
    max_pool,
    max_pool_backward,
    max_pool_manual,
)

__all__ = [
    "BatchNormGrads",
    "ConvGrads",
    "avg_pool",
    "avg_pool_backward",
    "batch_norm",
    "batch_norm_backward",
    "conv1d",
    "conv2d",
    "conv2d_backward",
    "conv2d_manual",
    "conv_config",
    "correlate1d",
    "dense",
    "dense_init",
    "gelu",
    "layer_norm",
    "max_pool",
    "max_pool_backward",
    "max_pool_manual",
]
