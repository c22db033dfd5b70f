"""Models as stock PyTorch modules, built from the config's layer list with Keras's
initialisation.

An MLP config (`hidden`, `activation`, `dropout`) and a CNN's `model.layers` both expand into one
layer list (`mnistlab.config.layers.layer_specs`), so building, shapes and summaries are written
once. The network outputs logits; softmax is applied in the loss (cross-entropy on logits equals
Keras's categorical cross-entropy on a softmax output) and when predicting.

A CNN takes (B, H, W) images and adds the channel dimension; its Flatten reads the map in Keras's
H, W, C order, so Dense weights line up with a Keras model's. Only `torch.nn` modules and those
of `mnistlab.nn.modules` and `mnistlab.nn.keras_layers` appear here: this is the reference that
`mnistlab.fast` rewrites for speed, with the same parameter names, so weights load either way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mnistlab.config.geometry import model_input_shape, output_shapes
from mnistlab.config.layers import layer_specs
from mnistlab.config.sections import ModelConfig
from mnistlab.nn.keras_layers import AvgPoolSame, GlobalAvgPool, KerasBatchNorm
from mnistlab.nn.modules import ACTIVATION_MODULES, FlattenHWC, ImagesIn, KerasDropout

__all__ = ["build_model"]


def _init_kernel(weight: torch.Tensor, initializer: str) -> None:
    """Keras initialisers, with Keras's fans: a Dense kernel (out, in) has fan_in = in; a Conv
    kernel (out, in, kh, kw) has fan_in = in * kh * kw and fan_out = out * kh * kw."""
    receptive = math.prod(weight.shape[2:])
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
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
    bias = spec.get("use_bias", True)
    if all(a == b for a, b in pads):
        conv = nn.Conv2d(c, spec["filters"], k, s, padding=(pads[0][0], pads[1][0]), bias=bias)
    else:
        (top, bottom), (left, right) = pads
        modules.append(nn.ZeroPad2d((left, right, top, bottom)))
        conv = nn.Conv2d(c, spec["filters"], k, s, bias=bias)
    _init_kernel(conv.weight, spec["kernel_initializer"])
    if bias:
        nn.init.zeros_(conv.bias)
    return [*modules, conv]


def _other(spec: dict, shape: tuple[int, ...]) -> list[nn.Module]:
    """Modules of the layers beyond the lab's: pools, batch normalisation (an activation
    layer is only its activation, appended by the caller)."""
    kind = spec["type"]
    if kind == "batchnorm":
        return [KerasBatchNorm(shape[-1], spec["momentum"], spec["epsilon"])]
    if kind == "globalavgpool2d":
        return [GlobalAvgPool()]
    if kind == "avgpool2d":
        p, s = spec["pool_size"], spec["strides"]
        if spec["padding"] == "valid":
            return [nn.AvgPool2d(p, s)]
        (top, bottom), (left, right) = _same_padding(shape[0], p, s), _same_padding(shape[1], p, s)
        return [AvgPoolSame(p, s, (left, right, top, bottom))]
    return []


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10,
                seed: int | None = None) -> nn.Sequential:
    """PyTorch module producing logits; kernels by the layer's (or model's) initialiser, biases
    zero. `seed` seeds torch's global generator first, so the same seed gives the same weights."""
    if seed is not None:
        torch.manual_seed(seed)
    specs = layer_specs(cfg, n_classes)
    shapes = output_shapes(cfg, input_shape, n_classes)
    shape = model_input_shape(cfg, input_shape)
    modules: list[nn.Module] = [ImagesIn()] if cfg.kind == "cnn" else []
    for spec, out in zip(specs, shapes, strict=True):
        kind = spec["type"]
        if kind == "flatten":
            modules.append(FlattenHWC(tuple(shape)) if len(shape) == 3 else nn.Flatten())
        elif kind == "conv2d":
            modules.extend(_conv(spec, shape))
        elif kind == "maxpool2d":
            modules.append(nn.MaxPool2d(spec["pool_size"], spec["strides"]))
        elif kind == "dense":
            linear = nn.Linear(shape[-1], spec["units"])
            _init_kernel(linear.weight, spec.get("kernel_initializer", cfg.kernel_initializer))
            nn.init.zeros_(linear.bias)
            modules.append(linear)
        elif kind == "dropout":
            modules.append(KerasDropout(spec["rate"]))
        else:
            modules.extend(_other(spec, shape))
        has_activation = kind in ("conv2d", "dense", "activation")
        if has_activation and spec["activation"] != "softmax":  # softmax: in the loss
            modules.append(ACTIVATION_MODULES[spec["activation"]]())
        shape = out
    return nn.Sequential(*modules)
