"""`training.precision = "bf16"`: opt-in reduced precision, as Keras's `mixed_bfloat16` policy.

Why this shape: the weights, the optimiser state and every evaluation stay float32 (Keras keeps
its variables float32 under the policy too); only the forward pass of training batches runs
under `torch.autocast(bfloat16)`, whose backward then runs in bfloat16 as well, and the loss is
taken on float32 logits. So the validation and test figures a run reports are those of the
float32 model `model.pt` holds, as `predict` will use it. The fast path's kernels are float32,
so a bf16 run trains on stock PyTorch modules (oneDNN's bfloat16 primitives). The lab's presets
never use it. Hardware without native bfloat16 arithmetic would emulate it slowly, so it is
refused there before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnistlab.config.sections import TrainingConfig
from mnistlab.errors import TrainingError
from mnistlab.training.steps import TrainingPlan, autograd_step, chunked_step

__all__ = ["PRECISIONS", "bf16_supported", "check_precision", "autocast_forward", "bf16_plan"]

PRECISIONS = ("fp32", "bf16")
BF16_LABEL = "bf16 autocast of training batches (stock modules: the fast kernels are fp32)"


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """(whether `device` does bfloat16 arithmetic natively, what the answer rests on)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"torch.cuda.is_bf16_supported() is {ok} for {torch.cuda.get_device_name()}"
    if device.type != "cpu":
        return False, f"no bfloat16 policy for device {device.type!r}"
    avx512_bf16 = bool(torch.cpu._is_avx512_bf16_supported())
    amx = bool(torch.cpu._is_amx_tile_supported())
    return avx512_bf16 or amx, f"CPU AVX-512 BF16: {avx512_bf16}, AMX: {amx}"


def check_precision(cfg: TrainingConfig, device: torch.device) -> None:
    """Refuse bf16 where the hardware lacks it, naming the field, the value and the reason."""
    if cfg.precision != "bf16":
        return
    ok, why = bf16_supported(device)
    if not ok:
        raise TrainingError(
            f"training.precision = \"bf16\" needs native bfloat16 arithmetic (a CPU with "
            f"AVX-512 BF16 or AMX, or a GPU that supports it); this {device.type} has none "
            f"({why}). Use training.precision = \"fp32\".")


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
