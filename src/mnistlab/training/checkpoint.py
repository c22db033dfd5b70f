"""Checkpoints: everything a bit-identical resume needs, written after every epoch.

Weights, optimiser slots, the global torch RNG (dropout draws), the history and, after Ctrl-C
mid-epoch, the position inside the epoch. Shuffling needs nothing saved: its order is a function
of (seed, epoch). Loading never unpickles code (`weights_only=True`).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch
from torch import nn

from mnistlab.atomic import atomic_write_bytes
from mnistlab.errors import RunError
from mnistlab.training.interrupt import EpochPosition
from mnistlab.training.loop import History

__all__ = ["CHECKPOINT_KEYS", "save_checkpoint", "load_checkpoint", "restore_checkpoint"]

CHECKPOINT_KEYS = ("model", "optimizer", "torch_rng", "history", "epochs_done", "config_digest")


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    history: History, digest: str, position: EpochPosition | None = None) -> None:
    """Write the checkpoint atomically (RunError when the disk refuses)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), "history": history.as_dict(),
             "epochs_done": len(history), "config_digest": digest,
             "position": None if position is None else dataclasses.asdict(position)}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, or RunError saying why it cannot be used."""
    try:
        checkpoint = torch.load(path, weights_only=True)  # plain data: never unpickle code
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RunError(f"{path}: unreadable ({type(exc).__name__}); cannot resume. Delete it "
                       "to restart the run from epoch 1") from None
    missing = [k for k in CHECKPOINT_KEYS
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise RunError(f"{path}: not a mnistlab checkpoint (missing {', '.join(missing)}); "
                       "cannot resume")
    return checkpoint


def restore_checkpoint(checkpoint: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                       history: History) -> EpochPosition | None:
    """Put a loaded checkpoint back into model, optimiser, RNG and history; returns the position
    inside the epoch that was under way, if training stopped mid-epoch."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    if "cuda_rng" in checkpoint and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    for key, values in checkpoint["history"].items():
        getattr(history, key).extend(values)
    return EpochPosition(**checkpoint["position"]) if checkpoint.get("position") else None
