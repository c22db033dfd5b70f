"""Which `[optimizer]` fields each optimiser takes, with Keras 3's defaults.

One `OptimizerConfig` holds the union of all optimisers' arguments. At load, the chosen
optimiser's own arguments that were left out get its Keras default (sgd's learning_rate is
0.01, adamw's weight_decay 0.004), and an argument it does not have is refused, naming the
optimisers that do take it. A run's config.toml records only the chosen optimiser's arguments.
"""

from __future__ import annotations

from typing import Any

from mnistlab.errors import ConfigError

__all__ = ["OPTIMIZER_ARGS", "OPTIMIZER_NAMES", "COMMON_ARGS", "resolve_optimizer",
           "foreign_args", "optimizer_text"]

COMMON_ARGS = ("learning_rate", "clipvalue", "clipnorm", "global_clipnorm", "weight_decay")
_ADAM = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
OPTIMIZER_ARGS: dict[str, dict[str, Any]] = {  # own arguments -> Keras default (None: off)
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "adam": {**_ADAM, "amsgrad": False},
    "adamw": {**_ADAM, "amsgrad": False, "weight_decay": 0.004},
    "nadam": dict(_ADAM),
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
}
for _args in OPTIMIZER_ARGS.values():
    for _key in COMMON_ARGS:
        _args.setdefault(_key, None)
OPTIMIZER_NAMES = tuple(OPTIMIZER_ARGS)


def _takers(key: str) -> str:
    return ", ".join(n for n, args in OPTIMIZER_ARGS.items() if key in args)


def resolve_optimizer(source: str, given: dict[str, Any], field_defaults: dict[str, Any],
                      ) -> dict[str, Any]:
    """`given` (checked values of the [optimizer] table) completed for its optimiser: a foreign
    argument is refused; the optimiser's own arguments left out get its Keras default unless
    that is also the field's default (so earlier runs' configs and digests stay the same)."""
    name = given.get("name", field_defaults["name"])
    own = OPTIMIZER_ARGS[name]
    for key, value in given.items():
        if key != "name" and key not in own:
            raise ConfigError(f"{source}: optimizer.{key} = {value!r} is not an argument of "
                              f"{name}; it is taken by: {_takers(key)}")
    values = dict(given)
    for key, default in own.items():
        if key not in values and default != field_defaults[key]:
            values[key] = default
    return values


def foreign_args(name: str, field_names: list[str]) -> list[str]:
    """The fields of `OptimizerConfig` that optimiser `name` does not take."""
    return [k for k in field_names if k != "name" and k not in OPTIMIZER_ARGS[name]]


def optimizer_text(cfg: Any) -> str:
    """One line for summaries: `adam (learning_rate=0.001, beta_1=0.9, ..., amsgrad=false)`;
    the optimiser's own arguments in Keras's order, unset optional ones (clipping) left out."""
    args = []
    for key in OPTIMIZER_ARGS[cfg.name]:
        value = getattr(cfg, key)
        if value is not None:
            args.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return f"{cfg.name} ({', '.join(args)})"
