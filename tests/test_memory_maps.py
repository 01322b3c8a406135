"""What conftest's ``_release_compiled_programs`` relies on: every program XLA:CPU compiles
holds memory mappings (past the kernel's limit its compiler segfaults) until
``jax.clear_caches`` lets them go."""

import jax
import jax.numpy as jnp
import pytest
from conftest import memory_maps


@pytest.mark.skipif(memory_maps() is None, reason="needs Linux's /proc/self/maps")
def test_compiled_programs_hold_memory_mappings_until_the_caches_are_cleared():
    jax.clear_caches()
    before = memory_maps()[0]
    f = jax.jit(lambda x: jnp.sin(x @ x.T).sum(0))
    for n in range(2, 42):  # 40 shapes, 40 executables
        f(jnp.ones((n, 3))).block_until_ready()
    grown = memory_maps()[0] - before
    assert grown >= 3 * 40, grown
    jax.clear_caches()
    assert memory_maps()[0] - before <= grown // 5
