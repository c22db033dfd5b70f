"""Models as layer lists, built in PyTorch with Keras's initialisation.

An MLP config (`hidden`, `activation`, `dropout`) and a CNN's `model.layers` both expand into one
layer list (`mnistlab.layers.layer_specs`), so building, parameter arithmetic and summaries are
written once. The network outputs logits; softmax is applied in the loss (cross-entropy on logits
equals Keras's categorical cross-entropy on a softmax output) and when predicting.

A CNN takes (B, H, W) images and adds the channel dimension; `Flatten` reads the map in Keras's
H, W, C order, so Dense weights line up with a Keras model's. Activations are NCHW by default:
channels-last (NHWC) costs the same CPU time per image on the lab's networks (measured with one
thread) and was many times slower with two threads on a busy machine (benchmarks/epoch_vs_keras.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import ACTIVATIONS, ModelConfig
from .dense import Dense, DenseOverCHW
from .fused_conv import ConvReluPool, fuse_first_layers
from .layers import (
    LayerInfo,
    compare_text,
    count_parameters,
    describe_layers,
    layer_specs,
    model_input_shape,
    output_shapes,
    summary_text,
)
from .pooling import MaxPool2x2, fast_pool_eligible

__all__ = ["LayerInfo", "layer_specs", "build_model", "describe_layers", "count_parameters",
           "summary_text", "compare_text", "ACTIVATION_MODULES", "set_memory_format",
           "preferred_chunk_size", "CNN_CHUNK_SIZE", "FUSED_CNN_CHUNK_SIZE", "KerasDropout",
           "Dense", "DenseOverCHW", "FlattenHWC", "FlattenCHW"]


class KerasDropout(nn.Module):
    """Dropout as Keras/TensorFlow computes it: keep where uniform[0, 1) >= rate, scale by
    1 / (1 - rate).

    On the CPU the uniform numbers are integers from NumPy's SFC64 generator, seeded for every
    mask from torch's global generator (so `torch.manual_seed` and a checkpoint's saved torch RNG
    state still fix every mask). When rate x 256 is a whole number (0.5, 0.25, ...) one random
    byte per unit decides exactly (keep iff byte >= rate x 256); otherwise 32 bits do (keep
    probability within 2^-32 of 1 - rate, finer than a float32 uniform's 2^-24 steps). Why: the
    mask cost 30% of a raw/final epoch with `bernoulli_` and 14% of a hog/final epoch with
    torch's per-element generator; 64 random bits per draw from SFC64 cut that ~8x.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)

    def keep_mask(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Boolean mask, True where a unit is kept (probability 1 - rate)."""
        n = math.prod(shape)
        if torch.device(device).type != "cpu":
            return torch.rand(shape, device=device) >= self.rate
        seed = int(torch.randint(0, 2**63 - 1, ()))
        bits = np.random.Generator(np.random.SFC64(seed)).bit_generator
        byte_threshold = self.rate * 256
        if byte_threshold == int(byte_threshold):
            draws = bits.random_raw((n + 7) // 8).view(np.uint8)[:n]
            keep = draws >= np.uint8(byte_threshold)  # rate < 1, so the threshold is < 256
        else:
            draws = bits.random_raw((n + 1) // 2).view(np.uint32)[:n]
            keep = draws >= np.uint32(math.ceil(self.rate * 2**32))
        return torch.from_numpy(keep).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = self.keep_mask(x.shape, x.device)
        return x * (keep.to(x.dtype) * (1.0 / (1.0 - self.rate)))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "linear": nn.Identity,
}
assert set(ACTIVATION_MODULES) == set(ACTIVATIONS)  # the config's choices are buildable


class ImagesIn(nn.Module):
    """(B, H, W) images -> (B, 1, H, W), in channels-last memory when `channels_last`."""

    def __init__(self, channels_last: bool = False):
        super().__init__()
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class FlattenHWC(nn.Module):
    """Keras's Flatten of an (H, W, C) map: (B, C, H, W) -> (B, H * W * C).

    For a channels-last tensor the permute is a free view; for NCHW it costs one small copy.
    `map_shape` (H, W, C), when known, lets `_planar_flatten` reorder a following Dense.
    """

    def __init__(self, map_shape: tuple[int, int, int] | None = None):
        super().__init__()
        self.map_shape = map_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)


class FlattenCHW(nn.Flatten):
    """(B, C, H, W) -> (B, C * H * W) in C, H, W order: a free view of a planar map, for a
    `DenseOverCHW` that knows the order."""


def _planar_flatten(modules: list[nn.Module]) -> list[nn.Module]:
    """[ConvReluPool, Identity, Identity, FlattenHWC, Dense] -> the fused layer writes planar maps,
    the flatten is a free view and the Dense gathers its kernel's columns (same results)."""
    out = list(modules)
    for i in range(len(out) - 4):
        if (isinstance(out[i], ConvReluPool) and isinstance(out[i + 1], nn.Identity)
                and isinstance(out[i + 2], nn.Identity) and isinstance(out[i + 3], FlattenHWC)
                and out[i + 3].map_shape is not None and type(out[i + 4]) is Dense):
            dense = out[i + 4]
            over = DenseOverCHW(dense.in_features, dense.out_features, out[i + 3].map_shape)
            over.load_state_dict(dense.state_dict())
            out[i].planar_output = True
            out[i + 3], out[i + 4] = FlattenCHW(), over
    return out


class Conv2dNHWC(nn.Conv2d):
    """Conv2d that computes in channels-last memory (same parameters, same results).

    Why: with several input channels (9 -> 9 5x5, 9 -> 16 3x3 in the lab's CNNs) oneDNN's
    channels-last kernels take about half the time of NCHW ones, forward + backward; with one
    input channel NCHW is faster (benchmarks/RESULTS.md), so only layers with C_in > 1 use this.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def _init_kernel(weight: torch.Tensor, initializer: str) -> None:
    """Keras initialisers; PyTorch's fan computation matches Keras's for Dense and Conv."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    if initializer == "glorot_uniform":
        nn.init.xavier_uniform_(weight)
    elif initializer == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        nn.init.uniform_(weight, -limit, limit)
    else:  # Keras's normal initialisers draw from a normal truncated at 2 std, rescaled
        scale = 2.0 / (fan_in + fan_out) if initializer == "glorot_normal" else 2.0 / fan_in
        std = math.sqrt(scale) / 0.87962566103423978
        nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """Keras 'same': total padding so the output is ceil(size / s), the odd pixel at the end."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv(spec: dict, shape: tuple[int, ...]) -> list[nn.Module]:
    """Conv2D with Keras's padding; an asymmetric 'same' pad becomes a ZeroPad2d in front."""
    h, w, c = shape
    k, s = spec["kernel_size"], spec["strides"]
    pads = [(0, 0), (0, 0)] if spec["padding"] == "valid" else [
        _same_padding(h, k, s), _same_padding(w, k, s)]
    modules: list[nn.Module] = []
    conv_type = Conv2dNHWC if c > 1 else nn.Conv2d
    if all(a == b for a, b in pads):
        conv = conv_type(c, spec["filters"], k, s, padding=(pads[0][0], pads[1][0]))
    else:
        (top, bottom), (left, right) = pads
        modules.append(nn.ZeroPad2d((left, right, top, bottom)))
        conv = conv_type(c, spec["filters"], k, s)
    _init_kernel(conv.weight, spec["kernel_initializer"])
    nn.init.zeros_(conv.bias)
    return [*modules, conv]


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10,
                seed: int | None = None, channels_last: bool = False) -> nn.Sequential:
    """PyTorch module producing logits; kernels by the layer's (or model's) initialiser, biases
    zero. `channels_last=True` runs a CNN in NHWC memory (same parameters, same results)."""
    if seed is not None:
        torch.manual_seed(seed)
    specs = layer_specs(cfg, n_classes)
    shapes = output_shapes(cfg, input_shape, n_classes)
    shape = model_input_shape(cfg, input_shape)
    modules: list[nn.Module] = [ImagesIn(channels_last)] if cfg.kind == "cnn" else []
    for spec, out in zip(specs, shapes, strict=True):
        kind = spec["type"]
        if kind == "flatten":
            modules.append(FlattenHWC(tuple(shape)) if len(shape) == 3 else nn.Flatten())
        elif kind == "conv2d":
            modules.extend(_conv(spec, shape))
        elif kind == "maxpool2d":
            modules.append(nn.MaxPool2d(spec["pool_size"], spec["strides"]))
        elif kind == "dense":
            linear = Dense(shape[-1], spec["units"])
            _init_kernel(linear.weight, spec.get("kernel_initializer", cfg.kernel_initializer))
            nn.init.zeros_(linear.bias)
            modules.append(linear)
        elif kind == "dropout":
            modules.append(KerasDropout(spec["rate"]))
        if kind in ("conv2d", "dense") and spec["activation"] != "softmax":  # softmax: in loss
            modules.append(ACTIVATION_MODULES[spec["activation"]]())
        shape = out
    return nn.Sequential(*_planar_flatten(fuse_first_layers(_fast_pools(modules))))


def _fast_pools(modules: list[nn.Module]) -> list[nn.Module]:
    """2x2 max pools -> MaxPool2x2, absorbing a ReLU right before them (same results, see
    mnistlab.pooling). The absorbed ReLU's slot becomes an Identity, so module indices, and with
    them the weight names of saved runs, do not change."""
    out = list(modules)
    for i, module in enumerate(out):
        if fast_pool_eligible(module):
            relu = i > 0 and isinstance(out[i - 1], nn.ReLU)
            if relu:
                out[i - 1] = nn.Identity()
            out[i] = MaxPool2x2(relu=relu)
    return out


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """Switch a built CNN between channels-last and NCHW activations (parameters unchanged)."""
    for m in model.modules():
        if isinstance(m, ImagesIn):
            m.channels_last = channels_last
    return model


# Images per forward pass for a CNN on the CPU (see benchmarks/RESULTS.md): small enough for a
# chunk's activations to stay in cache, large enough to keep the convolution kernels busy.
CNN_CHUNK_SIZE = 256
# When the only convolution is the fused first layer (fashion/final), what stays in memory per
# image is its pooled map (14 x 14 x 9 floats, 7 KB), and the Dense products gain from more rows:
# 0.58 s against 0.70 s per epoch with chunks of 256 (epoch_vs_keras.py --variants chunk=256).
FUSED_CNN_CHUNK_SIZE = 2048


def preferred_chunk_size(cfg: ModelConfig, device: torch.device | str = "cpu",
                         model: nn.Module | None = None) -> int | None:
    """Chunk size for `train.fit`: CNNs on the CPU train in cache-sized chunks; MLPs (one large
    matrix product per layer) and GPUs are fastest with the whole batch at once. Given the built
    `model`, a CNN whose every convolution is a fused first layer takes larger chunks."""
    if cfg.kind != "cnn" or torch.device(device).type != "cpu":
        return None
    if model is not None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if convs and all(isinstance(m, ConvReluPool) for m in convs):
            return FUSED_CNN_CHUNK_SIZE
    return CNN_CHUNK_SIZE
