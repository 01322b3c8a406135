"""The GAN experiment: ring runs over variants x seeds, scoring, the run folder and the CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_experiment

from experiments import gan as exp
from jaxnets import runs
from jaxnets.models import gan

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = dict(seeds=2, steps=40, chunk=20, hidden=16, samples=500, batch_size=32,
             image_steps=20, image_latent=4, image_hidden=16)


def test_run_folder_scores_table_and_reproducibility(tmp_path):
    cfg = exp.Config(**SMALL, run_dir=tmp_path)
    res = exp.run(cfg, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {
        "config.json", "metrics.jsonl", "results.json", "ring.png", "losses.png", "samples.png",
        "checkpoints"}
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {
        *(f"ring-{v}" for v in cfg.variants), "images"}
    for name in ("ring.png", "losses.png", "samples.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == len(gan.VARIANTS) * cfg.seeds
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


def test_train_seeds_in_chunks_equals_one_run():
    """Chunks of the vmapped trainer give what one ``gan.train`` of all the steps gives."""
    cfg = exp.Config(**SMALL)
    setup = exp.ring_setup(cfg, "nonsaturating")
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    params = jax.vmap(lambda k: gan.init(k, cfg.latent, 2, g_hidden=(16, 16),
                                         d_hidden=(16, 16)))(keys)
    r = exp.train_seeds(keys, params, None, setup, 40, 20, "t", progress=False)
    for j in range(2):
        alone = gan.train(keys[j], jax.tree.map(lambda a, j=j: a[j], params), None, setup, 40)
        np.testing.assert_allclose(r.g_loss[j], alone.g_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.params["G"][0]["W"][j], alone.params["G"][0]["W"],
                                   rtol=1e-5, atol=1e-6)


def test_summary_and_table_report_divergence_and_coverage():
    cov = gan.Coverage(np.array([8, 5, 8]), np.array([0.9, 0.5, 0.7]), np.zeros((3, 8)))
    s = exp.summarize(cov, np.array([-1, 120, -1]), 8)
    assert (s["modes_min"], s["modes_max"], s["all_modes"], s["all_modes_and_hq80"]) == \
        (5, 8, 2, 1)
    assert s["modes_mean"] == pytest.approx(7.0) and s["hq_mean"] == pytest.approx(0.7)
    text = exp.table({"modes": 8, "variants": {"minimax": s}})
    assert "seed 1 at step 120" in text and "2/3" in text


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
                 "--learning-rate", "--batch-size", "--latent", "--hidden", "--modes",
                 "--radius", "--sigma", "--samples", "--min-share", "--chunk", "--images",
                 "--dataset", "--data-dir", "--image-steps", "--out", "--run-dir"):
        assert flag in help_text, flag
    bad = run_experiment("gan", "--penalty", "-1")
    assert bad.returncode == 1 and "penalty" in bad.stderr
    bad = run_experiment("gan", "--variants", "lsgan")
    assert bad.returncode != 0 and "lsgan" in bad.stderr
