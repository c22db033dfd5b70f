"""Whether this machine can train `training.precision = "bf16"`, asked before any work starts.

Why here: the CPU's answer comes from a private PyTorch probe, and those live in
`fast.torch_internals` alone. The bf16 training plan itself is `training.precision`'s.
"""

from __future__ import annotations

import torch

from mnistlab.config.sections import TrainingConfig
from mnistlab.errors import TrainingError
from mnistlab.fast.torch_internals import cpu_bf16_support

__all__ = ["bf16_supported", "check_precision"]


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """(whether `device` does bfloat16 arithmetic natively, what the answer rests on)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"torch.cuda.is_bf16_supported() is {ok} for {torch.cuda.get_device_name()}"
    if device.type != "cpu":
        return False, f"no bfloat16 policy for device {device.type!r}"
    flags = cpu_bf16_support()
    return any(flags.values()), ", ".join(f"CPU {k}: {v}" for k, v in flags.items())


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
