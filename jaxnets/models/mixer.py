"""MLP-Mixer (Tolstikhin et al. 2021; problem set 000 Q4): patches, token mixing, channel mixing.

An NHWC image [H, W, C_in] is cut into S = HW/P^2 non-overlapping P x P patches (row-major
over the patch grid), each linearly embedded to C channels: the table X [S, C]. Each of the N
Mixer layers is (paper eq. 1, column-vector convention, biases broadcast along the other axis)

    U_{*,i} = X_{*,i} + W2 GELU(W1 LN(X)_{*,i} + b1) + b2,   i = 1..C   (token mixing)
    Y_{j,*} = U_{j,*} + W4 GELU(W3 LN(U)_{j,*} + b3) + b4,   j = 1..S   (channel mixing)

i.e. in matrix form U = X + W2 GELU(W1 LN(X)) (W1 [D_S, S] acts on columns, across patches;
with rows, U = X + (GELU(LN(X)^T W1^T) W2^T)^T) and Y = U + GELU(LN(U) W3^T) W4^T (W3
[D_C, C] acts on rows, across channels), biases omitted. LN normalises
each row (a patch's C channels) in both. After the last layer: LN, the mean over the S patches,
and a linear head to num_classes logits.

Params (a named pytree of arrays only; every size is read back from the shapes)::

    {"embed": {"W": [P, P, C_in, C], "b": [C]},        # the stride-P conv kernel (HWIO)
     "layers": {                                       # stacked: leading axis N (depth)
        "LN1": {"gamma": [N, C], "beta": [N, C]},
        "W1": [N, D_S, S], "b1": [N, D_S], "W2": [N, S, D_S], "b2": [N, S],
        "LN2": {"gamma": [N, C], "beta": [N, C]},
        "W3": [N, D_C, C], "b3": [N, D_C], "W4": [N, C, D_C], "b4": [N, C]},
     "LN": {"gamma": [C], "beta": [C]},
     "head": {"W": [C, num_classes], "b": [num_classes]}}

W1..W4 are stored as the paper writes them ([out, in]); "embed" and "head" use
``jaxnets.layers.dense``'s [in, out]. The layers run under ``lax.scan`` over the leading axis,
so compile time does not grow with depth (``unroll=True`` unrolls it: XLA's cost analysis
counts a loop body once, so FLOP counts need the unrolled form). A layer's slice
(``layer(params, k)``) is what ``token_mixing``, ``channel_mixing`` and ``mixer_layer`` take.

Batch convention: images are [..., H, W, C_in] with any leading axes (a batch [B, H, W, C_in],
or one image, so ``apply`` vmaps as it is); a training batch is (x [B, H, W, C_in] floats,
y [B] ints in [0, num_classes)).

Cost per image (multiply-adds; FLOPs are twice these): embedding S P^2 C_in C = HW C_in C,
token mixing 2 S D_S C and channel mixing 2 S C D_C per layer, pooling S C, head C num_classes.
At fixed P, D_S, D_C, C every term but the head (and the GELU of the token-mixing hidden
layer, D_S C values) is linear in S: the cost is affine in S (experiments/benchmark_mixer.py
measures it). Attention would instead cost O(S^2 C) per layer.

Seed errata (problem set 000 Q4; each is checked in tests/test_mixer.py):
- Q4(a) is right: 64 x 64 input, output table 16 x 128 gives S = 16, C = 128,
  P = sqrt(64 * 64 / 16) = 16.
- Q4(b) writes "D_s = number of channels = c, D_c = number of input patches = s". No: D_S and
  D_C are free hidden widths, independent of S and C (that independence is the whole argument
  for linear cost). Its channel-mixing line "Y_{j,*} = U_{*,i} + W_4 sigma(W_4 LN(U)_{*,i})"
  should read Y_{j,*} = U_{j,*} + W_4 sigma(W_3 LN(U)_{j,*}). Its complexities "O(c) and O(s)"
  are not the costs: token mixing is O(S D_S C), channel mixing O(S C D_C), both linear in S.
- Q4(c) lists 5 pixel-row permutations and asks for "all possible P": the identity works too,
  so there are 3! = 6 (any order of the three 3-row blocks, rows kept in order inside a block;
  for a generic image no other permutation of the 9 rows keeps the set of patches). Its P_1 is
  written [e_pi(1); e_pi(2); e_pi(3); e_pi(7); ...], mixing up pi and its values: the matrix
  is [e_1; e_2; e_3; e_7; e_8; e_9; e_4; e_5; e_6].
- Q4(d): X_m1 and U_m1 list 8 rows (L(A_13) is missing; they have 9). P_reverse = P_1 only
  because that block swap is its own inverse; in general P_reverse = Q^T, Q the permutation
  the pixel-row permutation induces on patches (for the cyclic A_m3, P_reverse = P_3^T != P_3).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxnets import losses
from jaxnets._checks import check_labels
from jaxnets.layers import dense, gelu, layer_norm

Params = dict
Batch = tuple[Array, Array]

# The standard deviation of N(0, 1) truncated to [-2, 2]: dividing by it makes a truncated
# normal draw have variance 1 (as jax.nn.initializers.variance_scaling does).
_TRUNCATED_STD = 0.87962566103423978


@dataclasses.dataclass(frozen=True)
class MixerConfig:
    """The sizes of an MLP-Mixer; ``init(key, **dataclasses.asdict(config))`` builds it."""

    image_size: tuple[int, int]
    """(H, W) of the input images; both multiples of ``patch``."""
    in_channels: int
    """C_in, channels of the input images."""
    patch: int
    """P, side of the square patches."""
    hidden: int
    """C, channels of each patch after the embedding."""
    tokens_mlp_dim: int
    """D_S, hidden width of the token-mixing MLP."""
    channels_mlp_dim: int
    """D_C, hidden width of the channel-mixing MLP."""
    depth: int
    """N, number of Mixer layers."""
    num_classes: int
    """Logits of the head."""

    @property
    def num_patches(self) -> int:
        """S = HW / P^2."""
        return self.image_size[0] * self.image_size[1] // self.patch**2


def _paper(patch: int, hidden: int, d_s: int, d_c: int, depth: int) -> MixerConfig:
    return MixerConfig((224, 224), 3, patch, hidden, d_s, d_c, depth, 1000)


CONFIGS: dict[str, MixerConfig] = {
    # Table 1 of the paper, at 224 x 224 with a 1000-class head.
    "S/32": _paper(32, 512, 256, 2048, 8),
    "S/16": _paper(16, 512, 256, 2048, 8),
    "B/32": _paper(32, 768, 384, 3072, 12),
    "B/16": _paper(16, 768, 384, 3072, 12),
    "L/32": _paper(32, 1024, 512, 4096, 24),
    "L/16": _paper(16, 1024, 512, 4096, 24),
    # Small ones for 28 x 28 MNIST on a CPU (mnist/7: experiments.mixer's defaults).
    "mnist/7": MixerConfig((28, 28), 1, 7, 64, 64, 256, 4, 10),  # S = 16
    "mnist/4": MixerConfig((28, 28), 1, 4, 64, 64, 256, 4, 10),  # S = 49
    # The problem set's Q4(a) case: 64 x 64 input, P = 16, X is 16 x 128.
    "problem-set-000": MixerConfig((64, 64), 3, 16, 128, 64, 512, 2, 10),
}
"""Named configurations; parameter counts are checked exactly in tests/test_mixer.py."""


class MixerSizes(NamedTuple):
    """The sizes read back from a params tree (the image size is known only through S)."""

    patch: int  # P
    in_channels: int  # C_in
    hidden: int  # C
    num_patches: int  # S
    tokens_mlp_dim: int  # D_S
    channels_mlp_dim: int  # D_C
    depth: int  # N
    num_classes: int


def sizes(params: Params) -> MixerSizes:
    """P, C_in, C, S, D_S, D_C, N and num_classes from the parameter shapes."""
    p, _, c_in, c = params["embed"]["W"].shape
    depth, d_s, s = params["layers"]["W1"].shape
    d_c = params["layers"]["W3"].shape[1]
    return MixerSizes(p, c_in, c, s, d_s, d_c, depth, params["head"]["W"].shape[1])


def _check_positive(where: str, **values: int) -> None:
    for name, v in values.items():
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")


def _check_image(where: str, image_size: tuple[int, ...], patch: int) -> tuple[int, int]:
    """(H/P, W/P) for an image of size (H, W), or a ValueError naming H, W and P."""
    h, w = image_size
    if h % patch or w % patch:
        raise ValueError(
            f"{where}: image sides must be multiples of the patch size P = {patch}, got "
            f"H x W = {h} x {w} (H mod P = {h % patch}, W mod P = {w % patch})"
        )
    return h // patch, w // patch


def init(
    key: Array,
    *,
    image_size: tuple[int, int],
    in_channels: int,
    patch: int,
    hidden: int,
    tokens_mlp_dim: int,
    channels_mlp_dim: int,
    depth: int,
    num_classes: int,
    dtype=jnp.float32,
) -> Params:
    """LeCun-normal weights, zero biases, LayerNorm gamma = 1 and beta = 0.

    Weights are truncated normal (at two standard deviations) with variance 1/fan_in, fan_in
    = P^2 C_in (embedding), S (W1), D_S (W2), C (W3, head), D_C (W4). The head is not zeroed as
    in the paper's code, so that every parameter gets a gradient at the first step.

    Args:
      key: a PRNG key.
      image_size: (H, W), both multiples of ``patch``.
      in_channels: C_in. patch: P. hidden: C. tokens_mlp_dim: D_S. channels_mlp_dim: D_C.
      depth: N Mixer layers. num_classes: logits of the head.
      dtype: of every parameter.
    Returns:
      the params tree of the module docstring, with S = HW / P^2.
    """
    _check_positive("mixer.init", in_channels=in_channels, patch=patch, hidden=hidden,
                    tokens_mlp_dim=tokens_mlp_dim, channels_mlp_dim=channels_mlp_dim,
                    depth=depth, num_classes=num_classes)
    if not (isinstance(image_size, tuple | list) and len(image_size) == 2):
        raise ValueError(f"mixer.init: image_size must be a pair (H, W), got {image_size!r}")
    _check_positive("mixer.init", H=image_size[0], W=image_size[1])
    gh, gw = _check_image("mixer.init", tuple(image_size), patch)
    return _init_tree(key, (patch, in_channels, hidden, gh * gw, tokens_mlp_dim,
                            channels_mlp_dim, depth, num_classes), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_tree(key: Array, shape: tuple[int, ...], dtype) -> Params:
    """The params tree for MixerSizes ``shape``, as one compiled function.

    Every weight is a slice of one truncated-normal draw, scaled to variance 1/fan_in: XLA on
    CPU compiles one threefry kernel in ~0.2 s but takes seconds for ten separate draws.
    """
    p, c_in, c, s, d_s, d_c, n, k = shape
    weights = {  # name: (shape, fan_in); W1..W4 stacked over the N layers
        "embed": ((p, p, c_in, c), p * p * c_in),
        "W1": ((n, d_s, s), s), "W2": ((n, s, d_s), d_s),
        "W3": ((n, d_c, c), c), "W4": ((n, c, d_c), d_c),
        "head": ((c, k), c),
    }
    sizes_ = [math.prod(w_shape) for w_shape, _ in weights.values()]
    z = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes_),), dtype)
    pieces = jnp.split(z, list(itertools.accumulate(sizes_))[:-1])
    w = {name: piece.reshape(w_shape) / (math.sqrt(fan_in) * _TRUNCATED_STD)
         for (name, (w_shape, fan_in)), piece in zip(weights.items(), pieces, strict=True)}

    def ln(*lead: int) -> Params:
        return {"gamma": jnp.ones((*lead, c), dtype), "beta": jnp.zeros((*lead, c), dtype)}

    return {
        "embed": {"W": w["embed"], "b": jnp.zeros((c,), dtype)},
        "layers": {
            "LN1": ln(n), "W1": w["W1"], "b1": jnp.zeros((n, d_s), dtype),
            "W2": w["W2"], "b2": jnp.zeros((n, s), dtype),
            "LN2": ln(n), "W3": w["W3"], "b3": jnp.zeros((n, d_c), dtype),
            "W4": w["W4"], "b4": jnp.zeros((n, c), dtype),
        },
        "LN": ln(),
        "head": {"W": w["head"], "b": jnp.zeros((k,), dtype)},
    }


def init_from_config(key: Array, config: MixerConfig, dtype=jnp.float32) -> Params:
    """``init`` with the sizes of a ``MixerConfig`` (e.g. ``CONFIGS["mnist/7"]``).

    Examples:
        >>> import jax
        >>> from jaxnets.models import mixer
        >>> params = mixer.init_from_config(jax.random.key(0), mixer.CONFIGS["mnist/7"])
        >>> params["layers"]["W1"].shape  # N, D_S, S
        (4, 64, 16)
        >>> mixer.num_params(params)
        145866
    """
    return init(key, **dataclasses.asdict(config), dtype=dtype)


def layer(params: Params, k: int) -> Params:
    """The k-th Mixer layer's params (one slice of the stacked ``params["layers"]``)."""
    return jax.tree.map(lambda a: a[k], params["layers"])


def patchify(x: Array, patch: int) -> Array:
    """Cut images into non-overlapping P x P patches, row-major over the patch grid.

    Patch k = i (W/P) + j is x[..., iP:(i+1)P, jP:(j+1)P, :], flattened in (row, column,
    channel) order, the order of an HWIO conv kernel reshaped to [P P C_in, C].
    Args:
      x: [..., H, W, C_in], H and W multiples of P.
      patch: P.
    Returns:
      [..., S, P * P * C_in], S = HW / P^2.
    """
    _check_positive("mixer.patchify", patch=patch)
    if jnp.ndim(x) < 3:
        raise ValueError(f"mixer.patchify: x must be [..., H, W, C_in], got shape {jnp.shape(x)}")
    *batch, h, w, c_in = jnp.shape(x)
    gh, gw = _check_image("mixer.patchify", (h, w), patch)
    # [..., H, W, C_in] -> [..., H/P, P, W/P, P, C_in]
    x = jnp.reshape(x, (*batch, gh, patch, gw, patch, c_in))
    x = jnp.moveaxis(x, -4, -3)  # -> [..., H/P, W/P, P, P, C_in]
    return jnp.reshape(x, (*batch, gh * gw, patch * patch * c_in))  # -> [..., S, P P C_in]


def embed(params: Params, x: Array) -> Array:
    """Per-patch linear embedding X = patchify(x) W + b (a conv with kernel P, stride P).

    Args:
      params: {"W": [P, P, C_in, C], "b": [C]} (``params["embed"]`` of a Mixer).
      x: [..., H, W, C_in].
    Returns:
      X: [..., S, C].
    """
    p, _, c_in, c = params["W"].shape
    if jnp.ndim(x) < 3 or jnp.shape(x)[-1] != c_in:
        raise ValueError(
            f"mixer: x must be images [..., H, W, C_in] with C_in = {c_in} channels (the patch "
            f"embedding W is {tuple(params['W'].shape)} = [P, P, C_in, C]), got shape "
            f"{jnp.shape(x)}")
    w = jnp.reshape(params["W"], (p * p * c_in, c))  # [P, P, C_in, C] -> [P P C_in, C]
    return dense({"W": w, "b": params["b"]}, patchify(x, p))


def token_mixing(params: Params, X: Array) -> Array:
    """U = X + W2 GELU(W1 LN(X) + b1) + b2: an MLP across patches, one per channel (column).

    U_{*,i} = X_{*,i} + W2 GELU(W1 LN(X)_{*,i} + b1) + b2 for i = 1..C (paper eq. 1, problem
    set 000 Q4(b)); LN normalises rows (each patch over its C channels).
    Args:
      params: one layer's params with "LN1", "W1" [D_S, S], "b1" [D_S], "W2" [S, D_S], "b2" [S].
      X: [..., S, C].
    Returns:
      U: [..., S, C].
    """
    s = params["W1"].shape[1]
    if jnp.ndim(X) < 2 or jnp.shape(X)[-2] != s:
        raise ValueError(f"mixer.token_mixing: X must be [..., S, C] with S = {s} patches "
                         f"(W1 is {tuple(params['W1'].shape)} = [D_S, S]), got {jnp.shape(X)}")
    Z = layer_norm(X, params["LN1"]["gamma"], params["LN1"]["beta"])  # [..., S, C]
    # W1 [D_S, S] @ Z [..., S, C] -> [..., D_S, C]; b1 is shared by the C columns
    H = gelu(jnp.einsum("ds,...sc->...dc", params["W1"], Z) + params["b1"][:, None])
    # W2 [S, D_S] @ H [..., D_S, C] -> [..., S, C]
    return X + jnp.einsum("sd,...dc->...sc", params["W2"], H) + params["b2"][:, None]


def channel_mixing(params: Params, U: Array) -> Array:
    """Y = U + W4 GELU(W3 LN(U) + b3) + b4 on each row: an MLP across channels, one per patch.

    Y_{j,*} = U_{j,*} + W4 GELU(W3 LN(U)_{j,*} + b3) + b4 for j = 1..S (paper eq. 1); rows
    are treated alike and independently, so it commutes with any permutation of the patches.
    Args:
      params: one layer's params with "LN2", "W3" [D_C, C], "b3" [D_C], "W4" [C, D_C], "b4" [C].
      U: [..., S, C].
    Returns:
      Y: [..., S, C].
    """
    c = params["W3"].shape[1]
    if jnp.ndim(U) < 1 or jnp.shape(U)[-1] != c:
        raise ValueError(f"mixer.channel_mixing: U must be [..., S, C] with C = {c} "
                         f"(W3 is {tuple(params['W3'].shape)} = [D_C, C]), got {jnp.shape(U)}")
    Z = layer_norm(U, params["LN2"]["gamma"], params["LN2"]["beta"])  # [..., S, C]
    H = gelu(Z @ params["W3"].T + params["b3"])  # [..., S, D_C]
    return U + H @ params["W4"].T + params["b4"]  # [..., S, C]


def mixer_layer(params: Params, X: Array) -> Array:
    """One Mixer layer: channel_mixing(params, token_mixing(params, X)). X: [..., S, C]."""
    return channel_mixing(params, token_mixing(params, X))


class Stages(NamedTuple):
    """The forward pass's stages for images [..., H, W, C_in]."""

    X: Array  # [..., S, C]  patch embeddings
    Y: Array  # [..., S, C]  after the N Mixer layers
    pooled: Array  # [..., C]  mean over patches of LN(Y)
    logits: Array  # [..., num_classes]


def forward(params: Params, x: Array, *, unroll: bool = False) -> Stages:
    """Embedding, N Mixer layers (a ``lax.scan``), LN, global average pooling, head.

    Args:
      params: a Mixer's params.
      x: [..., H, W, C_in] images with HW / P^2 = S, the S the params were built for.
      unroll: unroll the scan over layers (same values; straight-line code for XLA).
    Returns:
      the ``Stages``.
    """
    p, c_in, _, s, *_ = sizes(params)
    if jnp.ndim(x) >= 3 and jnp.shape(x)[-1] == c_in:
        gh, gw = _check_image("mixer.apply", jnp.shape(x)[-3:-1], p)
        if gh * gw != s:
            h, w = jnp.shape(x)[-3:-1]
            raise ValueError(
                f"mixer.apply: params were built for S = {s} patches (W1 is [D_S, S]), but a "
                f"{h} x {w} image with P = {p} has S = HW/P^2 = {gh * gw}")
    X = embed(params["embed"], x)  # [..., S, C]; checks x's rank and channels
    Y, _ = jax.lax.scan(lambda X, lp: (mixer_layer(lp, X), None), X, params["layers"],
                        unroll=bool(unroll))
    Z = layer_norm(Y, params["LN"]["gamma"], params["LN"]["beta"])  # [..., S, C]
    pooled = jnp.mean(Z, axis=-2)  # [..., C]
    return Stages(X, Y, pooled, dense(params["head"], pooled))


def apply(params: Params, x: Array, *, unroll: bool = False) -> Array:
    """Logits of images x: [..., H, W, C_in] -> [..., num_classes]. Jittable; P from shapes."""
    return forward(params, x, unroll=unroll).logits


def _checked(params: Params, batch: Batch, where: str) -> Batch:
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise TypeError(f"{where}: batch must be a pair (x, y), got {type(batch).__name__}")
    x, y = batch
    if jnp.ndim(x) != 4:
        raise ValueError(f"{where}: x must be a batch of images [B, H, W, C_in], got shape "
                         f"{jnp.shape(x)}")
    if jnp.shape(y) != jnp.shape(x)[:1]:
        raise ValueError(
            f"{where}: y must have shape [B] = {jnp.shape(x)[:1]} to match x, got {jnp.shape(y)}")
    check_labels(y, sizes(params).num_classes, where)
    return x, y


def loss(params: Params, batch: Batch, *, unroll: bool = False) -> Array:
    """Mean softmax cross-entropy. batch: (x [B, H, W, C_in] floats, y [B] ints). Scalar."""
    x, y = _checked(params, batch, "mixer.loss")
    return jnp.mean(losses.softmax_cross_entropy(apply(params, x, unroll=unroll), y))


def metrics(params: Params, batch: Batch) -> dict[str, Array]:
    """{"loss": mean cross-entropy, "accuracy": fraction of argmax logits == y} on one batch."""
    x, y = _checked(params, batch, "mixer.metrics")
    logits = apply(params, x)
    return {
        "loss": jnp.mean(losses.softmax_cross_entropy(logits, y)),
        "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == y),
    }


def num_params(params: Params) -> int:
    """Total number of scalars in a params tree."""
    return sum(int(a.size) for a in jax.tree.leaves(params))
