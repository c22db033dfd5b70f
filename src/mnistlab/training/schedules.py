"""Learning-rate schedules (`[schedule]`): the rate of every optimiser step, and the state a
resumed run needs to go on exactly.

`lr(epoch, batch)` is the rate of batch `batch` of epoch `epoch`; with `s = epoch * B + batch`
the number of optimiser steps before it (B batches per epoch, the same every epoch) and `lr0`
the optimiser's `learning_rate`:

    constant     lr0
    step         lr0 * factor ** floor(epoch / step_epochs)                 (PyTorch StepLR)
    exponential  lr0 * decay_rate ** (s / decay_steps), floored with staircase
                                                          (Keras 3 ExponentialDecay, per step)
    cosine       warmup_target given and s < warmup_steps:
                     lr0 + (warmup_target - lr0) * s / warmup_steps
                 else, with top = warmup_target or lr0 and d = min(s - warmup, decay_steps):
                     top * ((1 - alpha) * 0.5 * (1 + cos(pi * d / decay_steps)) + alpha)
                 decay_steps = 0 means the rest of training   (Keras 3 CosineDecay, per step)
    onecycle     PyTorch OneCycleLR with max_lr = lr0 and total_steps = epochs * B: from
                 lr0 / div_factor up to lr0 in the first pct_start of the steps, then down to
                 lr0 / div_factor / final_div_factor (cos or linear; three_phase as PyTorch).
                 Only the rate cycles (PyTorch's cycle_momentum=False).
    plateau      Keras 3 ReduceLROnPlateau, per epoch: after `patience` epochs in which the
                 monitor did not improve by `min_delta`, lr = max(lr * factor, min_lr), then
                 `cooldown` epochs without counting; the rate, best value, wait and cooldown
                 counters are saved in every checkpoint.

Keras computes a scheduled rate from the optimiser's step count before the step (step 0 uses
the initial rate), as here.
"""

from __future__ import annotations

import math
from typing import Any

from mnistlab.config.schedules import monitor_mode
from mnistlab.config.sections import ScheduleConfig

__all__ = ["LearningRateSchedule", "onecycle_lr", "set_learning_rate"]


def onecycle_lr(step: int, total_steps: int, max_lr: float, pct_start: float = 0.3,
                anneal_strategy: str = "cos", div_factor: float = 25.0,
                final_div_factor: float = 1e4, three_phase: bool = False) -> float:
    """PyTorch OneCycleLR's rate at `step` (0-based), its phases and annealing functions."""
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    if three_phase:
        phases = [(pct_start * total_steps - 1, initial, max_lr),
                  (2 * pct_start * total_steps - 2, max_lr, initial),
                  (total_steps - 1, initial, minimum)]
    else:
        phases = [(pct_start * total_steps - 1, initial, max_lr),
                  (total_steps - 1, max_lr, minimum)]
    start_step = 0.0
    for i, (end_step, start, end) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            span = end_step - start_step
            pct = (step - start_step) / span if span > 0 else 1.0  # PyTorch divides by zero
            if anneal_strategy == "cos":
                return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
            return (end - start) * pct + start
        start_step = end_step
    raise AssertionError("unreachable: the last phase always matches")


def set_learning_rate(optimizer: Any, lr: float) -> None:
    """Every parameter group's `learning_rate` (what the Keras-semantics optimisers read)."""
    for group in optimizer.param_groups:
        group["learning_rate"] = lr


class LearningRateSchedule:
    """The rate of each optimiser step of one run, and `on_epoch_end` for `plateau`."""

    def __init__(self, cfg: ScheduleConfig, learning_rate: float, batches_per_epoch: int,
                 epochs: int):
        self.cfg, self.initial = cfg, learning_rate
        self.batches, self.epochs = batches_per_epoch, epochs
        self.current = learning_rate  # plateau's rate: changed between epochs
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def lr(self, epoch: int, batch: int) -> float:
        """The rate for batch `batch` (0-based) of epoch `epoch` (0-based)."""
        cfg, lr0 = self.cfg, self.initial
        step = epoch * self.batches + batch
        if cfg.name == "step":
            return lr0 * cfg.factor ** (epoch // cfg.step_epochs)
        if cfg.name == "exponential":
            p = step / cfg.decay_steps
            return lr0 * cfg.decay_rate ** (math.floor(p) if cfg.staircase else p)
        if cfg.name == "cosine":
            return self._cosine(step)
        if cfg.name == "onecycle":
            return onecycle_lr(step, self.epochs * self.batches, lr0, cfg.pct_start,
                               cfg.anneal_strategy, cfg.div_factor, cfg.final_div_factor,
                               cfg.three_phase)
        return self.current  # constant, plateau

    def _cosine(self, step: int) -> float:
        cfg, lr0 = self.cfg, self.initial
        warmup = cfg.warmup_steps if cfg.warmup_target is not None else 0
        decay_steps = cfg.decay_steps or max(self.epochs * self.batches - warmup, 1)
        if cfg.warmup_target is not None and step < warmup:
            return lr0 + (cfg.warmup_target - lr0) * step / warmup
        top = lr0 if cfg.warmup_target is None else cfg.warmup_target
        done = min(step - warmup, decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * done / decay_steps))
        return top * ((1 - cfg.alpha) * cosine + cfg.alpha)

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        """ReduceLROnPlateau's end-of-epoch rule (Keras 3, in its order); others: nothing."""
        cfg = self.cfg
        if cfg.name != "plateau":
            return
        current = logs[cfg.monitor]
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= cfg.patience and _float32(self.current) > _float32(cfg.min_lr):
                self.current = max(self.current * cfg.factor, cfg.min_lr)
                self.cooldown_counter, self.wait = cfg.cooldown, 0

    def _improved(self, current: float) -> bool:
        if self.best is None:
            return True
        if monitor_mode(self.cfg.monitor, self.cfg.mode) == "min":
            return current - (-self.cfg.min_delta) < self.best
        return current - self.cfg.min_delta > self.best

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "wait": self.wait,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current, self.best = float(state["current"]), state["best"]
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])


def _float32(x: float) -> float:
    """Keras keeps the rate in a float32 variable and compares it with `np.float32(min_lr)`:
    a rate already at min_lr is not reduced again."""
    import numpy as np

    return float(np.float32(x))
