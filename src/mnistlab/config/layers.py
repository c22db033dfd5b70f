"""Layer tables: what each layer type of `model.layers` accepts, and the expansion of a model
config (an MLP's `hidden` or a CNN's `layers`) into one complete list of layer dicts.

Both kinds of model become the same list, ending with the Dense(n_classes) softmax layer, so
shape arithmetic, parameter counts, summaries and model building are written once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mnistlab.config.rules import Rule, check_value
from mnistlab.config.sections import ACTIVATIONS, INITIALIZERS, ModelConfig
from mnistlab.errors import ConfigError, did_you_mean

__all__ = ["LAYER_RULES", "LAYER_DEFAULTS", "KERAS_NAMES", "SAMPLE_MIXING_LAYERS", "check_layers",
           "layer_specs", "mixing_layers"]

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
        "use_bias": Rule("bool"),
    },
    "maxpool2d": {
        "pool_size": Rule("int", 1, 28),
        "strides": Rule("int", 1, 28),
        "padding": Rule("choice", choices=("valid",)),
    },
    "avgpool2d": {
        "pool_size": Rule("int", 1, 28),
        "strides": Rule("int", 1, 28),
        "padding": Rule("choice", choices=("same", "valid")),
    },
    "globalavgpool2d": {},
    "batchnorm": {
        "momentum": Rule("float", 0.0, 1.0, high_open=True),
        "epsilon": Rule("float", 0.0, 1.0, low_open=True),
    },
    "activation": {"activation": Rule("choice", choices=ACTIVATIONS)},
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
    "dense": ("units",), "avgpool2d": (), "globalavgpool2d": (), "batchnorm": (),
    "activation": ("activation",),
}
LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv2d": {"strides": 1, "padding": "valid", "use_bias": True},  # Keras's defaults
    "maxpool2d": {"pool_size": 2, "padding": "valid"},  # strides default to pool_size
    "avgpool2d": {"pool_size": 2, "padding": "valid"},
    "batchnorm": {"momentum": 0.99, "epsilon": 1e-3},  # Keras BatchNormalization's defaults
}
KERAS_NAMES = {"conv2d": "Conv2D", "maxpool2d": "MaxPool2D", "dropout": "Dropout",
                "flatten": "Flatten", "dense": "Dense", "avgpool2d": "AveragePooling2D",
                "globalavgpool2d": "GlobalAveragePooling2D", "batchnorm": "BatchNormalization",
                "activation": "Activation"}


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
            raise ConfigError(f"{source}: {where}.type must be one of "
                              f"{', '.join(repr(k) for k in LAYER_RULES)}; got {kind!r}"
                              + did_you_mean(kind, LAYER_RULES))
        rules = LAYER_RULES[kind]
        clean: dict[str, Any] = {"type": kind}
        for key, v in layer.items():
            if key == "type":
                continue
            if key not in rules:
                allowed = ", ".join(["type", *rules])
                raise ConfigError(f"{source}: unknown key {where}.{key} for a {kind} layer; "
                                  f"allowed: {allowed}" + did_you_mean(key, rules, cutoff=0.5))
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
            if kind in ("maxpool2d", "avgpool2d"):
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


# Layer types whose output for one sample depends on the other samples of the batch (batch
# normalisation in training mode). Splitting a batch into chunks whose gradients are summed
# (`training.chunk_size`) is exact only without them; this set is the one place that says so.
SAMPLE_MIXING_LAYERS: frozenset[str] = frozenset({"batchnorm"})


def mixing_layers(specs: Iterable[dict]) -> list[str]:
    """Types of the layers in `specs` that mix samples within a batch (empty: chunking is exact)."""
    return [s["type"] for s in specs if s["type"] in SAMPLE_MIXING_LAYERS]
