"""The report's account of how the rate and the loss were shaped beyond the optimiser: the
learning-rate schedule, early stopping (and where the saved weights are from) and label
smoothing, read from each run's config.toml and metrics.json. Nothing is shown for runs that
use none of them (the lab's), so their report stays as it was."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mnistlab.config.schedules import schedule_text
from mnistlab.config.sections import EarlyStoppingConfig, ScheduleConfig
from mnistlab.report.compare import Group
from mnistlab.report.document import Block, Bullets, Math, Para, Table

__all__ = ["toolkit_blocks", "SCHEDULE_EQUATIONS", "SMOOTHING_EQUATION"]

SCHEDULE_EQUATIONS = {  # t: optimiser steps so far, e: epochs so far, eta_0 the learning_rate
    "step": r"\eta_e = \eta_0\, f^{\lfloor e / N \rfloor}",
    "exponential": r"\eta_t = \eta_0\, r^{t / D} \quad (\text{staircase: } r^{\lfloor t/D "
                   r"\rfloor})",
    "cosine": r"\eta_t = \eta_{top} \left((1-\alpha)\, \frac{1}{2}\left(1 + \cos\frac{\pi\, "
              r"\min(t - W, D)}{D}\right) + \alpha\right)",
}
SMOOTHING_EQUATION = r"\tilde{y}_i = (1 - \epsilon_{ls})\, y_i + \frac{\epsilon_{ls}}{K}"
_WORDS = {
    "step": "step decay (PyTorch StepLR): the rate is multiplied by f = factor every N = "
            "step_epochs epochs:",
    "exponential": "exponential decay (Keras ExponentialDecay), per optimiser step, r = "
                   "decay_rate, D = decay_steps:",
    "cosine": "cosine decay (Keras CosineDecay), per optimiser step, after a linear warmup of W "
              "= warmup_steps steps from the learning_rate to η_top = warmup_target (without a "
              "warmup η_top is the learning_rate), D = decay_steps:",
    "onecycle": "one-cycle (PyTorch OneCycleLR, rate only): up from learning_rate / div_factor "
                "to the learning_rate over the first pct_start of all steps, then annealed down "
                "to learning_rate / div_factor / final_div_factor.",
    "plateau": "reduce on plateau (Keras ReduceLROnPlateau), per epoch: after `patience` epochs "
               "without an improvement of at least min_delta in the monitored value, the rate "
               "is multiplied by factor (not below min_lr), then `cooldown` epochs pass "
               "uncounted.",
}


def _section(cls, table: object):
    """The section's dataclass from a config table (None when this version cannot read it)."""
    if not isinstance(table, dict):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in table.items() if k in names})
    except TypeError:
        return None


def _stop_text(g: Group) -> str:
    record = (g.representative.metrics or {}).get("early_stopping") or {}
    if not record:
        return ""
    where = (f"stopped early after epoch {record.get('stopped_epoch')}"
             if record.get("stopped_early") else "ran all its epochs")
    return f"; the representative run {where}, weights from epoch {record.get('weights_epoch')}"


def toolkit_blocks(groups: Sequence[Group]) -> list[Block]:
    """Schedule, early stopping and label smoothing as configured, with their formulas."""
    blocks: list[Block] = []
    schedules = {g.label: _section(ScheduleConfig, g.config.get("schedule", {})) for g in groups}
    lrs = {g.label: g.config.get("optimizer", {}).get("learning_rate", 0.001) for g in groups}
    if any(s is not None and s.active for s in schedules.values()):
        rows = tuple((label, schedule_text(s, lrs[label]).removeprefix("Schedule: "))
                     for label, s in schedules.items() if s is not None)
        blocks += [Para("The learning rate follows a schedule, starting from the optimiser's "
                        "learning_rate (history.csv's lr column has the rate each epoch started "
                        "with):"),
                   Table(("configuration", "schedule"), rows)]
        for name in dict.fromkeys(s.name for s in schedules.values() if s and s.active):
            blocks.append(Para(name + ": " + _WORDS[name]))
            if name in SCHEDULE_EQUATIONS:
                blocks.append(Math(SCHEDULE_EQUATIONS[name]))
    stops = []
    for g in groups:
        cfg = _section(EarlyStoppingConfig, g.config.get("early_stopping"))
        if cfg is not None and cfg.enabled:
            stops.append(f"{g.label}: {cfg.describe()}{_stop_text(g)}.")
    if stops:
        blocks += [Para("Early stopping (Keras 3 EarlyStopping; with restore_best_weights the "
                        "saved model, test metrics and predictions are the best epoch's):"),
                   Bullets(tuple(stops))]
    smoothed = [(g.label, g.config.get("training", {}).get("label_smoothing")) for g in groups]
    smoothed = [(label, ls) for label, ls in smoothed if ls]
    if smoothed:
        blocks += [Para("Label smoothing (Keras CategoricalCrossentropy): the one-hot targets are "
                        "mixed with the uniform distribution over the K classes, and every "
                        "reported loss (training, validation, test) is the smoothed one; "
                        + ", ".join(f"{label}: ε_ls = {ls}" for label, ls in smoothed) + "."),
                   Math(SMOOTHING_EQUATION)]
    return blocks
