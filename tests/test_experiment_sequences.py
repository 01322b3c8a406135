"""The sequence experiments: the adding problem's data and runs, and gradient flow through time."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TB, run_experiment

from experiments import adding, gradient_flow
from jaxnets import data, runs, train
from jaxnets.models import rnn

# --- data.adding_problem ---------------------------------------------------------------------

def test_adding_problem_markers_targets_and_baseline():
    x, y = data.adding_problem(4000, 30, seed=3)
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 1)
    assert x.dtype == y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(1), rtol=1e-6)
    assert values.min() >= 0 and values.max() < 1
    # predicting the mean scores Var(U1 + U2) = 1/6 (4000 draws: standard error ~0.003)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(adding.BASELINE_MSE, abs=0.015)
    again = data.adding_problem(4000, 30, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((x, y), again, strict=True))
    assert not np.array_equal(x, data.adding_problem(4000, 30, seed=4)[0])


@pytest.mark.parametrize("n, T", [(0, 10), (5, 1), (5, 2.5)])
def test_adding_problem_rejects_bad_sizes(n, T):
    with pytest.raises(ValueError, match="adding_problem"):
        data.adding_problem(n, T)


# --- experiments.adding ----------------------------------------------------------------------

def test_first_solved_and_summarize():
    step = np.array([10, 20, 30])
    mse = np.array([[[0.2, 0.005, 0.001], [0.2, 0.1, 0.05]],       # lr 0: one seed solves at 20
                    [[0.2, 0.1, 0.002], [0.2, 0.009, 0.003]],      # lr 1: both solve
                    [[np.nan] * 3, [0.1, 0.1, 0.1]]])              # lr 2: a seed diverged
    np.testing.assert_array_equal(adding.first_solved(step, mse, 0.01),
                                  [[20, -1], [30, 20], [-1, -1]])
    diverged = np.array([[False, False], [False, False], [True, False]])
    s = adding.summarize(np.array([1e-3, 1e-2, 1e-1]), step, mse, diverged, 0.01)
    assert s["best"]["learning_rate"] == pytest.approx(1e-2)
    assert s["best"]["median_final_mse"] == pytest.approx(0.0025)
    assert [r["solved"] for r in s["per_lr"]] == [1, 2, 0]
    assert s["per_lr"][2]["diverged"] == 1 and s["solved_any"] == 3


def test_adding_sweep_member_equals_fit(tmp_path, monkeypatch):
    """Member (i, j) of the adding experiment's ``train.sweep`` (learning rates x seeds, run
    chunk by chunk with checkpoints) equals ``train.fit(key(seed_j), lr_i, ...)`` alone."""
    sweeps, real_sweep = [], train.sweep

    def recorded(*args, **kw):  # the experiment's call and its result
        sweeps.append((args, kw, real_sweep(*args, **kw)))
        return sweeps[-1][2]

    monkeypatch.setattr(train, "sweep", recorded)
    cfg = adding.Config(T=8, cells=("lstm",), hidden=6, count=3, lr_min=1e-3, lr_max=3e-2,
                        seeds=2, steps=40, batch_size=16, eval_every=20, n_train=256, n_test=64,
                        run_dir=tmp_path)
    adding.run(cfg, progress=False)
    [((lrs, tr, ev), kw, m)] = sweeps
    assert m.shape == (3, 2) and m.checkpoint is not None  # went chunk by chunk
    assert m.train_loss.shape == (3, 2, 40) and m.eval_metrics["test/loss"].shape == (3, 2, 2)
    kw = {k: v for k, v in kw.items() if k not in (
        "seeds", "progress", "desc", "checkpoint_dir", "checkpoint_every", "keep", "meta")}
    for i, j in np.ndindex(m.shape):
        alone = train.fit(jax.random.key(j), lrs[i], tr, ev, **kw)
        np.testing.assert_allclose(m.train_loss[i, j], alone.train_loss, rtol=2e-5)
        np.testing.assert_allclose(m.eval_metrics["test/loss"][i, j],
                                   alone.eval_metrics["test/loss"], rtol=2e-5)
    assert not np.allclose(m.train_loss[0, 0], m.train_loss[1, 0])
    assert not np.allclose(m.train_loss[0, 0], m.train_loss[0, 1])


def test_adding_run_folder_table_and_cli(tmp_path, drives):
    cfg = adding.Config(T=6, hidden=8, count=2, lr_min=1e-3, lr_max=3e-2, seeds=2, steps=60,
                        eval_every=30, n_train=256, n_test=64, run_dir=tmp_path)
    res = adding.run(cfg, progress=False)
    assert [lead for _, lead in drives] == [2, 2]  # one sweep (lrs x seeds) per cell
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "metrics.jsonl",
                                                     "curves.png", "results.json", "checkpoints",
                                                     ".lock"} | TB
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"lstm", "rnn"}
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 2 * 2 * 2 * 2  # cells x lrs x seeds x evaluations
    for cell in ("lstm", "rnn"):
        mse = res["per_cell"][cell]["mse"]
        assert mse.shape == (2, 2, 2) and np.isfinite(mse).all()
        # the table's best lr is the one with the lowest median final MSE
        med = np.median(mse[..., -1], axis=1)
        assert res["cells"][cell]["best"]["learning_rate"] == pytest.approx(
            float(np.geomspace(1e-3, 3e-2, 2)[np.argmin(med)]))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["cells"] == json.loads(runs.to_json(res["cells"]))
    text = adding.table(res)
    assert "best lr" in text and "0.1667" in text
    # reproducible: the same config gives the same numbers
    res2 = adding.run(dataclasses.replace(cfg, run_dir=tmp_path / "again"), progress=False)
    np.testing.assert_array_equal(res2["per_cell"]["lstm"]["mse"], res["per_cell"]["lstm"]["mse"])



def test_lstm_solves_the_adding_problem_and_the_rnn_does_not(tmp_path):
    """The issue's claim at a size a test can afford (T = 50, 800 Adam steps, lr 2e-2): both
    LSTM seeds end below the solved threshold, both tanh RNN seeds near the mean predictor's 1/6.
    (The README reports the T = 100 default run.) At lr 1e-2 the step where an LSTM leaves the
    1/6 plateau is close to 800 for some seeds, so a one-ulp change in the compiled update
    decided the outcome; at 2e-2 all of 8 seeds end below 0.002 (and every RNN above 0.15)."""
    cfg = adding.Config(T=50, hidden=16, count=1, lr_min=2e-2, lr_max=2e-2, seeds=2, steps=800,
                        eval_every=200, n_train=4096, n_test=512, batch_size=32, run_dir=tmp_path)
    res = adding.run(cfg, progress=False)
    final = {cell: res["per_cell"][cell]["mse"][..., -1] for cell in ("lstm", "rnn")}
    assert (final["lstm"] < cfg.solved_mse).all(), final
    assert (final["rnn"] > 0.1).all(), final
    assert res["cells"]["lstm"]["per_lr"][0]["solved"] == 2
    assert res["cells"]["rnn"]["per_lr"][0]["solved"] == 0

def test_adding_cli_help_and_errors():
    help_text = run_experiment("adding", "--help").stdout
    for flag in ("--T", "--cells", "--hidden", "--lr-min", "--lr-max", "--count", "--seeds",
                 "--steps", "--batch-size", "--eval-every", "--n-train", "--n-test",
                 "--forget-bias", "--solved-mse", "--out", "--run-dir"):
        assert flag in help_text, flag
    bad = run_experiment("adding", "--lr-min", "1", "--lr-max", "0.1")
    assert bad.returncode == 1 and "lr-min" in bad.stderr
    bad = run_experiment("adding", "--cells", "gru")
    assert bad.returncode != 0 and "gru" in bad.stderr


def test_adding_rejects_bad_sizes():
    with pytest.raises(ValueError, match="--seeds"):
        adding.learning_rates(adding.Config(seeds=0))
    with pytest.raises(ValueError, match="--eval-every"):
        adding.learning_rates(adding.Config(steps=50, eval_every=20))
    with pytest.raises(ValueError, match="--batch-size"):
        adding.learning_rates(adding.Config(n_train=32, batch_size=64))


# --- experiments.gradient_flow ---------------------------------------------------------------

def _final_state_grad(params, xs, t, v):
    """dL_T/d state_t with L_T = v . h_T, by autodiff: run steps t+1..T from state_t."""
    before = gradient_flow.states(params, xs)
    state_t = jax.tree.map(lambda a: a[t], before)  # the carry before step t+1 (i.e. h_t)
    lstm = rnn.cell_of(params) == "lstm"
    step = rnn.lstm_step if lstm else rnn.rnn_step

    def L(state):
        carry, _ = jax.lax.scan(lambda c, x: (step(params, c, x)[0], None), state, xs[t:])
        return v @ (carry[0] if lstm else carry)

    g = jax.grad(L)(state_t)
    return jnp.concatenate(g) if lstm else g


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_backprop_of_hand_jacobians_equals_autodiff(cell, x64):
    params = rnn.init(jax.random.key(1), 3, 5, 1, cell=cell, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(2), (9, 3), jnp.float64)
    v = jax.random.normal(jax.random.key(3), (5,), jnp.float64)
    Js = gradient_flow.jacobians(params, xs)
    delta_T = v if cell == "rnn" else jnp.concatenate([v, jnp.zeros(5)])
    deltas = gradient_flow.backprop(Js, delta_T)
    assert deltas.shape == (10, Js.shape[-1])
    for t in (0, 4, 8):
        np.testing.assert_allclose(deltas[t], _final_state_grad(params, xs, t, v), rtol=1e-10,
                                   atol=1e-14)


def test_product_and_decay_helpers(x64):
    Js = jax.random.normal(jax.random.key(0), (4, 3, 3), jnp.float64)
    np.testing.assert_allclose(gradient_flow.product(Js), Js[3] @ Js[2] @ Js[1] @ Js[0],
                               rtol=1e-12)
    assert gradient_flow.decay_per_step(0.7 ** np.arange(20)[::-1]) == pytest.approx(0.7)
    A = np.array([[0.5, 10.0], [0.0, 0.25]])
    assert gradient_flow.spectral_radius(A) == pytest.approx(0.5)


def test_gradient_flow_run_orders_radii(tmp_path):
    cfg = gradient_flow.Config(T=30, hidden=16, features=4, batch=3, radii=(0.5, 1.0, 4.0),
                               forget_biases=(1.0, 5.0), run_dir=tmp_path)
    res = gradient_flow.run(cfg)["models"]
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "results.json",
                                                     "gradient_flow.png"}
    rates = {name: r["decay_per_step"] for name, r in res.items()}
    # a contracting W_h loses the gradient geometrically, a strongly expanding one amplifies it
    assert rates["RNN, radius 0.5"] < rates["RNN, radius 1"] < 1 < rates["RNN, radius 4"]
    # a forget gate nearer 1 keeps the gradient longer; the LSTM keeps it longer than the RNNs
    # that do not explode
    assert rates["RNN, radius 1"] < rates["LSTM, forget bias 1"] < rates["LSTM, forget bias 5"]
    for r in res.values():
        assert len(r["dh_norm"]) == 31 and r["dh_norm"][-1] == pytest.approx(1.0)
        assert r["product_radius_per_step"] == pytest.approx(r["product_radius"] ** (1 / 30))
    assert "dc_norm" in res["LSTM, forget bias 1"] and "dc_norm" not in res["RNN, radius 1"]


def test_gradient_flow_cli_help_and_errors():
    help_text = run_experiment("gradient_flow", "--help").stdout
    for flag in ("--T", "--hidden", "--features", "--batch", "--input-scale", "--radii",
                 "--forget-biases", "--seed", "--out", "--run-dir"):
        assert flag in help_text, flag
    bad = run_experiment("gradient_flow", "--radii", "-1")
    assert bad.returncode == 1 and "radii" in bad.stderr
