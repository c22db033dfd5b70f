"""Which `[schedule]` fields each learning-rate schedule takes, with its reference's defaults.

One `ScheduleConfig` holds the union of all schedules' arguments, as `[optimizer]` does for the
optimisers (`config.optimizers`). At load, the chosen schedule's arguments that were left out
get their default, an argument it needs but has no default for is asked for, and an argument it
does not have is refused, naming the schedules that take it. The schedule starts from
`optimizer.learning_rate`; a run's config.toml records only the chosen schedule's arguments,
and no `[schedule]` table at all for `constant` (so earlier runs keep their config and digest).

The formulas are in `mnistlab.training.schedules`; the names and defaults follow Keras 3
(`ExponentialDecay`, `CosineDecay`, `ReduceLROnPlateau`), PyTorch (`StepLR`'s step decay,
`OneCycleLR`).
"""

from __future__ import annotations

from typing import Any

from mnistlab.errors import ConfigError

__all__ = ["SCHEDULE_ARGS", "SCHEDULE_NAMES", "PER_STEP", "MONITORS", "REQUIRED",
           "resolve_schedule", "schedule_text", "monitor_mode"]

REQUIRED = object()  # an argument without a default: the schedule needs it given
SCHEDULE_ARGS: dict[str, dict[str, Any]] = {  # own arguments -> default
    "constant": {},
    "step": {"step_epochs": REQUIRED, "factor": 0.1},  # PyTorch StepLR (step_size, gamma)
    "exponential": {"decay_steps": REQUIRED, "decay_rate": REQUIRED, "staircase": False},
    "cosine": {"decay_steps": 0, "alpha": 0.0, "warmup_target": None, "warmup_steps": 0},
    "onecycle": {"pct_start": 0.3, "anneal_strategy": "cos", "div_factor": 25.0,
                 "final_div_factor": 1e4, "three_phase": False},
    "plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 10, "mode": "auto",
                "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0},
}
SCHEDULE_NAMES = tuple(SCHEDULE_ARGS)
PER_STEP = ("exponential", "cosine", "onecycle")  # the others change the rate between epochs
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")  # what history.csv logs per epoch


def monitor_mode(monitor: str, mode: str) -> str:
    """'min' or 'max': Keras's `mode="auto"` reads it from the name (losses go down)."""
    if mode != "auto":
        return mode
    return "min" if monitor.removeprefix("val_") == "loss" else "max"


def _takers(key: str) -> str:
    return ", ".join(n for n, args in SCHEDULE_ARGS.items() if key in args)


def resolve_schedule(source: str, given: dict[str, Any]) -> dict[str, Any]:
    """`given` (checked values of the [schedule] table) completed for its schedule: a foreign
    argument is refused, a missing one gets its default or, without one, is asked for."""
    name = given.get("name", "constant")
    own = SCHEDULE_ARGS[name]
    for key, value in given.items():
        if key != "name" and key not in own:
            takers = _takers(key)
            raise ConfigError(f"{source}: schedule.{key} = {value!r} is not an argument of the "
                              f"{name} schedule; it is taken by: {takers}")
    values = dict(given)
    for key, default in own.items():
        if key in values and values[key] is not None:
            continue
        if default is REQUIRED:
            raise ConfigError(f"{source}: the {name} schedule needs schedule.{key} (it has no "
                              f"default); takes: {', '.join(own)}")
        values[key] = default
    if name == "cosine" and values["warmup_steps"] and values["warmup_target"] is None:
        raise ConfigError(f"{source}: schedule.warmup_steps = {values['warmup_steps']} needs "
                          "schedule.warmup_target (the rate the warmup climbs to); without it "
                          "Keras's CosineDecay skips the warmup")
    return values


def schedule_text(cfg: Any, learning_rate: float) -> str:
    """One line for summaries: `Schedule: cosine per optimiser step from learning_rate 0.001
    (decay_steps=0 (rest of training), alpha=0.0, ...)`."""
    if cfg.name == "constant":
        return f"Schedule: constant (learning_rate {learning_rate:g})"
    args = []
    for key in SCHEDULE_ARGS[cfg.name]:
        value = getattr(cfg, key)
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if key == "decay_steps" and value == 0:
            text += " (rest of training)"
        args.append(f"{key}={text}")
    when = "per optimiser step" if cfg.name in PER_STEP else "per epoch"
    return (f"Schedule: {cfg.name} {when} from learning_rate {learning_rate:g} "
            f"({', '.join(args)})")
