"""Vanilla RNN and LSTM (problem set 004 Q13, Q14): parameters, steps against numpy, padded scans
against each sequence run alone, flax's LSTM convention, hand BPTT against autodiff, the step
Jacobians, the two gaps in the problem set's answers, argument checks, and jit / vmap."""

import itertools
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets.models import rnn

CELLS = ("rnn", "lstm")

# The autodiff reference, compiled once per shape and configuration.
grad_loss = jax.jit(jax.grad(rnn.loss), static_argnames=("kind", "target", "phi"))


def _params(seed, d_x, d_h, d_y, cell="rnn", dtype=jnp.float64):
    """init with random non-zero biases b and c, so every term of the formulas is exercised."""
    p = rnn.init(jax.random.key(seed), d_x, d_h, d_y, cell=cell, dtype=dtype)
    rng = np.random.default_rng(seed)
    p["b"], p["c"] = (jnp.asarray(0.5 * rng.normal(size=p[k].shape), dtype) for k in "bc")
    return p


def _lengths(rng, B, T):
    """Random lengths in 1..T with 1 and T both present when B >= 2."""
    lengths = rng.integers(1, T + 1, size=B)
    if B >= 2:
        lengths[0], lengths[-1] = 1, T
    return jnp.asarray(lengths)


def _targets(rng, B, T, d_y, kind, target):
    lead = (B,) if target == "last" else (B, T)
    if kind == "mse":
        return jnp.asarray(rng.normal(size=(*lead, d_y)))
    return jnp.asarray(rng.integers(0, d_y, size=lead))


# ---------------------------------------------------------------------------------------------
# An independent numpy reference (float64, one sequence at a time, plain Python loops).

def _np(p):
    return {k: np.asarray(v, np.float64) for k, v in p.items()}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _np_rnn_step(p, h, x, phi="tanh"):
    a = np.einsum("ij,...j->...i", p["W_h"], h) + np.einsum("ij,...j->...i", p["W_x"], x) + p["b"]
    return np.tanh(a) if phi == "tanh" else np.maximum(a, 0.0)


def _np_lstm_step(p, h, c, x):
    d_h = h.shape[-1]
    z = np.einsum("ij,...j->...i", p["W_h"], h) + np.einsum("ij,...j->...i", p["W_x"], x) + p["b"]
    z_i, z_f, z_g, z_o = (z[..., k * d_h:(k + 1) * d_h] for k in range(4))  # order i, f, g, o
    c = _sigmoid(z_f) * c + _sigmoid(z_i) * np.tanh(z_g)
    return _sigmoid(z_o) * np.tanh(c), c


def _np_run(p, xs, lengths, cell, phi="tanh"):
    """hs [B, T, d_h] (zero past each length) and the last real h and c of each sequence."""
    p, xs = _np(p), np.asarray(xs, np.float64)
    B, T, _ = xs.shape
    d_h = p["W_h"].shape[1]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    hs, h_last, c_last = np.zeros((B, T, d_h)), np.zeros((B, d_h)), np.zeros((B, d_h))
    for n in range(B):
        h, c = np.zeros(d_h), np.zeros(d_h)
        for t in range(lengths[n]):
            if cell == "rnn":
                h = _np_rnn_step(p, h, xs[n, t], phi)
            else:
                h, c = _np_lstm_step(p, h, c, xs[n, t])
            hs[n, t] = h
        h_last[n], c_last[n] = h, c
    return hs, h_last, c_last


def _np_loss(p, xs, y, lengths, kind, target, cell, phi="tanh"):
    """(1/B) sum_n sum_{t < T_n} l(o_nt, y_nt) or (1/B) sum_n l(o_{n, T_n}, y_n)."""
    hs, h_last, _ = _np_run(p, xs, lengths, cell, phi)
    q, y = _np(p), np.asarray(y)
    B, T = hs.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)

    def step_loss(o, y_):
        if kind == "mse":
            return np.mean((o - y_) ** 2)
        return np.log(np.sum(np.exp(o))) - o[y_]

    total = 0.0
    for n in range(B):
        if target == "last":
            total += step_loss(q["W_y"] @ h_last[n] + q["c"], y[n])
        else:
            total += sum(step_loss(q["W_y"] @ hs[n, t] + q["c"], y[n, t])
                         for t in range(lengths[n]))
    return total / B


# ---------------------------------------------------------------------------------------------
# 1. Parameters

def test_init_shapes_parameter_count_and_cell_of(x64):
    d_x, d_h, d_y = 3, 5, 2
    for cell, G, count in (("rnn", d_h, 57), ("lstm", 4 * d_h, 192)):
        p = rnn.init(jax.random.key(0), d_x, d_h, d_y, cell=cell, dtype=jnp.float64)
        assert jax.tree.map(jnp.shape, p) == {"W_h": (G, d_h), "W_x": (G, d_x), "b": (G,),
                                              "W_y": (d_y, d_h), "c": (d_y,)}
        assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(p))
        # G (d_h + d_x + 1) + d_y (d_h + 1): 5*9 + 2*6 = 57, 20*9 + 2*6 = 192
        n = sum(v.size for v in jax.tree.leaves(p))
        assert n == G * (d_h + d_x + 1) + d_y * (d_h + 1) == count
        assert rnn.cell_of(p) == cell
        assert rnn.sizes(p) == (d_x, d_h, d_y)
        assert np.all(np.asarray(p["c"]) == 0)
    with pytest.raises(ValueError, match=r"W_h must be \[d_h, d_h\] \(RNN\) or \[4 d_h, d_h\] "
                                         r"\(LSTM\), got \(3, 2\)"):
        rnn.cell_of({"W_h": jnp.zeros((3, 2))})


def test_lstm_forget_bias_and_zero_other_biases():
    d_h = 4
    assert np.all(np.asarray(rnn.init(jax.random.key(0), 3, d_h, 2)["b"]) == 0)  # RNN: zero
    for kwargs, fb in (({}, 1.0), ({"forget_bias": 2.5}, 2.5), ({"forget_bias": 0.0}, 0.0)):
        b = np.asarray(rnn.init(jax.random.key(1), 3, d_h, 2, cell="lstm", **kwargs)["b"])
        np.testing.assert_array_equal(b[d_h:2 * d_h], np.full(d_h, fb))  # gate f, the 2nd
        np.testing.assert_array_equal(np.delete(b, np.s_[d_h:2 * d_h]), np.zeros(3 * d_h))


def test_init_weights_have_variance_one_over_fan_in():
    """LeCun normal: Var W = 1/fan_in with fan_in the column count (W is [out, in])."""
    d_x, d_h, d_y = 64, 256, 32
    p = rnn.init(jax.random.key(3), d_x, d_h, d_y, cell="lstm")
    for name, fan_in, tol in (("W_h", d_h, 0.05), ("W_x", d_x, 0.05), ("W_y", d_h, 0.1)):
        w = np.asarray(p[name], np.float64)
        assert abs(w.var() * fan_in - 1) < tol, (name, w.var() * fan_in)
        assert abs(w.mean()) < 5 / np.sqrt(fan_in * w.size)  # 5 standard errors


# ---------------------------------------------------------------------------------------------
# 2. Steps

class StepTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_steps_equal_numpy_unbatched_batched_and_vmapped(self):
        with jax.enable_x64(True):
            B, d_x, d_h = 5, 3, 4
            rng = np.random.default_rng(0)
            X, H, C = (jnp.asarray(rng.normal(size=(B, d))) for d in (d_x, d_h, d_h))
            for cell, phi in (("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)):
                p = _params(1, d_x, d_h, 2, cell)
                q = _np(p)
                if cell == "rnn":
                    step = self.variant(partial(rnn.rnn_step, phi=phi))
                    carry, carry_1 = H, H[1]
                    want = _np_rnn_step(q, np.asarray(H), np.asarray(X), phi)
                    want_1 = _np_rnn_step(q, np.asarray(H[1]), np.asarray(X[1]), phi)
                else:
                    step = self.variant(rnn.lstm_step)
                    carry, carry_1 = (H, C), (H[1], C[1])
                    want = _np_lstm_step(q, np.asarray(H), np.asarray(C), np.asarray(X))
                    want_1 = _np_lstm_step(q, np.asarray(H[1]), np.asarray(C[1]),
                                           np.asarray(X[1]))
                new, out = step(p, carry, X)  # batched [B, d_x]
                new_1, out_1 = step(p, carry_1, X[1])  # unbatched [d_x]
                chex.assert_shape(out, (B, d_h))
                chex.assert_shape(out_1, (d_h,))
                # the output is the new h
                np.testing.assert_array_equal(out, new if cell == "rnn" else new[0])
                chex.assert_trees_all_close(new, want, rtol=1e-13, atol=1e-15)
                chex.assert_trees_all_close(new_1, want_1, rtol=1e-13, atol=1e-15)
                vmapped = jax.vmap(partial(step, p))(carry, X)
                chex.assert_trees_all_close(vmapped, (new, out), rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# 3. Sequences: scan, padding

scan_jit = jax.jit(rnn.scan, static_argnames=("phi", "unroll"))


def test_scan_equals_a_python_loop_of_steps(x64):
    B, T, d_x, d_h = 3, 6, 2, 4
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.normal(size=(B, T, d_x)))
    h0, c0 = (jnp.asarray(rng.normal(size=(B, d_h))) for _ in range(2))
    for cell, phi in (("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh")):
        p = _params(2, d_x, d_h, 2, cell)
        step = jax.jit(partial(rnn.rnn_step, phi=phi) if cell == "rnn" else rnn.lstm_step)
        for start, unroll in ((None, 1), (h0 if cell == "rnn" else (h0, c0), 4)):
            carry = rnn.zero_carry(p, B) if start is None else start
            hs = []
            for t in range(T):
                carry, h = step(p, carry, xs[:, t])
                hs.append(h)
            last, got = scan_jit(p, xs, carry=start, phi=phi, unroll=unroll)
            chex.assert_trees_all_close(got, jnp.stack(hs, 1), rtol=1e-13, atol=1e-15)
            chex.assert_trees_all_close(last, carry, rtol=1e-13, atol=1e-15)
        # and, from the zero carry, the numpy reference
        hs_np, h_np, _ = _np_run(p, xs, None, cell, phi)
        last, got = scan_jit(p, xs, phi=phi)
        np.testing.assert_allclose(got, hs_np, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(last if cell == "rnn" else last[0], h_np, rtol=1e-12,
                                   atol=1e-14)
    assert rnn.zero_carry(_params(0, 2, 4, 2, "lstm"), 3)[1].shape == (3, 4)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_remat_changes_neither_values_nor_gradients_and_defaults_per_cell(x64, cell):
    """scan's remat (jax.checkpoint of each step): on or off, the same outputs and gradients;
    None takes REMAT[cell] (the LSTM on, the RNN off), seen as a remat in the jaxpr."""
    from conftest import all_eqns

    p, xs, lengths = _padded(cell, 0.0)
    assert rnn.REMAT == {"rnn": False, "lstm": True}

    def loss(p, remat):
        hs = rnn.scan(p, xs, lengths, remat=remat)[1]
        return jnp.sum(jnp.sin(hs))

    ref = jax.value_and_grad(loss)(p, False)
    for remat in (None, True):
        chex.assert_trees_all_close(jax.jit(jax.value_and_grad(loss), static_argnums=1)(
            p, remat), ref, rtol=1e-13, atol=1e-15)

    def has_remat(remat):
        jaxpr = jax.make_jaxpr(jax.grad(loss), static_argnums=1)(p, remat).jaxpr
        return any(e.primitive.name.startswith(("checkpoint", "remat")) for e in all_eqns(jaxpr))

    assert has_remat(True) and not has_remat(False)
    assert has_remat(None) == rnn.REMAT[cell]


# lengths 1, T and an interior one (twice: equal shapes alone share a compilation)
B_PAD, T_PAD, LENGTHS = 4, 5, np.array([1, 5, 3, 3])


def _padded(cell, fill, seed=3, d_x=3, d_h=4, d_y=2, dtype=jnp.float64):
    """An LSTM or RNN and a padded batch whose padded steps hold `fill`."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B_PAD, T_PAD, d_x))
    for n, L in enumerate(LENGTHS):
        xs[n, L:] = fill
    return (_params(seed, d_x, d_h, d_y, cell, dtype), jnp.asarray(xs, dtype),
            jnp.asarray(LENGTHS))


@jax.jit
def _forward(p, xs, lengths):
    """(scan's (carry, hs), apply, apply_last), compiled once per shape."""
    return rnn.scan(p, xs, lengths), rnn.apply(p, xs, lengths), rnn.apply_last(p, xs, lengths)


loss_jit = jax.jit(rnn.loss, static_argnames=("kind", "target", "phi"))


def test_padded_batch_equals_each_sequence_run_alone(x64):
    for cell in CELLS:
        p, xs, lengths = _padded(cell, 0.0)
        # numpy copies: slicing jax arrays eagerly would compile each slice
        (carry, hs), out, last = jax.tree.map(np.asarray, _forward(p, xs, lengths))
        xs_np = np.asarray(xs)
        chex.assert_shape([hs, out, last], [(B_PAD, T_PAD, 4), (B_PAD, T_PAD, 2), (B_PAD, 2)])
        for n, L in enumerate(LENGTHS):
            # the unpadded prefix alone, a batch of one
            (carry_1, hs_1), out_1, last_1 = jax.tree.map(
                np.asarray, _forward(p, xs_np[n:n + 1, :L], None))
            np.testing.assert_allclose(out[n, :L], out_1[0], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(hs[n, :L], hs_1[0], rtol=1e-12, atol=1e-14)
            np.testing.assert_array_equal(out[n, L:], 0.0)  # exactly zero past the length
            np.testing.assert_array_equal(hs[n, L:], 0.0)
            np.testing.assert_allclose(last[n], out[n, L - 1], rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(last[n], last_1[0], rtol=1e-12, atol=1e-14)
            chex.assert_trees_all_close(jax.tree.map(lambda a, n=n: a[n], carry),
                                        jax.tree.map(lambda a: a[0], carry_1),
                                        rtol=1e-12, atol=1e-14)
        # lengths all T is the same as no lengths
        np.testing.assert_allclose(_forward(p, xs, jnp.full((B_PAD,), T_PAD))[1],
                                   _forward(p, xs, None)[1], rtol=1e-14, atol=1e-15)


def test_padding_values_never_reach_the_forward_pass_or_the_loss(x64):
    """Padded steps of xs filled with large values or NaN: scan, apply, apply_last and the loss
    are bit-for-bit those of zero padding (the forward selects with jnp.where)."""
    rng = np.random.default_rng(4)
    for cell in CELLS:
        p, xs0, lengths = _padded(cell, 0.0)
        ys = {(k, t): _targets(rng, B_PAD, T_PAD, 2, k, t)
              for k, t in itertools.product(rnn.LOSSES, rnn.TARGETS)}
        ref, ref_loss = _forward(p, xs0, lengths), {
            kt: loss_jit(p, (xs0, y), lengths, kind=kt[0], target=kt[1]) for kt, y in ys.items()}
        for fill in (1e6, -1e6, np.nan):
            _, xs, _ = _padded(cell, fill)
            chex.assert_trees_all_equal(_forward(p, xs, lengths), ref)
            for (kind, target), y in ys.items():
                got = loss_jit(p, (xs, y), lengths, kind=kind, target=target)
                assert np.isfinite(got)
                np.testing.assert_array_equal(got, ref_loss[kind, target])
        # eagerly too (the range check on lengths runs), with NaN padding
        np.testing.assert_allclose(rnn.loss(p, (xs, ys["mse", "last"]), lengths),
                                   ref_loss["mse", "last"], rtol=1e-14)
        # large finite padding in the targets of target "sequence" does not matter either
        y = np.asarray(ys["mse", "sequence"]).copy()
        for n, L in enumerate(LENGTHS):
            y[n, L:] = 1e6
        np.testing.assert_array_equal(
            loss_jit(p, (xs0, jnp.asarray(y)), lengths, kind="mse", target="sequence"),
            ref_loss["mse", "sequence"])


def test_padded_loss_equals_numpy_and_its_gradient_the_mean_over_sequences_alone(x64):
    """L(padded batch) equals the numpy reference for every loss and target, and its gradient is
    (1/B) sum_n dL(sequence n alone), also with large values in the padding."""
    rng = np.random.default_rng(5)
    for cell, grad_target in (("rnn", "sequence"), ("lstm", "last")):
        p, xs, lengths = _padded(cell, 0.0)
        _, xs_big, _ = _padded(cell, 1e6)
        for kind, target in itertools.product(rnn.LOSSES, rnn.TARGETS):
            y = _targets(rng, B_PAD, T_PAD, 2, kind, target)
            np.testing.assert_allclose(
                loss_jit(p, (xs, y), lengths, kind=kind, target=target),
                _np_loss(p, xs, y, lengths, kind, target, cell), rtol=1e-12)
            if kind != "mse" or target != grad_target:
                continue
            kw = dict(kind=kind, target=target)
            g = grad_loss(p, (xs, y), lengths, **kw)
            xs_np, y_np = np.asarray(xs), np.asarray(y)
            g_alone = [grad_loss(p, (xs_np[n:n + 1, :L], y_np[n:n + 1] if target == "last"
                                     else y_np[n:n + 1, :L]), **kw)
                       for n, L in enumerate(LENGTHS)]
            chex.assert_trees_all_close(g, jax.tree.map(lambda *a: sum(a) / B_PAD, *g_alone),
                                        rtol=1e-11, atol=1e-14)
            chex.assert_trees_all_close(grad_loss(p, (xs_big, y), lengths, **kw), g,
                                        rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("how", ["autodiff", "bptt"])
def test_nan_padding_does_not_leak_into_gradients(x64, how):
    p, xs0, lengths = _padded("rnn", 0.0)
    _, xs, _ = _padded("rnn", np.nan)
    y = _targets(np.random.default_rng(6), B_PAD, T_PAD, 2, "mse", "last")
    grad = grad_loss if how == "autodiff" else jax.jit(rnn.rnn_bptt)
    g = grad(p, (xs, y), lengths)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g)), \
        {k: bool(jnp.all(jnp.isfinite(v))) for k, v in g.items()}
    chex.assert_trees_all_close(g, grad(p, (xs0, y), lengths), rtol=1e-12, atol=1e-15)


def test_nan_target_padding_does_not_reach_the_sequence_loss(x64):
    p, xs, lengths = _padded("rnn", 0.0)
    y = np.array(_targets(np.random.default_rng(7), B_PAD, T_PAD, 2, "mse", "sequence"))
    ref = rnn.loss(p, (xs, jnp.asarray(y)), lengths, target="sequence")
    for n, L in enumerate(LENGTHS):
        y[n, L:] = np.nan
    np.testing.assert_array_equal(rnn.loss(p, (xs, jnp.asarray(y)), lengths, target="sequence"),
                                  ref)
    value, g = rnn.rnn_value_and_bptt(p, (xs, jnp.asarray(y)), lengths, target="sequence")
    np.testing.assert_allclose(value, ref, rtol=1e-12)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))


def test_lengths_closed_over_by_a_jitted_function():
    p, xs, lengths = _padded("rnn", 0.0, dtype=jnp.float32)
    np.testing.assert_allclose(jax.jit(lambda p: rnn.apply(p, xs, lengths))(p),
                               rnn.apply(p, xs, lengths), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# 4. flax.linen's LSTM cells

@pytest.mark.parametrize("cls", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_flax_lstm_cells_map_onto_ours(x64, cls):
    B, T, d_x, d_h = 3, 6, 4, 5
    rng = np.random.default_rng(8)
    xs = jnp.asarray(rng.normal(size=(B, T, d_x)))
    model = nn.RNN(cls(d_h, param_dtype=jnp.float64), return_carry=True)
    variables = model.init(jax.random.key(0), xs)
    # flax starts its biases at zero: perturb every parameter so each one's place is checked
    variables = jax.tree.map(lambda a: a + 0.3 * jnp.asarray(rng.normal(size=a.shape)), variables)
    cell_vars = {"params": variables["params"]["cell"]}
    p = rnn.flax_lstm_params(cell_vars)
    assert jax.tree.map(jnp.shape, p) == {"W_h": (4 * d_h, d_h), "W_x": (4 * d_h, d_x),
                                          "b": (4 * d_h,)}
    assert rnn.cell_of(p) == "lstm"
    chex.assert_trees_all_equal(rnn.flax_lstm_params(cell_vars["params"]), p)
    p |= {"W_y": jnp.asarray(rng.normal(size=(2, d_h))), "c": jnp.zeros(2)}

    # one step from a random carry; flax's carry is (c, h), ours (h, c)
    h, c = (jnp.asarray(rng.normal(size=(B, d_h))) for _ in range(2))
    (c_f, h_f), y_f = cls(d_h, param_dtype=jnp.float64).apply(cell_vars, (c, h), xs[:, 0])
    (h_o, c_o), y_o = rnn.lstm_step(p, (h, c), xs[:, 0])
    chex.assert_trees_all_close((h_o, c_o, y_o), (h_f, c_f, y_f), rtol=1e-12, atol=1e-14)

    # whole padded sequences: flax.linen.RNN returns each sequence's carry at its own length
    lengths = jnp.array([6, 1, 4])
    (c_f, h_f), ys_f = model.apply(variables, xs, seq_lengths=lengths)
    (h_o, c_o), ys_o = rnn.scan(p, xs, lengths)
    chex.assert_trees_all_close((h_o, c_o), (h_f, c_f), rtol=1e-12, atol=1e-14)
    for n, L in enumerate(np.asarray(lengths)):
        np.testing.assert_allclose(ys_o[n, :L], ys_f[n, :L], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 5. Hand BPTT

def _bptt_case(B, T, d_x, d_h, d_y, seed, kind, target, padded, cell="rnn"):
    rng = np.random.default_rng(seed)
    p = _params(seed, d_x, d_h, d_y, cell)
    xs = jnp.asarray(rng.normal(size=(B, T, d_x)))
    y = _targets(rng, B, T, d_y, kind, target)
    return p, (xs, y), (_lengths(rng, B, T) if padded else None)


def _check_value_and_bptt(variant, value_and_bptt, case, **kw):
    """A hand value_and_grad (under chex's ``variant``) against rnn.loss and jax.grad in float64."""
    p, batch, lengths = case
    value, manual = variant(partial(value_and_bptt, **kw))(p, batch, lengths)
    auto = grad_loss(p, batch, lengths, **kw)
    np.testing.assert_allclose(value, rnn.loss(p, batch, lengths, **kw), rtol=1e-12)
    chex.assert_trees_all_equal_structs(manual, auto)
    assert rel_err(manual, auto) <= 1e-10, (kw, lengths, rel_err(manual, auto))
    chex.assert_trees_all_close(manual, auto, rtol=1e-10, atol=1e-14)


class BpttTest(chex.TestCase):
    def _check(self, case, kind, target, phi):
        _check_value_and_bptt(self.variant, rnn.rnn_value_and_bptt, case, kind=kind,
                              target=target, phi=phi)

    @chex.variants(with_jit=True, without_jit=True)
    def test_bptt_equals_jax_grad_for_every_loss_target_padding_and_activation(self):
        """All (kind, target, padded) with phi alternating so that every pair of factor values
        (phi included) occurs (a 2^(4-1) fractional design); then T = 1, where BPTT is the
        backprop of a one-hidden-layer net."""
        with jax.enable_x64(True):
            for j, (kind, target, padded) in enumerate(itertools.product(
                    rnn.LOSSES, rnn.TARGETS, (False, True))):
                phi = ("tanh", "relu")[(j + j // 2 + j // 4) % 2]
                self._check(_bptt_case(4, 5, 3, 4, 3, 11 + j, kind, target, padded), kind,
                            target, phi)
            for kind, target, phi in (("mse", "sequence", "relu"), ("xent", "last", "tanh")):
                self._check(_bptt_case(3, 1, 2, 3, 2, 12, kind, target, True), kind, target,
                            phi)

    # jit only: eager differs from jit only in the value checks, which the grid above covers;
    # half the profile's examples, as each one compiles two new scans
    @chex.variants(with_jit=True)
    @settings(max_examples=max(1, settings().max_examples // 2))
    @given(B=st.integers(1, 4), T=st.integers(1, 6), d_x=st.integers(1, 4),
           d_h=st.integers(1, 5), d_y=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
           kind=st.sampled_from(rnn.LOSSES), target=st.sampled_from(rnn.TARGETS),
           padded=st.booleans(), phi=st.sampled_from(sorted(rnn.ACTIVATIONS)))
    def test_bptt_equals_jax_grad_random_shapes(self, B, T, d_x, d_h, d_y, seed, kind, target,
                                                padded, phi):
        with jax.enable_x64(True):
            case = _bptt_case(B, T, d_x, d_h, d_y, seed, kind, target, padded)
            self._check(case, kind, target, phi)


class LstmBpttTest(chex.TestCase):
    """The whole LSTM backward by hand (``lstm_value_and_bptt``) against jax.value_and_grad."""

    def _check(self, case, kind, target):
        _check_value_and_bptt(self.variant, rnn.lstm_value_and_bptt, case, kind=kind,
                              target=target)

    @chex.variants(with_jit=True, without_jit=True)
    def test_lstm_bptt_equals_jax_grad_for_every_loss_target_and_padding(self):
        with jax.enable_x64(True):
            for j, (kind, target, padded) in enumerate(itertools.product(
                    rnn.LOSSES, rnn.TARGETS, (False, True))):
                self._check(_bptt_case(4, 5, 3, 4, 3, 31 + j, kind, target, padded, "lstm"),
                            kind, target)
            self._check(_bptt_case(3, 1, 2, 3, 2, 32, "mse", "sequence", True, "lstm"), "mse",
                        "sequence")

    @chex.variants(with_jit=True)
    @settings(max_examples=max(1, settings().max_examples // 2))
    @given(B=st.integers(1, 4), T=st.integers(1, 6), d_x=st.integers(1, 4),
           d_h=st.integers(1, 5), d_y=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
           kind=st.sampled_from(rnn.LOSSES), target=st.sampled_from(rnn.TARGETS),
           padded=st.booleans())
    def test_lstm_bptt_equals_jax_grad_random_shapes(self, B, T, d_x, d_h, d_y, seed, kind,
                                                     target, padded):
        with jax.enable_x64(True):
            self._check(_bptt_case(B, T, d_x, d_h, d_y, seed, kind, target, padded, "lstm"),
                        kind, target)

    @chex.variants(with_jit=True, without_jit=True)
    def test_custom_vjp_scan_equals_autodiff_in_every_input(self):
        """backward="hand" (jax.custom_vjp) against autodiff of the same scan: the cotangents of
        the params, the inputs xs and the initial carry (h_0, c_0), for cotangents on both the
        final carry and every output h_t, with padding."""
        with jax.enable_x64(True):
            rng = np.random.default_rng(33)
            p, xs, lengths = _padded("lstm", 0.0)
            carry = tuple(jnp.asarray(rng.normal(size=(B_PAD, 4))) for _ in range(2))
            ct = ((jnp.asarray(rng.normal(size=(B_PAD, 4))),
                   jnp.asarray(rng.normal(size=(B_PAD, 4)))),
                  jnp.asarray(rng.normal(size=(B_PAD, T_PAD, 4))))

            def vjp(backward):
                def f(p, xs, carry):
                    return rnn.scan(p, xs, lengths, carry, backward=backward)
                out, pullback = jax.vjp(f, p, xs, carry)
                return out, pullback(ct)

            (out_h, grads_h), (out_a, grads_a) = (self.variant(partial(vjp, b))()
                                                  for b in ("hand", "autodiff"))
            chex.assert_trees_all_close(out_h, out_a, rtol=1e-13, atol=1e-15)
            chex.assert_trees_all_equal_structs(grads_h, grads_a)
            chex.assert_trees_all_close(grads_h, grads_a, rtol=1e-11, atol=1e-14)


def test_hand_backward_keeps_nan_padding_out_and_passes_check_grads(x64):
    p, xs0, lengths = _padded("lstm", 0.0)
    _, xs, _ = _padded("lstm", np.nan)
    y = _targets(np.random.default_rng(34), B_PAD, T_PAD, 2, "xent", "sequence")
    kw = dict(kind="xent", target="sequence")
    g_hand = jax.jit(jax.grad(partial(rnn.loss, backward="hand", **kw)))
    g = g_hand(p, (xs, y), lengths)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))
    chex.assert_trees_all_close(g, grad_loss(p, (xs0, y), lengths, **kw), rtol=1e-11,
                                atol=1e-14)
    _, bptt = jax.jit(partial(rnn.lstm_value_and_bptt, **kw))(p, (xs, y), lengths)
    chex.assert_trees_all_close(bptt, g, rtol=1e-11, atol=1e-14)
    f = jax.jit(lambda p, lengths: rnn.loss(p, (xs0, y), lengths, backward="hand", **kw))
    jax.test_util.check_grads(lambda p: f(p, lengths), (p,), order=1, modes=["rev"])


def test_lstm_forward_keeps_the_gates_and_frozen_states(x64):
    p, xs, lengths = _padded("lstm", 0.0)
    fwd = rnn.lstm_forward(p, xs, lengths)
    chex.assert_shape([fwd.i, fwd.f, fwd.g, fwd.o], (T_PAD, B_PAD, 4))
    chex.assert_shape([fwd.c, fwd.h], (T_PAD + 1, B_PAD, 4))
    (h_T, c_T), hs = rnn.scan(p, xs, lengths)
    np.testing.assert_allclose(fwd.h[-1], h_T, rtol=1e-13)
    np.testing.assert_allclose(fwd.c[-1], c_T, rtol=1e-13)
    for n, L in enumerate(LENGTHS):
        np.testing.assert_allclose(fwd.h[1:L + 1, n], hs[n, :L], rtol=1e-13)
        # c_t = f_t c_{t-1} + i_t g_t at the real steps, frozen after
        np.testing.assert_allclose(fwd.c[1:L + 1, n], fwd.f[:L, n] * fwd.c[:L, n]
                                   + fwd.i[:L, n] * fwd.g[:L, n], rtol=1e-13)
        np.testing.assert_array_equal(fwd.c[L:, n], np.broadcast_to(fwd.c[L, n],
                                                                    fwd.c[L:, n].shape))
    with pytest.raises(ValueError, match="params are an RNN's"):
        rnn.lstm_forward(_params(0, 3, 4, 2), xs)
    with pytest.raises(ValueError, match="unknown backward 'manual'"):
        rnn.loss(p, (xs, jnp.zeros((B_PAD, 2))), backward="manual")


def test_check_grads_on_the_loss(x64):
    """Finite differences against reverse mode, for both cells (xent over a padded sequence)."""
    rng = np.random.default_rng(13)
    xs, lengths = jnp.asarray(rng.normal(size=(3, 4, 2))), jnp.array([4, 1, 2])
    y = _targets(rng, 3, 4, 3, "xent", "sequence")
    loss = partial(rnn.loss, kind="xent", target="sequence")
    # lengths passed in, not closed over (see test_lengths_closed_over_by_a_jitted_function)
    f = jax.jit(lambda p_rnn, p_lstm, lengths: loss(p_rnn, (xs, y), lengths)
                + 2 * loss(p_lstm, (xs, y), lengths))
    jax.test_util.check_grads(lambda p_rnn, p_lstm: f(p_rnn, p_lstm, lengths),
                              tuple(_params(13, 2, 3, 3, cell) for cell in CELLS), order=1,
                              modes=["rev"])


def test_rnn_forward_keeps_pre_activations_and_frozen_states(x64):
    p, xs, lengths = _padded("rnn", 0.0)
    a, h = rnn.rnn_forward(p, xs, lengths)
    chex.assert_shape([a, h], [(T_PAD, B_PAD, 4), (T_PAD + 1, B_PAD, 4)])
    np.testing.assert_array_equal(h[0], 0.0)
    hs_np, h_last, _ = _np_run(p, xs, lengths, "rnn")
    q = _np(p)
    for n, L in enumerate(LENGTHS):
        np.testing.assert_allclose(h[1:L + 1, n], hs_np[n, :L], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(h[L:, n], np.broadcast_to(h[L, n], h[L:, n].shape))
        np.testing.assert_allclose(np.tanh(a[:L, n]), hs_np[n, :L], rtol=1e-12, atol=1e-14)
        # a_t = W_h h_{t-1} + W_x x_t + b at the real steps
        want_a = (np.asarray(h[:L, n]) @ q["W_h"].T + np.asarray(xs[n, :L]) @ q["W_x"].T
                  + q["b"])
        np.testing.assert_allclose(a[:L, n], want_a, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 6. Jacobians

def test_rnn_jacobian_equals_autodiff(x64):
    rng = np.random.default_rng(14)
    d_x, d_h = 3, 5
    p = _params(14, d_x, d_h, 2)
    h, x = jnp.asarray(rng.normal(size=d_h)), jnp.asarray(rng.normal(size=d_x))
    a = np.asarray(p["W_h"] @ h + p["W_x"] @ x + p["b"])
    assert np.min(np.abs(a)) > 1e-3  # away from relu's kink
    for phi in ("tanh", "relu"):
        J = rnn.rnn_jacobian(p, h, x, phi=phi)
        auto = jax.jacobian(lambda h, phi=phi: rnn.rnn_step(p, h, x, phi=phi)[0])(h)
        chex.assert_shape(J, (d_h, d_h))
        np.testing.assert_allclose(J, auto, rtol=1e-12, atol=1e-15)
        dphi = 1 - np.tanh(a) ** 2 if phi == "tanh" else (a > 0).astype(float)
        np.testing.assert_allclose(J, dphi[:, None] * np.asarray(p["W_h"]), rtol=1e-12,
                                   atol=1e-15)


def _lstm_point(seed=15, d_x=3, d_h=4):
    rng = np.random.default_rng(seed)
    p = _params(seed, d_x, d_h, 2, "lstm")
    h, c = (jnp.asarray(rng.normal(size=d_h)) for _ in range(2))
    x1, x2 = (jnp.asarray(rng.normal(size=d_x)) for _ in range(2))
    return p, (h, c), x1, x2


def test_lstm_cell_path_is_diag_f_and_the_partial_in_c(x64):
    p, (h, c), x, _ = _lstm_point()
    d_h = h.shape[0]
    path = rnn.lstm_cell_path(p, (h, c), x)
    auto = jax.jacobian(lambda c: rnn.lstm_step(p, (h, c), x)[0][1])(c)  # h_{t-1} held fixed
    np.testing.assert_allclose(path, auto, rtol=1e-12, atol=1e-15)
    q = _np(p)
    z_f = (q["W_h"] @ np.asarray(h) + q["W_x"] @ np.asarray(x) + q["b"])[d_h:2 * d_h]
    np.testing.assert_allclose(path, np.diag(_sigmoid(z_f)), rtol=1e-12, atol=1e-15)
    gates = rnn.lstm_gates(p, (h, c), x)
    assert list(gates) == ["z_i", "z_f", "z_g", "z_o"]
    np.testing.assert_allclose(gates["z_f"], z_f, rtol=1e-12)


def _state_step(p, x, s):
    """The LSTM step as a map of the concatenated state s = (h, c) -> (h_t, c_t)."""
    d_h = s.shape[0] // 2
    (h, c), _ = rnn.lstm_step(p, (s[:d_h], s[d_h:]), x)
    return jnp.concatenate([h, c])


state_jacobian = jax.jit(jax.jacobian(_state_step, argnums=2))


def test_lstm_jacobian_equals_autodiff_of_the_full_state(x64):
    for seed in (15, 16):
        p, (h, c), x, _ = _lstm_point(seed)
        d_h = h.shape[0]
        J = rnn.lstm_jacobian(p, (h, c), x)
        chex.assert_shape(list(J), [(d_h, d_h)] * 4)
        auto = state_jacobian(p, x, jnp.concatenate([h, c]))
        np.testing.assert_allclose(J.full(), auto, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(J.dc_dc, rnn.lstm_cell_path(p, (h, c), x), rtol=1e-14)


def test_problem_set_q13_gap_the_cell_gradient_also_flows_through_h(x64):
    """Problem set 004 Q13: "f, i, c~ do not depend on c(t-1), so dc_t/dc_{t-1} = diag(f_t)". That
    is the partial with h_{t-1} held fixed. But h_{t-1} = o_{t-1} tanh(c_{t-1}) and the gates read
    h_{t-1}: the dc_dh block is not zero, and along a sequence dc_t/dc_{t-1} != diag(f_t)."""
    p, (h0, c0), x1, x2 = _lstm_point()
    d_h = h0.shape[0]
    (h1, c1), _ = rnn.lstm_step(p, (h0, c0), x1)
    J2 = rnn.lstm_jacobian(p, (h1, c1), x2)
    f2 = np.diag(np.asarray(rnn.lstm_cell_path(p, (h1, c1), x2)))
    assert np.linalg.norm(J2.dc_dh) > 0.05  # the block the problem set's answer leaves out

    # the chain c_1 -> h_1 = o_1 tanh(c_1) -> gates of step 2 -> c_2 (o_1 is step 1's gate)
    o1 = jax.nn.sigmoid(rnn.lstm_gates(p, (h0, c0), x1)["z_o"])
    np.testing.assert_allclose(h1, o1 * jnp.tanh(c1), rtol=1e-14)
    total = jax.jacobian(lambda c: rnn.lstm_step(p, (o1 * jnp.tanh(c), c), x2)[0][1])(c1)
    np.testing.assert_allclose(
        total, J2.dc_dc + J2.dc_dh @ np.diag(o1 * (1 - np.tanh(c1) ** 2)), rtol=1e-11,
        atol=1e-14)
    assert np.linalg.norm(total - np.diag(f2)) > 0.01

    # two steps of the full state: the product of the step Jacobians (latest on the left) is
    # jax's, and its c-c block is not diag(f_2) diag(f_1)
    J1 = rnn.lstm_jacobian(p, (h0, c0), x1)
    f1 = np.diag(np.asarray(J1.dc_dc))
    s0 = jnp.concatenate([h0, c0])
    two = jax.jacobian(lambda s: _state_step(p, x2, _state_step(p, x1, s)))(s0)
    np.testing.assert_allclose(two, J2.full() @ J1.full(), rtol=1e-11, atol=1e-14)
    assert np.linalg.norm(two[d_h:, d_h:] - np.diag(f2 * f1)) > 0.01


# ---------------------------------------------------------------------------------------------
# 7. Problem set 004 Q14.1: eigenvalues of each J_t below 1 do not make the product stable

def test_problem_set_q14_1_each_factor_has_spectral_radius_below_one_but_the_product_grows(x64):
    """W_h = [[0, a], [b, 0]] and phi' alternating diag(1, delta), diag(delta, 1):
    J = diag(phi') W_h has eigenvalues +-sqrt(delta a b) (0.2 here), while a pair
    J_2 J_1 = diag(delta^2 a b, a b) has spectral radius a b = 4, so k pairs grow as (a b)^k.
    Realised with actual tanh steps: W_x = I, b = 0 and x_t = a*_t - W_h h_{t-1} make the
    pre-activation exactly a*_t, with tanh'(0) = 1 and tanh'(arctanh(sqrt(1 - delta))) = delta."""
    a, b, delta, k = 1.0, 4.0, 0.01, 5
    W_h = jnp.array([[0.0, a], [b, 0.0]])
    p = {"W_h": W_h, "W_x": jnp.eye(2), "b": jnp.zeros(2), "W_y": jnp.eye(2), "c": jnp.zeros(2)}
    on, off = 0.0, float(np.arctanh(np.sqrt(1 - delta)))
    assert 1 - np.tanh(off) ** 2 == pytest.approx(delta, rel=1e-12)

    def rho(M):
        return float(np.max(np.abs(np.linalg.eigvals(np.asarray(M)))))

    h, xs, Js = jnp.zeros(2), [], []
    for t in range(2 * k):
        a_t = jnp.array([on, off] if t % 2 == 0 else [off, on])
        x = a_t - W_h @ h
        J = rnn.rnn_jacobian(p, h, x)
        dphi = np.array([1.0, delta] if t % 2 == 0 else [delta, 1.0])
        np.testing.assert_allclose(J, dphi[:, None] * np.asarray(W_h), rtol=1e-9, atol=1e-15)
        assert rho(J) == pytest.approx(np.sqrt(delta * a * b), rel=1e-8) and rho(J) < 1
        h = rnn.rnn_step(p, h, x)[0]
        xs.append(x)
        Js.append(J)

    prod = np.eye(2)
    for j in range(1, k + 1):
        prod = Js[2 * j - 1] @ Js[2 * j - 2] @ prod  # latest on the left
        np.testing.assert_allclose(prod, np.diag([(delta ** 2 * a * b) ** j, (a * b) ** j]),
                                   rtol=1e-8, atol=1e-300)
        assert rho(prod) == pytest.approx((a * b) ** j, rel=1e-8)
    assert rho(prod) > 1000  # 4^5 = 1024

    # the same product is what autodiff finds through the real scan: dh_T / dh_0
    xs = jnp.stack(xs)[None]  # [1, 2k, 2]
    auto = jax.jacobian(lambda h0: rnn.scan(p, xs, carry=h0[None])[0][0])(jnp.zeros(2))
    np.testing.assert_allclose(auto, prod, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 8. Bad input

D_X, D_H, D_Y, B_, T_ = 3, 4, 2, 2, 4
XS = jnp.zeros((B_, T_, D_X))
Y_LAST, Y_SEQ = jnp.zeros((B_, D_Y)), jnp.zeros((B_, T_, D_Y))
LBL_LAST, LBL_SEQ = jnp.array([0, 1]), jnp.zeros((B_, T_), int)
ENTRY_POINTS = {
    "scan": lambda p, xs, lengths: rnn.scan(p, xs, lengths),
    "apply": lambda p, xs, lengths: rnn.apply(p, xs, lengths),
    "apply_last": lambda p, xs, lengths: rnn.apply_last(p, xs, lengths),
    "loss": lambda p, xs, lengths: rnn.loss(p, (xs, Y_LAST[:len(xs)]), lengths),
    "rnn_bptt": lambda p, xs, lengths: rnn.rnn_bptt(p, (xs, Y_LAST[:len(xs)]), lengths),
    "rnn_forward": lambda p, xs, lengths: rnn.rnn_forward(p, xs, lengths),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_bad_sequences_and_lengths_get_clear_errors(entry):
    fn, p = ENTRY_POINTS[entry], rnn.init(jax.random.key(0), D_X, D_H, D_Y)
    shape_msg = r"xs must have shape \[B, T, 3\] \(batch, time, features\), got "
    with pytest.raises(ValueError, match=shape_msg + r"\(2, 3\)"):
        fn(p, jnp.zeros((2, 3)), None)
    with pytest.raises(ValueError, match=shape_msg + r"\(2, 4, 3, 1\)"):
        fn(p, jnp.zeros((2, 4, 3, 1)), None)
    with pytest.raises(ValueError, match=shape_msg + r"\(2, 4, 5\)"):
        fn(p, jnp.zeros((2, 4, 5)), None)
    with pytest.raises(ValueError, match=r"lengths must have shape \[B\] = \(2,\), got \(3,\)"):
        fn(p, XS, jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must have shape \[B\] = \(2,\), got \(1, 2\)"):
        fn(p, XS, jnp.array([[1, 2]]))
    with pytest.raises(TypeError, match="lengths must be integers, got float"):
        fn(p, XS, jnp.array([1.0, 2.0]))
    in_range = r"lengths must be in \[1, T\] = \[1, 4\] \(the padded time axis\), got values in "
    with pytest.raises(ValueError, match=in_range + r"\[0, 2\]"):
        fn(p, XS, jnp.array([0, 2]))
    with pytest.raises(ValueError, match=in_range + r"\[2, 5\]"):
        fn(p, XS, jnp.array([5, 2]))
    # shape checks are static: they hold under jit too
    with pytest.raises(ValueError, match=shape_msg + r"\(2, 4, 5\)"):
        jax.jit(fn)(p, jnp.zeros((2, 4, 5)), None)


@pytest.mark.parametrize("fn", [rnn.loss, rnn.rnn_bptt])
@pytest.mark.parametrize("kind, target, y, err, match", [
    ("mse", "last", jnp.zeros(B_), ValueError,
     r"y must have shape \[B, 2\] = \(2, 2\) for a 'mse' loss on target 'last', got \(2,\)"),
    ("mse", "last", Y_SEQ, ValueError, r"y must have shape \[B, 2\] = \(2, 2\)"),
    ("mse", "sequence", Y_LAST, ValueError,
     r"y must have shape \[B, T, 2\] = \(2, 4, 2\) for a 'mse' loss on target 'sequence', "
     r"got \(2, 2\)"),
    ("xent", "last", LBL_SEQ, ValueError,
     r"y must have shape \[B\] = \(2,\) for a 'xent' loss on target 'last', got \(2, 4\)"),
    ("xent", "sequence", LBL_LAST, ValueError,
     r"y must have shape \[B, T\] = \(2, 4\) for a 'xent' loss on target 'sequence'"),
    ("xent", "last", jnp.array([0, 2]), ValueError,
     r"labels must be in \[0, 2\), got values in \[0, 2\]"),
    ("xent", "sequence", LBL_SEQ.at[1, 3].set(-1), ValueError,
     r"labels must be in \[0, 2\), got values in \[-1, 0\]"),
    ("xent", "last", jnp.array([0.0, 1.0]), TypeError, "labels must be integers"),
    ("hinge", "last", Y_LAST, ValueError, r"unknown loss 'hinge'; expected one of \('mse', "),
    ("mse", "first", Y_LAST, ValueError, r"unknown target 'first'; expected one of "),
], ids=["mse-last-rank", "mse-last-seq", "mse-seq", "xent-last", "xent-seq", "label-high",
        "label-negative", "label-float", "kind", "target"])
def test_bad_targets_and_loss_options_get_clear_errors(fn, kind, target, y, err, match):
    p = rnn.init(jax.random.key(0), D_X, D_H, D_Y)
    with pytest.raises(err, match=match):
        fn(p, (XS, y), kind=kind, target=target)


def test_bad_cells_activations_and_sizes_get_clear_errors():
    key = jax.random.key(0)
    p, p_lstm = rnn.init(key, D_X, D_H, D_Y), rnn.init(key, D_X, D_H, D_Y, cell="lstm")
    with pytest.raises(ValueError, match=r"unknown cell 'gru'; expected 'rnn' or 'lstm'"):
        rnn.init(key, D_X, D_H, D_Y, cell="gru")
    for name, args in (("d_x", (0, 4, 2)), ("d_h", (3, -1, 2)), ("d_y", (3, 4, 2.5)),
                       ("d_h", (3, 0, 2))):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            rnn.init(key, *args)
    act = r"unknown activation 'gelu'; expected one of \['relu', 'tanh'\]"
    with pytest.raises(ValueError, match=act):
        rnn.rnn_step(p, jnp.zeros(D_H), jnp.zeros(D_X), phi="gelu")
    with pytest.raises(ValueError, match=act):
        rnn.scan(p, XS, phi="gelu")
    with pytest.raises(ValueError, match=act):
        rnn.loss(p, (XS, Y_LAST), phi="gelu")
    with pytest.raises(ValueError, match=act):
        rnn.rnn_bptt(p, (XS, Y_LAST), phi="gelu")
    with pytest.raises(ValueError, match=act):
        rnn.rnn_jacobian(p, jnp.zeros(D_H), jnp.zeros(D_X), phi="gelu")
    lstm_msg = "params are an LSTM's; BPTT by hand is for the RNN"
    with pytest.raises(ValueError, match=lstm_msg):
        rnn.rnn_forward(p_lstm, XS)
    with pytest.raises(ValueError, match=lstm_msg):
        rnn.rnn_bptt(p_lstm, (XS, Y_LAST))


# ---------------------------------------------------------------------------------------------
# 9. jit and vmap

def test_loss_jits_and_vmaps_over_stacked_params():
    keys = jax.random.split(jax.random.key(0), 3)
    rng = np.random.default_rng(17)
    xs = jnp.asarray(rng.normal(size=(B_PAD, T_PAD, 3)), jnp.float32)
    lengths = jnp.asarray(LENGTHS)
    for cell, (kind, target) in zip(CELLS, (("xent", "sequence"), ("mse", "last")), strict=True):
        y = _targets(rng, B_PAD, T_PAD, 2, kind, target)
        y = y.astype(jnp.float32) if kind == "mse" else y
        loss = partial(rnn.loss, kind=kind, target=target)
        init = jax.jit(partial(rnn.init, d_x=3, d_h=4, d_y=2, cell=cell))
        stacked = jax.vmap(init)(keys)
        # lengths traced under jit: the mask is built from values unknown at trace time
        def both(p, xs, y, lengths, loss=loss):
            return loss(p, (xs, y), lengths), rnn.apply(p, xs, lengths)

        out, outs = jax.jit(jax.vmap(both, in_axes=(0, None, None, None)))(stacked, xs, y,
                                                                           lengths)
        chex.assert_shape([out, outs], [(3,), (3, B_PAD, T_PAD, 2)])
        out, outs, stacked = jax.tree.map(np.asarray, (out, outs, stacked))
        loss_i = jax.jit(both)
        for i, k in enumerate(keys):
            p = init(k)
            chex.assert_trees_all_equal(jax.tree.map(lambda a, i=i: a[i], stacked), p)
            want, want_out = loss_i(p, xs, y, lengths)
            np.testing.assert_allclose(out[i], want, rtol=2e-5)
            np.testing.assert_allclose(outs[i], want_out, rtol=2e-5, atol=2e-6)
        assert len(set(np.round(np.asarray(out), 6))) == 3  # three different models
