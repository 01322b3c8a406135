"""Recurrent networks as ``lax.scan`` steps: a vanilla RNN and an LSTM (problem set 004 Q13, Q14).

    RNN:   a_t = W_h h_{t-1} + W_x x_t + b,  h_t = phi(a_t)
    LSTM:  z_t = W_h h_{t-1} + W_x x_t + b = [z_i; z_f; z_g; z_o]   (one stacked [4 d_h] vector)
           i_t = sigma(z_i), f_t = sigma(z_f), g_t = tanh(z_g) (the problem set's c~_t), o_t =
           sigma(z_o) c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t)
    both:  o_t = W_y h_t + c  (the output's pre-activation; psi is in the loss)

Params, the same names for both cells (column-vector maths as in the problem set; rows below are
examples): ``{"W_h": [G, d_h], "W_x": [G, d_x], "b": [G], "W_y": [d_y, d_h], "c": [d_y]}``,
G = d_h for the RNN and 4 d_h for the LSTM (gates stacked in the order i, f, g, o and split).

Steps have the scan signature ``step(params, carry, x_t) -> (carry, h_t)``: ``rnn_step`` with
carry h, ``lstm_step`` with carry (h, c); x_t is [d_x] or batched [B, d_x]. Sequences are
batch-first, xs: [B, T, d_x]; ``lengths`` [B] (each in 1..T) marks the real steps of padded
sequences: past its length a sequence's carry is frozen and its outputs are zero, so padding
never changes a result (tests/test_rnn.py runs each sequence alone to check).

Relation to flax.linen's ``LSTMCell`` / ``OptimizedLSTMCell`` (same gates, same order):
``flax_lstm_params`` maps its parameters onto ours; flax's carry is (c, h), ours (h, c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxnets import functional as F
from jaxnets import losses
from jaxnets._checks import check_labels, is_concrete

Params = dict[str, Array]
Cell = Literal["rnn", "lstm"]
Batch = tuple[Array, Array]

# phi and phi' of the RNN's hidden units.
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (F.tanh, F.tanh_grad), "relu": (F.relu, F.relu_grad)}
GATES = ("i", "f", "g", "o")

_init_weight = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2)


def _gates(cell: str) -> int:
    if cell not in ("rnn", "lstm"):
        raise ValueError(f"rnn: unknown cell {cell!r}; expected 'rnn' or 'lstm'")
    return 1 if cell == "rnn" else 4


def init(key: Array, d_x: int, d_h: int, d_y: int, *, cell: Cell = "rnn",
         forget_bias: float = 1.0, dtype=jnp.float32) -> Params:
    """LeCun-normal weights (variance 1/fan_in), zero biases (the LSTM's forget gate: forget_bias).

    Args:
      key: PRNG key. d_x: input features. d_h: hidden units. d_y: outputs.
      cell: "rnn" or "lstm". forget_bias: initial b of the LSTM's forget gate (Gers et al.
        2000 and Jozefowicz et al. 2015 start it at 1 so f_t ~ 0.73 and the cell remembers).
    Returns:
      {"W_h": [G, d_h], "W_x": [G, d_x], "b": [G], "W_y": [d_y, d_h], "c": [d_y]}, G = gates d_h.
    """
    for name, v in (("d_x", d_x), ("d_h", d_h), ("d_y", d_y)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"rnn.init: {name} must be a positive integer, got {v!r}")
    G = _gates(cell) * d_h
    k_h, k_x, k_y = jax.random.split(key, 3)
    b = jnp.zeros((G,), dtype)
    if cell == "lstm":
        b = b.at[d_h:2 * d_h].set(forget_bias)
    return {"W_h": _init_weight(k_h, (G, d_h), dtype), "W_x": _init_weight(k_x, (G, d_x), dtype),
            "b": b, "W_y": _init_weight(k_y, (d_y, d_h), dtype), "c": jnp.zeros((d_y,), dtype)}


def sizes(params: Params) -> tuple[int, int, int]:
    """(d_x, d_h, d_y) read from the parameter shapes."""
    return params["W_x"].shape[1], params["W_h"].shape[1], params["W_y"].shape[0]


def cell_of(params: Params) -> Cell:
    """"lstm" when W_h stacks four gates ([4 d_h, d_h]), "rnn" when it is square."""
    G, d_h = params["W_h"].shape
    if G not in (d_h, 4 * d_h):
        raise ValueError(f"rnn: W_h must be [d_h, d_h] (RNN) or [4 d_h, d_h] (LSTM), got "
                         f"{params['W_h'].shape}")
    return "rnn" if G == d_h else "lstm"


# ---------------------------------------------------------------------------------------------
# Steps. Each takes the input projection u_t = W_x x_t + b already made; W_hT = W_h^T [d_h, G]
# and W_xT = W_x^T [d_x, G] are transposed once, outside any loop.

def _rnn_cell(W_hT: Array, h: Array, u_t: Array, phi: Callable) -> Array:
    return phi(u_t + h @ W_hT)


def _lstm_cell(W_hT: Array, carry: tuple[Array, Array], u_t: Array) -> tuple[Array, Array]:
    h, c = carry
    z_i, z_f, z_g, z_o = jnp.split(u_t + h @ W_hT, 4, axis=-1)  # [..., 4 d_h] -> 4 x [..., d_h]
    c = F.sigmoid(z_f) * c + F.sigmoid(z_i) * F.tanh(z_g)
    return F.sigmoid(z_o) * F.tanh(c), c


def _project(params: Params, x: Array) -> Array:
    """u = W_x x + b. x: [..., d_x] -> [..., G]."""
    return x @ params["W_x"].T + params["b"]


def rnn_step(params: Params, h: Array, x_t: Array, *, phi: str = "tanh") -> tuple[Array, Array]:
    """h_t = phi(W_h h_{t-1} + W_x x_t + b). h: [d_h] or [B, d_h]; x_t: [d_x] or [B, d_x].

    Returns (h_t, h_t): the new carry and the step's output.
    """
    h = _rnn_cell(params["W_h"].T, h, _project(params, x_t), _activation(phi)[0])
    return h, h


def lstm_step(params: Params, carry: tuple[Array, Array], x_t: Array
              ) -> tuple[tuple[Array, Array], Array]:
    """One LSTM step; carry = (h, c), each [d_h] or [B, d_h]; x_t: [d_x] or [B, d_x].

    Returns ((h_t, c_t), h_t) with c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t).
    """
    h, c = _lstm_cell(params["W_h"].T, carry, _project(params, x_t))
    return (h, c), h


def _activation(phi: str):
    if phi not in ACTIVATIONS:
        raise ValueError(f"rnn: unknown activation {phi!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[phi]


# ---------------------------------------------------------------------------------------------
# Checks

def _check_inputs(params: Params, xs, lengths, where: str) -> None:
    d_x = sizes(params)[0]
    if jnp.ndim(xs) != 3 or jnp.shape(xs)[-1] != d_x:
        raise ValueError(f"{where}: xs must have shape [B, T, {d_x}] (batch, time, features), "
                         f"got {jnp.shape(xs)}")
    if lengths is None:
        return
    B, T = jnp.shape(xs)[:2]
    if jnp.shape(lengths) != (B,):
        raise ValueError(f"{where}: lengths must have shape [B] = ({B},), got "
                         f"{jnp.shape(lengths)}")
    if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
        raise TypeError(f"{where}: lengths must be integers, got {jnp.result_type(lengths)}")
    if is_concrete(lengths) and B:
        lengths = np.asarray(lengths)  # a concrete jax.Array closed over by jit: numpy, not jnp
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > T:
            raise ValueError(f"{where}: lengths must be in [1, T] = [1, {T}] (the padded time "
                             f"axis), got values in [{lo}, {hi}]")


def _mask(xs: Array, lengths: Array | None) -> Array:
    """m[t, n] = 1 if step t is inside sequence n. Returns [T, B] (time-major) in xs's dtype."""
    B, T = xs.shape[:2]
    if lengths is None:
        return jnp.ones((T, B), xs.dtype)
    return (jnp.arange(T)[:, None] < lengths[None, :]).astype(xs.dtype)


def _time_major(xs: Array, lengths: Array | None) -> tuple[Array, Array]:
    """(x [T, B, d_x], mask [T, B, 1]) with x zeroed past each length.

    Zeroing (not just masking the result) keeps whatever fills the padding (NaN included) out of
    every value and gradient: a discarded step's cotangent is 0, and 0 * NaN would be NaN.
    """
    x, mask = jnp.swapaxes(xs, 0, 1), _mask(xs, lengths)[..., None]
    return (x if lengths is None else jnp.where(mask > 0, x, 0)), mask


# ---------------------------------------------------------------------------------------------
# Sequences

def zero_carry(params: Params, batch: int):
    """h0 = 0 ([B, d_h]) for the RNN, (h0, c0) = (0, 0) for the LSTM."""
    d_h = sizes(params)[1]
    z = jnp.zeros((batch, d_h), params["W_h"].dtype)
    return z if cell_of(params) == "rnn" else (z, z)


# Whether ``scan`` rematerialises a cell's step in the backward pass (``jax.checkpoint``,
# nothing saved but the carry), by default: on CPU recomputing the LSTM's [T, B, 4 d_h] gate
# activations is faster than storing them, and for the RNN it is slower
# (experiments/benchmark_lstm.py).
REMAT = {"rnn": False, "lstm": True}


BACKWARDS = ("autodiff", "hand")


def scan(params: Params, xs: Array, lengths: Array | None = None, carry=None, *,
         phi: str = "tanh", unroll: int = 1, remat: bool | None = None,
         backward: str = "autodiff"):
    """Run the cell over a batch of sequences with ``lax.scan``.

    Each step projects its own x_t (u_t = W_x x_t + b).

    Args:
      params: RNN or LSTM params (the cell is read from W_h's shape).
      xs: [B, T, d_x]. lengths: [B] ints in 1..T (default: all T).
      carry: the initial carry (default ``zero_carry``). phi: the RNN's activation.
      unroll: ``lax.scan``'s unroll.
      remat: rematerialise each step in the backward pass (``jax.checkpoint``, nothing saved
        but the carry) instead of storing its intermediates; same values and gradients. None
        (the default): ``REMAT[cell]``, on for the LSTM, off for the RNN.
      backward: how the LSTM's gradient is computed: "autodiff" (JAX differentiates the scan)
        or "hand" (``jax.custom_vjp`` with the hand-derived backward ``_lstm_bptt_scan``, the
        same values to rounding). The RNN always uses autodiff here; its hand BPTT is
        ``rnn_value_and_bptt``.
    Returns:
      (carry, hs): the carry at each sequence's own last step, and hs [B, T, d_h] (zero past
      each length).
    """
    _check_inputs(params, xs, lengths, "rnn.scan")
    if backward not in BACKWARDS:
        raise ValueError(f"rnn.scan: unknown backward {backward!r}; expected one of {BACKWARDS}")
    cell = cell_of(params)
    carry = zero_carry(params, xs.shape[0]) if carry is None else carry
    x, mask = _time_major(xs, lengths)
    if cell == "lstm" and backward == "hand":
        carry, hs = _lstm_scan_hand(params["W_h"], params["W_x"], params["b"], x, mask, *carry)
        return carry, jnp.swapaxes(hs, 0, 1)
    W_hT, W_xT, b = params["W_h"].T, params["W_x"].T, params["b"]

    if cell == "rnn":
        act = _activation(phi)[0]
        new = lambda carry, u: _rnn_cell(W_hT, carry, u, act)  # noqa: E731
        out = lambda carry: carry  # noqa: E731
    else:
        new = lambda carry, u: _lstm_cell(W_hT, carry, u)  # noqa: E731
        out = lambda carry: carry[0]  # noqa: E731

    def step(carry, xm):
        x_t, m = xm
        carry = jax.tree.map(lambda n, o: jnp.where(m > 0, n, o), new(carry, x_t @ W_xT + b),
                             carry)
        return carry, m * out(carry)

    if REMAT[cell] if remat is None else bool(remat):
        step = jax.checkpoint(step, policy=jax.checkpoint_policies.nothing_saveable)
    carry, hs = jax.lax.scan(step, carry, (x, mask), unroll=unroll)
    return carry, jnp.swapaxes(hs, 0, 1)


def _readout(params: Params, h: Array) -> Array:
    """o = W_y h + c. h: [..., d_h] -> [..., d_y]."""
    return h @ params["W_y"].T + params["c"]


def apply(params: Params, xs: Array, lengths: Array | None = None, *, phi: str = "tanh",
          backward: str = "autodiff") -> Array:
    """Outputs o_t = W_y h_t + c at every step. xs: [B, T, d_x]. Returns [B, T, d_y] (zero past
    each length). ``backward``: as in ``scan``."""
    _, hs = scan(params, xs, lengths, phi=phi, backward=backward)
    return _readout(params, hs) * _mask(xs, lengths).T[..., None]


def apply_last(params: Params, xs: Array, lengths: Array | None = None, *, phi: str = "tanh",
               backward: str = "autodiff") -> Array:
    """The output at each sequence's last step, W_y h_{T_n} + c. xs: [B, T, d_x] -> [B, d_y].
    ``backward``: as in ``scan``."""
    carry, _ = scan(params, xs, lengths, phi=phi, backward=backward)
    return _readout(params, carry if cell_of(params) == "rnn" else carry[0])


# ---------------------------------------------------------------------------------------------
# Losses: L = (1/B) sum_n sum_{t < T_n} l(o_{n,t}, y_{n,t}) (target "sequence", problem set 004
# 14.2's L = sum_t L_t per sequence, averaged over the batch) or (1/B) sum_n l(o_{n,T_n}, y_n)
# ("last"). l is "mse": mean_k (o_k - y_k)^2 (psi = identity), or "xent": softmax cross-entropy
# with an integer label (psi = softmax).

LOSSES = ("mse", "xent")
TARGETS = ("sequence", "last")


def _check_targets(params: Params, xs, y, kind: str, target: str, where: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"{where}: unknown loss {kind!r}; expected one of {LOSSES}")
    if target not in TARGETS:
        raise ValueError(f"{where}: unknown target {target!r}; expected one of {TARGETS}")
    d_y = sizes(params)[2]
    lead = tuple(jnp.shape(xs)[:1 if target == "last" else 2])
    want = lead + ((d_y,) if kind == "mse" else ())
    if tuple(jnp.shape(y)) != want:
        axes = "B" if target == "last" else "B, T"
        axes += f", {d_y}" if kind == "mse" else ""
        raise ValueError(f"{where}: y must have shape [{axes}] = {want} for a {kind!r} loss on "
                         f"target {target!r}, got {jnp.shape(y)}")
    if kind == "xent":
        check_labels(y, d_y, where)


def _step_loss(o: Array, y: Array, kind: str) -> Array:
    return losses.mse(o, y) if kind == "mse" else losses.softmax_cross_entropy(o, y)


def loss(params: Params, batch: Batch, lengths: Array | None = None, *, kind: str = "mse",
         target: str = "last", phi: str = "tanh", backward: str = "autodiff") -> Array:
    """Mean over the batch of the summed per-step losses (see above).

    Args:
      batch: (xs [B, T, d_x], y), y [B, d_y] floats ("mse", "last"), [B] ints ("xent", "last"),
        [B, T, d_y] or [B, T] for target "sequence".
      lengths: [B] ints in 1..T (default: all T).
      backward: the LSTM's gradient, "autodiff" or "hand" (``scan``); ``jax.grad`` of this
        loss with "hand" runs the hand-derived backward through time.
    Returns a scalar.
    """
    xs, y = batch
    _check_inputs(params, xs, lengths, "rnn.loss")
    _check_targets(params, xs, y, kind, target, "rnn.loss")
    kw = dict(phi=phi, backward=backward)
    if target == "last":
        return jnp.mean(_step_loss(apply_last(params, xs, lengths, **kw), y, kind))
    l_t = _step_loss(apply(params, xs, lengths, **kw), y, kind)  # [B, T]
    return jnp.sum(jnp.where(_mask(xs, lengths).T > 0, l_t, 0)) / xs.shape[0]  # NaN-proof


def metrics(params: Params, batch: Batch, *, kind: str = "mse", phi: str = "tanh"
            ) -> dict[str, Array]:
    """{"loss": loss} for target "last"; with "xent", also "accuracy" of the last output."""
    xs, y = batch
    _check_inputs(params, xs, None, "rnn.metrics")
    _check_targets(params, xs, y, kind, "last", "rnn.metrics")
    o = apply_last(params, xs, phi=phi)
    if kind == "xent":
        return losses.classification_metrics(o, y)
    return {"loss": jnp.mean(_step_loss(o, y, kind))}


# ---------------------------------------------------------------------------------------------
# Backprop through time by hand (problem set 004 Q14.2), the RNN.

def _output_grads(o: Array, y: Array, weight: Array, kind: str) -> tuple[Array, Array]:
    """(L, dL/do_t) with L = sum_t weight_t l(o_t, y_t). o: [T, B, d_y]; weight [T, B] (mask/B).

    Steps of weight 0 are left out with jnp.where, so padding's targets (NaN say) never count.
    """
    on = (weight > 0)[..., None]
    if kind == "mse":
        l_t, do = losses.mse(o, y), 2 * (o - y) / o.shape[-1]
    else:
        l_t, do = losses.softmax_cross_entropy(o, y), losses.softmax_cross_entropy_grad(o, y)
    return (jnp.sum(jnp.where(on[..., 0], weight * l_t, 0)),
            jnp.where(on, do * weight[..., None], 0))


def _bptt_scan(W_h: Array, g: Array, a: Array, mask: Array, phi_grad: Callable) -> Array:
    """The reverse recursion of BPTT. Returns da_t = dL/da_t, [T, B, d_h].

    delta_t = dL/dh_t = g_t + J_{t+1}^T delta_{t+1},  J_{t+1}^T delta = W_h^T (phi'(a_{t+1}) *
    delta); with padding (m_t = 0 past a length, where h_t = h_{t-1}) the carry passes through:
    da_t = m_t delta_t phi'(a_t), delta_{t-1} <- g_{t-1} + W_h^T da_t + (1 - m_t) delta_t.
    g: dL_t/dh_t [T, B, d_h] (the direct term), a: pre-activations, mask: [T, B, 1].
    """
    def step(delta_next, gam):
        g_t, a_t, m_t = gam
        delta = g_t + delta_next
        da = m_t * delta * phi_grad(a_t)
        return da @ W_h + (1 - m_t) * delta, da

    _, da = jax.lax.scan(step, jnp.zeros_like(g[0]), (g, a, mask), reverse=True)
    return da


class RnnForward(NamedTuple):
    """Time-major values of the RNN's forward pass kept for BPTT."""

    a: Array  # [T, B, d_h] pre-activations a_t
    h: Array  # [T + 1, B, d_h] h_0 (zero) .. h_T, frozen past each length


def rnn_forward(params: Params, xs: Array, lengths: Array | None = None, *, phi: str = "tanh"
                ) -> RnnForward:
    """a_t and h_t of every step (time-major), from h_0 = 0. xs: [B, T, d_x]."""
    _check_inputs(params, xs, lengths, "rnn.rnn_forward")
    if cell_of(params) != "rnn":
        raise ValueError("rnn.rnn_forward: params are an LSTM's; BPTT by hand is for the RNN")
    act = _activation(phi)[0]
    x, mask = _time_major(xs, lengths)
    us = _project(params, x)  # [T, B, d_h], all steps' W_x x_t + b in one matmul
    W_hT = params["W_h"].T

    def step(h, um):
        u, m = um
        a = u + h @ W_hT
        h = jnp.where(m > 0, act(a), h)
        return h, (a, h)

    h0 = zero_carry(params, xs.shape[0])
    _, (a, h) = jax.lax.scan(step, h0, (us, mask))
    return RnnForward(a, jnp.concatenate([h0[None], h]))


def rnn_value_and_bptt(params: Params, batch: Batch, lengths: Array | None = None, *,
                      kind: str = "mse", target: str = "last", phi: str = "tanh"
                      ) -> tuple[Array, Params]:
    """(loss, dL/dtheta) for the RNN from one forward scan and one reverse scan (problem set 004
    Q14.2).

    With delta_t = dL/dh_t (``_bptt_scan``) and da_t = delta_t * phi'(a_t):
      dL/dW_h = sum_t da_t h_{t-1}^T,  dL/dW_x = sum_t da_t x_t^T,  dL/db = sum_t da_t,
      dL/dW_y = sum_t dL/do_t h_t^T,   dL/dc = sum_t dL/do_t,
    summed over the batch too; each sum over t is one matmul after the reverse scan. Padded steps
    get no loss and pass delta through unchanged. Note the order of the problem set's product:
    dh_k/dh_t = J_k J_{k-1} ... J_{t+1} (latest on the left), so delta_t needs J_{t+1}^T ... J_k^T;
    the problem set's prod_{j=t+1}^k J_j read left to right is the reverse.
    Returns what ``jax.value_and_grad(loss)`` returns.
    """
    xs, y = batch
    _check_inputs(params, xs, lengths, "rnn.rnn_bptt")
    _check_targets(params, xs, y, kind, target, "rnn.rnn_bptt")
    a, h = rnn_forward(params, xs, lengths, phi=phi)
    x, mask = _time_major(xs, lengths)  # [T, B, d_x], [T, B, 1]
    value, do = _readout_value_and_grad(params, xs, y, lengths, kind, target, h[1:])
    da = _bptt_scan(params["W_h"], do @ params["W_y"], a, mask, _activation(phi)[1])
    return value, {**_recurrent_grads(da, h[:-1], x), **_readout_grads(do, h[1:])}


def _readout_value_and_grad(params: Params, xs: Array, y: Array, lengths: Array | None,
                            kind: str, target: str, h: Array) -> tuple[Array, Array]:
    """(L, dL/do_t) of the readout o_t = W_y h_t + c of h [T, B, d_h] (h_1..h_T, time-major),
    do: [T, B, d_y]. Target "last" weights only t = T_n - 1 (h is frozen past a length)."""
    B, T = xs.shape[:2]
    if target == "last":
        last = T - 1 if lengths is None else lengths - 1
        weight = (jnp.arange(T)[:, None] == last).astype(xs.dtype) / B  # only t = T_n - 1
        y = jnp.broadcast_to(y, (T, *y.shape))
    else:
        weight = _mask(xs, lengths) / B
        y = jnp.swapaxes(y, 0, 1)
    return _output_grads(_readout(params, h), y, weight, kind)


def _recurrent_grads(dz: Array, h_prev: Array, x: Array) -> Params:
    """dL/dW_h = sum_t dz_t h_{t-1}^T, dL/dW_x = sum_t dz_t x_t^T, dL/db = sum_t dz_t (over the
    batch too), each one matmul over all steps. dz: [T, B, G] (da_t for the RNN, the gates'
    dz_t for the LSTM); h_prev [T, B, d_h]; x [T, B, d_x]."""
    dz = dz.reshape(-1, dz.shape[-1])  # [T B, G]: one product over steps and examples (XLA:CPU
    # runs it 1.3-2.2x faster than the einsum contracting t and b, benchmark_lstm's shapes)
    return {"W_h": dz.T @ h_prev.reshape(dz.shape[0], -1),
            "W_x": dz.T @ x.reshape(dz.shape[0], -1),
            "b": jnp.sum(dz, axis=0)}


def _readout_grads(do: Array, h: Array) -> Params:
    """dL/dW_y = sum_t dL/do_t h_t^T, dL/dc = sum_t dL/do_t. do: [T, B, d_y]; h [T, B, d_h]."""
    do = do.reshape(-1, do.shape[-1])
    return {"W_y": do.T @ h.reshape(do.shape[0], -1), "c": jnp.sum(do, axis=0)}


def rnn_bptt(params: Params, batch: Batch, lengths: Array | None = None, *, kind: str = "mse",
             target: str = "last", phi: str = "tanh") -> Params:
    """dL/dtheta of ``loss`` for the RNN by hand BPTT (``rnn_value_and_bptt`` without the value);
    the same tree as ``jax.grad(loss)``."""
    return rnn_value_and_bptt(params, batch, lengths, kind=kind, target=target, phi=phi)[1]


# ---------------------------------------------------------------------------------------------
# Backprop through time by hand, the LSTM. Problem set 004 Q13 gives only dc_t/dc_{t-1} = diag(f_t);
# the whole backward, with delta_t = dL/dh_t and gamma_t = dL/dc_t (each over all paths):
#   gamma_t  = gamma'_t + delta_t * o_t * tanh'(c_t)      gamma'_t = gamma_{t+1} f_{t+1} (0 at T)
#   dz_o = delta_t tanh(c_t) sigma'(z_o),  dz_i = gamma_t g_t sigma'(z_i),
#   dz_f = gamma_t c_{t-1} sigma'(z_f),    dz_g = gamma_t i_t tanh'(z_g)
#   delta_{t-1} = g_{t-1} + W_h^T dz_t     (g: the direct term dL_{t-1}/dh_{t-1})
# with sigma' = s (1 - s), tanh' = 1 - tanh^2 read off the saved gates, and the weights'
# gradients dL/dW_h = sum_t dz_t h_{t-1}^T etc. (``_recurrent_grads``) after the reverse scan.


class LstmForward(NamedTuple):
    """Time-major values of the LSTM's forward pass kept for its backward."""

    i: Array  # [T, B, d_h] input gate sigma(z_i)
    f: Array  # [T, B, d_h] forget gate sigma(z_f)
    g: Array  # [T, B, d_h] candidate tanh(z_g), the problem set's c~_t
    o: Array  # [T, B, d_h] output gate sigma(z_o)
    c: Array  # [T + 1, B, d_h] c_0 .. c_T, frozen past each length
    h: Array  # [T + 1, B, d_h] h_0 .. h_T, frozen past each length


def _lstm_forward(W_h: Array, W_x: Array, b: Array, x: Array, mask: Array, h0: Array,
                  c0: Array) -> LstmForward:
    """The forward scan keeping the gates. x: [T, B, d_x] (zero past each length); mask
    [T, B, 1]; h0, c0: [B, d_h]."""
    W_hT, W_xT = W_h.T, W_x.T

    def step(carry, xm):
        (h, c), (x_t, m) = carry, xm
        z_i, z_f, z_g, z_o = jnp.split(x_t @ W_xT + b + h @ W_hT, 4, axis=-1)
        i, f, g, o = F.sigmoid(z_i), F.sigmoid(z_f), F.tanh(z_g), F.sigmoid(z_o)
        c_t = f * c + i * g
        h, c = jnp.where(m > 0, o * F.tanh(c_t), h), jnp.where(m > 0, c_t, c)
        return (h, c), (i, f, g, o, c, h)

    _, (i, f, g, o, c, h) = jax.lax.scan(step, (h0, c0), (x, mask))
    return LstmForward(i, f, g, o, jnp.concatenate([c0[None], c]),
                       jnp.concatenate([h0[None], h]))


def _lstm_bptt_scan(W_h: Array, fwd: LstmForward, mask: Array, g: Array, delta_T: Array,
                    gamma_T: Array) -> tuple[Array, Array, Array]:
    """The LSTM's reverse recursion (above). Returns (dz [T, B, 4 d_h] in gate order i, f, g, o,
    dL/dh_0, dL/dc_0).

    g: [T, B, d_h] the direct terms dL_t/dh_t; delta_T, gamma_T [B, d_h]: dL/dh_T and dL/dc_T
    from beyond the last step (the final carry's cotangent). A padded step (m_t = 0: h_t =
    h_{t-1}, c_t = c_{t-1}) has dz_t = 0 and passes delta and gamma through unchanged.
    """
    def step(carry, inputs):
        delta_next, gamma_next = carry
        i, f, gate, o, c_prev, c, g_t, m = inputs
        delta = g_t + delta_next
        tanh_c = F.tanh(c)
        gamma = gamma_next + delta * o * (1 - tanh_c ** 2)
        dz = m * jnp.concatenate([gamma * gate * i * (1 - i), gamma * c_prev * f * (1 - f),
                                  gamma * i * (1 - gate ** 2), delta * tanh_c * o * (1 - o)],
                                 axis=-1)
        return (dz @ W_h + (1 - m) * delta, m * gamma * f + (1 - m) * gamma_next), dz

    (delta_0, gamma_0), dz = jax.lax.scan(
        step, (delta_T, gamma_T),
        (fwd.i, fwd.f, fwd.g, fwd.o, fwd.c[:-1], fwd.c[1:], g, mask), reverse=True)
    return dz, delta_0, gamma_0


@jax.custom_vjp
def _lstm_scan_hand(W_h: Array, W_x: Array, b: Array, x: Array, mask: Array, h0: Array,
                    c0: Array) -> tuple[tuple[Array, Array], Array]:
    """((h_T, c_T), hs [T, B, d_h]) of the LSTM, time-major, differentiated by hand."""
    fwd = _lstm_forward(W_h, W_x, b, x, mask, h0, c0)
    return (fwd.h[-1], fwd.c[-1]), mask * fwd.h[1:]


def _lstm_scan_hand_fwd(W_h, W_x, b, x, mask, h0, c0):
    fwd = _lstm_forward(W_h, W_x, b, x, mask, h0, c0)
    return ((fwd.h[-1], fwd.c[-1]), mask * fwd.h[1:]), (W_h, W_x, x, mask, fwd)


def _lstm_scan_hand_bwd(res, cotangents):
    W_h, W_x, x, mask, fwd = res
    (delta_T, gamma_T), d_hs = cotangents
    dz, delta_0, gamma_0 = _lstm_bptt_scan(W_h, fwd, mask, mask * d_hs, delta_T, gamma_T)
    grads = _recurrent_grads(dz, fwd.h[:-1], x)
    return (grads["W_h"], grads["W_x"], grads["b"], dz @ W_x, jnp.zeros_like(mask), delta_0,
            gamma_0)


_lstm_scan_hand.defvjp(_lstm_scan_hand_fwd, _lstm_scan_hand_bwd)


def lstm_forward(params: Params, xs: Array, lengths: Array | None = None) -> LstmForward:
    """The gates i, f, g, o and the states c_t, h_t of every step (time-major), from zero.
    xs: [B, T, d_x]."""
    _check_inputs(params, xs, lengths, "rnn.lstm_forward")
    if cell_of(params) != "lstm":
        raise ValueError("rnn.lstm_forward: params are an RNN's (W_h is square); use "
                         "rnn_forward")
    x, mask = _time_major(xs, lengths)
    return _lstm_forward(params["W_h"], params["W_x"], params["b"], x, mask,
                         *zero_carry(params, xs.shape[0]))


def lstm_value_and_bptt(params: Params, batch: Batch, lengths: Array | None = None, *,
                        kind: str = "mse", target: str = "last") -> tuple[Array, Params]:
    """(loss, dL/dtheta) for the LSTM from one forward scan and one reverse scan.

    The reverse scan is the recursion above (``_lstm_bptt_scan``); dL/dW_h, dL/dW_x, dL/db are
    sums over steps of dz_t h_{t-1}^T, dz_t x_t^T, dz_t, and dL/dW_y, dL/dc as for the RNN, each
    one matmul after the scan. Returns what ``jax.value_and_grad(loss)`` returns.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxnets.models import rnn
        >>> params = rnn.init(jax.random.key(0), d_x=2, d_h=4, d_y=1, cell="lstm")
        >>> xs, y = jax.random.normal(jax.random.key(1), (3, 6, 2)), jnp.ones((3, 1))
        >>> value, grads = rnn.lstm_value_and_bptt(params, (xs, y), jnp.array([6, 2, 4]))
        >>> auto = jax.grad(rnn.loss)(params, (xs, y), jnp.array([6, 2, 4]))
        >>> all(bool(jnp.allclose(grads[k], auto[k], atol=1e-6)) for k in auto)
        True
    """
    xs, y = batch
    _check_targets(params, xs, y, kind, target, "rnn.lstm_bptt")
    fwd = lstm_forward(params, xs, lengths)
    x, mask = _time_major(xs, lengths)
    value, do = _readout_value_and_grad(params, xs, y, lengths, kind, target, fwd.h[1:])
    zero = jnp.zeros_like(fwd.h[0])
    dz, _, _ = _lstm_bptt_scan(params["W_h"], fwd, mask, do @ params["W_y"], zero, zero)
    return value, {**_recurrent_grads(dz, fwd.h[:-1], x), **_readout_grads(do, fwd.h[1:])}


def lstm_bptt(params: Params, batch: Batch, lengths: Array | None = None, *,
              kind: str = "mse", target: str = "last") -> Params:
    """dL/dtheta of ``loss`` for the LSTM by hand (``lstm_value_and_bptt`` without the value)."""
    return lstm_value_and_bptt(params, batch, lengths, kind=kind, target=target)[1]


# ---------------------------------------------------------------------------------------------
# Jacobians by hand (unbatched: h, c [d_h], x_t [d_x]).

def rnn_jacobian(params: Params, h: Array, x_t: Array, *, phi: str = "tanh") -> Array:
    """J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_h (problem set 004 Q14.1). Returns [d_h, d_h].

    The problem set reads stability off the eigenvalues of one J_t ("all below 1 in magnitude:
    stable"). What decides it is the product J_T ... J_1 of different matrices: each factor can have
    spectral radius < 1 while the product grows (tests/test_rnn.py builds such a pair), and a
    non-normal J with eigenvalues < 1 still amplifies for a while. The experiment
    ``experiments.gradient_flow`` prints the product's spectral radius.
    """
    a = params["W_h"] @ h + params["W_x"] @ x_t + params["b"]
    return _activation(phi)[1](a)[:, None] * params["W_h"]


class LstmJacobian(NamedTuple):
    """The blocks of d(h_t, c_t)/d(h_{t-1}, c_{t-1}), each [d_h, d_h]."""

    dh_dh: Array
    dh_dc: Array
    dc_dh: Array
    dc_dc: Array

    def full(self) -> Array:
        """[[dh/dh, dh/dc], [dc/dh, dc/dc]] as one [2 d_h, 2 d_h] matrix, state order (h, c)."""
        return jnp.block([[self.dh_dh, self.dh_dc], [self.dc_dh, self.dc_dc]])


def lstm_gates(params: Params, carry: tuple[Array, Array], x_t: Array) -> dict[str, Array]:
    """Pre-activations z_i, z_f, z_g, z_o [d_h] of one step, by name."""
    h, _ = carry
    z = params["W_h"] @ h + params["W_x"] @ x_t + params["b"]
    return dict(zip(["z_" + g for g in GATES], jnp.split(z, 4), strict=True))


def lstm_cell_path(params: Params, carry: tuple[Array, Array], x_t: Array) -> Array:
    """dc_t/dc_{t-1} with h_{t-1} held fixed: diag(f_t) (problem set 004 Q13); [d_h, d_h]."""
    return jnp.diag(F.sigmoid(lstm_gates(params, carry, x_t)["z_f"]))


def lstm_jacobian(params: Params, carry: tuple[Array, Array], x_t: Array) -> LstmJacobian:
    """The full Jacobian of one LSTM step, by hand.

    With W_h split by gates into W_i, W_f, W_g, W_o ([d_h, d_h] each):
      dc_t/dc_{t-1} = diag(f)                                           (the problem set's Q13
      answer) dc_t/dh_{t-1} = diag(c_{t-1} sigma'(z_f)) W_f + diag(g sigma'(z_i)) W_i
                      + diag(i tanh'(z_g)) W_g
      dh_t/dc_{t-1} = diag(o tanh'(c_t)) diag(f)
      dh_t/dh_{t-1} = diag(tanh(c_t) sigma'(z_o)) W_o + diag(o tanh'(c_t)) dc_t/dh_{t-1}
    Problem set 004 Q13 keeps only the first block: it holds h_{t-1} fixed, but h_{t-1} = o_{t-1}
    tanh(c_{t-1}) depends on c_{t-1}, and the gates read h_{t-1}. So along a sequence the cell
    state's gradient also flows through dc_t/dh_{t-1} dh_{t-1}/dc_{t-1}, which can add to or
    cancel diag(f); and "does not vanish" holds only while the product of the f_t stays away from
    0: prod_t f_t decays geometrically unless f_t -> 1.
    """
    h, c = carry
    z = lstm_gates(params, carry, x_t)
    i, f, o = (F.sigmoid(z[k]) for k in ("z_i", "z_f", "z_o"))
    g = F.tanh(z["z_g"])
    c_t = f * c + i * g
    W_i, W_f, W_g, W_o = jnp.split(params["W_h"], 4)
    dc_dh = ((c * F.sigmoid_grad(z["z_f"]))[:, None] * W_f
             + (g * F.sigmoid_grad(z["z_i"]))[:, None] * W_i
             + (i * F.tanh_grad(z["z_g"]))[:, None] * W_g)
    dc_dc = jnp.diag(f)
    o_dtanh = o * F.tanh_grad(c_t)
    return LstmJacobian(
        dh_dh=(F.tanh(c_t) * F.sigmoid_grad(z["z_o"]))[:, None] * W_o + o_dtanh[:, None] * dc_dh,
        dh_dc=jnp.diag(o_dtanh * f), dc_dh=dc_dh, dc_dc=dc_dc)


# ---------------------------------------------------------------------------------------------
# The ecosystem's convention.

def flax_lstm_params(flax_params: dict) -> Params:
    """Map flax.linen ``LSTMCell`` / ``OptimizedLSTMCell`` params onto ours (no readout).

    flax has, per gate k in (i, f, g, o), ``i{k}: {kernel [d_x, d_h]}`` (no bias) and
    ``h{k}: {kernel [d_h, d_h], bias [d_h]}``; z_k = x @ ii_kernel + h @ hk_kernel + hk_bias.
    So W_x = [ii; if; ig; io kernels]^T stacked, W_h likewise from the h kernels, b from the h
    biases. Returns {"W_h", "W_x", "b"}; add "W_y" and "c" for a readout.
    """
    p = flax_params.get("params", flax_params)
    return {
        "W_h": jnp.concatenate([p[f"h{k}"]["kernel"].T for k in GATES]),
        "W_x": jnp.concatenate([p[f"i{k}"]["kernel"].T for k in GATES]),
        "b": jnp.concatenate([p[f"h{k}"]["bias"] for k in GATES]),
    }
