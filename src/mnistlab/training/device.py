"""Where training runs: the device a config asks for, and how many CPU threads it uses."""

from __future__ import annotations

import os

import torch

from mnistlab.errors import TrainingError

__all__ = ["resolve_device", "set_threads", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when a GPU is present, else cpu; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("training.device='cuda' but no CUDA GPU is available; use cpu or auto")
    return torch.device(name)


def set_threads(threads: int) -> int:
    """Use `threads` CPU threads (0 = every core this process may use)."""
    if threads <= 0:
        threads = usable_cores()
    torch.set_num_threads(threads)
    return threads
