"""The training loop, with Keras's `fit` semantics where the lab's curves depend on them.

Per epoch Keras logs `loss`/`accuracy` as the running mean over the epoch's batches, with dropout
active, weighted by batch size (so the last, smaller batch counts for what it holds), and
`val_loss`/`val_accuracy` as a full evaluation after the epoch. That is why a dropout network's
validation curve can sit below its training curve. We log the same, plus seconds per epoch and
`lr`, the learning rate of the epoch's first optimiser step: for a rate that changes between
epochs (constant, step, plateau) the rate of the whole epoch, which is what Keras's
ReduceLROnPlateau logs as `learning_rate`; for a per-step schedule, where Keras would log the
rate after the epoch's last step, the rate the epoch started with.

With label smoothing every loss here (training, validation, test) is the smoothed one, as
Keras's compiled `CategoricalCrossentropy(label_smoothing=...)` reports it; accuracy is not
affected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config.sections import TrainingConfig
from mnistlab.errors import TrainingError
from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.interrupt import EpochPosition, StopTraining
from mnistlab.training.schedules import LearningRateSchedule, set_learning_rate
from mnistlab.training.steps import (
    EVAL_BATCH_SIZE,
    BatchStep,
    TrainingPlan,
    autograd_step,
    stock_plan,
)

__all__ = ["History", "EvalResult", "HISTORY_KEYS", "train_one_epoch", "evaluate", "fit",
           "epoch_generator"]

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")


@dataclass
class History:
    """Per-epoch logs, one list per key, as Keras's `History.history` plus `seconds` and
    `lr` (the learning rate the epoch started with)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    def append(self, logs: dict[str, float]) -> None:
        for key in HISTORY_KEYS:
            getattr(self, key).append(float(logs[key]))

    def as_dict(self) -> dict[str, list[float]]:
        return {key: list(getattr(self, key)) for key in HISTORY_KEYS}

    def __len__(self) -> int:
        return len(self.loss)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    probabilities: np.ndarray  # (N, classes) softmax outputs
    predictions: np.ndarray  # (N,) argmax


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling order depends only on (seed, epoch), so a resumed run shuffles identically."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    order: torch.Tensor | None,
    on_batch: Callable[[int, int], None] | None = None,
    start: EpochPosition | None = None,
    should_stop: Callable[[], bool] | None = None,
    step: BatchStep | None = None,
    transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    learning_rate: Callable[[int], float] | None = None,
) -> tuple[float, float]:
    """One pass over (x, y) in `order` -> (mean loss, accuracy), weighted by batch size.

    `step` computes one batch's gradients (default: autograd on `model`). `start` continues a
    stopped epoch at its next batch with its sums; when `should_stop()` turns true between two
    batches, StopTraining carries the position to save (its `epoch` and `seconds` are filled in
    by `fit`). `transform(xb, b)` changes batch b before its step (data augmentation).
    `learning_rate(b)` is the rate of batch b's optimiser step (a schedule), set before it.
    """
    step = step or autograd_step(model)
    model.train()
    n = len(x)
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    first = 0
    if start is not None:
        loss_sum += start.loss_sum
        correct += start.correct
        first = start.batch
    n_batches = math.ceil(n / batch_size)
    for b in range(first, n_batches):
        if order is None:
            xb, yb = x[b * batch_size:(b + 1) * batch_size], y[b * batch_size:(b + 1) * batch_size]
        else:
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # faster than x[idx]
        if transform is not None:
            xb = transform(xb, b)
        optimizer.zero_grad(set_to_none=True)
        batch_loss_sum, batch_correct = step(xb, yb)
        if learning_rate is not None:
            set_learning_rate(optimizer, learning_rate(b))
        optimizer.step()
        loss_sum += batch_loss_sum
        correct += batch_correct
        if on_batch is not None:
            on_batch(b + 1, n_batches)
        if should_stop is not None and b + 1 < n_batches and should_stop():
            raise StopTraining(EpochPosition(-1, b + 1, float(loss_sum), int(correct), 0.0))
    return float(loss_sum) / n, int(correct) / n


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = EVAL_BATCH_SIZE, label_smoothing: float = 0.0) -> EvalResult:
    """Loss (smoothed as training's, as Keras's compiled loss) and accuracy over a whole set,
    without autograd, in large batches."""
    model.eval()
    loss_sum, probs = 0.0, []
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        yb = y[start:start + batch_size]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum",
                                          label_smoothing=label_smoothing))
        probs.append(torch.softmax(logits, dim=1).cpu())
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    pred = p.argmax(1) if len(p) else np.zeros(0, np.int64)
    acc = float((pred == y.cpu().numpy()).mean()) if len(p) else float("nan")
    return EvalResult(loss_sum / max(len(x), 1), acc, p, pred)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainingConfig,
    history: History | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    position: EpochPosition | None = None,
    should_stop: Callable[[], bool] | None = None,
    plan: TrainingPlan | None = None,
    augment: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None,
    schedule: LearningRateSchedule | None = None,
    stopper: EarlyStopping | None = None,
) -> History:
    """Train from `len(history)` (and `position` within that epoch) up to `cfg.epochs`.

    `plan` says how `model`'s batches are computed (default: `steps.stock_plan`; `mnistlab.fast`
    makes faster ones); the optimiser steps once per `cfg.batch_size` batch either way.
    `augment(xb, epoch, batch)` transforms each training batch (`training.augment`).
    `schedule` sets each step's learning rate and hears each epoch's logs (plateau);
    `stopper` (early stopping) may end training after an epoch, and at the end may put the best
    epoch's weights back. Both are updated before `on_epoch_end`, which saves the checkpoint.

    Raises TrainingError when the loss is NaN, and StopTraining when `should_stop()` turns true
    (checked between batches and after each epoch's callback).
    """
    plan = plan or stock_plan(model, cfg)
    history = history if history is not None else History()
    x, y = plan.train_input(train[0]), train[1]
    first = cfg.epochs if stopper is not None and stopper.stopped else len(history)
    with plan.settings():
        for epoch in range(first, cfg.epochs):
            pos = position if position is not None and position.epoch == epoch else None
            start = time.perf_counter() - (pos.seconds if pos else 0.0)
            order = (torch.randperm(len(x), generator=epoch_generator(cfg.seed, epoch))
                     .to(y.device) if cfg.shuffle else None)
            transform = (None if augment is None
                         else lambda xb, b, e=epoch: augment(xb, e, b))
            rate = None if schedule is None else (lambda b, e=epoch: schedule.lr(e, b))
            epoch_lr = (rate(0) if rate is not None
                        else float(optimizer.param_groups[0]["learning_rate"]))
            try:
                loss, acc = train_one_epoch(model, optimizer, x, y, cfg.batch_size, order,
                                            on_batch, pos, should_stop, plan.step, transform,
                                            rate)
            except StopTraining as stop:
                p = stop.position
                raise StopTraining(EpochPosition(epoch, p.batch, p.loss_sum, p.correct,
                                                 time.perf_counter() - start)) from None
            if not math.isfinite(loss):
                raise TrainingError(
                    f"training loss became {loss} in epoch {epoch + 1}; the run diverged. Try a "
                    "smaller optimizer.learning_rate (e.g. 1e-4) or set optimizer.clipnorm = 1.0"
                )
            result = evaluate(model, *val, batch_size=plan.eval_batch_size,
                              label_smoothing=cfg.label_smoothing)
            logs = {"loss": loss, "accuracy": acc, "val_loss": result.loss,
                    "val_accuracy": result.accuracy, "seconds": time.perf_counter() - start,
                    "lr": epoch_lr}
            history.append(logs)
            if schedule is not None:
                schedule.on_epoch_end(logs)
            stop_now = stopper is not None and stopper.on_epoch_end(epoch, logs, model)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
            if stop_now:
                break
            if should_stop is not None and epoch + 1 < cfg.epochs and should_stop():
                raise StopTraining(None)
    if stopper is not None:
        stopper.on_train_end(model)
    return history
