"""LeNet training throughput: per-step jit against an epoch in one lax.scan, hand-derived
convolution and pooling gradients against autodiff's, NHWC against NCHW, and PyTorch eager when
installed.

    python -m experiments.benchmark_lenet [--epochs 3] [--json PATH]

Each variant trains the 61,706-parameter LeNet (relu, max pool) with Adam (lr 1e-3) at batch
128 on random 32x32x1 images (throughput does not depend on pixel values): one "epoch" is
``--steps`` minibatches. Variants:
- ``step/<grads>/<layout>``: one jitted optax step per minibatch, called from Python on
  minibatches sliced beforehand (as a data loader yields them; ``X[i]`` on a device array is a
  dispatched copy, 0.3 ms per call on the development CPU, where PyTorch's ``x[i]`` is a free
  view), the carry (params, Adam state) donated to the step (``donate_argnums``) so that XLA
  writes the new one in place;
- ``scan/<grads>/<layout>``: the whole epoch inside one ``lax.scan`` (what ``train.fit`` and a
  vmapped ``train.sweep`` run);
- ``<grads>``: ``manual`` = ``lenet.loss(grads="manual")``: ``layers.conv2d_manual``
  (the hand-derived gradients: for LeNet's stride-1, few-channel layers matrix products over
  image rows, else convolutions in XLA:CPU's canonical NHWC/HWIO form) and
  ``layers.max_pool_manual`` (arg-max routing); ``autodiff`` = jax.grad through
  ``lax.conv_general_dilated`` and ``lax.reduce_window``; ``<layout>``: NHWC (jaxnets' layout)
  or NCHW/OIHW;
- ``torch/eager``: the same network and optimizer in PyTorch (skipped if torch is missing).
All variants are timed round-robin for ``--epochs`` rounds after a warm-up round, the order
reversed every other round (PyTorch's worker threads may still spin after its epoch); reported are
median images/s, the first call's compile time (JAX's compile events) apart, and the ratio to
PyTorch eager and to the per-step autodiff NHWC baseline. Every variant, PyTorch's too, starts
from the same params and data; the script asserts that their first-step gradients agree.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from experiments import common
from jaxnets import losses
from jaxnets.models import lenet

BATCH = 128
Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """Time LeNet training variants side by side."""

    steps: int = 62
    """Minibatches per timed epoch (62 x 128 is the 8,000-image MNIST split)."""
    epochs: int = 5
    """Timed rounds after the warm-up round; medians are reported."""
    threads: int | None = None
    """torch.set_num_threads for the PyTorch variant (default: torch's own choice)."""
    torch_device: Literal["cpu", "cuda"] = "cpu"
    """Device of the PyTorch variant: cpu, or cuda to compare with JAX on a GPU (TF32 off, so
    both sides compute in float32 when JAX runs with JAX_DEFAULT_MATMUL_PRECISION=highest)."""
    json: Path | None = None
    """Also write the figures to this JSON file."""


def _nchw_apply(params: lenet.Params, x: Array) -> Array:
    """LeNet on x [B, 1, 32, 32] with OIHW kernels, autodiff through lax (relu, max pool)."""
    def conv(h, layer):
        F = jnp.transpose(layer["F"], (3, 2, 0, 1))  # HWIO -> OIHW
        out = lax.conv_general_dilated(h, F, (1, 1), "VALID",
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return jax.nn.relu(out + layer["b"][:, None, None])

    def pool(h):
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    h = pool(conv(pool(conv(x, params["C1"])), params["C3"]))
    h = jnp.transpose(h, (0, 2, 3, 1)).reshape(h.shape[0], -1)  # NHWC flattening order
    h = jax.nn.relu(h @ params["F5"]["W"] + params["F5"]["b"])
    h = jax.nn.relu(h @ params["F6"]["W"] + params["F6"]["b"])
    return h @ params["F7"]["W"] + params["F7"]["b"]


def _loss_fn(grads: str, layout: str) -> Callable:
    if layout == "NCHW":
        return lambda p, x, y: jnp.mean(losses.softmax_cross_entropy(_nchw_apply(p, x), y))
    return lambda p, x, y: lenet.loss(p, (x, y), grads=grads)


def _step(loss: Callable, opt: optax.GradientTransformation, carry, batch):
    params, state = carry
    grads = jax.grad(loss)(params, *batch)
    updates, state = opt.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None


def jax_variant(mode: str, conv: str, layout: str, params, X, Y) -> Callable[[], object]:
    """A function that trains one epoch (X [steps, B, ...], Y [steps, B]) and returns params."""
    opt = optax.adam(1e-3)
    carry0 = (params, opt.init(params))
    step = partial(_step, _loss_fn(conv, layout), opt)
    if layout == "NCHW":
        X = jnp.transpose(X, (0, 1, 4, 2, 3))  # [S, B, H, W, C] -> [S, B, C, H, W]
    if mode == "scan":
        epoch = jax.jit(lambda c, X, Y: lax.scan(step, c, (X, Y))[0])
        return lambda: jax.block_until_ready(epoch(carry0, X, Y))[0]
    one = jax.jit(step, donate_argnums=0)
    batches = [(X[i], Y[i]) for i in range(X.shape[0])]  # as a data loader yields them

    def loop():
        c = jax.tree.map(jnp.copy, carry0)  # each step donates its carry to the next
        for batch in batches:
            c, _ = one(c, batch)
        return jax.block_until_ready(c)[0]
    return loop


def check_same_gradients(params, x, y, torch_grad: Callable | None) -> None:
    """Every variant computes the same first-step gradient of C1's kernel (to float32 rounding,
    relative 1e-5 on CPU, 1e-4 on accelerators whose convolution algorithms sum in other orders;
    over a whole epoch Adam amplifies rounding, so end-of-epoch weights drift apart)."""
    tol = 1e-5 if jax.default_backend() == "cpu" else 1e-4
    grads = {f"{conv}/{layout}": jax.grad(_loss_fn(conv, layout))(
        params, jnp.transpose(x, (0, 3, 1, 2)) if layout == "NCHW" else x, y)["C1"]["F"]
        for conv, layout in (("manual", "NHWC"), ("autodiff", "NHWC"), ("autodiff", "NCHW"))}
    if torch_grad is not None:
        grads["torch"] = np.transpose(torch_grad(), (2, 3, 1, 0))  # OIHW -> HWIO
    ref = np.asarray(grads["autodiff/NHWC"])
    for name, g in grads.items():
        err = np.linalg.norm(np.asarray(g) - ref) / np.linalg.norm(ref)
        assert err < tol, f"{name}: first-step gradient differs by {err:.1e} (relative)"


def torch_variant(params, X, Y, threads: int | None, device: str = "cpu"):
    """The same network, init and Adam in PyTorch eager on ``device``: (epoch, first-step C1
    gradient), or (None, None) if torch is not installed."""
    try:
        import torch
    except ImportError:
        return None, None
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    t = lambda a: torch.tensor(np.asarray(a), device=device)  # noqa: E731
    conv1, conv2 = torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5)
    fc = [torch.nn.Linear(400, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)]
    with torch.no_grad():
        for mod, name in ((conv1, "C1"), (conv2, "C3")):
            mod.weight.copy_(t(params[name]["F"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
            mod.bias.copy_(t(params[name]["b"]))
        for mod, name in zip(fc, ("F5", "F6", "F7"), strict=True):
            mod.weight.copy_(t(params[name]["W"]).T)
            mod.bias.copy_(t(params[name]["b"]))
    modules = [m.to(device) for m in (conv1, conv2, *fc)]
    x_all = t(X).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
    y_all = t(Y).long()
    f = torch.nn.functional
    state0 = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]

    def forward(x):
        h = f.max_pool2d(f.relu(conv1(x)), 2)
        h = f.max_pool2d(f.relu(conv2(h)), 2)
        h = h.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flattening, as jaxnets
        h = f.relu(fc[0](h))
        return fc[2](f.relu(fc[1](h)))

    def epoch():
        for m, s in zip(modules, state0, strict=True):
            m.load_state_dict(s)
        opt = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=1e-3)
        for i in range(x_all.shape[0]):
            opt.zero_grad()
            f.cross_entropy(forward(x_all[i]), y_all[i]).backward()
            opt.step()
        return conv1.weight.detach().cpu().numpy()  # waits for the device

    def first_grad():
        for m, s in zip(modules, state0, strict=True):
            m.load_state_dict(s)
            m.zero_grad()
        f.cross_entropy(forward(x_all[0]), y_all[0]).backward()
        return conv1.weight.grad.cpu().numpy()
    return epoch, first_grad


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(config: Config) -> dict:
    """Build every variant, check they agree, time them round-robin; return the figures."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.random((config.steps, BATCH, 32, 32, 1), dtype=np.float32))
    Y = jnp.asarray(rng.integers(0, 10, (config.steps, BATCH)), jnp.int32)
    params = lenet.init(jax.random.key(0))
    variants = {f"{mode}/{conv}/{layout}": jax_variant(mode, conv, layout, params, X, Y)
                for mode in ("step", "scan") for conv, layout in
                (("manual", "NHWC"), ("autodiff", "NHWC"), ("autodiff", "NCHW"))}
    torch_epoch, torch_grad = torch_variant(params, X, Y, config.threads,
                                             config.torch_device)
    if torch_epoch is not None:
        variants["torch/eager"] = torch_epoch
    compile_s = {name: common.compile_seconds(fn) for name, fn in variants.items()}  # + 1 epoch
    if "torch/eager" in compile_s:
        compile_s["torch/eager"] = None  # its warm-up epoch has no JAX compile to report
    check_same_gradients(params, X[0], Y[0], torch_grad)
    times = {name: [] for name in variants}
    order = list(variants)
    for r in range(config.epochs):  # alternate the order: no variant always follows another
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(_time(variants[name]))
    images = config.steps * BATCH
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    base, torch_s = med["step/autodiff/NHWC"], med.get("torch/eager")
    rows = [{"variant": name, "images_per_s": images / med[name], "ms_per_step":
             1e3 * med[name] / config.steps, "compile_s": compile_s[name],
             "vs_step_autodiff_nhwc": base / med[name],
             "vs_torch_eager": (torch_s / med[name]) if torch_s else None} for name in variants]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "jax": jax.__version__,
        "backend": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "torch": _torch_version(), "config": dataclasses.asdict(config) | {"json": None},
        "batch": BATCH, "rows": rows}


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def table(res: dict) -> str:
    lines = [f"{res['date']}  {res['machine']}  jax {res['jax']} ({res['backend']})  "
             f"torch {res['torch'] or 'not installed: pip install torch to compare'}"
             f" on {res['config']['torch_device']}",
             f"LeNet, Adam, batch {res['batch']}, {res['config']['steps']} steps per epoch, "
             f"median of {res['config']['epochs']} epochs",
             f"{'variant':22s} {'images/s':>9s} {'ms/step':>8s} {'compile s':>9s} "
             f"{'vs step/autodiff/NHWC':>22s} {'vs torch eager':>15s}"]
    for r in res["rows"]:
        vs_t = f"{r['vs_torch_eager']:.2f}x" if r["vs_torch_eager"] else "-"
        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        lines.append(f"{r['variant']:22s} {r['images_per_s']:9.0f} {r['ms_per_step']:8.1f} "
                     f"{comp:>9s} {r['vs_step_autodiff_nhwc']:21.2f}x {vs_t:>15s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    common.cli(Config, run, table, argv)


if __name__ == "__main__":
    main()
