"""jaxnets: classic deep-learning derivations as pure, jittable JAX functions."""
