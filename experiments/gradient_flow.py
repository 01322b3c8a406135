"""How far back does a gradient reach? ||dL_T/dh_t|| against t for tanh RNNs whose W_h has
spectral radius below, at and above 1, and for LSTMs (problem set 004 Q13, Q14.1).

    python -m experiments.gradient_flow
    python -m experiments.gradient_flow --radii 0.9 1.0 1.1 --T 200

On random input sequences, L_T = v . h_T for a random unit v; the gradient with respect to the
state at step t is delta_t = J_{t+1}^T ... J_T^T delta_T, with the hand-derived Jacobians of
jaxnets.models.rnn (``rnn_jacobian``: diag(phi'(a_t)) W_h; ``lstm_jacobian``: the full
(h, c) -> (h, c) block matrix). Everything runs in float64. The run folder holds config.json,
results.json (per model: the norms, their fitted decay per step, the spectral radius of the
product of all T Jacobians and its T-th root) and gradient_flow.png (log scale).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from jaxnets import runs
from jaxnets.models import rnn


@dataclasses.dataclass(frozen=True)
class Config:
    """Gradient norms through time for tanh RNNs and LSTMs at initialisation."""

    T: int = 100
    """Sequence length."""
    hidden: int = 64
    """Hidden units d_h."""
    features: int = 8
    """Input features d_x."""
    batch: int = 16
    """Random sequences; norms are averaged over them (geometric mean)."""
    input_scale: float = 1.0
    """Inputs are N(0, input_scale^2)."""
    radii: tuple[float, ...] = (0.5, 1.0, 3.0)
    """Spectral radii of the RNNs' W_h (the LeCun-normal init rescaled)."""
    forget_biases: tuple[float, ...] = (1.0, 3.0)
    """Initial forget-gate biases of the LSTMs (one LSTM per value)."""
    seed: int = 0
    """Seed of the weights, the inputs and v."""
    out: Path = Path("runs")
    """Parent folder of the run folder (gradient_flow-<date>-<time>)."""
    run_dir: Path | None = None
    """Exact run folder to write instead (created if needed)."""


def spectral_radius(M) -> float:
    """max |eigenvalue| of a square matrix (numpy, float64)."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(M, np.float64)))))


def rnn_params(key, config: Config, radius: float) -> rnn.Params:
    """A tanh RNN's params with W_h rescaled to the given spectral radius."""
    p = rnn.init(key, config.features, config.hidden, 1, dtype=jnp.float64)
    return p | {"W_h": p["W_h"] * (radius / spectral_radius(p["W_h"]))}


def states(params: rnn.Params, xs) -> list:
    """The carries before each step, for one sequence xs [T, d_x]: h_{t-1} (RNN) or
    (h_{t-1}, c_{t-1}) (LSTM), leaves [T, d_h], from a zero start."""
    d_h = rnn.sizes(params)[1]
    if rnn.cell_of(params) == "rnn":
        step, carry = rnn.rnn_step, jnp.zeros(d_h)
    else:
        step, carry = rnn.lstm_step, (jnp.zeros(d_h), jnp.zeros(d_h))
    _, before = jax.lax.scan(lambda c, x: (step(params, c, x)[0], c), carry, xs)
    return before


def jacobians(params: rnn.Params, xs):
    """J_t = d state_t / d state_{t-1} for t = 1..T, [T, S, S] (S = d_h, or 2 d_h for (h, c))."""
    before = states(params, xs)
    if rnn.cell_of(params) == "rnn":
        return jax.vmap(lambda h, x: rnn.rnn_jacobian(params, h, x))(before, xs)
    return jax.vmap(lambda h, c, x: rnn.lstm_jacobian(params, (h, c), x).full())(*before, xs)


def backprop(Js, delta_T):
    """delta_t for t = 0..T from delta_T: delta_{t-1} = J_t^T delta_t. Js [T, S, S] -> [T+1, S]."""
    _, deltas = jax.lax.scan(lambda d, J: (J.T @ d, J.T @ d), delta_T, Js, reverse=True)
    return jnp.concatenate([deltas, delta_T[None]])


@jax.jit
def product(Js):
    """J_T ... J_1 from Js [T, S, S] (the latest factor on the left)."""
    return jax.lax.fori_loop(0, Js.shape[0], lambda t, P: Js[t] @ P, jnp.eye(Js.shape[1],
                                                                                dtype=Js.dtype))


def decay_per_step(norms: np.ndarray) -> float:
    """exp of the least-squares slope of log ||delta_t|| against steps back from T."""
    back = np.arange(len(norms))[::-1]
    ok = norms > 0
    return float(np.exp(np.polyfit(back[ok], np.log(norms[ok]), 1)[0]))


def measure(params: rnn.Params, xs, v) -> dict:
    """Norms of dL_T/dh_t (and dL_T/dc_t for the LSTM), t = 0..T, over a batch of sequences.

    xs [N, T, d_x], v [d_h]. Norms are geometric means over the N sequences.
    """
    d_h = rnn.sizes(params)[1]
    lstm = rnn.cell_of(params) == "lstm"
    Js = jax.jit(jax.vmap(lambda x: jacobians(params, x)))(xs)  # [N, T, S, S]
    delta_T = jnp.concatenate([v, jnp.zeros(d_h)]) if lstm else v
    deltas = np.asarray(jax.vmap(backprop, in_axes=(0, None))(Js, delta_T))  # [N, T+1, S]
    geo = lambda a: np.exp(np.mean(np.log(np.maximum(a, 1e-300)), axis=0))  # noqa: E731
    out = {"dh_norm": geo(np.linalg.norm(deltas[..., :d_h], axis=-1))}
    if lstm:
        out["dc_norm"] = geo(np.linalg.norm(deltas[..., d_h:], axis=-1))
    radii = [spectral_radius(P) for P in jax.vmap(product)(Js)]
    T = xs.shape[1]
    out |= {"decay_per_step": decay_per_step(out["dh_norm"]),
            "product_radius": float(np.median(radii)),
            "product_radius_per_step": float(np.median(radii)) ** (1 / T)}
    return out


def plot(results: dict, T: int, path: Path) -> Path:
    """||dL_T/dh_t|| (solid) and ||dL_T/dc_t|| (dashed, LSTM) against t, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    t = np.arange(T + 1)
    for k, (name, r) in enumerate(results.items()):
        ax.plot(t, r["dh_norm"], color=f"C{k}",
                label=f"{name}: x{r['decay_per_step']:.3g} per step")
        if "dc_norm" in r:
            ax.plot(t[:-1], r["dc_norm"][:-1], color=f"C{k}", ls="--",  # dL/dc_T = 0
                    label=f"{name}: ||dL_T/dc_t||")
    ax.set(yscale="log", xlabel="t", ylabel="||dL_T / dh_t||",
           title=f"gradient of L_T = v . h_T reaching back to step t (T = {T})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def _check(config: Config) -> None:
    for name in ("T", "hidden", "features", "batch"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(config, name)}")
    if any(not r > 0 for r in config.radii):
        raise ValueError(f"--radii must be positive, got {config.radii}")
    if not (config.radii or config.forget_biases):
        raise ValueError("nothing to measure: give --radii or --forget-biases")


def run(config: Config) -> dict:
    """Measure every model; write the run folder; return {model name: measurements}."""
    _check(config)
    run_dir = config.run_dir or runs.new_run_dir(config.out, "gradient_flow")
    runs.write_json(run_dir / "config.json", config)
    with jax.enable_x64(True):
        k_x, k_v, k_p = jax.random.split(jax.random.key(config.seed), 3)
        xs = config.input_scale * jax.random.normal(
            k_x, (config.batch, config.T, config.features), jnp.float64)
        v = jax.random.normal(k_v, (config.hidden,), jnp.float64)
        v = v / jnp.linalg.norm(v)
        models = {f"RNN, radius {r:g}": rnn_params(k_p, config, r) for r in config.radii}
        models |= {f"LSTM, forget bias {b:g}": rnn.init(
            k_p, config.features, config.hidden, 1, cell="lstm", forget_bias=b,
            dtype=jnp.float64) for b in config.forget_biases}
        results = {name: measure(p, xs, v) for name, p in models.items()}
    plot(results, config.T, run_dir / "gradient_flow.png")
    runs.write_json(run_dir / "results.json", results)
    return {"run_dir": str(run_dir), "models": results}


def table(results: dict) -> str:
    """Per model: ||dL_T/dh_0|| / ||dL_T/dh_T||, fitted decay per step, spectral radius of the
    product of the T Jacobians and its T-th root."""
    lines = [f"{'model':24s} {'|dh_0|/|dh_T|':>13s} {'per step':>9s} {'rho(J_T..J_1)':>13s} "
             f"{'rho^(1/T)':>9s}"]
    for name, r in results["models"].items():
        ratio = r["dh_norm"][0] / r["dh_norm"][-1]
        lines.append(f"{name:24s} {ratio:13.3g} {r['decay_per_step']:9.4f} "
                     f"{r['product_radius']:13.3g} {r['product_radius_per_step']:9.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
