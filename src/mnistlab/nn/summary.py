"""Model summaries: each layer's output shape, weights, biases and multiply-adds, how the totals
are obtained, and models side by side. Computed from the config alone (no torch), so
`mnistlab summary` and the report stay fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mnistlab.config.geometry import (
    layer_non_trainable,
    layer_weights,
    model_input_shape,
    output_shapes,
    shape_text,
)
from mnistlab.config.layers import KERAS_NAMES, layer_specs
from mnistlab.config.sections import ModelConfig

__all__ = ["LayerInfo", "describe_layers", "count_parameters", "summary_text", "compare_text",
           "activations_text"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer as a Keras summary shows it, plus how its parameter count is obtained."""

    name: str
    kind: str  # Conv2D, MaxPool2D, Dense, Dropout, Flatten
    output_shape: tuple[int, ...]  # Keras order, without the batch dimension (H, W, C) or (F,)
    weights: int
    biases: int
    formula: str  # "Dense 784 -> 250: 784 x 250 = 196,000 weights + 250 biases = 196,250"
    mult_adds: int  # multiply-adds per image
    activation: str = ""  # what follows a Dense or Conv2D layer (softmax for the output)
    non_trainable: int = 0  # BatchNormalization's moving mean and variance

    @property
    def trainable(self) -> int:
        return self.weights + self.biases

    @property
    def params(self) -> int:
        """What Keras's summary shows: trainable and non-trainable together."""
        return self.weights + self.biases + self.non_trainable


def _fmt(n: int) -> str:
    return f"{n:,}"


def _info(name: str, spec: dict, shape: tuple[int, ...], out: tuple[int, ...]) -> LayerInfo:
    info = _arithmetic(name, spec, shape, out)
    return dataclasses.replace(info, activation=spec.get("activation", ""))


def _arithmetic(name: str, spec: dict, shape: tuple[int, ...], out: tuple[int, ...]
                ) -> LayerInfo:
    kind, keras = spec["type"], KERAS_NAMES[spec["type"]]
    w, b = layer_weights(spec, shape, out)
    if kind == "dense":
        n_in, n_out = shape[-1], out[0]
        formula = (f"Dense {n_in} -> {n_out}: {n_in} x {n_out} = {_fmt(w)} weights"
                   f" + {_fmt(b)} biases = {_fmt(w + b)}")
        return LayerInfo(name, keras, out, w, b, formula, w)
    if kind == "conv2d":
        k, c_in, c_out = spec["kernel_size"], shape[-1], out[-1]
        formula = (f"Conv2D {k}x{k}, {c_in} -> {c_out} channels: {k} x {k} x {c_in} x {c_out}"
                   f" = {_fmt(w)} weights + {_fmt(b)} biases"
                   + ("" if b else " (use_bias = false)") + f" = {_fmt(w + b)}")
        return LayerInfo(name, keras, out, w, b, formula, out[0] * out[1] * w)
    if kind == "batchnorm":
        c, n = out[-1], layer_non_trainable(spec, out)
        formula = (f"BatchNormalization over {c} channels: {c} gamma + {c} beta (trainable) + "
                   f"{c} moving mean + {c} moving variance (non-trainable) = {_fmt(w + b + n)}")
        return LayerInfo(name, keras, out, w, b, formula, 2 * math.prod(out), non_trainable=n)
    if kind in ("maxpool2d", "avgpool2d"):
        text = (f"{keras} {spec['pool_size']}x{spec['pool_size']} stride {spec['strides']}: "
                f"{shape_text(shape)} -> {shape_text(out)}: no parameters")
    elif kind == "globalavgpool2d":
        text = f"GlobalAveragePooling2D {shape_text(shape)} -> {out[0]:,}: no parameters"
    elif kind == "activation":
        text = f"Activation {spec['activation']}: no parameters"
    elif kind == "flatten":
        text = f"Flatten {shape_text(shape)} -> {out[0]:,}: no parameters"
    else:
        text = f"Dropout {spec['rate']}: no parameters"
    return LayerInfo(name, keras, out, 0, 0, text, 0)


def describe_layers(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10
                    ) -> list[LayerInfo]:
    """Output shape and parameter arithmetic of every layer, without building the model.

    `input_shape` is one sample's feature shape: (28, 28) raw images or (F,) features.
    """
    shape = model_input_shape(cfg, input_shape)
    infos: list[LayerInfo] = []
    counts: dict[str, int] = {}
    specs = layer_specs(cfg, n_classes)
    for spec, out in zip(specs, output_shapes(cfg, input_shape, n_classes), strict=True):
        kind = spec["type"]
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}_{counts[kind]}" if counts[kind] > 1 else kind
        infos.append(_info(name, spec, shape, out))
        shape = out
    return infos


def count_parameters(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10) -> int:
    return sum(i.params for i in describe_layers(cfg, input_shape, n_classes))


def summary_text(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10,
                 title: str = "") -> str:
    """A Keras-style summary followed by how each layer's count is obtained."""
    infos = describe_layers(cfg, input_shape, n_classes)
    in_shape = model_input_shape(cfg, input_shape)
    lines = [f"Model: {title}" if title else "Model", ""]
    names = [f"{i.name} ({i.kind})" for i in infos]
    width = max([28, *(len(n) + 2 for n in names)])  # GlobalAveragePooling2D needs more
    rule = "-" * (width + 64)
    lines.append(f"{'Layer (type)':<{width}}{'Output shape':<18}{'Weights':>12}{'Biases':>10}"
                 f"{'Params':>12}  Activation")
    lines.append(rule)
    lines.append(f"{'input (Input)':<{width}}{shape_text(in_shape):<18}{0:>12}{0:>10}{0:>12}")
    for i, name in zip(infos, names, strict=True):
        if i.kind == "Flatten" and len(in_shape) == 1:
            continue  # features are already a vector (HOG): flattening changes nothing
        lines.append(f"{name:<{width}}{shape_text(i.output_shape):<18}"
                     f"{_fmt(i.weights):>12}{_fmt(i.biases):>10}{_fmt(i.params):>12}"
                     + (f"  {i.activation}" if i.activation else ""))
    lines.append(rule)
    weights, biases = sum(i.weights for i in infos), sum(i.biases for i in infos)
    frozen = sum(i.non_trainable for i in infos)
    lines.append(f"Total params: {_fmt(weights + biases + frozen)} ({_fmt(weights)} weights + "
                 f"{_fmt(biases)} biases" + (f" + {_fmt(frozen)} non-trainable)" if frozen
                                             else ")"))
    if frozen:
        lines.append(f"Trainable params: {_fmt(weights + biases)}")
        lines.append(f"Non-trainable params: {_fmt(frozen)}")
    values = (f"{_fmt(in_shape[0])} values" if len(in_shape) == 1 else
              f"{shape_text(in_shape)} = {_fmt(math.prod(in_shape))} values")
    lines.append(f"Inputs: {values}; "
                 f"outputs: {n_classes} class probabilities (softmax)")
    lines.append(f"Multiply-adds per image: {_fmt(sum(i.mult_adds for i in infos))}")
    lines.append("")
    lines.append("How each count is obtained:")
    for i in infos:
        if i.params:
            lines.append(f"  {i.name}: {i.formula}")
    terms = " + ".join(_fmt(i.params) for i in infos if i.params)
    lines.append(f"  total: {terms} = {_fmt(weights + biases + frozen)}")
    return "\n".join(lines) + "\n"


def activations_text(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10) -> str:
    """Each layer with weights and its activation, e.g. "conv9 relu, conv9 relu, dense25
    sigmoid": a CNN's layers may each have their own, which one model-wide word would hide."""
    parts = []
    for i in describe_layers(cfg, input_shape, n_classes)[:-1]:  # the softmax output is implied
        if i.kind == "Conv2D":
            parts.append(f"conv{i.output_shape[-1]} {i.activation}")
        elif i.kind == "Dense":
            parts.append(f"dense{i.output_shape[0]} {i.activation}")
    return ", ".join(parts)


def compare_text(models: list[tuple[str, ModelConfig, tuple[int, ...], int]]) -> str:
    """Two or more models side by side: layers, weights, biases, parameters, multiply-adds.

    `models` holds (name, model config, input shape, n_classes) for each model.
    """
    rows = {"layers with parameters": [], "weights": [], "biases": [], "total parameters": [],
            "multiply-adds per image": [], "inputs": []}
    for _, cfg, shape, n_classes in models:
        infos = describe_layers(cfg, shape, n_classes)
        rows["layers with parameters"].append(str(sum(1 for i in infos if i.params)))
        rows["weights"].append(_fmt(sum(i.weights for i in infos)))
        rows["biases"].append(_fmt(sum(i.biases for i in infos)))
        rows["total parameters"].append(_fmt(sum(i.params for i in infos)))
        rows["multiply-adds per image"].append(_fmt(sum(i.mult_adds for i in infos)))
        rows["inputs"].append(shape_text(model_input_shape(cfg, shape)))
    names = [m[0] for m in models]
    width = max(14, *(len(n) + 2 for n in names))
    lines = [f"{'':<26}" + "".join(f"{n:>{width}}" for n in names), "-" * (26 + width * len(names))]
    for label, values in rows.items():
        lines.append(f"{label:<26}" + "".join(f"{v:>{width}}" for v in values))
    if len(models) == 2:
        params = [count_parameters(c, s, n) for _, c, s, n in models]
        macs = [sum(i.mult_adds for i in describe_layers(c, s, n)) for _, c, s, n in models]
        lines.append("")
        lines.append(f"{names[1]} has {params[1] / params[0]:.2f}x the parameters and "
                     f"{macs[1] / macs[0]:.2f}x the multiply-adds per image of {names[0]} "
                     f"({params[1] - params[0]:+,} parameters).")
    return "\n".join(lines) + "\n"
