"""Experiment configuration: typed frozen sections, one rule table, TOML and `--set` overrides.

Config flows one way: preset -> TOML file -> `--set` -> validate -> freeze. Every rule lives in
`RULES`, so every invalid value gets the same message shape before any data is read:
`experiments/x.toml: model.hidden[1] must be an int in [1, 65536]; got 0`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .datasets import DATASETS
from .errors import ConfigError

__all__ = [
    "DataConfig",
    "FeaturesConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TrainingConfig",
    "OutputConfig",
    "Experiment",
    "RULES",
    "ACTIVATIONS",
    "load_experiment",
    "experiment_from_dict",
    "apply_overrides",
    "parse_override",
    "config_digest",
]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "softplus", "linear")
INITIALIZERS = ("glorot_uniform", "he_uniform", "glorot_normal", "he_normal")
BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # registry name: mnist | fashion-mnist
    validation: str | float = 0.1  # "test" (the lab's habit) or a fraction held out of train
    train_samples: int = 0  # use only the first N training images (0 = all); for quick runs
    test_samples: int = 0  # use only the first N test images (0 = all)


@dataclass(frozen=True)
class FeaturesConfig:
    kind: str = "raw"  # raw pixels in [0, 1], or hog (scikit-image semantics)
    orientations: int = 8  # HOG: orientation bins over 0-180 degrees
    pixels_per_cell: int = 4  # HOG: square cell side in pixels
    cells_per_block: int = 1  # HOG: square block side in cells
    block_norm: str = "L2-Hys"  # HOG: L1 | L1-sqrt | L2 | L2-Hys
    transform_sqrt: bool = False  # HOG: power-law compression before gradients


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"  # mlp (from `hidden`) | cnn (from `layers`)
    hidden: tuple[int, ...] = (300,)  # MLP hidden layer widths, input to output
    activation: str = "relu"  # hidden-layer activation
    dropout: float = 0.0  # dropout rate after each hidden layer (0 = none), Keras semantics
    kernel_initializer: str = "glorot_uniform"  # Keras default; biases always start at zero
    layers: tuple[dict, ...] | None = None  # CNN layer tables (see mnistlab.layers.LAYER_RULES)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "rmsprop"  # the lab's optimiser, with Keras semantics
    learning_rate: float = 0.001  # Keras default
    rho: float = 0.9  # decay of the squared-gradient average
    momentum: float = 0.0  # 0 = plain RMSprop
    epsilon: float = 1e-7  # added inside the square root, as Keras does
    centered: bool = False  # subtract the squared mean gradient in the denominator
    clipvalue: float | None = None  # clip each gradient element to [-v, v]
    clipnorm: float | None = None  # clip each gradient tensor to this L2 norm
    global_clipnorm: float | None = None  # clip all gradients together to this L2 norm


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # samples per optimiser step
    seed: int = 0  # seeds init, shuffling, dropout and the validation split
    shuffle: bool = True  # reshuffle the training set every epoch, as Keras fit does
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for PyTorch (0 = all cores)


@dataclass(frozen=True)
class OutputConfig:
    name: str = ""  # run name (slug); defaults to the preset or file name
    plots: bool = True  # write loss/accuracy/confusion PNGs into the run


@dataclass(frozen=True)
class Experiment:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    description: str = ""  # one line shown by `mnistlab presets`

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists, None dropped) for TOML/JSON."""
        return _plain(dataclasses.asdict(self))


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "features": FeaturesConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "training": TrainingConfig,
    "output": OutputConfig,
}
TOP_LEVEL_KEYS = ("description", "base")


@dataclass(frozen=True)
class Rule:
    """What one field accepts; `describe()` is the text after 'must be'."""

    kind: str  # int | float | bool | str | choice | int_list | validation | layers
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    max_items: int = 16

    def describe(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        rng = f"{lo}{_num(self.low)}, {_num(self.high)}{hi}"
        text = {
            "int": f"an int in {rng}",
            "float": f"a number in {rng}",
            "bool": "true or false",
            "str": "a string",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "int_list": f"a list of 1 to {self.max_items} ints in {rng}",
            "layers": "a list of layer tables",
            "validation": f"\"test\" or a fraction in {rng}",
        }[self.kind]
        return text + (" (or left out)" if self.optional else "")


def _num(x: float | None) -> str:
    return "inf" if x is None else (str(int(x)) if float(x).is_integer() else repr(x))


RULES: dict[str, Rule] = {
    "data.dataset": Rule("choice", choices=tuple(DATASETS)),
    "data.validation": Rule("validation", low=0.0, high=1.0, low_open=True, high_open=True),
    "data.train_samples": Rule("int", 0, 10_000_000),
    "data.test_samples": Rule("int", 0, 10_000_000),
    "features.kind": Rule("choice", choices=("raw", "hog")),
    "features.orientations": Rule("int", 1, 360),
    "features.pixels_per_cell": Rule("int", 1, 28),
    "features.cells_per_block": Rule("int", 1, 28),
    "features.block_norm": Rule("choice", choices=BLOCK_NORMS),
    "features.transform_sqrt": Rule("bool"),
    "model.kind": Rule("choice", choices=("mlp", "cnn")),
    "model.hidden": Rule("int_list", 1, 65536),
    "model.activation": Rule("choice", choices=ACTIVATIONS),
    "model.dropout": Rule("float", 0.0, 1.0, high_open=True),
    "model.kernel_initializer": Rule("choice", choices=INITIALIZERS),
    "model.layers": Rule("layers", optional=True),
    "optimizer.name": Rule("choice", choices=("rmsprop",)),
    "optimizer.learning_rate": Rule("float", 0.0, 10.0, low_open=True),
    "optimizer.rho": Rule("float", 0.0, 1.0, high_open=True),
    "optimizer.momentum": Rule("float", 0.0, 1.0, high_open=True),
    "optimizer.epsilon": Rule("float", 0.0, 1.0, low_open=True),
    "optimizer.centered": Rule("bool"),
    "optimizer.clipvalue": Rule("float", 0.0, None, low_open=True, optional=True),
    "optimizer.clipnorm": Rule("float", 0.0, None, low_open=True, optional=True),
    "optimizer.global_clipnorm": Rule("float", 0.0, None, low_open=True, optional=True),
    "training.epochs": Rule("int", 1, 100_000),
    "training.batch_size": Rule("int", 1, 10_000_000),
    "training.seed": Rule("int", 0, 2**32 - 1),
    "training.shuffle": Rule("bool"),
    "training.device": Rule("choice", choices=("auto", "cpu", "cuda")),
    "training.threads": Rule("int", 0, 1024),
    "output.name": Rule("str"),
    "output.plots": Rule("bool"),
}


def _bad(source: str, path: str, rule: Rule, value: Any) -> ConfigError:
    return ConfigError(f"{source}: {path} must be {rule.describe()}; got {value!r}")


def _in_range(rule: Rule, x: float) -> bool:
    if rule.low is not None and (x < rule.low or (rule.low_open and x == rule.low)):
        return False
    if rule.high is not None and (x > rule.high or (rule.high_open and x == rule.high)):
        return False
    return True


def _finite(x: float) -> bool:
    """True for a finite float and for an int that converts to one (10**400 does not)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def check_value(source: str, path: str, rule: Rule, value: Any) -> Any:
    """Return `value` normalised for its field, or raise the one-shape ConfigError."""
    if value is None and rule.optional:
        return None
    k = rule.kind
    if k == "bool":
        if isinstance(value, bool):
            return value
    elif k == "str":
        if isinstance(value, str):
            return value
    elif k == "choice":
        if isinstance(value, str) and value in rule.choices:
            return value
        if isinstance(value, str):
            close = difflib.get_close_matches(value, rule.choices, n=1)
            if close:
                raise ConfigError(
                    f"{source}: {path} must be {rule.describe()}; got {value!r}"
                    f" (did you mean {close[0]!r}?)"
                )
    elif k == "int":
        if isinstance(value, int) and not isinstance(value, bool) and _in_range(rule, value):
            return value
    elif k == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and _finite(value) and _in_range(rule, value):
            return float(value)
    elif k == "validation":
        if value == "test":
            return value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and _in_range(rule, value):
            return float(value)
    elif k == "layers":
        from .layers import check_layers

        return check_layers(source, path, value)
    elif k == "int_list":
        if isinstance(value, list | tuple) and 1 <= len(value) <= rule.max_items:
            item = Rule("int", rule.low, rule.high)
            return tuple(check_value(source, f"{path}[{i}]", item, v) for i, v in enumerate(value))
    raise _bad(source, path, rule, value)


def _shown(key: str) -> str:
    """A key as typed when printable, else quoted: a quoted TOML key may hold line breaks."""
    return key if key.isprintable() else repr(key)


def _closest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def experiment_from_dict(raw: dict[str, Any], source: str = "<config>") -> Experiment:
    """Validate a nested dict against `RULES` and freeze it into an `Experiment`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a table of sections; got {type(raw).__name__}")
    sections: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS and key not in TOP_LEVEL_KEYS:
            valid = [*SECTIONS, *TOP_LEVEL_KEYS]
            raise ConfigError(
                f"{source}: unknown section {key!r}; allowed: {', '.join(valid)}"
                + _closest(key, valid)
            )
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: [{name}] must be a table; got {given!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key, value in given.items():
            if key not in names:
                raise ConfigError(
                    f"{source}: unknown key {name}.{_shown(key)}; allowed: {', '.join(names)}"
                    + _closest(key, names)
                )
            values[key] = check_value(source, f"{name}.{key}", RULES[f"{name}.{key}"], value)
        sections[name] = cls(**values)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string; got {description!r}")
    exp = Experiment(**sections, description=description)
    _check_across_fields(exp, source)
    return exp


def _check_across_fields(exp: Experiment, source: str) -> None:
    """Rules that involve more than one field."""
    opt = exp.optimizer
    clips = {k: getattr(opt, k) for k in ("clipvalue", "clipnorm", "global_clipnorm")}
    chosen = {k: v for k, v in clips.items() if v is not None}
    if len(chosen) > 1:
        given = ", ".join(f"optimizer.{k}={v!r}" for k, v in chosen.items())
        raise ConfigError(
            f"{source}: at most one of optimizer.clipvalue, optimizer.clipnorm and "
            f"optimizer.global_clipnorm may be set (as in Keras 3); got {given}"
        )
    if exp.model.kind == "cnn" or exp.model.layers is not None:
        from .layers import check_model_layers

        check_model_layers(exp, source)
    if exp.features.kind == "hog":
        from .features import check_feature_args

        check_feature_args(exp.features, source)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); the value is read as TOML if it can be
    (numbers, booleans, lists) and as a plain string otherwise (`model.activation=tanh`)."""
    if "=" not in text:
        raise ConfigError(f"--set: expected section.key=value; got {text!r}")
    key, _, value_text = text.partition("=")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"--set: key must look like section.key (e.g. model.dropout); got {key!r}")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = value_text.strip()
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` strings to a raw config dict (validated later, with the rest)."""
    out = dict(raw)
    for text in overrides:
        (section, key), value = parse_override(text)
        out = _merge(out, {section: {key: value}})
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; syntax errors name the file, line and column."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected an experiment .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # e.g. a NUL character in a `base` path
        raise ConfigError(f"{path!r}: not a usable file name ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file we can read
        return False


def resolve_raw(source: str | Path, _seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Raw dict for a preset name or TOML path, with `base = "..."` inheritance resolved."""
    from . import presets

    text = str(source)
    if text in _seen:
        raise ConfigError(f"{text}: 'base' chain loops: {' -> '.join([*_seen, text])}")
    if presets.is_preset(text):
        raw, label = presets.read_preset(text), f"preset {text}"
    elif text.endswith(".toml") or _exists(text):
        raw, label = read_toml(Path(text)), text
    else:
        raise presets.unknown_preset_error(text)
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{label}: base must be a preset name or a .toml path; got {base!r}")
        if not presets.is_preset(base) and not presets.is_preset(text):
            base = str(Path(text).parent / base)  # relative to the file that names it
        parent, _ = resolve_raw(base, (*_seen, text))
        raw = _merge(parent, raw)
    return raw, label


def default_run_name(source: str | Path) -> str:
    text = str(source)
    from . import presets

    if presets.is_preset(text):
        return text.replace("/", "-")
    return Path(text).stem


def load_experiment(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Preset name or TOML path (+ `--set` strings) -> validated, frozen `Experiment`."""
    raw, label = resolve_raw(source)
    raw = apply_overrides(raw, list(overrides))
    if not raw.get("output", {}).get("name"):
        raw = _merge(raw, {"output": {"name": default_run_name(source)}})
    return experiment_from_dict(raw, label if not overrides else f"{label} (with --set)")


def config_digest(exp: Experiment) -> str:
    """A stable hash of everything that changes the result (not the run's name or description)."""
    data = exp.to_dict()
    data.pop("description", None)
    data.get("output", {}).pop("name", None)
    data.get("training", {}).pop("device", None)
    data.get("training", {}).pop("threads", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_toml(exp: Experiment) -> str:
    """The fully resolved config as TOML text (what `config.toml` in a run holds)."""
    import tomli_w

    return tomli_w.dumps(exp.to_dict())
