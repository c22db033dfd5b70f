"""How one batch's gradients are computed, as a `TrainingPlan` the training loop follows.

The stock plan is plain autograd on the whole batch, or on chunks of `training.chunk_size`
images whose gradients add up to the batch's (PyTorch's gradient accumulation). `mnistlab.fast`
builds other plans for the same model: same arithmetic, less time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config.sections import TrainingConfig

__all__ = ["BatchStep", "TrainingPlan", "autograd_step", "chunked_step", "stock_plan"]

# (images, labels) -> (sum of the batch's losses as float64, number correct); the gradients of
# the batch's mean loss are left in each parameter's `.grad`.
BatchStep = Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

EVAL_BATCH_SIZE = 8192  # images per forward pass when evaluating: no autograd, large is fine


@dataclass(frozen=True)
class TrainingPlan:
    """What the training loop runs for one model: its step, its input, its settings."""

    model: nn.Module  # the module that trains (its parameters are the run's)
    step: BatchStep
    eval_batch_size: int = EVAL_BATCH_SIZE
    train_input: Callable[[torch.Tensor], Any] = lambda x: x  # the training matrix as stepped on
    settings: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    applied: tuple[str, ...] = field(default_factory=tuple)  # what differs from stock, in words


def autograd_step(model: nn.Module, forward: Callable[[Any], torch.Tensor] | None = None,
                  label_smoothing: float = 0.0) -> BatchStep:
    """The textbook step: forward, mean cross-entropy (Keras's categorical cross-entropy on the
    softmax), backward. `forward(xb) -> logits` defaults to `model`.

    With `label_smoothing` = ls the targets are y * (1 - ls) + ls / K for K classes, Keras's
    `CategoricalCrossentropy(label_smoothing=ls)`; PyTorch's `label_smoothing` is the same
    mixture."""
    forward = forward or model

    def step(xb: Any, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
        loss.backward()
        with torch.no_grad():
            return loss.detach().double() * len(yb), (logits.argmax(1) == yb).sum()

    return step


def chunked_step(model: nn.Module, chunk_size: int, label_smoothing: float = 0.0,
                 forward: Callable[[Any], torch.Tensor] | None = None) -> BatchStep:
    """Gradients of the batch's mean loss, accumulated over chunks of `chunk_size` images.

    sum_c (sum of losses in chunk c) / B is the batch mean, so the step equals the whole-batch
    step up to float rounding, while each chunk's activations stay small (a 4096-image batch of
    28x28x9 maps is 115 MB; a 256-image chunk is 7 MB). Exact only when no layer mixes samples:
    config validation refuses `training.chunk_size` for such models
    (`config.layers.SAMPLE_MIXING_LAYERS`). `forward(xc) -> logits` defaults to `model`.
    """
    forward = forward or model

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(yb)
        loss_sum = torch.zeros((), dtype=torch.float64, device=yb.device)
        correct = torch.zeros((), dtype=torch.int64, device=yb.device)
        for s in range(0, n, chunk_size):
            xc, yc = xb[s:s + chunk_size], yb[s:s + chunk_size]
            logits = forward(xc)
            chunk_loss = F.cross_entropy(logits, yc, reduction="sum",
                                         label_smoothing=label_smoothing)
            (chunk_loss / n).backward()
            with torch.no_grad():
                loss_sum += chunk_loss.detach().double()
                correct += (logits.argmax(1) == yc).sum()
        return loss_sum, correct

    return step


def stock_plan(model: nn.Module, cfg: TrainingConfig) -> TrainingPlan:
    """Stock PyTorch: autograd on whole batches, or on chunks when `cfg.chunk_size` says so."""
    if cfg.chunk_size:
        return TrainingPlan(model, chunked_step(model, cfg.chunk_size, cfg.label_smoothing),
                            eval_batch_size=cfg.chunk_size)
    return TrainingPlan(model, autograd_step(model, label_smoothing=cfg.label_smoothing))
