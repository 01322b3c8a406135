"""Which pixel-row permutations of an image only permute the rows of the Mixer's table (problem set
000 Q4(c)-(d)).

Setup (Q4(c)): an image A [H, W] (one channel) is cut into P x P patches (S = HW / P^2,
row-major over the patch grid, ``models.mixer.patchify``), each patch embedded by the same
linear map (X [S, C]), then the channel-mixing MLP acts on each row alike: U = channel_mixing(X)
[S, C] (``patch_table``). The modified image is P A with P = [e_pi(1); ...; e_pi(H)], i.e.
(P A)_i = A_pi(i) (``permutation_matrix``). Both maps act on one patch at a time, so U(P A) is a
row permutation of U(A) when P A has the same patches as A; for a generic image that happens
exactly when pi moves whole blocks of P rows and keeps the rows of a block in order: (H / P)!
permutations, the identity included (``block_permutations``).
``preserving_row_permutations`` checks this by brute force over all H! permutations.

If U(P A) = Q U(A), with Q the permutation P induces on the patches, then P_reverse = Q^T. For
block moves of the 9 x 9 image in 3 x 3 patches, Q and P have the same index pattern (three
pixel rows and three patches per block), so P_reverse = P^T, which equals P only when P is its
own inverse.

Errata in the problem sets (problem set 000 Q4, all computed in ``CLAIMS``):
- Q4(c) lists 5 block orders "different from the original" as the answer to "find all possible
  P"; the identity qualifies too: 3! = 6, and the enumeration of all 9! = 362,880 row
  permutations finds exactly these 6 for a random image.
- Q4(c) writes P_1 = [e_pi(1); e_pi(2); e_pi(3); e_pi(7); ...], mixing up pi and its values: the
  matrix is [e_1; e_2; e_3; e_7; e_8; e_9; e_4; e_5; e_6].
- Q4(d): X_m1 and U_m1 list 8 rows (L(A_13) is missing; there are 9). P_reverse = P_1 is right,
  but only because that block swap is its own inverse; in general P_reverse = P^T here, and for
  the cyclic A_m3 (blocks 2, 3, 1) P_reverse = P_3^T != P_3.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from jaxnets._checks import is_concrete
from jaxnets.models import mixer
from jaxnets.theory.claim import Claim, Outcome

ULPS = 1000  # rows of U match when max |difference| <= ULPS eps max |U| (eps of U's dtype)
MAX_ROWS = 10  # enumeration of all H! permutations: 10! = 3,628,800 at most


def nth_permutation(k: Array, n: int) -> Array:
    """The k-th permutation of 0..n-1 in lexicographic order (Lehmer code), vectorised.

    Digit i of k in the factorial base, d_i = floor(k / (n-1-i)!) mod (n-i), picks the d_i-th
    smallest value not used yet. Args: k: int array [...] in [0, n!). Returns: [..., n] int32.
    """
    if not (isinstance(n, int) and 1 <= n <= 12):
        raise ValueError(f"nth_permutation: n must be an int in 1..12, got {n!r}")
    k = jnp.asarray(k, jnp.int32)
    if is_concrete(k) and k.size:
        lo, hi = int(jnp.min(k)), int(jnp.max(k))
        if lo < 0 or hi >= math.factorial(n):
            raise ValueError(f"nth_permutation: k must be in [0, {n}!), got values in "
                             f"[{lo}, {hi}]")
    free = jnp.ones((*k.shape, n), bool)
    out = []
    for i in range(n):
        d = (k // math.factorial(n - 1 - i)) % (n - i)
        rank = jnp.cumsum(free, axis=-1) - 1
        pick = jnp.argmax(free & (rank == d[..., None]), axis=-1).astype(jnp.int32)
        out.append(pick)
        free = free & (jnp.arange(n) != pick[..., None])
    return jnp.stack(out, axis=-1)


def permutation_matrix(pi: Array) -> Array:
    """P = [e_pi(1); ...; e_pi(n)], shape [n, n], so that (P A)_i = A_pi(i); pi: a permutation."""
    pi = jnp.asarray(pi)
    if pi.ndim != 1 or (is_concrete(pi) and sorted(np.asarray(pi).tolist()) != list(range(
            pi.shape[0]))):
        raise ValueError(f"permutation_matrix: pi must be a permutation of 0..n-1, got {pi}")
    return jnp.eye(pi.shape[0], dtype=jnp.int32)[pi]


def block_permutations(n: int, block: int) -> Array:
    """The (n / block)! permutations of 0..n-1 that reorder whole blocks of ``block``
    consecutive indices and keep each block's order, lexicographic. Returns [(n/block)!, n]."""
    if not (isinstance(n, int) and isinstance(block, int) and block >= 1 and n >= 1
            and n % block == 0):
        raise ValueError(f"block_permutations: need ints n >= 1, block >= 1 dividing n, got "
                         f"{n!r}, {block!r}")
    orders = itertools.permutations(range(n // block))
    return jnp.array([[b * block + r for b in order for r in range(block)] for order in orders],
                     jnp.int32)


@jax.jit
def patch_table(params: mixer.Params, A: Array) -> Array:
    """U = channel_mixing(embed(A)): the shared patch embedding, then the first Mixer layer's
    channel-mixing MLP on each row. params: a Mixer's (C_in = 1); A: [..., H, W].
    Returns [..., S, C]."""
    X = mixer.embed(params["embed"], jnp.asarray(A)[..., None])
    return mixer.channel_mixing(mixer.layer(params, 0), X)


@jax.jit
def _matches(U_mod: Array, U: Array) -> Array:
    """[..., S, S]: row i of U_mod equals row j of U to ULPS rounding units of max |U|."""
    tol = ULPS * jnp.finfo(U.dtype).eps * jnp.max(jnp.abs(U))
    return jnp.max(jnp.abs(U_mod[..., :, None, :] - U[..., None, :, :]), axis=-1) <= tol


@jax.jit
def _is_row_permutation(match: Array) -> Array:
    """Every row of U_mod matches exactly one of U and every row of U exactly one of U_mod."""
    return (jnp.all(jnp.sum(match, axis=-1) == 1, axis=-1)
            & jnp.all(jnp.sum(match, axis=-2) == 1, axis=-1))


def reverse_permutation(U_mod: Array, U: Array) -> Array:
    """P_reverse [S, S] (0/1) with P_reverse U_mod = U: entry (i, j) is 1 when row j of U_mod
    is row i of U. U_mod, U: [S, C]. Raises ValueError unless U_mod is a row permutation of U."""
    U_mod, U = jnp.asarray(U_mod), jnp.asarray(U)
    if U.ndim != 2 or U_mod.shape != U.shape:
        raise ValueError(f"reverse_permutation: need U_mod and U of one shape [S, C], got "
                         f"{U_mod.shape} and {U.shape}")
    match = _matches(U_mod, U)
    if not bool(_is_row_permutation(match)):
        raise ValueError("reverse_permutation: U_mod is not a row permutation of U")
    return match.T.astype(jnp.int32)


@partial(jax.jit, static_argnames="chunk")
def _preserving_mask(params: mixer.Params, A: Array, chunk: int) -> Array:
    n = A.shape[0]
    total = math.factorial(n)
    U = patch_table(params, A)

    def one_chunk(start):
        k = start + jnp.arange(chunk, dtype=jnp.int32)
        A_mod = A[nth_permutation(jnp.minimum(k, total - 1), n)]  # [chunk, H, W]
        return _is_row_permutation(_matches(patch_table(params, A_mod), U)) & (k < total)

    starts = jnp.arange(0, total, chunk, dtype=jnp.int32)
    return lax.map(one_chunk, starts).reshape(-1)[:total]


def preserving_row_permutations(params: mixer.Params, A: Array, *, chunk: int = 20160
                                ) -> Array:
    """Every pi (all H! of them, in chunks) for which U(A[pi]) is a row permutation of U(A).

    Args: params: a Mixer's params for H x W one-channel images; A: [H, W] with H <= 10;
      chunk: permutations per vectorised step.
    Returns: [K, H] int32, the solutions in lexicographic order.
    """
    A = jnp.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"preserving_row_permutations: A must be an image [H, W], got "
                         f"{A.shape}")
    if not 1 <= A.shape[0] <= MAX_ROWS:
        raise ValueError(f"preserving_row_permutations: H! permutations are enumerated, so H "
                         f"must be <= {MAX_ROWS}, got {A.shape[0]}")
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"preserving_row_permutations: chunk must be a positive int, got "
                         f"{chunk!r}")
    mask = _preserving_mask(params, A, min(chunk, math.factorial(A.shape[0])))
    return nth_permutation(jnp.flatnonzero(mask), A.shape[0])


# ---------------------------------------------------------------------------------------------
# Claims

def _seed_setup() -> tuple[mixer.Params, Array]:
    """Q4(c): a random 9 x 9 image, 3 x 3 patches, C = 6, a channel MLP of width 12 (float64)."""
    k_p, k_a = jax.random.split(jax.random.key(0))
    params = mixer.init(k_p, image_size=(9, 9), in_channels=1, patch=3, hidden=6,
                        tokens_mlp_dim=4, channels_mlp_dim=12, depth=1, num_classes=2,
                        dtype=jnp.float64)
    return params, jax.random.normal(k_a, (9, 9), jnp.float64)


def _q000_4c() -> Outcome:
    with jax.enable_x64(True):
        params, A = _seed_setup()
        found = preserving_row_permutations(params, A)
        blocks = block_permutations(9, 3)
        same = found.shape == blocks.shape and bool(jnp.all(found == blocks))
        return Outcome(same, f"{found.shape[0]} of 9! = 362,880 row permutations keep U up to "
                       f"row order; equal to the 3! block orders: {same}", "5",
                       f"{found.shape[0]} including the identity")


def _q000_4d() -> Outcome:
    with jax.enable_x64(True):
        params, A = _seed_setup()
        U = patch_table(params, A)
        blocks = block_permutations(9, 3)
        err, is_t, is_p, p1 = 0.0, 0, 0, False
        for pi, U_mod in zip(blocks, patch_table(params, A[blocks]), strict=True):
            P_rev, P = reverse_permutation(U_mod, U), permutation_matrix(pi)
            err = max(err, float(jnp.max(jnp.abs(P_rev @ U_mod - U))))
            is_t += bool(jnp.all(P_rev == P.T))
            is_p += bool(jnp.all(P_rev == P))
            if pi.tolist() == [0, 1, 2, 6, 7, 8, 3, 4, 5]:  # the problem set's P_1
                p1 = bool(jnp.all(P_rev == P))
        # rows equal to float64 rounding: exact on CPU, 1 ulp apart on a GPU (H200), whose
        # products for the permuted input round differently
        tol = ULPS * jnp.finfo(U.dtype).eps * float(jnp.max(jnp.abs(U)))
        ok = err <= tol and is_t == 6 and p1
        return Outcome(ok, f"max |P_rev U_mod - U| {err:.1g}; P_rev = P^T for {is_t}/6, = P "
                       f"for {is_p}/6 (not the cyclic block orders)", "P_reverse = P_1",
                       "P_reverse = P_1" if p1 else "P_reverse != P_1")


CLAIMS = [
    Claim("000", "Q4(c)", "exactly the 3! = 6 orders of the 3-row blocks (identity included) "
          "make U(PA) a row permutation of U(A)", "all 9! row permutations of a random 9x9 "
          "image, vectorised in chunks", _q000_4c),
    Claim("000", "Q4(d)", "P_reverse U_mod = U with P_reverse = P^T; = P_1 for the problem set's "
          "P_1, but P_3^T != P_3 for a cyclic order", "reverse_permutation from matched rows "
          "of U, all 6 block orders", _q000_4d),
]
