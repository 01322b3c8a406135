"""Mode collapse, measured: GANs on the 2-D ring of Gaussians, every loss variant over many seeds.

    python -m experiments.gan [--variants minimax nonsaturating wgan-gp] [--seeds 8] [--steps N]

The data are 8 Gaussians (std sigma) evenly spaced on a circle (Metz et al. 2017). For each loss
variant (``jaxnets.models.gan``: the minimax game, the non-saturating generator loss, WGAN-GP)
every learning rate (``--learning-rates``) and seed train side by side as one compiled
``train.sweep`` of ``jaxnets.models.gan.GanStep`` (chunks of ``--chunk`` steps, a progress bar
between them, checkpointed and resumable; each member equals its run alone). Then 10,000
samples of each generator are scored: a mode is covered when at least 1% of the samples lie
within 3 sigma of it; "high quality" is the share of samples within 3 sigma of some mode. A
member whose losses or params stop being finite is frozen and reported (diverged at step s).
``python -m experiments.gan --learning-rates 3e-4 1e-3 3e-3 --seeds 4`` runs a 3 x 4 grid per
variant as one compiled sweep.

With ``--images`` (default), an MLP GAN also trains on digits (scikit-learn's 8x8, any machine)
or MNIST (``--dataset mnist --data-dir DIR``) and writes a grid of its samples.

Writes runs/gan-<date>-<time>/: config.json, metrics.jsonl (a row per variant and seed),
results.json, ring.png (samples over the true density, a row per variant), losses.png,
checkpoints/ring-<variant> and checkpoints/images (``--resume RUN_DIR`` continues an
interrupted run; see experiments/common.py) and, with --images, samples.png.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common
from jaxnets import data, runs, train
from jaxnets.models import gan

VariantName = Literal["minimax", "nonsaturating", "wgan-gp"]


@dataclasses.dataclass(frozen=True)
class Config(common.SweepFlags):
    """GANs on the ring of Gaussians (every loss variant x seeds), and an MLP GAN on images."""

    variants: tuple[VariantName, ...] = ("minimax", "nonsaturating", "wgan-gp")
    """Loss variants to train (jaxnets.models.gan.VARIANTS)."""
    seeds: int = 8
    """Seeds per variant and rate (0 .. N-1: initial weights, noise and data), run in one sweep."""
    steps: int = 10_000
    """Generator steps per run."""
    k: int = 1
    """Discriminator steps per generator step for minimax and nonsaturating."""
    k_wgan: int = 5
    """Critic steps per generator step for wgan-gp."""
    penalty: float = 0.1
    """WGAN-GP gradient-penalty weight lambda (>= 0)."""
    learning_rates: tuple[float, ...] = (1e-3,)
    """Initial Adam step sizes of both players (b1 0.5, b2 0.9). Several run with every seed as
    one compiled sweep (a row of results per variant and rate)."""
    lr_decay: float = 0.01
    """Final learning rate / initial: a cosine decay over the run (1 keeps it constant)."""
    batch_size: int = 256
    """Real and fake samples per step."""
    latent: int = 2
    """Latent dimension d_z (z ~ N(0, I))."""
    hidden: int = 128
    """Width of the two hidden layers of G and of D."""
    modes: int = 8
    """Gaussians on the ring."""
    radius: float = 2.0
    """Radius of the ring."""
    sigma: float = 0.02
    """Standard deviation of each Gaussian."""
    samples: int = 10_000
    """Generator samples scored per member."""
    min_share: float = 0.01
    """Share of the samples within 3 sigma of a mode for it to count as covered."""
    chunk: int = 500
    """Steps per jitted chunk (the progress bar advances per chunk); must divide the steps."""
    images: bool = True
    """Also train an MLP GAN on images and write samples.png."""
    dataset: Literal["digits", "mnist"] = "digits"
    """Images: digits (scikit-learn's 8x8, bundled) or mnist (IDX files in --data-dir)."""
    data_dir: Path | None = None
    """Folder with the MNIST IDX .gz files (for --dataset mnist)."""
    image_steps: int = 5000
    """Generator steps of the image GAN (non-saturating loss); must be a multiple of --chunk."""
    image_latent: int = 32
    """Latent dimension of the image GAN."""
    image_hidden: int = 256
    """Width of the two hidden layers of the image GAN's G and D."""
    image_learning_rate: float = 2e-4
    """Initial Adam step size of the image GAN (b1 0.5, b2 0.999; decayed as --lr-decay)."""


def validate(config: Config) -> None:
    """Clear errors for bad flags, before anything is compiled."""
    for name in ("seeds", "steps", "k", "k_wgan", "batch_size", "latent", "hidden", "modes",
                 "samples", "chunk", "image_steps", "image_latent", "image_hidden"):
        v = getattr(config, name)
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if not config.variants:
        raise ValueError("--variants must name at least one of " + ", ".join(gan.VARIANTS))
    for name in ("steps", "image_steps"):
        if getattr(config, name) % config.chunk:
            raise ValueError(f"--chunk {config.chunk} must divide --{name.replace('_', '-')} "
                             f"{getattr(config, name)}")
    if not config.penalty >= 0:
        raise ValueError(f"--penalty (lambda) must be >= 0, got {config.penalty}")
    if not config.learning_rates or not all(lr > 0 for lr in config.learning_rates):
        raise ValueError(f"--learning-rates must be one or more numbers > 0, got "
                         f"{config.learning_rates}")
    for name in ("image_learning_rate", "radius", "sigma"):
        if not getattr(config, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(config, name)}")
    if not 0 < config.lr_decay <= 1:
        raise ValueError(f"--lr-decay must be in (0, 1], got {config.lr_decay}")
    if not 0 < config.min_share <= 1:
        raise ValueError(f"--min-share must be in (0, 1], got {config.min_share}")


@dataclasses.dataclass(frozen=True)
class CosineAdam:
    """Learning rate -> Adam (b1 0.5, b2 ``b2``) with a cosine decay over ``updates`` steps from
    the learning rate to ``decay`` times it. Equal settings compare equal (one compile)."""

    decay: float
    updates: int
    b2: float

    def __call__(self, learning_rate) -> optax.GradientTransformation:
        schedule = optax.cosine_decay_schedule(learning_rate, self.updates, alpha=self.decay)
        return optax.adam(schedule, b1=0.5, b2=self.b2)


def ring_setup(config: Config, variant: str) -> gan.GanSetup:
    """The static part of a ring run of ``variant``."""
    k = config.k_wgan if variant == "wgan-gp" else config.k
    return gan.GanSetup(
        sample_real=partial(gan.sample_ring, modes=config.modes, radius=config.radius,
                            sigma=config.sigma),
        d_z=config.latent, variant=variant, k=k, batch_size=config.batch_size,
        penalty=config.penalty, d_optimizer=CosineAdam(config.lr_decay, k * config.steps, 0.9),
        g_optimizer=CosineAdam(config.lr_decay, config.steps, 0.9))


@functools.lru_cache(maxsize=16)
def ring_step(config: Config, variant: str) -> gan.GanStep:
    """The ring GAN's step: ``ring_setup``, G and D with two hidden layers of --hidden (one
    object per config and variant, so equal configs share their compiled sweep)."""
    return gan.GanStep(ring_setup(config, variant), partial(
        gan.init, d_z=config.latent, d_x=2, g_hidden=(config.hidden,) * 2,
        d_hidden=(config.hidden,) * 2))


def train_ring(config: Config, variant: str, run_dir: Path | None, progress: bool = True
               ) -> train.SweepResult:
    """Every learning rate x seed of ``variant`` as one ``train.sweep``, in chunks of --chunk
    steps, checkpointed in <run_dir>/checkpoints/ring-<variant> (none without a run folder).
    The result's aux is (L_D, L_G) [n_lr, n_seed, steps]."""
    ckpt = {} if run_dir is None else common.checkpoint_args(config, run_dir, f"ring-{variant}")
    return train.sweep(list(config.learning_rates), None, step=ring_step(config, variant),
                       steps=config.steps, eval_every=config.chunk, seeds=config.seeds,
                       progress=progress, desc=f"gan {variant}", **ckpt)


def score(config: Config, params, d_z: int) -> tuple[np.ndarray, gan.Coverage]:
    """Samples [M, n, 2] of every member (leading axis of params; the same z for all) and their
    coverage."""
    z = jax.random.normal(jax.random.key(10_000), (config.samples, d_z))
    xs = jax.vmap(lambda p: gan.generator(p["G"], z))(params)
    centers = gan.ring_centers(config.modes, config.radius)
    cov = jax.vmap(lambda x: gan.coverage(x, centers, config.sigma, config.min_share))(xs)
    return np.asarray(xs), jax.tree.map(np.asarray, cov)


def summarize(cov: gan.Coverage, diverged_at: np.ndarray, modes: int) -> dict:
    """Per variant: modes covered (mean, min, max, seeds with all), high-quality share, diverged."""
    m, hq = cov.modes_covered, cov.high_quality
    return {"modes_mean": float(np.mean(m)), "modes_min": int(np.min(m)),
            "modes_max": int(np.max(m)), "all_modes": int(np.sum(m == modes)),
            "all_modes_and_hq80": int(np.sum((m == modes) & (hq >= 0.8))),
            "hq_mean": float(np.mean(hq)), "hq_min": float(np.min(hq)),
            "hq_max": float(np.max(hq)), "seeds": len(m),
            "diverged": [int(s) for s in diverged_at], "modes_covered": m.tolist(),
            "high_quality": hq.tolist()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


RING_SHOWN = 2000  # samples drawn per panel of ring.png


def ring_figure(config: Config, samples: dict[str, np.ndarray], summary: dict,
                columns: int = 4):
    """A row per variant: the first ``columns`` seeds' samples (at most ``RING_SHOWN``) over
    the true density."""
    plt = _pyplot()
    cols = min(columns, config.seeds)
    lim = config.radius + 0.8
    g = np.linspace(-lim, lim, 300)
    density = np.asarray(gan.ring_density(jnp.stack(np.meshgrid(g, g), -1), modes=config.modes,
                                          radius=config.radius, sigma=config.sigma))
    fig, axes = plt.subplots(len(samples), cols, figsize=(2.6 * cols, 2.6 * len(samples)),
                             squeeze=False)
    for row, (variant, xs) in zip(axes, samples.items(), strict=True):
        s = summary[variant]
        for j, ax in enumerate(row):
            ax.imshow(np.log1p(density), extent=(-lim, lim, -lim, lim), origin="lower",
                      cmap="Greys")
            ax.scatter(xs[j, :RING_SHOWN, 0], xs[j, :RING_SHOWN, 1], s=1, color="C3",
                       alpha=0.4)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
            ax.set_title(f"seed {j}: {s['modes_covered'][j]}/{config.modes} modes, "
                         f"hq {s['high_quality'][j]:.0%}", fontsize=8)
        row[0].set_ylabel(variant)
    n = next(iter(samples.values())).shape[1]
    shown = f"{n:,}" if n <= RING_SHOWN else f"{RING_SHOWN:,} of {n:,}"
    fig.suptitle(f"ring of {config.modes} Gaussians (sigma {config.sigma}): {shown} generator "
                 f"samples after {config.steps} steps")
    return fig


def plot_ring(config: Config, samples: dict[str, np.ndarray], summary: dict, path: Path,
              columns: int = 4) -> Path:
    """``ring_figure`` as PNG."""
    fig = ring_figure(config, samples, summary, columns)
    try:
        return runs.save_figure(fig, path)
    finally:
        _pyplot().close(fig)


def losses_figure(losses: dict[str, tuple[np.ndarray, np.ndarray]]):
    """L_D and L_G against steps, median over seeds, a panel per variant (and rate): (L_D, L_G)
    [n_seed, steps] each; the main title above the panels' titles."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3.2), squeeze=False,
                             layout="constrained")
    for ax, (variant, (d_loss, g_loss)) in zip(axes[0], losses.items(), strict=True):
        for name, v in (("L_D", d_loss), ("L_G", g_loss)):
            ax.plot(np.nanmedian(v, axis=0), label=name, lw=0.8)
        ax.set(title=variant, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("losses, median over seeds")
    return fig


def plot_losses(losses: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """``losses_figure`` as PNG."""
    fig = losses_figure(losses)
    try:
        return runs.save_figure(fig, path)
    finally:
        _pyplot().close(fig)


def sample_rows(key, n: int, x):
    """n rows of x drawn uniformly with replacement."""
    return x[jax.random.randint(key, (n,), 0, x.shape[0])]


def train_images(config: Config, run_dir: Path, progress: bool = True) -> dict:
    """The MLP GAN on images (non-saturating loss, pixels scaled to [-1, 1], G's output tanh),
    one ``train.fit``; writes samples.png. (With a sigmoid output on [0, 1] pixels, D won at
    once on MNIST and G collapsed to one blot.)"""
    split = data.load_flat(config.dataset, config.data_dir)
    x = 2 * jnp.asarray(split.x_train) - 1  # pixels in [-1, 1], G's tanh range
    side = int(round(np.sqrt(x.shape[1])))
    opt = CosineAdam(config.lr_decay, config.image_steps, 0.999)
    setup = gan.GanSetup(sample_real=sample_rows, d_z=config.image_latent,
                         batch_size=config.batch_size, out="tanh", d_optimizer=opt,
                         g_optimizer=opt)
    step = gan.GanStep(setup, partial(gan.init, d_z=config.image_latent, d_x=x.shape[1],
                                      g_hidden=(config.image_hidden,) * 2,
                                      d_hidden=(config.image_hidden,) * 2))
    r = train.fit(jax.random.key(0), config.image_learning_rate, x, step=step,
                  steps=config.image_steps, eval_every=config.chunk, progress=progress,
                  desc=f"gan {config.dataset}", **common.checkpoint_args(config, run_dir,
                                                                         "images"))
    if r.checkpoint is not None and r.checkpoint.interrupted:
        return {"fit": r}
    d_loss, g_loss = r.train_loss
    fakes = np.asarray(gan.generator(r.params["G"], jax.random.normal(
        jax.random.key(1), (64, config.image_latent)), out="tanh")).reshape(64, side, side)
    to_unit = lambda a: (np.asarray(a).reshape(64, side, side) + 1) / 2  # noqa: E731
    plot_images(to_unit(fakes), to_unit(x[:64]), run_dir / "samples.png",
                f"MLP GAN on {config.dataset} after {config.image_steps} steps")
    return {"dataset": config.dataset, "steps": config.image_steps,
            "diverged_at": int(r.diverged_at), "final_d_loss": float(d_loss[-1]),
            "final_g_loss": float(g_loss[-1]), "fit": r}


def plot_images(fakes: np.ndarray, reals: np.ndarray, path: Path, title: str) -> Path:
    """8x8 grids of generated and real images side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, imgs, name in ((axes[0], fakes, "generated"), (axes[1], reals, "real")):
        framed = np.pad(imgs, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
        s = framed.shape[1]  # each image with a 1-pixel frame, drawn grey
        grid = framed.reshape(8, 8, s, s).transpose(0, 2, 1, 3).reshape(8 * s, 8 * s)
        cmap = plt.get_cmap("gray_r").with_extremes(bad="0.75")
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1)
        ax.set(title=name, xticks=[], yticks=[])
    fig.suptitle(title)
    try:
        return runs.save_figure(fig, path)
    finally:
        plt.close(fig)


def run_label(config: Config, variant: str, lr: float) -> str:
    """A row's name: the variant, and its learning rate when several ran."""
    return variant if len(config.learning_rates) == 1 else f"{variant} lr={lr:g}"


def run(config: Config, progress: bool = True) -> dict:
    """Train every variant over the learning rates and seeds, score, plot, write the run
    folder."""
    validate(config)
    with common.run_folder(config, "gan") as run_dir:
        summary, samples, losses, rows = {}, {}, {}, []
        for variant in config.variants:
            r = train_ring(config, variant, run_dir, progress)
            common.stop_if_interrupted(r, run_dir, rows)  # the variants done so far
            d_loss, g_loss = (np.asarray(v) for v in r.train_loss)  # [n_lr, n_seed, steps]
            for i, lr in enumerate(config.learning_rates):
                label = run_label(config, variant, lr)
                params = jax.tree.map(lambda a, i=i: a[i], r.params)
                samples[label], cov = score(config, params, config.latent)
                diverged = np.asarray(r.diverged_at[i])
                summary[label] = summarize(cov, diverged, config.modes)
                losses[label] = (d_loss[i], g_loss[i])
                rows += [{"variant": variant, "learning_rate": lr, "seed": j,
                          "modes_covered": int(cov.modes_covered[j]),
                          "high_quality": float(cov.high_quality[j]),
                          "diverged_at": int(diverged[j]),
                          "final_d_loss": float(d_loss[i, j, -1]),
                          "final_g_loss": float(g_loss[i, j, -1])}
                         for j in range(config.seeds)]
        runs.write_jsonl(run_dir / "metrics.jsonl", rows)
        plot_ring(config, samples, summary, run_dir / "ring.png")
        plot_losses(losses, run_dir / "losses.png")
        results = {"run_dir": str(run_dir), "modes": config.modes, "variants": summary}
        if config.images:
            results["images"] = train_images(config, run_dir, progress)
            common.stop_if_interrupted(results["images"].pop("fit"), run_dir, rows)
        runs.write_json(run_dir / "results.json", results)
    return results | {"samples": samples}


def table(results: dict) -> str:
    """Per variant: modes covered (mean, min-max), seeds with all modes, high-quality share."""
    M = results["modes"]
    lines = [f"{'variant':14s} {'modes mean':>10s} {'min-max':>8s} {f'all {M}':>6s} "
             f"{'all + hq>=80%':>13s} {'hq mean':>8s} {'hq min-max':>12s} diverged"]
    for variant, s in results["variants"].items():
        div = [f"seed {j} at step {t}" for j, t in enumerate(s["diverged"]) if t >= 0]
        lines.append(
            f"{variant:14s} {s['modes_mean']:10.2f} {s['modes_min']:>4d}-{s['modes_max']:<3d} "
            f"{s['all_modes']:>3d}/{s['seeds']:<2d} {s['all_modes_and_hq80']:>10d}/"
            f"{s['seeds']:<2d} {s['hq_mean']:8.1%} {s['hq_min']:5.1%}-{s['hq_max']:<6.1%} "
            f"{', '.join(div) or 'none'}")
    if "images" in results:
        im = results["images"]
        lines.append(f"images ({im['dataset']}, {im['steps']} steps): final L_D "
                     f"{im['final_d_loss']:.3f}, L_G {im['final_g_loss']:.3f}"
                     + (f", diverged at step {im['diverged_at']}" if im["diverged_at"] >= 0
                        else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
