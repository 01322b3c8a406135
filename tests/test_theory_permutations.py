"""jaxnets.theory.permutations (problem set 000 Q4(c)-(d)): the Lehmer-code enumeration against
itertools, the patch table's row-wise structure, the vectorised search against a brute-force
loop with a different row test (sorted rows), images whose equal rows add solutions, P_reverse;
and every claim of the module passes."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.models import mixer
from jaxnets.theory import permutations as pm

pytestmark = pytest.mark.usefixtures("x64")


def _params(side, patch, hidden=3, seed=0):
    return mixer.init(jax.random.key(seed), image_size=(side, side), in_channels=1, patch=patch,
                      hidden=hidden, tokens_mlp_dim=2, channels_mlp_dim=5, depth=1,
                      num_classes=2, dtype=jnp.float64)


def _image(side, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(side, side)))


def _brute_force(params, A):
    """All pi with sorted rows of U(A[pi]) == sorted rows of U(A), one permutation at a time."""
    def canonical(U):
        U = np.round(np.asarray(U), 9)
        return U[np.lexsort(U.T[::-1])]

    ref = canonical(pm.patch_table(params, A))
    perms = np.array(list(itertools.permutations(range(A.shape[0]))))
    tables = pm.patch_table(params, A[perms])
    return [list(p) for p, U in zip(perms, tables, strict=True)
            if np.array_equal(canonical(U), ref)]


# --------------------------------------------------------------------------------- claims


@pytest.mark.parametrize("claim", pm.CLAIMS, ids=lambda c: c.name)
def test_claim_passes(claim):
    outcome = claim.check()
    assert outcome.passed, outcome.measured
    assert (outcome.stated_value is None) == (outcome.computed is None)


def test_problem_set_count_flagged():
    c, d = (claim.check() for claim in pm.CLAIMS)
    assert c.differs and c.stated_value == "5" and c.computed.startswith("6")
    assert not d.differs


# ------------------------------------------------------------------------- permutations


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_nth_permutation_is_lexicographic(n):
    got = np.asarray(pm.nth_permutation(jnp.arange(math.factorial(n)), n))
    np.testing.assert_array_equal(got, list(itertools.permutations(range(n))))


def test_nth_permutation_last_of_ten_and_bad_input():
    np.testing.assert_array_equal(pm.nth_permutation(math.factorial(10) - 1, 10),
                                  list(range(9, -1, -1)))
    with pytest.raises(ValueError, match=r"\[0, 4!\)"):
        pm.nth_permutation(jnp.array([0, 24]), 4)
    with pytest.raises(ValueError, match="n must be"):
        pm.nth_permutation(0, 0)


def test_permutation_matrix_permutes_rows():
    pi = jnp.array([2, 0, 3, 1])
    P = pm.permutation_matrix(pi)
    A = _image(4)
    np.testing.assert_array_equal(P @ A, A[pi])
    np.testing.assert_array_equal(P @ P.T, np.eye(4))
    with pytest.raises(ValueError, match="permutation"):
        pm.permutation_matrix(jnp.array([0, 0, 1]))


def test_block_permutations():
    blocks = np.asarray(pm.block_permutations(6, 2))
    assert blocks.shape == (6, 6) and len({tuple(b) for b in blocks}) == 6
    for b in blocks:
        assert sorted(b) == list(range(6))
        assert all(b[2 * i + 1] == b[2 * i] + 1 and b[2 * i] % 2 == 0 for i in range(3))
    np.testing.assert_array_equal(pm.block_permutations(9, 3)[0], range(9))
    with pytest.raises(ValueError, match="dividing"):
        pm.block_permutations(9, 2)


# ------------------------------------------------------------------------------- the table


def test_patch_table_acts_on_each_patch_alone():
    params, A = _params(6, 2), _image(6)
    U = np.asarray(pm.patch_table(params, A))
    assert U.shape == (9, 3)
    B = A.at[2:4, 4:6].add(1.0)  # patch (1, 2), row-major index 5
    changed = np.flatnonzero(np.any(np.asarray(pm.patch_table(params, B)) != U, axis=1))
    np.testing.assert_array_equal(changed, [5])


def test_block_move_permutes_the_table_rows():
    """Moving 2-row blocks (0, 1, 2) -> (2, 0, 1) of a 6x6 image in 2x2 patches moves
    patch rows the same way: U(PA) = Q U(A), Q the block move on the 3 x 3 patch grid."""
    params, A = _params(6, 2), _image(6)
    pi = jnp.array([4, 5, 0, 1, 2, 3])
    q = jnp.array([6, 7, 8, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(pm.patch_table(params, A[pi]),
                                  pm.patch_table(params, A)[q])


# -------------------------------------------------------------------------------- search


@pytest.mark.parametrize("side, patch, chunk", [(4, 2, 5), (6, 2, 7), (6, 3, 720)])
def test_search_matches_brute_force_and_blocks(side, patch, chunk):
    params, A = _params(side, patch), _image(side)
    found = np.asarray(pm.preserving_row_permutations(params, A, chunk=chunk))
    assert found.tolist() == _brute_force(params, A)
    np.testing.assert_array_equal(found, pm.block_permutations(side, patch))
    assert len(found) == math.factorial(side // patch)


def test_equal_rows_add_solutions():
    """Rows 0 and 1 equal: exchanging them leaves the image as it is, so each block move also
    works with 0 and 1 exchanged: 2 * 3! = 12 solutions."""
    params, A = _params(6, 2), _image(6)
    A = A.at[1].set(A[0])
    found = np.asarray(pm.preserving_row_permutations(params, A, chunk=100))
    swap = np.array([1, 0, 2, 3, 4, 5])
    blocks = np.asarray(pm.block_permutations(6, 2))
    expect = sorted({tuple(b) for b in blocks} | {tuple(swap[b]) for b in blocks})
    assert [tuple(p) for p in found] == expect and len(expect) == 12
    assert found.tolist() == _brute_force(params, A)


def test_search_bad_input():
    params = _params(6, 2)
    with pytest.raises(ValueError, match="image"):
        pm.preserving_row_permutations(params, jnp.ones((1, 6, 6)))
    with pytest.raises(ValueError, match="<= 10"):
        pm.preserving_row_permutations(params, jnp.ones((12, 12)))
    with pytest.raises(ValueError, match="chunk"):
        pm.preserving_row_permutations(params, _image(6), chunk=0)


# ------------------------------------------------------------------------------- reverse


@pytest.mark.parametrize("blocks, involution", [((0, 2, 1), True), ((1, 2, 0), False)])
def test_reverse_permutation(blocks, involution):
    params = mixer.init(jax.random.key(0), image_size=(9, 9), in_channels=1, patch=3, hidden=6,
                        tokens_mlp_dim=2, channels_mlp_dim=12, depth=1, num_classes=2,
                        dtype=jnp.float64)
    A = _image(9)
    pi = jnp.array([3 * b + r for b in blocks for r in range(3)])
    U, U_mod = pm.patch_table(params, A), pm.patch_table(params, A[pi])
    P_rev, P = pm.reverse_permutation(U_mod, U), pm.permutation_matrix(pi)
    np.testing.assert_array_equal(P_rev @ U_mod, U)
    np.testing.assert_array_equal(P_rev, P.T)
    assert bool(jnp.all(P_rev == P)) == involution


def test_reverse_permutation_refuses_a_non_permutation():
    params, A = _params(6, 2), _image(6)
    U = pm.patch_table(params, A)
    with pytest.raises(ValueError, match="not a row permutation"):
        pm.reverse_permutation(U.at[0].add(1.0), U)
    with pytest.raises(ValueError, match="one shape"):
        pm.reverse_permutation(U[:-1], U)
