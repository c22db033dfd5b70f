"""Layer lists: per-layer key rules, Keras output shapes, parameter arithmetic and summaries.

An MLP config and a CNN's `model.layers` both become one list of layer dicts ending with the
Dense(n_classes) softmax layer, so shapes, counts and summaries are written once. This module
does not import torch: config validation and `mnistlab summary` stay fast.

Shapes follow Keras (channels last, no batch dimension): Conv2D 'same' gives ceil(H / s),
'valid' gives ceil((H - k + 1) / s); MaxPool2D 'valid' gives floor((H - p) / s) + 1, so a 7x7
map pooled 2x2 becomes 3x3.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from .config import ACTIVATIONS, INITIALIZERS, ModelConfig, Rule, check_value
from .errors import ConfigError

__all__ = ["LAYER_RULES", "LayerInfo", "check_layers", "check_model_layers", "layer_specs",
           "model_input_shape", "output_shapes",
           "check_shapes", "describe_layers", "count_parameters", "summary_text", "compare_text"]

MAX_LAYERS = 64

# What each layer type accepts; keys left out take LAYER_DEFAULTS, then the model's defaults.
LAYER_RULES: dict[str, dict[str, Rule]] = {
    "conv2d": {
        "filters": Rule("int", 1, 4096),
        "kernel_size": Rule("int", 1, 28),
        "strides": Rule("int", 1, 28),
        "padding": Rule("choice", choices=("same", "valid")),
        "activation": Rule("choice", choices=ACTIVATIONS),
        "kernel_initializer": Rule("choice", choices=INITIALIZERS),
    },
    "maxpool2d": {
        "pool_size": Rule("int", 1, 28),
        "strides": Rule("int", 1, 28),
        "padding": Rule("choice", choices=("valid",)),
    },
    "dropout": {"rate": Rule("float", 0.0, 1.0, high_open=True)},
    "flatten": {},
    "dense": {
        "units": Rule("int", 1, 65536),
        "activation": Rule("choice", choices=ACTIVATIONS),
        "kernel_initializer": Rule("choice", choices=INITIALIZERS),
    },
}
LAYER_REQUIRED: dict[str, tuple[str, ...]] = {
    "conv2d": ("filters", "kernel_size"), "maxpool2d": (), "dropout": ("rate",), "flatten": (),
    "dense": ("units",),
}
LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv2d": {"strides": 1, "padding": "valid"},  # Keras's defaults
    "maxpool2d": {"pool_size": 2, "padding": "valid"},  # strides default to pool_size
}
_KERAS_NAMES = {"conv2d": "Conv2D", "maxpool2d": "MaxPool2D", "dropout": "Dropout",
                "flatten": "Flatten", "dense": "Dense"}


def check_layers(source: str, path: str, value: Any) -> tuple[dict[str, Any], ...]:
    """Validate the keys and values of `model.layers` (shapes are checked by `check_shapes`)."""
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_LAYERS:
        raise ConfigError(f"{source}: {path} must be a list of 1 to {MAX_LAYERS} layer tables "
                          f"like {{type = \"dense\", units = 25}}; got {value!r}")
    out = []
    for i, layer in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(layer, dict):
            raise ConfigError(f"{source}: {where} must be a table with a 'type' key; "
                              f"got {layer!r}")
        kind = layer.get("type")
        if kind not in LAYER_RULES:
            close = difflib.get_close_matches(str(kind), LAYER_RULES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: {where}.type must be one of "
                              f"{', '.join(repr(k) for k in LAYER_RULES)}; got {kind!r}{hint}")
        rules = LAYER_RULES[kind]
        clean: dict[str, Any] = {"type": kind}
        for key, v in layer.items():
            if key == "type":
                continue
            if key not in rules:
                allowed = ", ".join(["type", *rules])
                close = difflib.get_close_matches(key, list(rules), n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{source}: unknown key {where}.{key} for a {kind} layer; "
                                  f"allowed: {allowed}{hint}")
            clean[key] = check_value(source, f"{where}.{key}", rules[key], v)
        for key in LAYER_REQUIRED[kind]:
            if key not in clean:
                raise ConfigError(f"{source}: {where} ({kind}) needs {key!r}: "
                                  f"{rules[key].describe()}")
        out.append(clean)
    return tuple(out)


def layer_specs(cfg: ModelConfig, n_classes: int = 10) -> list[dict]:
    """The model as a list of complete layer dicts, ending with the Dense(n_classes) softmax."""
    if cfg.kind == "cnn":
        specs = []
        for layer in cfg.layers:
            kind = layer["type"]
            spec = {"type": kind, **LAYER_DEFAULTS.get(kind, {}), **layer}
            if kind in ("conv2d", "dense"):
                spec.setdefault("activation", cfg.activation)
                spec.setdefault("kernel_initializer", cfg.kernel_initializer)
            if kind == "maxpool2d":
                spec.setdefault("strides", spec["pool_size"])
            specs.append(spec)
        specs.append({"type": "dense", "units": n_classes, "activation": "softmax",
                      "kernel_initializer": cfg.kernel_initializer})
        return specs
    specs = [{"type": "flatten"}]
    for width in cfg.hidden:
        specs.append({"type": "dense", "units": width, "activation": cfg.activation})
        if cfg.dropout > 0:
            specs.append({"type": "dropout", "rate": cfg.dropout})
    specs.append({"type": "dense", "units": n_classes, "activation": "softmax"})
    return specs


def model_input_shape(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A CNN sees (H, W) images as (H, W, 1); an MLP sees its features as given."""
    shape = tuple(input_shape)
    return (*shape, 1) if cfg.kind == "cnn" and len(shape) == 2 else shape


def _conv_out(size: int, k: int, s: int, padding: str) -> int:
    return math.ceil(size / s) if padding == "same" else math.ceil((size - k + 1) / s)


def _next_shape(spec: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    """One layer's Keras output shape; ValueError says why the layer cannot take `shape`."""
    kind = spec["type"]
    if kind in ("conv2d", "maxpool2d") and len(shape) != 3:
        raise ValueError(f"needs an HxWxC input but gets {_shape(shape)}; put it before the "
                         "flatten layer")
    if kind == "dense" and len(shape) != 1:
        raise ValueError(f"must come after a flatten layer (its input is {_shape(shape)})")
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "dense":
        return (spec["units"],)
    if kind == "dropout":
        return shape
    h, w, c = shape
    if kind == "conv2d":
        k, s, pad = spec["kernel_size"], spec["strides"], spec["padding"]
        out = (_conv_out(h, k, s, pad), _conv_out(w, k, s, pad), spec["filters"])
        what = f"{k}x{k} '{pad}' convolution"
    else:
        p, s = spec["pool_size"], spec["strides"]
        out = ((h - p) // s + 1 if h >= p else 0, (w - p) // s + 1 if w >= p else 0, c)
        what = f"{p}x{p} 'valid' pooling"
    if min(out) <= 0:
        raise ValueError(f"would produce an empty output: {what} of {_shape(shape)} -> "
                         f"{'x'.join(str(max(d, 0)) for d in out)}")
    return out


def output_shapes(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10
                  ) -> list[tuple[int, ...]]:
    """Keras output shape of every layer (ValueError naming the layer when one cannot work)."""
    shape, shapes = model_input_shape(cfg, input_shape), []
    specs = layer_specs(cfg, n_classes)
    for i, spec in enumerate(specs):
        try:
            shape = _next_shape(spec, shape)
        except ValueError as exc:
            if cfg.kind == "cnn" and i < len(specs) - 1:
                raise ValueError(f"model.layers[{i}] ({spec['type']}) {exc}") from None
            raise ValueError(f"the output Dense({n_classes}) layer appended after "
                             f"model.layers {exc}") from None
        shapes.append(shape)
    return shapes


def check_shapes(cfg: ModelConfig, input_shape: tuple[int, ...], source: str,
                 n_classes: int = 10) -> None:
    """Reject a layer stack that cannot be built, naming the layer index and the problem."""
    try:
        output_shapes(cfg, input_shape, n_classes)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def check_model_layers(exp, source: str) -> None:
    """Cross-field rules of a CNN: layers only with kind 'cnn', raw images, a buildable stack."""
    model = exp.model
    if model.kind != "cnn":
        raise ConfigError(f"{source}: model.layers is used only when model.kind = 'cnn'; got "
                          f"model.kind = {model.kind!r} (an MLP takes model.hidden)")
    if model.layers is None:
        raise ConfigError(f"{source}: model.kind = 'cnn' needs model.layers, e.g. [{{type = "
                          "\"conv2d\", filters = 9, kernel_size = 3, padding = \"same\"}, "
                          "{type = \"maxpool2d\"}, {type = \"flatten\"}]")
    if exp.features.kind != "raw":
        raise ConfigError(f"{source}: model.kind = 'cnn' needs images, features.kind = 'raw'; "
                          f"got features.kind = {exp.features.kind!r}")
    from .datasets import get_dataset
    from .features import IMAGE_SHAPE

    check_shapes(model, IMAGE_SHAPE, source, len(get_dataset(exp.data.dataset).class_names))


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

    @property
    def params(self) -> int:
        return self.weights + self.biases


def _fmt(n: int) -> str:
    return f"{n:,}"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _info(name: str, spec: dict, shape: tuple[int, ...], out: tuple[int, ...]) -> LayerInfo:
    kind, keras = spec["type"], _KERAS_NAMES[spec["type"]]
    if kind == "dense":
        n_in, n_out = shape[-1], out[0]
        w, b = n_in * n_out, n_out
        formula = (f"Dense {n_in} -> {n_out}: {n_in} x {n_out} = {_fmt(w)} weights"
                   f" + {_fmt(b)} biases = {_fmt(w + b)}")
        return LayerInfo(name, keras, out, w, b, formula, w)
    if kind == "conv2d":
        k, c_in, c_out = spec["kernel_size"], shape[-1], out[-1]
        w, b = k * k * c_in * c_out, c_out
        formula = (f"Conv2D {k}x{k}, {c_in} -> {c_out} channels: {k} x {k} x {c_in} x {c_out}"
                   f" = {_fmt(w)} weights + {_fmt(b)} biases = {_fmt(w + b)}")
        return LayerInfo(name, keras, out, w, b, formula, out[0] * out[1] * w)
    if kind == "maxpool2d":
        text = (f"MaxPool2D {spec['pool_size']}x{spec['pool_size']} stride {spec['strides']}: "
                f"{_shape(shape)} -> {_shape(out)}: no parameters")
    elif kind == "flatten":
        text = f"Flatten {_shape(shape)} -> {out[0]:,}: no parameters"
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
    lines.append(f"{'Layer (type)':<28}{'Output shape':<18}{'Weights':>12}{'Biases':>10}"
                 f"{'Params':>12}")
    lines.append("-" * 80)
    lines.append(f"{'input (Input)':<28}{_shape(in_shape):<18}{0:>12}{0:>10}{0:>12}")
    for i in infos:
        lines.append(f"{i.name + ' (' + i.kind + ')':<28}{_shape(i.output_shape):<18}"
                     f"{_fmt(i.weights):>12}{_fmt(i.biases):>10}{_fmt(i.params):>12}")
    lines.append("-" * 80)
    weights, biases = sum(i.weights for i in infos), sum(i.biases for i in infos)
    lines.append(f"Total params: {_fmt(weights + biases)} ({_fmt(weights)} weights + "
                 f"{_fmt(biases)} biases)")
    lines.append(f"Inputs: {_shape(in_shape)} = {_fmt(math.prod(in_shape))} values; "
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
        rows["inputs"].append(_shape(model_input_shape(cfg, shape)))
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
