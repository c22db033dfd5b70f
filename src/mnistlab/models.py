"""Models as layer lists: build them in PyTorch with Keras's initialisation, and count them.

An MLP config (`hidden`, `activation`, `dropout`) is expanded into the same layer list a CNN
uses, so building, parameter arithmetic and summaries are written once. The network outputs
logits; softmax is applied in the loss (cross-entropy on logits equals Keras's categorical
cross-entropy on a softmax output) and when predicting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ACTIVATIONS, ModelConfig

__all__ = ["LayerInfo", "layer_specs", "build_model", "describe_layers", "count_parameters",
           "ACTIVATION_MODULES"]

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


@dataclass(frozen=True)
class LayerInfo:
    """One layer as a Keras summary shows it, plus how its parameter count is obtained."""

    name: str
    kind: str  # Dense, Dropout, Flatten, ...
    output_shape: tuple[int, ...]  # Keras order, without the batch dimension (H, W, C) or (F,)
    weights: int
    biases: int
    formula: str  # "Dense 784 -> 250: 784 x 250 = 196,000 weights + 250 biases = 196,250"
    mult_adds: int  # multiply-adds per image

    @property
    def params(self) -> int:
        return self.weights + self.biases


def layer_specs(cfg: ModelConfig, n_classes: int = 10) -> list[dict]:
    """The model as a list of layer dicts, ending with the Dense(n_classes) softmax layer."""
    specs: list[dict] = [{"type": "flatten"}]
    for width in cfg.hidden:
        specs.append({"type": "dense", "units": width, "activation": cfg.activation})
        if cfg.dropout > 0:
            specs.append({"type": "dropout", "rate": cfg.dropout})
    specs.append({"type": "dense", "units": n_classes, "activation": "softmax"})
    return specs


def _fmt(n: int) -> str:
    return f"{n:,}"


def describe_layers(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10
                    ) -> list[LayerInfo]:
    """Output shape and parameter arithmetic of every layer, without building the model.

    `input_shape` is one sample's feature shape: (28, 28) raw images or (F,) features.
    """
    shape = tuple(input_shape)
    infos: list[LayerInfo] = []
    counts: dict[str, int] = {}
    for spec in layer_specs(cfg, n_classes):
        kind = spec["type"]
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}_{counts[kind]}" if counts[kind] > 1 else kind
        if kind == "flatten":
            out = (math.prod(shape),)
            infos.append(LayerInfo(name, "Flatten", out, 0, 0, f"Flatten {_shape(shape)} -> "
                                   f"{out[0]:,}: no parameters", 0))
        elif kind == "dense":
            n_in, n_out = shape[-1], spec["units"]
            w, b = n_in * n_out, n_out
            formula = (f"Dense {n_in:,} -> {n_out:,}: {n_in:,} x {n_out:,} = {_fmt(w)} weights"
                       f" + {_fmt(b)} biases = {_fmt(w + b)}")
            out = (n_out,)
            infos.append(LayerInfo(name, "Dense", out, w, b, formula, w))
        elif kind == "dropout":
            out = shape
            infos.append(LayerInfo(name, "Dropout", out, 0, 0,
                                   f"Dropout {spec['rate']}: no parameters", 0))
        else:
            raise ValueError(f"unknown layer type {kind!r}")
        shape = out
    return infos


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def count_parameters(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10) -> int:
    return sum(i.params for i in describe_layers(cfg, input_shape, n_classes))


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


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10,
                seed: int | None = None) -> nn.Sequential:
    """PyTorch module producing logits; kernels by `cfg.kernel_initializer`, biases zero."""
    if seed is not None:
        torch.manual_seed(seed)
    shape = tuple(input_shape)
    modules: list[nn.Module] = []
    for spec in layer_specs(cfg, n_classes):
        kind = spec["type"]
        if kind == "flatten":
            modules.append(nn.Flatten())
            shape = (math.prod(shape),)
        elif kind == "dense":
            linear = nn.Linear(shape[-1], spec["units"])
            _init_kernel(linear.weight, cfg.kernel_initializer)
            nn.init.zeros_(linear.bias)
            modules.append(linear)
            if spec["activation"] != "softmax":  # the softmax lives in the loss
                modules.append(ACTIVATION_MODULES[spec["activation"]]())
            shape = (spec["units"],)
        elif kind == "dropout":
            modules.append(nn.Dropout(spec["rate"]))
    return nn.Sequential(*modules)


def summary_text(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10,
                 title: str = "") -> str:
    """A Keras-style summary followed by how each layer's count is obtained."""
    infos = describe_layers(cfg, input_shape, n_classes)
    lines = [f"Model: {title}" if title else "Model", ""]
    lines.append(f"{'Layer (type)':<28}{'Output shape':<18}{'Weights':>12}{'Biases':>10}"
                 f"{'Params':>12}")
    lines.append("-" * 80)
    lines.append(f"{'input (Input)':<28}{_shape(tuple(input_shape)):<18}{0:>12}{0:>10}{0:>12}")
    for i in infos:
        lines.append(f"{i.name + ' (' + i.kind + ')':<28}{_shape(i.output_shape):<18}"
                     f"{_fmt(i.weights):>12}{_fmt(i.biases):>10}{_fmt(i.params):>12}")
    lines.append("-" * 80)
    weights, biases = sum(i.weights for i in infos), sum(i.biases for i in infos)
    lines.append(f"Total params: {_fmt(weights + biases)} ({_fmt(weights)} weights + "
                 f"{_fmt(biases)} biases)")
    lines.append(f"Inputs: {_shape(tuple(input_shape))} = {_fmt(math.prod(input_shape))} values; "
                 f"outputs: {n_classes} class probabilities (softmax)")
    lines.append(f"Multiply-adds per image: {_fmt(sum(i.mult_adds for i in infos))}")
    lines.append("")
    lines.append("How each count is obtained:")
    for i in infos:
        if i.params:
            lines.append(f"  {i.name}: {i.formula}")
    terms = " + ".join(_fmt(i.params) for i in infos if i.params)
    lines.append(f"  total: {terms} = {_fmt(weights + biases)}")
    return "\n".join(lines) + "\n"
