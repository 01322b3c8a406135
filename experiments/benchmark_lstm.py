"""Forward + backward time of jaxnets' LSTM (autodiff and the hand-derived backward) against
flax.linen's and torch.nn.LSTM, and of the RNN's hand-written backprop through time against
jax.grad and torch.nn.RNN, side by side in one run.

    python -m experiments.benchmark_lstm [--batch 64 --time 100 --hidden 128] [--json PATH]

Every variant is one jitted function of (params, (xs, y)) returning the loss and its gradient with
respect to all params, on the same random data (xs [B, T, d_x] and y [B, d_y] standard normal), a
"last"-target mean squared error: L = (1/B) sum_n mean_k (W_y h_T + c - y_n)_k^2.
- ``lstm ours``: ``jax.value_and_grad(rnn.loss)``, params from ``rnn.init(cell="lstm")``;
- ``lstm ours (hand vjp)``: the same with ``backward="hand"`` (the hand-derived backward as a
  ``jax.custom_vjp``); ``lstm hand BPTT``: ``rnn.lstm_value_and_bptt``;
- ``lstm flax LSTMCell`` / ``lstm flax OptimizedLSTMCell``: ``flax.linen.RNN`` over that cell,
  then a ``flax.linen.Dense`` readout of h_T, the same loss, value_and_grad w.r.t. the flax
  params. Their params are ours rewritten in flax's layout, so all three compute one function;
- ``rnn jax.grad``: ``jax.value_and_grad(rnn.loss)`` of the tanh RNN (params from ``rnn.init``);
- ``rnn hand BPTT``: ``rnn.rnn_value_and_bptt`` (loss and gradients from one forward scan and the
  hand-written reverse scan, as value_and_grad gives);
- with torch installed, ``lstm torch.nn.LSTM`` and ``rnn torch.nn.RNN``: the same loss and
  backward on the same weights (W_x = weight_ih, W_h = weight_hh, b = bias_ih + bias_hh with
  bias_hh = 0, gates i, f, g, o; a ``torch.nn.Linear`` readout), on ``--threads`` threads.
With ``--cpu-devices N`` (the CPU split into N XLA devices, ``train.cpu_devices``; 0: one per
core), also ``... [batch over devices]``: ours (autodiff, hand vjp, forward; the RNN's
jax.grad) with the batch split over the devices (``train.batch_over_devices``; params and batch
placed over the devices once, ``train.put_over_devices``, as a training loop's are), their ratios
to torch reported without a goal. With ``--extras`` (default on), also timed: the LSTMs' loss alone
(rows ``... [fwd]``), and the RNN's gradients alone, ``jax.grad(rnn.loss)`` and
``rnn.rnn_bptt`` (rows ``... [grad]``).

Before timing, the script checks that the variants agree: the flax and torch gradients, mapped
onto ours (flax's with ``rnn.flax_lstm_params`` and W_y = kernel^T, c = bias for the readout),
must equal ours, and the hand backward's autodiff's, each leaf to a relative error (Frobenius
norms) of ``--rtol``; it raises ``Disagreement`` otherwise. Then each executable is compiled
(``jit.lower().compile()``, timed: the compile column; torch compiles nothing: '-'), called
``--warmup`` times, and timed ``--repeats`` times with ``block_until_ready``, all variants
round-robin in each round (the order reversed every round, ABBA), so that load on the machine
hits each alike. Reported: median ms per call, the ratios of medians, and the goals (time
ratios: ours <= 1.0x flax's and torch's, hand BPTT <= 1.1x jax.grad) as PASS/FAIL.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from jaxnets import losses, train
from jaxnets.models import rnn


@dataclasses.dataclass(frozen=True)
class Config:
    """Time jaxnets' scan LSTM against flax.linen's, and hand BPTT against jax.grad (RNN)."""

    models: tuple[Literal["lstm", "rnn"], ...] = ("lstm", "rnn")
    """Which comparisons to run: the LSTMs (ours against flax's), the RNN (hand BPTT against
    jax.grad)."""
    batch: int = 64
    """B, sequences per call."""
    time: int = 100
    """T, steps per sequence."""
    hidden: int = 128
    """d_h, hidden units (the LSTM's gates are 4 d_h wide)."""
    features: int = 32
    """d_x, input features per step (32 is jaxnets' choice)."""
    outputs: int = 1
    """d_y, outputs of the readout W_y h_T + c."""
    warmup: int = 5
    """Untimed calls of each variant after compiling."""
    repeats: int = 50
    """Timed calls of each variant (round-robin); medians are reported."""
    extras: bool = True
    """Also time the three LSTMs' forward pass (the loss alone) and the RNN's gradients alone
    (rnn_bptt against jax.grad, without the loss value)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Params and data dtype (float64 turns on jax_enable_x64 for the run)."""
    rtol: float | None = None
    """Tolerance of the agreement check, relative error per gradient leaf (default: 1e-4 for
    float32, 1e-10 for float64)."""
    seed: int = 0
    """PRNG seed of the params and the random data."""
    torch: bool = True
    """Also time torch.nn.LSTM and torch.nn.RNN (when torch is installed)."""
    threads: int | None = None
    """torch.set_num_threads (default os.cpu_count(), the threads XLA:CPU's pool uses)."""
    cpu_devices: int | None = None
    """Split the CPU into this many XLA devices first (jaxnets.train.cpu_devices; 0: one per
    core). With several, also time ours with the batch split over them (rows "... [batch over
    devices]"). Default: JAX's own setting (one device)."""
    json: Path | None = None
    """Also write the figures (with date, machine, versions and config) to this JSON file."""


# (numerator, denominator, goal: numerator / denominator at most this, or None)
RATIOS = (
    ("lstm ours", "lstm flax LSTMCell", 1.0),
    ("lstm ours", "lstm flax OptimizedLSTMCell", 1.0),
    ("rnn hand BPTT", "rnn jax.grad", 1.1),
    ("lstm ours", "lstm torch.nn.LSTM", 1.0),
    ("lstm ours (hand vjp)", "lstm torch.nn.LSTM", 1.0),
    ("lstm hand BPTT", "lstm torch.nn.LSTM", 1.0),
    ("lstm ours [fwd]", "lstm torch.nn.LSTM [fwd]", 1.0),
    ("rnn jax.grad", "rnn torch.nn.RNN", 1.0),
    ("rnn hand BPTT", "rnn torch.nn.RNN", 1.0),
    ("lstm ours [batch over devices]", "lstm torch.nn.LSTM", None),
    ("lstm ours (hand vjp) [batch over devices]", "lstm torch.nn.LSTM", None),
    ("lstm ours [fwd] [batch over devices]", "lstm torch.nn.LSTM [fwd]", None),
    ("rnn jax.grad [batch over devices]", "rnn torch.nn.RNN", None),
    ("lstm ours (hand vjp)", "lstm ours", None),
    ("lstm ours [fwd]", "lstm flax LSTMCell [fwd]", None),
    ("lstm ours [fwd]", "lstm flax OptimizedLSTMCell [fwd]", None),
    ("rnn hand BPTT [grad]", "rnn jax.grad [grad]", None),
)
# Pairs whose losses and gradients (mapped onto ours) must agree: (reference, other).
AGREE = (
    ("lstm ours", "lstm ours (hand vjp)"),
    ("lstm ours", "lstm hand BPTT"),
    ("lstm ours", "lstm torch.nn.LSTM"),
    ("rnn jax.grad", "rnn torch.nn.RNN"),
    ("lstm ours [fwd]", "lstm torch.nn.LSTM [fwd]"),
    ("lstm ours", "lstm flax LSTMCell"),
    ("lstm ours", "lstm flax OptimizedLSTMCell"),
    ("rnn jax.grad", "rnn hand BPTT"),
    ("lstm ours [fwd]", "lstm flax LSTMCell [fwd]"),
    ("lstm ours [fwd]", "lstm flax OptimizedLSTMCell [fwd]"),
    ("rnn jax.grad [grad]", "rnn hand BPTT [grad]"),
    ("lstm ours", "lstm ours [batch over devices]"),
    ("lstm ours", "lstm ours (hand vjp) [batch over devices]"),
    ("lstm ours [fwd]", "lstm ours [fwd] [batch over devices]"),
    ("rnn jax.grad", "rnn jax.grad [batch over devices]"),
)
# Ours with the batch split over the CPU devices (``--cpu-devices``): the variant it splits.
SPLIT = ("lstm ours", "lstm ours (hand vjp)", "lstm ours [fwd]", "rnn jax.grad")
FLAX_CELLS = {"LSTMCell": nn.LSTMCell, "OptimizedLSTMCell": nn.OptimizedLSTMCell}


class Disagreement(AssertionError):
    """Two variants that should compute the same loss and gradients do not."""


class FlaxLSTM(nn.Module):
    """flax.linen.RNN over an LSTM cell, then a Dense readout of the last h: W_y h_T + c."""

    cell: str
    hidden: int
    outputs: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: jax.Array) -> jax.Array:
        cell = FLAX_CELLS[self.cell](self.hidden, param_dtype=self.dtype, name="cell")
        (_, h), _ = nn.RNN(cell, return_carry=True)(xs)  # flax's carry is (c, h)
        return nn.Dense(self.outputs, param_dtype=self.dtype, name="readout")(h)


def to_flax_params(params: rnn.Params) -> dict:
    """Our LSTM params in FlaxLSTM's layout (the inverse of ``rnn.flax_lstm_params`` + readout)."""
    d_h = params["W_h"].shape[1]
    cell = {}
    for j, k in enumerate(rnn.GATES):
        rows = slice(j * d_h, (j + 1) * d_h)
        cell[f"i{k}"] = {"kernel": params["W_x"][rows].T}
        cell[f"h{k}"] = {"kernel": params["W_h"][rows].T, "bias": params["b"][rows]}
    readout = {"kernel": params["W_y"].T, "bias": params["c"]}
    return {"params": {"cell": cell, "readout": readout}}


def from_flax_params(flax_params: dict) -> rnn.Params:
    """FlaxLSTM params (or gradients: the map is linear) in our layout, via rnn.flax_lstm_params."""
    p = flax_params["params"]
    return {**rnn.flax_lstm_params(p["cell"]), "W_y": p["readout"]["kernel"].T,
            "c": p["readout"]["bias"]}


@dataclasses.dataclass(frozen=True)
class Variant:
    """A function of ``args`` to jit and time; ``to_ours`` maps its output to (loss, grads or
    None) in our params layout, for the agreement check."""

    fn: Callable
    args: tuple
    to_ours: Callable = lambda out: out  # noqa: E731
    pass_: str = "fwd+bwd"
    jit: bool = True  # False: a torch callable, timed as it is


def variants(config: Config) -> dict[str, Variant]:
    """Every variant to time, on the same data (built in the config's dtype)."""
    if not config.models:
        raise ValueError("benchmark_lstm: --models must name at least one of lstm, rnn")
    dtype = jnp.dtype(config.dtype)
    B, T, d_x, d_h, d_y = (config.batch, config.time, config.features, config.hidden,
                           config.outputs)
    k_lstm, k_rnn, k_x, k_y = jax.random.split(jax.random.key(config.seed), 4)
    batch = (jax.random.normal(k_x, (B, T, d_x), dtype), jax.random.normal(k_y, (B, d_y), dtype))
    torch = _torch() if config.torch else None
    out = {}
    for cell, key, make in (("lstm", k_lstm, lstm_variants), ("rnn", k_rnn, rnn_variants)):
        if cell in config.models:
            params = rnn.init(key, d_x, d_h, d_y, cell=cell, dtype=dtype)
            out |= make(config, params, batch)
            if torch is not None:
                out |= torch_variants(torch, config, cell, params, batch)
    if len(jax.devices()) > 1:
        out |= {f"{name} [batch over devices]": dataclasses.replace(
            out[name], fn=train.batch_over_devices(out[name].fn),
            args=train.put_over_devices(*out[name].args))  # placed as a training loop's are
            for name in SPLIT if name in out}
    return out


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_variants(torch, config: Config, cell: str, params: rnn.Params, batch
                   ) -> dict[str, Variant]:
    """torch.nn.LSTM / torch.nn.RNN (tanh) with a Linear readout of h_T, on our weights: the loss
    and every gradient by autograd (with extras, the LSTM's loss alone under no_grad)."""
    torch.set_num_threads(config.threads or os.cpu_count())
    tdtype = {"float32": torch.float32, "float64": torch.float64}[config.dtype]
    as_t = lambda a: torch.from_numpy(np.array(a)).to(tdtype)  # noqa: E731
    d_x, d_h, d_y = rnn.sizes(params)
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.RNN)(d_x, d_h, batch_first=True,
                                                                  dtype=tdtype)
    readout = torch.nn.Linear(d_h, d_y, dtype=tdtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(as_t(params["W_x"]))
        module.weight_hh_l0.copy_(as_t(params["W_h"]))
        module.bias_ih_l0.copy_(as_t(params["b"]))
        module.bias_hh_l0.zero_()
        readout.weight.copy_(as_t(params["W_y"]))
        readout.bias.copy_(as_t(params["c"]))
    xs, y = as_t(batch[0]), as_t(batch[1])

    def loss():
        _, h = module(xs)
        h_T = h[0] if cell == "lstm" else h  # LSTM: (h_n, c_n), each [1, B, d_h]
        return torch.mean((readout(h_T[0]) - y) ** 2)

    def value_and_grad():
        module.zero_grad(set_to_none=True)
        readout.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        return value

    def forward():
        with torch.no_grad():
            return loss()

    def to_ours(value):
        grads = {"W_x": module.weight_ih_l0.grad, "W_h": module.weight_hh_l0.grad,
                 "b": module.bias_ih_l0.grad, "W_y": readout.weight.grad, "c": readout.bias.grad}
        return float(value), {k: g.numpy() for k, g in grads.items()}

    name = f"{cell} torch.nn.{'LSTM' if cell == 'lstm' else 'RNN'}"
    out = {name: Variant(value_and_grad, (), to_ours, jit=False)}
    if config.extras and cell == "lstm":
        out[f"{name} [fwd]"] = Variant(forward, (), lambda v: (float(v), None), "fwd", jit=False)
    return out


def rnn_variants(config: Config, params: rnn.Params, batch) -> dict[str, Variant]:
    """jax.grad and hand BPTT of the tanh RNN (loss and grads; with extras, grads alone too)."""
    loss = partial(rnn.loss, kind="mse", target="last")

    def value_and_bptt(params, batch):  # looked up when traced (tests patch it)
        return rnn.rnn_value_and_bptt(params, batch, kind="mse", target="last")

    def bptt(params, batch):
        return rnn.rnn_bptt(params, batch, kind="mse", target="last")

    out = {"rnn jax.grad": Variant(jax.value_and_grad(loss), (params, batch)),
           "rnn hand BPTT": Variant(value_and_bptt, (params, batch))}
    if config.extras:
        grad_only = lambda g: (None, g)  # noqa: E731
        out["rnn jax.grad [grad]"] = Variant(jax.grad(loss), (params, batch), grad_only, "grad")
        out["rnn hand BPTT [grad]"] = Variant(bptt, (params, batch), grad_only, "grad")
    return out


def lstm_variants(config: Config, lstm_params: rnn.Params, batch) -> dict[str, Variant]:
    """Ours and flax's LSTMs on the same params and data (fwd+bwd; with extras, fwd alone too)."""
    loss = partial(rnn.loss, kind="mse", target="last")
    d_h, d_y = config.hidden, config.outputs
    out = {"lstm ours": Variant(jax.value_and_grad(loss), (lstm_params, batch)),
           "lstm ours (hand vjp)": Variant(jax.value_and_grad(partial(loss, backward="hand")),
                                           (lstm_params, batch)),
           "lstm hand BPTT": Variant(partial(rnn.lstm_value_and_bptt, kind="mse",
                                             target="last"), (lstm_params, batch))}
    forward = {"lstm ours [fwd]": Variant(loss, (lstm_params, batch), lambda o: (o, None), "fwd")}
    flax_params = to_flax_params(lstm_params)
    for name in FLAX_CELLS:
        model = FlaxLSTM(name, d_h, d_y, lstm_params["W_h"].dtype)
        want = jax.tree.structure(model.init(jax.random.key(0), batch[0][:1, :1]))
        if jax.tree.structure(flax_params) != want:
            raise Disagreement(f"flax {name}'s params are not laid out as to_flax_params assumes")

        def flax_loss(p, batch, model=model):
            xs, y = batch
            return jnp.mean(losses.mse(model.apply(p, xs), y))

        out[f"lstm flax {name}"] = Variant(
            jax.value_and_grad(flax_loss), (flax_params, batch),
            lambda o: (o[0], from_flax_params(o[1])))
        forward[f"lstm flax {name} [fwd]"] = Variant(flax_loss, (flax_params, batch),
                                                     lambda o: (o, None), "fwd")
    return out | forward if config.extras else out


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def check_agreement(outputs: dict[str, tuple], rtol: float) -> dict[str, float]:
    """For each pair in AGREE present in ``outputs`` ({name: (loss, grads or None)}, ours layout):
    the largest relative error over the loss and the gradient leaves. Raises Disagreement above
    rtol."""
    errs = {}
    for ref, other in AGREE:
        if ref not in outputs or other not in outputs:
            continue
        (l_ref, g_ref), (l_other, g_other) = outputs[ref], outputs[other]
        leaf_errs = {} if l_ref is None else {"loss": _rel_err(l_other, l_ref)}
        if g_ref is not None:
            if set(g_ref) != set(g_other):
                raise Disagreement(f"{other}: gradient keys {sorted(g_other)} differ from "
                                   f"{ref}'s {sorted(g_ref)}")
            leaf_errs |= {k: _rel_err(g_other[k], g_ref[k]) for k in g_ref}
        bad = {k: e for k, e in leaf_errs.items() if not e <= rtol}  # NaN is bad too
        if bad:
            worst = next((k for k, e in bad.items() if math.isnan(e)), max(bad, key=bad.get))
            raise Disagreement(
                f"{other} disagrees with {ref}: relative error of {worst} is "
                f"{leaf_errs[worst]:.2e} > {rtol:.0e}; all: "
                + ", ".join(f"{k} {e:.1e}" for k, e in leaf_errs.items()))
        errs[f"{other} vs {ref}"] = max(leaf_errs.values())
    return errs


def _time(fn, args: tuple) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def bench(config: Config) -> dict:
    """Compile, check agreement, time round-robin; the figures (seconds) of every variant."""
    vs = variants(config)
    compiled, compile_s = {}, {}
    for name, v in vs.items():
        t0 = time.perf_counter()
        compiled[name] = jax.jit(v.fn).lower(*v.args).compile() if v.jit else v.fn
        compile_s[name] = time.perf_counter() - t0 if v.jit else None
    rtol = config.rtol if config.rtol is not None else (
        1e-4 if config.dtype == "float32" else 1e-10)
    agreement = check_agreement(
        {name: v.to_ours(compiled[name](*v.args)) for name, v in vs.items()}, rtol)
    order = list(vs)
    for _ in range(config.warmup):
        for name in order:
            _time(compiled[name], vs[name].args)
    times = {name: [] for name in vs}
    for _ in range(config.repeats):
        order.reverse()  # ABBA: no variant always runs first or last
        for name in order:
            times[name].append(_time(compiled[name], vs[name].args))
    rows = [{"variant": name, "pass": vs[name].pass_, "median_s": float(np.median(times[name])),
             "q25_s": float(np.quantile(times[name], 0.25)),
             "q75_s": float(np.quantile(times[name], 0.75)), "min_s": float(np.min(times[name])),
             "compile_s": compile_s[name]} for name in vs]
    median = {r["variant"]: r["median_s"] for r in rows}
    ratios = [{"numerator": num, "denominator": den, "ratio": median[num] / median[den],
               "goal": goal,
               "met": None if goal is None else bool(median[num] / median[den] <= goal)}
              for num, den, goal in RATIOS if num in median and den in median]
    return {"rows": rows, "ratios": ratios, "agreement_max_rel_err": agreement,
            "agreement_rtol": rtol}


def run(config: Config) -> dict:
    """The benchmark's figures with date, machine, versions and config."""
    for name in ("batch", "time", "hidden", "features", "outputs", "repeats"):
        if getattr(config, name) < 1:
            raise ValueError(f"benchmark_lstm: --{name} must be positive, "
                             f"got {getattr(config, name)}")
    if config.warmup < 0:
        raise ValueError(f"benchmark_lstm: --warmup must be >= 0, got {config.warmup}")
    if config.cpu_devices is not None:
        if config.cpu_devices < 0:
            raise ValueError(f"benchmark_lstm: --cpu-devices must be 0 (one per core) or more, "
                             f"got {config.cpu_devices}")
        train.cpu_devices(config.cpu_devices or None)
    if config.batch % len(jax.devices()):
        raise ValueError(f"benchmark_lstm: --batch {config.batch} does not split over "
                         f"{len(jax.devices())} devices")
    with jax.enable_x64(config.dtype == "float64"):
        res = bench(config)
    goals = [r["met"] for r in res["ratios"] if r["goal"] is not None]
    return {
        **common.environment(),
        "flax": flax.__version__,
        "config": dataclasses.asdict(config) | {"json": None},
        **res,
        "all_goals_met": all(goals),
    }


def table(res: dict) -> str:
    c = res["config"]
    lines = [f"{res['date']}  {res['machine']}  {res['device']}  jax {res['jax']}  "
             f"flax {res['flax']}",
             f"batch {c['batch']}, T {c['time']}, d_x {c['features']}, d_h {c['hidden']}, "
             f"d_y {c['outputs']}, {c['dtype']}; median of {c['repeats']} calls after "
             f"{c['warmup']} warm-up calls (round-robin)",
             f"agreement checked (max relative error over loss and gradient leaves, "
             f"tolerance {res['agreement_rtol']:.0e}):",
             *(f"  {k}: {e:.1e}" for k, e in res["agreement_max_rel_err"].items()),
             "",
             f"{'variant':42s} {'pass':>7s} {'median ms':>10s} {'q25-q75 ms':>15s} "
             f"{'compile s':>9s}"]
    for r in res["rows"]:
        iqr = f"{r['q25_s'] * 1e3:.2f}-{r['q75_s'] * 1e3:.2f}"
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        lines.append(f"{r['variant']:42s} {r['pass']:>7s} {r['median_s'] * 1e3:10.2f} "
                     f"{iqr:>15s} {compile_s:>9s}")
    lines += ["", f"{'ratio of medians':68s} {'ratio':>6s} {'goal':>7s}"]
    for r in res["ratios"]:
        goal = "-" if r["goal"] is None else f"<= {r['goal']:.1f}"
        verdict = "" if r["met"] is None else ("PASS" if r["met"] else "FAIL")
        lines.append(f"{r['numerator'] + ' / ' + r['denominator']:68s} {r['ratio']:5.2f}x "
                     f"{goal:>7s} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
