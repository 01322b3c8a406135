"""Boolean functions as threshold networks: a compiler, a sigmoid steepness bound, and the problem
set's hand-set networks checked on every input (problem set 004 Q1, Q2).

Conventions. n inputs x_1 .. x_n in {0, 1}; row r of a truth table is the input whose binary
digits are r, x_1 the most significant (``inputs(n)``: 0000, 0001, ..., 1111). A table is
[2^n] (one output) or [2^n, m]. A network is a list of dense layers ``{"W": [d_in, d_out],
"b": [d_out]}`` applied as a = act(a W + b) (``jaxnets.layers.dense``); the compiled ones have
two layers, (W1, b1, W2, b2). An output reads true when > 1/2 and false when < 1/2; exactly 1/2
counts as wrong whatever the target.

Compiler. A cube (implicant) is a string over {"1", "0", "-"}, one character per input: "1-0"
is x_1 AND NOT x_3. Its threshold unit has w_i = +1 on x_i, -1 on NOT x_i, 0 on "-", and
b = 1/2 - (number of "1"s), so z = +1/2 exactly on the cube's inputs and z <= -1/2 elsewhere.
Each output is an OR of its cubes: weights 1, bias -1/2, so z = (units on) - 1/2. The cubes are
the minterms (true rows) or all prime implicants (Quine-McCluskey; their OR is the function).

Sigmoid version. Scaling every weight and bias by k and using sigma gives units sigma(k z).
With hidden margin m1 = min |z1| and output margin m2 = min |z2| of the step network over all
inputs, each hidden unit is within eps = sigma(-k m1) of its step value, so output j's
pre-activation moves by at most L eps, L = max_j sum_h |W2[h, j]|. It keeps its sign, hence
rounds correctly, whenever sigma(-k m1) < m2 / L, i.e. for every k > k* = max(0, log(L / m2 - 1)
/ m1) (``sigmoid_steepness``).

Errata in the problem sets (the step reading, computed in ``CLAIMS``):
- Q1 gives every minterm unit the bias -0.5. That is right for a minterm with one positive
  literal; the three all-positive ones (D1 AND D2 AND D4, ...) need -2.5: with -0.5 they fire
  whenever any of their literals is on. Its first block of W_h also has its zero column on D4, so
  it builds D1 xor D2 xor D3 instead of P1 = D1 xor D2 xor D4. As printed it is wrong on 12 of
  the 16 inputs; with sigmoid units (its H = sigma(W_h D + B_h)) every output lies in [0.72,
  0.76], so all round to 1 (wrong on 14 inputs). Read: D = (D1, D2, D3, D4) as it states, and
  its W_o (printed 3 x 4, all ones, against 12 hidden units) as the block-diagonal 3 x 12 matrix
  that ORs hidden units 4j .. 4j + 3 into output j. Its sums of products H1 .. H3 are right.
- Q2, one hidden layer: H3 = NOT A AND B AND NOT C and H4 = NOT A AND B AND NOT D get the bias
  -1.5; with one positive literal it must be -0.5 (at -1.5 they never fire), so the three inputs
  covered only by H3 or H4 (0100, 0101, 0110) come out 0. Its sum of products is right.
- Q2, the two-hidden-layer table: Q = NOT C OR NOT D gets the bias 0.5 and so computes NOT C
  AND NOT D; it needs 1.5 (as printed it is wrong on 8 of the 16 inputs). The problem set gives no
  weights for its output unit T; read as the OR (weights 1, 1, bias -0.5).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxnets.functional import heaviside, sigmoid
from jaxnets.layers.dense import dense
from jaxnets.theory.claim import Claim, Outcome

Net = list[dict[str, Array]]


# ---------------------------------------------------------------------------------------------
# Truth tables and cubes

def inputs(n: int) -> np.ndarray:
    """All 2^n inputs as a [2^n, n] 0/1 int array, row r = the binary digits of r (x_1 first)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
        raise ValueError(f"inputs: n must be an int in [1, 16], got {n!r}")
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int64).reshape(-1, n)


def truth_table(f: Callable[..., bool | Sequence[bool]], n: int) -> np.ndarray:
    """The table [2^n, m] (bool) of a predicate f(x_1, ..., x_n) -> bool or m bools, x_i in {0,
    1}."""
    rows = [np.atleast_1d(np.asarray(f(*map(int, x)))) for x in inputs(n)]
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1:
        raise ValueError("truth_table: f must return one bool or the same number of bools for "
                         "every input")
    return np.stack(rows).astype(bool)


def _as_table(table) -> tuple[np.ndarray, int]:
    """table as a [2^n, m] bool array and n; ValueError unless 0/1 with 2^n rows, n >= 1."""
    t = np.asarray(table)
    if t.ndim == 1:
        t = t[:, None]
    rows = t.shape[0] if t.ndim == 2 else 0
    if t.ndim != 2 or rows < 2 or rows & (rows - 1) or t.shape[1] < 1:
        raise ValueError(f"truth table must be [2^n] or [2^n, m] with n >= 1, got shape "
                         f"{np.shape(table)}")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("truth table entries must be 0/1 or bools")
    return t.astype(bool), rows.bit_length() - 1


def minterms(column) -> list[str]:
    """The true rows of a one-output table [2^n] as full cubes ("0101"), in row order."""
    t, n = _as_table(column)
    if t.shape[1] != 1:
        raise ValueError(f"minterms: expects one output column, got {t.shape[1]}")
    return ["".join(map(str, x)) for x in inputs(n)[t[:, 0]]]


def _merge(a: str, b: str) -> str | None:
    """The cube a + b when a and b differ in exactly one specified position, else None."""
    diff = [i for i, (u, v) in enumerate(zip(a, b, strict=True)) if u != v]
    if len(diff) != 1 or "-" in (a[diff[0]], b[diff[0]]):
        return None
    return a[:diff[0]] + "-" + a[diff[0] + 1:]


def prime_implicants(column) -> list[str]:
    """All prime implicants of a one-output table [2^n], sorted (Quine-McCluskey).

    Merge cubes that differ in one literal until none merge; the cubes never merged are prime.
    Their OR is the function (its Blake canonical form).
    """
    cubes, primes = set(minterms(column)), set()
    while cubes:
        merged, used = set(), set()
        for a, b in itertools.combinations(sorted(cubes), 2):
            if (c := _merge(a, b)) is not None:
                merged.add(c)
                used |= {a, b}
        primes |= cubes - used
        cubes = merged
    return sorted(primes)


def cube_unit(cube: str) -> tuple[np.ndarray, float]:
    """Threshold unit (w [n], b) on exactly the cube's inputs: w = +1 / -1 / 0 for "1" / "0" /
    "-", b = 1/2 - #"1", so z = w.x + b is +1/2 on the cube and <= -1/2 off it."""
    if not cube or set(cube) - set("01-"):
        raise ValueError(f"cube_unit: a cube is a non-empty string over '0', '1', '-', got "
                         f"{cube!r}")
    w = np.array([{"1": 1.0, "0": -1.0, "-": 0.0}[c] for c in cube])
    return w, 0.5 - cube.count("1")


# ---------------------------------------------------------------------------------------------
# Networks

def compile_threshold(f, n: int | None = None, method: str = "primes") -> Net:
    """A one-hidden-layer step network computing f on every input.

    Args:
      f: a truth table [2^n] or [2^n, m], or a predicate f(x_1, ..., x_n) (then give n).
      method: "primes" (a unit per prime implicant) or "minterms" (a unit per true row); cubes
        shared by several outputs get one unit.
    Returns:
      [{"W": W1 [n, H], "b": b1 [H]}, {"W": W2 [H, m], "b": b2 [m]}]; W2[h, j] = 1 when cube h is
      in output j's OR, b2 = -1/2.
    """
    if callable(f):
        if n is None:
            raise ValueError("compile_threshold: give n with a predicate")
        f = truth_table(f, n)
    table, n_in = _as_table(f)
    if n is not None and n != n_in:
        raise ValueError(f"compile_threshold: table has 2^{n_in} rows but n = {n}")
    cover = {"primes": prime_implicants, "minterms": minterms}
    if method not in cover:
        raise ValueError(f"compile_threshold: method must be 'primes' or 'minterms', got "
                         f"{method!r}")
    per_output = [cover[method](table[:, j]) for j in range(table.shape[1])]
    cubes = sorted(set().union(*per_output))
    units = [cube_unit(c) for c in cubes]
    W1 = np.stack([w for w, _ in units], 1) if units else np.zeros((n_in, 0))
    W2 = np.array([[c in out for out in per_output] for c in cubes], float)
    return [{"W": jnp.asarray(W1, float), "b": jnp.asarray([b for _, b in units], float)},
            {"W": jnp.asarray(W2.reshape(len(cubes), table.shape[1]), float),
             "b": jnp.full(table.shape[1], -0.5)}]


@partial(jax.jit, static_argnames="activation")
def forward(net: Net, x: Array, activation: Callable[[Array], Array] = heaviside) -> Array:
    """a = activation(a W + b) through every layer. x: [..., n]. Returns [..., m]."""
    a = jnp.asarray(x, jnp.result_type(float))
    for layer in net:
        a = activation(dense(layer, a))
    return a


def wrong_rows(net: Net, table, activation: Callable[[Array], Array] = heaviside) -> np.ndarray:
    """Indices of the inputs where some output fails to round to the table [2^n] / [2^n, m]."""
    t, n = _as_table(table)
    out = np.asarray(forward(net, inputs(n), activation))
    if out.shape != t.shape:
        raise ValueError(f"wrong_rows: network gives outputs {out.shape}, table is {t.shape}")
    return np.flatnonzero(np.where(t, out <= 0.5, out >= 0.5).any(axis=1))


def margins(net: Net) -> tuple[float, float]:
    """(m1, m2) = min over all inputs of |z1| (hidden) and |z2| (output) of a two-layer step
    network, z1 = x W1 + b1, z2 = H(z1) W2 + b2 (m1 = inf with no hidden unit)."""
    if len(net) != 2:
        raise ValueError(f"margins: expects a two-layer network, got {len(net)} layers")
    m1, m2 = _margins(net, inputs(net[0]["W"].shape[0]))
    return float(m1), float(m2)


@jax.jit
def _margins(net: Net, x: Array) -> tuple[Array, Array]:
    z1 = dense(net[0], jnp.asarray(x, net[0]["W"].dtype))
    z2 = dense(net[1], heaviside(z1))
    return jnp.min(jnp.abs(z1), initial=jnp.inf), jnp.min(jnp.abs(z2))


def sigmoid_steepness(net: Net) -> float:
    """k* = max(0, log(L / m2 - 1) / m1), L = max_j sum_h |W2[h, j]|: for every k > k* the
    sigmoid network ``steepen(net, k)`` rounds to the step network's outputs on every input (in
    exact arithmetic; in floating point k must also keep sigma(k z2) apart from 1/2).

    Raises:
      ValueError: a unit sits on its threshold (m1 or m2 = 0), where no k is guaranteed.
    """
    m1, m2 = margins(net)
    L = float(np.abs(np.asarray(net[1]["W"])).sum(axis=0).max())
    if m1 == 0 or m2 == 0:
        raise ValueError(f"sigmoid_steepness: zero margin (m1 = {m1}, m2 = {m2}): some unit "
                         f"sits on its threshold")
    return max(0.0, math.log(L / m2 - 1) / m1) if L > m2 else 0.0


def steepen(net: Net, k: float) -> Net:
    """Every W and b times k, so ``forward(steepen(net, k), x, sigmoid)`` uses sigma(k z)."""
    if not k > 0:
        raise ValueError(f"steepen: k must be > 0, got {k!r}")
    return _scale(net, k)


@jax.jit
def _scale(net: Net, k: float) -> Net:
    return jax.tree.map(lambda a: k * a, net)


# ---------------------------------------------------------------------------------------------
# The problem set's functions and hand-set networks

def hamming_parity(d1: int, d2: int, d3: int, d4: int) -> tuple[bool, bool, bool]:
    """Hamming(7,4) parity bits (problem set 004 Q1): P1 = D1^D2^D4, P2 = D1^D3^D4, P3 = D2^D3^D4"""
    return bool(d1 ^ d2 ^ d4), bool(d1 ^ d3 ^ d4), bool(d2 ^ d3 ^ d4)


def xor_of_ors(a: int, b: int, c: int, d: int) -> bool:
    """(A or not B) xor (not C or not D)  (problem set 004 Q2)."""
    return bool((a or not b) != (not c or not d))


def _sop(cubes: Sequence[str]) -> Callable[..., bool]:
    """The predicate OR over cubes (each an AND of literals)."""
    return lambda *x: any(all(c == "-" or int(c) == v for c, v in zip(cube, x, strict=True))
                          for cube in cubes)


# Problem set 004 Q1's sums of products for H1, H2, H3 and Q2's, as cubes over (D1..D4) / (A..D).
SEED_Q1_SOP = (("10-0", "01-0", "00-1", "11-1"), ("1-00", "0-10", "0-01", "1-11"),
               ("-100", "-010", "-001", "-111"))
SEED_Q2_SOP = ("1-11", "-011", "010-", "01-0")


def seed_hamming_net(corrected: bool = False) -> Net:
    """Problem set 004 Q1's 4-12-3 network (read as in the module docstring).

    corrected: D4, not D3, in the first block's third literal, and minterm biases 1/2 - #"1".
    """
    W_h = np.array([[1, -1, -1, 0], [-1, 1, -1, 0], [-1, -1, 1, 0], [1, 1, 1, 0],
                    [1, 0, -1, -1], [-1, 0, 1, -1], [-1, 0, -1, 1], [1, 0, 1, 1],
                    [0, 1, -1, -1], [0, -1, 1, -1], [0, -1, -1, 1], [0, 1, 1, 1]], float)
    B_h = np.full(12, -0.5)
    if corrected:
        W_h[:4, [2, 3]] = W_h[:4, [3, 2]]
        B_h = 0.5 - (W_h > 0).sum(1)
    W_o = np.kron(np.eye(3), np.ones((1, 4)))
    return [{"W": jnp.asarray(W_h.T), "b": jnp.asarray(B_h)},
            {"W": jnp.asarray(W_o.T), "b": jnp.full(3, -0.5)}]


def seed_xor_net(corrected: bool = False) -> Net:
    """Problem set 004 Q2's 4-4-1 network H1..H4 = A C D, NOT B C D, NOT A B NOT C, NOT A B NOT D,
    output their OR. corrected: H3 and H4 biases -0.5 (the problem set's -1.5 never fires)."""
    W = np.array([[1, 0, 1, 1], [0, -1, 1, 1], [-1, 1, -1, 0], [-1, 1, 0, -1]], float)
    b = np.array([-2.5, -1.5, -0.5, -0.5] if corrected else [-2.5, -1.5, -1.5, -1.5])
    return [{"W": jnp.asarray(W.T), "b": jnp.asarray(b)},
            {"W": jnp.ones((4, 1)), "b": jnp.full(1, -0.5)}]


def seed_xor_two_layer_net(corrected: bool = False) -> Net:
    """Problem set 004 Q2's table: P = A OR NOT B, Q = NOT C OR NOT D; NOT P AND Q, P AND NOT Q;
    their
    OR (weights 1, 1, bias -0.5: not in the problem set). corrected: b_Q = 1.5 (the problem set's
    0.5)."""
    return [{"W": jnp.asarray([[1.0, 0], [-1, 0], [0, -1], [0, -1]]),
             "b": jnp.asarray([0.5, 1.5 if corrected else 0.5])},
            {"W": jnp.asarray([[-1.0, 1], [1, -1]]), "b": jnp.asarray([-0.5, -0.5])},
            {"W": jnp.ones((2, 1)), "b": jnp.full(1, -0.5)}]


# ---------------------------------------------------------------------------------------------
# Claims

def _bits(v) -> str:
    return "".join(str(int(b)) for b in np.atleast_1d(v))


def _rows(x: np.ndarray, out: np.ndarray, rows: np.ndarray) -> str:
    """"0001->011, ..." for the given rows, or "none"."""
    return ", ".join(f"{_bits(x[r])}->{_bits(out[r])}" for r in rows) or "none"


def _compiled_outcome(f: Callable[..., object], n: int) -> Outcome:
    """Step networks (primes, minterms) and the sigmoid one at k = k* + 0.01, on every input."""
    table, found = truth_table(f, n), []
    for method in ("primes", "minterms"):
        net = compile_threshold(table, method=method)
        k = sigmoid_steepness(net)
        bad = len(wrong_rows(net, table)) + len(wrong_rows(steepen(net, k + 0.01), table,
                                                              sigmoid))
        found.append((method, net[0]["W"].shape[1], k, bad))
    return Outcome(all(bad == 0 for *_, bad in found), "; ".join(
        f"{m}: {h} hidden, k* {k:.3g}, {bad} wrong of {2 * 2 ** n} step+sigmoid evaluations"
        for m, h, k, bad in found))


def _sop_outcome(cubes_per_output: Sequence[Sequence[str]], f: Callable[..., object],
                 n: int) -> Outcome:
    """The problem set's sums of products against f on all inputs."""
    truth = truth_table(f, n)
    sop = truth_table(lambda *x: [_sop(c)(*x) for c in cubes_per_output], n)
    bad = np.flatnonzero((sop != truth).any(axis=1))
    if len(bad) == 0:
        return Outcome(True, f"0 of {2 ** n} inputs differ")
    x = inputs(n)
    return Outcome(False, f"{len(bad)} of {2 ** n} inputs differ", _rows(x, sop, bad),
                   _rows(x, truth, bad))


def _seed_net_outcome(make: Callable[[bool], Net], f: Callable[..., object], n: int,
                      activation: Callable[[Array], Array] = heaviside) -> Outcome:
    """Passed when the problem set's net as printed (unit steepness) fails and the corrected one is
    right on every input (sigmoid: at k = k* + 0.01); the problem set's outputs beside the truth
    where they fail."""
    table, x = truth_table(f, n), inputs(n)
    seed, fixed = make(False), make(True)
    where = ""
    if activation is sigmoid:
        k = sigmoid_steepness(fixed) + 0.01
        fixed = steepen(fixed, k)
        where = f" at k = k* + 0.01 = {k:.3g}"
    bad, bad_fixed = wrong_rows(seed, table, activation), wrong_rows(fixed, table, activation)
    out = np.asarray(forward(seed, x, activation))
    spread = f" (outputs in [{out.min():.3g}, {out.max():.3g}])" if activation is sigmoid else ""
    return Outcome(len(bad) > 0 and len(bad_fixed) == 0,
                   f"as printed wrong on {len(bad)} of {2 ** n} inputs{spread}; corrected "
                   f"wrong on {len(bad_fixed)}{where}", _rows(x, out > 0.5, bad),
                   _rows(x, table, bad))


def _check(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
    """fn run in float64."""
    def check() -> Outcome:
        with jax.enable_x64(True):
            return fn()
    return check


CLAIMS: list[Claim] = [
    Claim("004", "Q1", "The sums of products H1, H2, H3 equal the parity bits P1 = D1^D2^D4, "
          "P2 = D1^D3^D4, P3 = D2^D3^D4",
          "evaluate the problem set's minterm formulas and the XORs on all 16 inputs",
          _check(lambda: _sop_outcome(SEED_Q1_SOP, hamming_parity, 4))),
    Claim("004", "Q1", "A compiled 4-H-3 step network, and its sigmoid version for any k > k*, "
          "compute the Hamming(7,4) parity bits",
          "compile (prime implicants: 12 units; minterms), k* from the margins, all 16 inputs",
          _check(lambda: _compiled_outcome(hamming_parity, 4))),
    Claim("004", "Q1", "The problem set's Hamming weights need biases 1/2 - #positive literals "
          "and D4 "
          "in P1's block; as printed they fail",
          "step units, problem set's W_h, B_h, W_o (block-diagonal) vs corrected, all 16 inputs",
          _check(lambda: _seed_net_outcome(seed_hamming_net, hamming_parity, 4))),
    Claim("004", "Q1", "With sigmoid units the problem set's Hamming weights round wrongly; "
          "corrected "
          "and scaled by k > k* they round right",
          "sigma(W x + b) as printed vs corrected net at k = k* + 0.01, all 16 inputs",
          _check(lambda: _seed_net_outcome(seed_hamming_net, hamming_parity, 4, sigmoid))),
    Claim("004", "Q2", "(A or not B) xor (not C or not D) = ACD + B'CD + A'BC' + A'BD'",
          "evaluate the problem set's sum of products and f on all 16 inputs",
          _check(lambda: _sop_outcome([SEED_Q2_SOP], xor_of_ors, 4))),
    Claim("004", "Q2", "A compiled 4-4-1 step network, and its sigmoid version for any k > k*, "
          "compute (A or not B) xor (not C or not D)",
          "compile (prime implicants; minterms), k* from the margins, all 16 inputs",
          _check(lambda: _compiled_outcome(xor_of_ors, 4))),
    Claim("004", "Q2", "The problem set's 4-4-1 net needs bias -0.5 on H3 = A'BC' and H4 = A'BD' "
          "(not -1.5); as printed it fails",
          "step units, problem set's weights vs corrected, all 16 inputs",
          _check(lambda: _seed_net_outcome(seed_xor_net, xor_of_ors, 4))),
    Claim("004", "Q2", "The problem set's two-hidden-layer net needs b_Q = 1.5 for Q = not C or "
          "not D "
          "(not 0.5); as printed it fails",
          "step units, problem set's table plus an OR output vs corrected, all 16 inputs",
          _check(lambda: _seed_net_outcome(seed_xor_two_layer_net, xor_of_ors, 4))),
]
