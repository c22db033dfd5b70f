"""The rule table: what every experiment field accepts, and the one message shape for a value
that breaks its rule: `experiments/x.toml: model.hidden[1] must be an int in [1, 65536]; got 0`.

Layer tables (`model.layers`) have their own per-type table in `mnistlab.config.layers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnistlab.config.optimizers import OPTIMIZER_NAMES
from mnistlab.config.schedules import MONITORS, SCHEDULE_NAMES
from mnistlab.config.sections import ACTIVATIONS, BLOCK_NORMS, INITIALIZERS
from mnistlab.data.registry import DATASETS
from mnistlab.errors import ConfigError, did_you_mean

__all__ = ["Rule", "RULES", "check_value", "shown_key"]


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
    "optimizer.name": Rule("choice", choices=OPTIMIZER_NAMES),
    "optimizer.learning_rate": Rule("float", 0.0, 10.0, low_open=True),
    "optimizer.rho": Rule("float", 0.0, 1.0, high_open=True),
    "optimizer.momentum": Rule("float", 0.0, 1.0, high_open=True),
    "optimizer.epsilon": Rule("float", 0.0, 1.0, low_open=True),
    "optimizer.centered": Rule("bool"),
    "optimizer.clipvalue": Rule("float", 0.0, None, low_open=True, optional=True),
    "optimizer.clipnorm": Rule("float", 0.0, None, low_open=True, optional=True),
    "optimizer.global_clipnorm": Rule("float", 0.0, None, low_open=True, optional=True),
    "optimizer.beta_1": Rule("float", 0.0, 1.0, high_open=True, optional=True),
    "optimizer.beta_2": Rule("float", 0.0, 1.0, high_open=True, optional=True),
    "optimizer.amsgrad": Rule("bool", optional=True),
    "optimizer.nesterov": Rule("bool", optional=True),
    "optimizer.weight_decay": Rule("float", 0.0, 1.0, optional=True),
    "augmentation.rotation": Rule("float", 0.0, 0.5),
    "augmentation.shift": Rule("float", 0.0, 1.0, high_open=True),
    "augmentation.zoom": Rule("float", 0.0, 1.0, high_open=True),
    "augmentation.fill_mode": Rule("choice", choices=("constant", "nearest")),
    "augmentation.flip": Rule("bool"),
    "training.epochs": Rule("int", 1, 100_000),
    "training.batch_size": Rule("int", 1, 10_000_000),
    "training.seed": Rule("int", 0, 2**32 - 1),
    "training.shuffle": Rule("bool"),
    "training.device": Rule("choice", choices=("auto", "cpu", "cuda")),
    "training.threads": Rule("int", 0, 1024),
    "training.fast": Rule("bool"),
    "training.chunk_size": Rule("int", 0, 10_000_000),
    "training.precision": Rule("choice", choices=("fp32", "bf16")),
    "training.label_smoothing": Rule("float", 0.0, 1.0, high_open=True),
    "schedule.name": Rule("choice", choices=SCHEDULE_NAMES),
    "schedule.step_epochs": Rule("int", 1, 100_000, optional=True),
    "schedule.factor": Rule("float", 0.0, 1.0, low_open=True, high_open=True, optional=True),
    "schedule.decay_steps": Rule("int", 0, 10**9, optional=True),
    "schedule.decay_rate": Rule("float", 0.0, 1.0, low_open=True, optional=True),
    "schedule.staircase": Rule("bool", optional=True),
    "schedule.alpha": Rule("float", 0.0, 1.0, optional=True),
    "schedule.warmup_target": Rule("float", 0.0, 10.0, low_open=True, optional=True),
    "schedule.warmup_steps": Rule("int", 0, 10**9, optional=True),
    "schedule.pct_start": Rule("float", 0.0, 1.0, low_open=True, high_open=True, optional=True),
    "schedule.anneal_strategy": Rule("choice", choices=("cos", "linear"), optional=True),
    "schedule.div_factor": Rule("float", 1.0, 1e9, optional=True),
    "schedule.final_div_factor": Rule("float", 1.0, 1e12, optional=True),
    "schedule.three_phase": Rule("bool", optional=True),
    "schedule.monitor": Rule("choice", choices=MONITORS, optional=True),
    "schedule.patience": Rule("int", 0, 100_000, optional=True),
    "schedule.mode": Rule("choice", choices=("auto", "min", "max"), optional=True),
    "schedule.min_delta": Rule("float", 0.0, None, optional=True),
    "schedule.cooldown": Rule("int", 0, 100_000, optional=True),
    "schedule.min_lr": Rule("float", 0.0, 10.0, optional=True),
    "early_stopping.enabled": Rule("bool"),
    "early_stopping.monitor": Rule("choice", choices=MONITORS),
    "early_stopping.min_delta": Rule("float", 0.0, None),
    "early_stopping.patience": Rule("int", 0, 100_000),
    "early_stopping.mode": Rule("choice", choices=("auto", "min", "max")),
    "early_stopping.baseline": Rule("float", -1e9, 1e9, optional=True),
    "early_stopping.restore_best_weights": Rule("bool"),
    "early_stopping.start_from_epoch": Rule("int", 0, 100_000),
    "output.name": Rule("str"),
    "output.plots": Rule("bool"),
    "output.tensorboard": Rule("bool"),
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
    """Return `value` normalised for its field, or raise the one-shape ConfigError.

    A non-finite float (TOML's nan, inf, -inf) is refused whatever the field: nan compares
    false with every bound, so a range check alone would let it through.
    """
    if value is None and rule.optional:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {path} must be {rule.describe()}; got {value!r} "
                          "(not a finite number)")
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
        if isinstance(value, str) and did_you_mean(value, rule.choices):
            raise ConfigError(f"{source}: {path} must be {rule.describe()}; got {value!r}"
                              + did_you_mean(value, rule.choices))
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
        if ok and _finite(value) and _in_range(rule, value):
            return float(value)
    elif k == "int_list":
        if isinstance(value, list | tuple) and 1 <= len(value) <= rule.max_items:
            item = Rule("int", rule.low, rule.high)
            return tuple(check_value(source, f"{path}[{i}]", item, v) for i, v in enumerate(value))
    raise _bad(source, path, rule, value)


def shown_key(key: str) -> str:
    """A key as typed when printable, else quoted: a quoted TOML key may hold line breaks."""
    return key if key.isprintable() else repr(key)
