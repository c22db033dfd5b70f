"""`training.precision = "bf16"`: opt-in reduced precision, as Keras's `mixed_bfloat16` policy.

Why this shape: the weights, the optimiser state and every evaluation stay float32 (Keras keeps
its variables float32 under the policy too); only the forward pass of training batches runs
under `torch.autocast(bfloat16)`, whose backward then runs in bfloat16 as well, and the loss is
taken on float32 logits. So the validation and test figures a run reports are those of the
float32 model `model.pt` holds, as `predict` will use it. The fast path's kernels are float32,
so a bf16 run trains on stock PyTorch modules (oneDNN's bfloat16 primitives). The lab's presets
never use it. Hardware without native bfloat16 arithmetic would emulate it slowly, so it is
refused there before any work starts (`fast.precision.check_precision`, which asks the CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnistlab.config.sections import TrainingConfig
from mnistlab.training.steps import TrainingPlan, autograd_step, chunked_step

__all__ = ["PRECISIONS", "BF16_LABEL", "autocast_forward", "bf16_plan"]

PRECISIONS = ("fp32", "bf16")
BF16_LABEL = "bf16 autocast of training batches (stock modules: the fast kernels are fp32)"


def autocast_forward(model: nn.Module, device: torch.device | str = "cpu"
                     ) -> Callable[[Any], torch.Tensor]:
    """model(x) computed under bfloat16 autocast, returned as float32 logits for the loss."""
    device_type = torch.device(device).type

    def forward(x: Any) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            logits = model(x)
        return logits.float()

    return forward


def bf16_plan(model: nn.Module, cfg: TrainingConfig, device: torch.device | str = "cpu"
              ) -> TrainingPlan:
    """The stock plan (whole batches, or chunks when `cfg.chunk_size` says so) in bfloat16."""
    forward = autocast_forward(model, device)
    if cfg.chunk_size:
        step = chunked_step(model, cfg.chunk_size, cfg.label_smoothing, forward)
        return TrainingPlan(model, step, eval_batch_size=cfg.chunk_size, applied=(BF16_LABEL,))
    return TrainingPlan(model, autograd_step(model, forward, cfg.label_smoothing),
                        applied=(BF16_LABEL,))
