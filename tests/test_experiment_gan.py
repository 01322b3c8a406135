"""The GAN experiment: ring runs over variants x learning rates x seeds (members equal their
runs alone), scoring, the run folder, an interrupted grid resumed, and the CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TB, run_experiment, step_kinds

from experiments import common
from experiments import gan as exp
from jaxnets import loop, runs, train
from jaxnets.models import gan

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = dict(seeds=2, steps=40, chunk=20, hidden=16, samples=500, batch_size=32,
             image_steps=20, image_latent=4, image_hidden=16)


def test_run_folder_scores_table_and_reproducibility(tmp_path, drives):
    cfg = exp.Config(**SMALL, run_dir=tmp_path)
    res = exp.run(cfg, progress=False)
    # the one driver: a sweep per variant (learning rates x seeds), then a fit for the images
    assert step_kinds(drives) == ["GanStep"] * (len(cfg.variants) + 1)
    assert [lead for _, lead in drives] == [2] * len(cfg.variants) + [0]
    assert {p.name for p in tmp_path.iterdir()} == {
        "config.json", "metrics.jsonl", "results.json", "ring.png", "losses.png", "samples.png",
        "checkpoints", ".lock"} | TB
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {
        *(f"ring-{v}" for v in cfg.variants), "images"}
    for name in ("ring.png", "losses.png", "samples.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == len(gan.VARIANTS) * cfg.seeds
    assert {r["learning_rate"] for r in rows} == set(cfg.learning_rates)
    for variant in gan.VARIANTS:
        s = res["variants"][variant]
        mine = [r for r in rows if r["variant"] == variant]
        # the summary is the per-seed rows, and the rows are the scored samples
        assert s["modes_mean"] == pytest.approx(np.mean([r["modes_covered"] for r in mine]))
        assert s["hq_min"] == pytest.approx(min(r["high_quality"] for r in mine))
        xs = res["samples"][variant]
        assert xs.shape == (cfg.seeds, cfg.samples, 2)
        cov = gan.coverage(jnp.asarray(xs[1]), gan.ring_centers(), cfg.sigma, cfg.min_share)
        assert int(cov.modes_covered) == mine[1]["modes_covered"]
        assert float(cov.high_quality) == pytest.approx(mine[1]["high_quality"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["variants"]["nonsaturating"]["modes_covered"] == \
        res["variants"]["nonsaturating"]["modes_covered"]
    assert saved["images"]["dataset"] == "digits"
    text = exp.table(res)
    assert all(v in text for v in gan.VARIANTS) and "images (digits" in text
    again = exp.run(dataclasses.replace(cfg, run_dir=tmp_path / "again", images=False,
                                        variants=("wgan-gp",)), progress=False)
    np.testing.assert_array_equal(again["samples"]["wgan-gp"], res["samples"]["wgan-gp"])


def test_train_ring_members_in_chunks_equal_each_fit_alone(tmp_path):
    """``train_ring``'s sweep of 2 learning rates x 2 seeds, run chunk by chunk with
    checkpoints, gives for member (i, j) what one ``train.fit`` of all the steps gives."""
    cfg = exp.Config(**{**SMALL, "learning_rates": (1e-3, 3e-3)})
    r = exp.train_ring(cfg, "nonsaturating", tmp_path, progress=False)
    assert r.shape == (2, 2) and r.checkpoint is not None  # went chunk by chunk
    assert (tmp_path / "checkpoints" / "ring-nonsaturating" / "step-000000040.ckpt").exists()
    d_loss, g_loss = r.train_loss
    assert d_loss.shape == g_loss.shape == (2, 2, 40)
    step = exp.ring_step(cfg, "nonsaturating")  # built once: every fit below shares a compile
    for i, lr in enumerate(cfg.learning_rates):
        for j in range(cfg.seeds):
            alone = train.fit(jax.random.key(j), lr, None, step=step, steps=cfg.steps,
                              eval_every=cfg.chunk)
            np.testing.assert_allclose(g_loss[i, j], alone.train_loss[1], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(r.params["G"][0]["W"][i, j], alone.params["G"][0]["W"],
                                       rtol=1e-5, atol=1e-6)
    assert not np.allclose(g_loss[0, 0], g_loss[1, 0])  # the rates differ
    assert not np.allclose(g_loss[0, 0], g_loss[0, 1])  # and the seeds


def _numbers(run_dir):
    """metrics.jsonl's bytes and results.json without the folder's own name."""
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("run_dir")
    return (run_dir / "metrics.jsonl").read_bytes(), results


class _Interrupt(Exception):
    pass


def test_grid_interrupted_after_a_chunk_resumes_bit_identical_and_members_equal_fit(
        tmp_path, monkeypatch):
    """A 3 learning rates x 4 seeds grid stopped by an error in its second chunk (its first
    chunk's checkpoint saved) and continued with --resume ends with the numbers of an
    uninterrupted run; each member's final losses are its own ``train.fit``'s."""
    cfg = exp.Config(variants=("nonsaturating",), learning_rates=(3e-4, 1e-3, 3e-3), seeds=4,
                     hidden=8, steps=20, chunk=10, batch_size=16, samples=200, images=False)
    ref = exp.run(dataclasses.replace(cfg, run_dir=tmp_path / "ref"), progress=False)

    real_run_chunks = loop.run_chunks

    def interrupted(state, chunk, *args, **kw):
        calls = []

        def second_chunk_fails(s):
            calls.append(1)
            if len(calls) == 2:
                raise _Interrupt
            return chunk(s)

        return real_run_chunks(state, second_chunk_fails, *args, **kw)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(loop, "run_chunks", interrupted)
        with pytest.raises(_Interrupt):
            exp.run(dataclasses.replace(cfg, run_dir=run_dir), progress=False)
    folder = run_dir / "checkpoints" / "ring-nonsaturating"
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "step-000000010.ckpt"]
    assert not (run_dir / "metrics.jsonl").exists()
    resumed = exp.run(common.parse(exp.Config, ["--resume", str(run_dir)]), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "step-000000010.ckpt",
                                                         "step-000000020.ckpt"]
    assert _numbers(run_dir) == _numbers(tmp_path / "ref")
    for label in ref["samples"]:
        np.testing.assert_array_equal(resumed["samples"][label], ref["samples"][label])
    rows = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert [(r["learning_rate"], r["seed"]) for r in rows] == [
        (lr, j) for lr in cfg.learning_rates for j in range(cfg.seeds)]
    step = exp.ring_step(cfg, "nonsaturating")
    for row in rows:
        alone = train.fit(jax.random.key(row["seed"]), row["learning_rate"], None, step=step,
                          steps=cfg.steps, eval_every=cfg.chunk)
        d_loss, g_loss = alone.train_loss
        assert row["diverged_at"] == int(alone.diverged_at) == -1
        # float32, not bit for bit: the sweep's vmapped matmuls may sum in another order
        # (seen: up to 2 ulp, 2.4e-7, after 20 steps); test_sweep.py's tolerance
        np.testing.assert_allclose([row["final_d_loss"], row["final_g_loss"]],
                                   [d_loss[-1], g_loss[-1]], rtol=1e-5, atol=1e-6)


def test_summary_and_table_report_divergence_and_coverage():
    cov = gan.Coverage(np.array([8, 5, 8]), np.array([0.9, 0.5, 0.7]), np.zeros((3, 8)))
    s = exp.summarize(cov, np.array([-1, 120, -1]), 8)
    assert (s["modes_min"], s["modes_max"], s["all_modes"], s["all_modes_and_hq80"]) == \
        (5, 8, 2, 1)
    assert s["modes_mean"] == pytest.approx(7.0) and s["hq_mean"] == pytest.approx(0.7)
    text = exp.table({"modes": 8, "variants": {"minimax": s}})
    assert "seed 1 at step 120" in text and "2/3" in text


@pytest.mark.parametrize("samples, shown", [(500, "500 generator samples"),
                                             (2500, "2,000 of 2,500 generator samples")])
def test_ring_title_counts_the_samples(samples, shown):
    cfg = exp.Config(**{**SMALL, "samples": samples})
    xs = {v: np.zeros((cfg.seeds, samples, 2)) for v in cfg.variants}
    summary = {v: {"modes_covered": [8] * cfg.seeds, "high_quality": [1.0] * cfg.seeds}
               for v in cfg.variants}
    fig = exp.ring_figure(cfg, xs, summary)
    try:
        assert shown in fig.get_suptitle()
        drawn = [len(c.get_offsets()) for ax in fig.axes for c in ax.collections]
        assert drawn == [min(samples, exp.RING_SHOWN)] * len(fig.axes)
    finally:
        exp._pyplot().close(fig)


def test_losses_main_title_clears_the_panel_titles():
    losses = {v: (np.ones((2, 40)), np.ones((2, 40))) for v in gan.VARIANTS}
    fig = exp.losses_figure(losses)
    try:
        fig.canvas.draw()  # lays the figure out as saving does
        renderer = fig.canvas.get_renderer()
        [main] = fig.texts  # the suptitle
        assert main.get_text() == fig.get_suptitle() != ""
        assert [ax.get_title() for ax in fig.axes] == list(gan.VARIANTS)
        main = main.get_window_extent(renderer)
        for ax in fig.axes:
            assert not ax.title.get_window_extent(renderer).overlaps(main), ax.get_title()
    finally:
        exp._pyplot().close(fig)


@pytest.mark.parametrize("flags, match", [
    (dict(penalty=-1.0), "--penalty"), (dict(k=0), "--k"), (dict(k_wgan=0), "--k-wgan"),
    (dict(chunk=30), "--chunk 30 must divide --steps"), (dict(variants=()), "--variants"),
    (dict(sigma=0.0), "--sigma"), (dict(min_share=1.5), "--min-share"),
    (dict(seeds=0), "--seeds")])
def test_bad_flags_get_clear_errors(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        exp.run(exp.Config(**{**SMALL, **flags}, run_dir=tmp_path), progress=False)
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_cli_help_and_errors():
    help_text = run_experiment("gan", "--help").stdout
    for flag in ("--variants", "--seeds", "--steps", "--k", "--k-wgan", "--penalty",
                 "--learning-rates", "--batch-size", "--latent", "--hidden", "--modes",
                 "--radius", "--sigma", "--samples", "--min-share", "--chunk", "--images",
                 "--dataset", "--data-dir", "--image-steps", "--out", "--run-dir"):
        assert flag in help_text, flag
    bad = run_experiment("gan", "--penalty", "-1")
    assert bad.returncode == 1 and "penalty" in bad.stderr
    bad = run_experiment("gan", "--variants", "lsgan")
    assert bad.returncode != 0 and "lsgan" in bad.stderr
