"""Platform-specific fast paths of jaxnets.layers, reached only through an explicit switch.

The layers keep the maths (``conv2d_backward`` as convolutions, ``max_pool_backward`` as
transposed window views); the functions here compute the same values in forms that XLA:CPU
runs faster. A public manual-gradient function chooses between them with ``impl``:

- ``layers.conv2d_manual(..., impl=None | "xla" | "rows")``: ``conv_rows``, the convolution's
  gradients (and its forward under jax.grad) as matrix products over image rows, the
  single-channel forward as shifted multiply-adds, the bias gradient summed in two stages.
- ``layers.max_pool_manual`` and ``layers.max_pool_backward(..., impl=None | "xla" |
  "fused")``: ``pool``, the maxima and their arg-max from one variadic reduction, and the
  routing of non-overlapping windows by tiling.

``impl="xla"`` runs the maths as written in jaxnets.layers; ``impl=None`` (the default) is
the choice jaxnets has always made, the same on every platform: the kernels wherever their
named thresholds say they pay. Both give the same values and gradients (tests/test_conv.py,
tests/test_pool.py); the measurements behind each choice are in the README's speed notes and
experiments/benchmark_lenet.py.
"""
