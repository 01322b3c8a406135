"""Threshold networks from truth tables: cubes, prime implicants, the compiler, the sigmoid
steepness bound, and the problem set's hand-set networks, each against a brute-force reference."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxnets.functional import sigmoid
from jaxnets.theory import boolean as bo

# ---------------------------------------------------------------- brute-force references


def _covers(cube, x):
    """True when the input bits x lie in the cube."""
    return all(c == "-" or int(c) == v for c, v in zip(cube, x, strict=True))


def _all_primes(column, n):
    """Every cube of 3^n that is an implicant and no larger cube is: the primes by enumeration."""
    xs = list(itertools.product((0, 1), repeat=n))
    true = {x for x, t in zip(xs, column, strict=True) if t}
    imp = {"".join(c) for c in itertools.product("01-", repeat=n)
           if all(x in true for x in xs if _covers("".join(c), x))
           and any(_covers("".join(c), x) for x in xs)}
    return sorted(c for c in imp
                  if not any(c[:i] + "-" + c[i + 1:] in imp for i in range(n) if c[i] != "-"))


def _np_forward(net, x, act):
    """Loop-free numpy forward pass with the same convention, a = act(a W + b)."""
    a = np.asarray(x, float)
    for layer in net:
        a = act(a @ np.asarray(layer["W"]) + np.asarray(layer["b"]))
    return a


def _np_step(z):
    return np.where(z > 0, 1.0, np.where(z < 0, 0.0, 0.5))


def _np_wrong(net, table, act=_np_step):
    out = _np_forward(net, bo.inputs(int(math.log2(len(table)))), act)
    t = np.asarray(table, bool).reshape(out.shape)
    return [r for r in range(len(t)) if any((o > 0.5) != tt or o == 0.5
                                            for o, tt in zip(out[r], t[r], strict=True))]


tables = st.integers(1, 4).flatmap(lambda n: st.integers(1, 3).flatmap(
    lambda m: st.lists(st.lists(st.booleans(), min_size=m, max_size=m),
                       min_size=2 ** n, max_size=2 ** n)))

# ---------------------------------------------------------------- tables and cubes


def test_inputs_rows_are_binary_digits():
    x = bo.inputs(4)
    assert x.shape == (16, 4)
    assert [int("".join(map(str, r)), 2) for r in x] == list(range(16))


def test_truth_table_of_predicates():
    t = bo.truth_table(lambda a, b: a and not b, 2)
    np.testing.assert_array_equal(t[:, 0], [False, False, True, False])
    t = bo.truth_table(lambda a, b: (a ^ b, a & b), 2)
    np.testing.assert_array_equal(t, [[0, 0], [1, 0], [1, 0], [0, 1]])


def test_problem_set_functions():
    for d in itertools.product((0, 1), repeat=4):
        d1, d2, d3, d4 = d
        assert bo.hamming_parity(*d) == ((d1 + d2 + d4) % 2 == 1, (d1 + d3 + d4) % 2 == 1,
                                         (d2 + d3 + d4) % 2 == 1)
        a, b, c, dd = d
        assert bo.xor_of_ors(*d) == (max(a, 1 - b) + max(1 - c, 1 - dd) == 1)


@given(tables)
def test_prime_implicants_match_enumeration(table):
    t = np.array(table)
    n = int(math.log2(len(t)))
    for j in range(t.shape[1]):
        assert bo.prime_implicants(t[:, j]) == _all_primes(t[:, j], n)
        assert bo.minterms(t[:, j]) == [
            "".join(map(str, x)) for x, v in zip(bo.inputs(n), t[:, j], strict=True) if v]


def test_prime_implicants_of_the_seed_functions():
    parity = bo.truth_table(bo.hamming_parity, 4)
    for j in range(3):  # a parity of 3 of the 4 inputs: no two true rows are adjacent in them
        assert len(bo.prime_implicants(parity[:, j])) == 4
    assert bo.prime_implicants(bo.truth_table(bo.xor_of_ors, 4)[:, 0]) == sorted(bo.SEED_Q2_SOP)


def test_cube_unit_margins_exhaustive():
    xs = bo.inputs(3)
    for cube in map("".join, itertools.product("01-", repeat=3)):
        w, b = bo.cube_unit(cube)
        for x in xs:
            z = float(w @ x + b)
            assert z == 0.5 if _covers(cube, x) else z <= -0.5


# ---------------------------------------------------------------- compiler and steepness


@given(tables, st.sampled_from(["primes", "minterms"]))
def test_compiled_network_is_exact_and_sigmoid_rounds_above_k_star(table, method):
    with jax.enable_x64(True):  # k* may be 0; k = 1e-3 keeps sigma(k z2) apart from 1/2
        net = bo.compile_threshold(table, method=method)
        assert bo.wrong_rows(net, table).size == 0
        assert _np_wrong(net, table) == []
        k = bo.sigmoid_steepness(net)
        sig = bo.steepen(net, k * (1 + 1e-6) + 1e-3)
        assert bo.wrong_rows(sig, table, sigmoid).size == 0
        assert _np_wrong(sig, table, lambda z: 1 / (1 + np.exp(-z))) == []


def test_compile_from_predicate_equals_from_table(x64):
    a = bo.compile_threshold(bo.hamming_parity, 4)
    b = bo.compile_threshold(bo.truth_table(bo.hamming_parity, 4))
    for la, lb in zip(a, b, strict=True):
        np.testing.assert_array_equal(la["W"], lb["W"])
        np.testing.assert_array_equal(la["b"], lb["b"])
    assert a[0]["W"].shape == (4, 12) and a[1]["W"].shape == (12, 3)


def test_constant_functions():
    for value in (0, 1):
        table = np.full(8, value)
        net = bo.compile_threshold(table)
        assert net[0]["W"].shape[1] == value  # no unit for false, the all-"-" cube for true
        assert bo.wrong_rows(net, table).size == 0
        assert bo.sigmoid_steepness(net) == 0.0


def test_k_star_closed_form_and_too_flat_sigmoid_fails(x64):
    # 4 prime units into one output, margins 1/2, 1/2: k* = log(4 / (1/2) - 1) / (1/2) = 2 log 7
    net = bo.compile_threshold(bo.xor_of_ors, 4, method="primes")
    assert bo.margins(net) == (0.5, 0.5)
    assert bo.sigmoid_steepness(net) == pytest.approx(2 * math.log(7), rel=1e-15)
    table = bo.truth_table(bo.xor_of_ors, 4)
    # k -> 0: every unit near 1/2, the output 4 * 1/2 - 1/2 > 0 on every input: all false wrong
    flat = bo.wrong_rows(bo.steepen(net, 0.05), table, sigmoid)
    assert flat.tolist() == np.flatnonzero(~table[:, 0]).tolist()


# ---------------------------------------------------------------- the problem set's networks


@pytest.mark.parametrize("make", [bo.seed_hamming_net, bo.seed_xor_net,
                                  bo.seed_xor_two_layer_net])
def test_problem_set_networks_against_numpy(make):
    f = bo.hamming_parity if make is bo.seed_hamming_net else bo.xor_of_ors
    table = bo.truth_table(f, 4)
    for corrected in (False, True):
        net = make(corrected)
        assert bo.wrong_rows(net, table).tolist() == _np_wrong(net, table)
    assert _np_wrong(make(False), table) != []
    assert _np_wrong(make(True), table) == []


def test_problem_set_errors_explained():
    x = bo.inputs(4).astype(float)
    # Q2: NOT A AND B AND NOT C with bias -1.5 peaks at 1 - 1.5 = -0.5: never fires
    z = x @ np.asarray(bo.seed_xor_net()[0]["W"]) + np.asarray(bo.seed_xor_net()[0]["b"])
    assert z[:, 2].max() == -0.5 and z[:, 3].max() == -0.5
    # Q1: the fourth unit (D1 AND D2 AND "D4", bias -0.5) fires with any positive literal on
    net = bo.seed_hamming_net()
    z = x @ np.asarray(net[0]["W"]) + np.asarray(net[0]["b"])
    assert (z[:, 3] > 0).sum() == 14  # the inputs with D1, D2 or D3 set
    # Q1, printed: its first block computes D1 ^ D2 ^ D3
    h = _np_forward(net[:1], x, _np_step)[:, :4]
    np.testing.assert_array_equal(h.max(1) > 0, (x[:, 0] + x[:, 1] + x[:, 2] > 0))


def test_problem_set_sops():
    for cubes, column in zip(bo.SEED_Q1_SOP, bo.truth_table(bo.hamming_parity, 4).T,
                             strict=True):
        assert [any(_covers(c, x) for c in cubes) for x in bo.inputs(4)] == column.tolist()


# ---------------------------------------------------------------- errors and claims


def test_bad_input_raises():
    with pytest.raises(ValueError, match="2\\^n"):
        bo.compile_threshold(np.zeros(6))
    with pytest.raises(ValueError, match="0/1"):
        bo.compile_threshold(np.array([0, 2, 1, 0]))
    with pytest.raises(ValueError, match="method"):
        bo.compile_threshold(np.zeros(4), method="karnaugh")
    with pytest.raises(ValueError, match="give n"):
        bo.compile_threshold(lambda a: a)
    with pytest.raises(ValueError, match="n = 3"):
        bo.compile_threshold(np.zeros(4), n=3)
    with pytest.raises(ValueError, match="same number"):
        bo.truth_table(lambda a, b: (a,) if b else (a, b), 2)
    with pytest.raises(ValueError, match="cube"):
        bo.cube_unit("1x0")
    with pytest.raises(ValueError, match="n must be"):
        bo.inputs(0)
    with pytest.raises(ValueError, match="two-layer"):
        bo.margins(bo.seed_xor_two_layer_net())
    on_threshold = [{"W": jnp.ones((1, 1)), "b": jnp.zeros(1)},
                    {"W": jnp.ones((1, 1)), "b": jnp.full(1, -0.5)}]
    with pytest.raises(ValueError, match="zero margin"):
        bo.sigmoid_steepness(on_threshold)
    with pytest.raises(ValueError, match="k must be"):
        bo.steepen(on_threshold, 0.0)
    with pytest.raises(ValueError, match="table is"):
        bo.wrong_rows(bo.seed_xor_net(), bo.truth_table(bo.hamming_parity, 4))


@pytest.mark.parametrize("claim", bo.CLAIMS, ids=lambda c: c.name)
def test_claim(claim):
    out = claim.check()
    assert out.passed, out.measured
    assert out.differs == ("problem set's" in claim.statement)  # only its networks err
