"""Checkpoints: everything a bit-identical resume needs, written after every epoch.

Weights, optimiser slots, the global torch RNG (dropout draws), the history, the state of the
learning-rate schedule and of early stopping (`callbacks`: plateau's rate and counters, the
best weights so far) and, after Ctrl-C mid-epoch, the position inside the epoch. Shuffling
needs nothing saved: its order is a function of (seed, epoch). Loading never unpickles code
(`weights_only=True`).
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

__all__ = ["CHECKPOINT_KEYS", "CheckpointMismatch", "save_checkpoint", "load_checkpoint",
           "checkpoint_mismatch",
           "restore_checkpoint"]

CHECKPOINT_KEYS = ("model", "optimizer", "torch_rng", "history", "epochs_done", "config_digest")


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    history: History, digest: str, position: EpochPosition | None = None,
                    callbacks: dict | None = None) -> None:
    """Write the checkpoint atomically (RunError when the disk refuses). `callbacks` holds the
    schedule's and early stopping's `state_dict()`s by name."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), "history": history.as_dict(),
             "epochs_done": len(history), "config_digest": digest,
             "position": None if position is None else dataclasses.asdict(position),
             "callbacks": callbacks or {}}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, or RunError saying why it cannot be used."""
    try:
        # plain data, never unpickled code; on the CPU so a run trained on a GPU resumes on
        # any device (load_state_dict copies to the model's, and the optimiser follows it)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RunError(f"{path}: unreadable ({type(exc).__name__}); cannot resume. Delete it "
                       "to restart the run from epoch 1") from None
    missing = [k for k in CHECKPOINT_KEYS
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise RunError(f"{path}: not a mnistlab checkpoint (missing {', '.join(missing)}); "
                       "cannot resume")
    return checkpoint


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def checkpoint_mismatch(checkpoint: dict, model: nn.Module,
                        optimizer: torch.optim.Optimizer) -> str | None:
    """Why a loaded checkpoint does not fit this model and optimiser (None when it does).

    Checked before anything is restored, so a checkpoint from another architecture (or one whose
    tensors were damaged into other shapes) is refused like an unreadable one instead of failing
    half-way through `load_state_dict`.
    """
    saved, wanted = checkpoint["model"], model.state_dict()
    if not isinstance(saved, dict):
        return f"model is a {type(saved).__name__}, not a state dict"
    if set(saved) != set(wanted):
        odd = sorted(set(saved) ^ set(wanted), key=str)
        return f"model weights {', '.join(map(str, odd[:3]))} do not match the model's"
    for key, tensor in wanted.items():
        value = saved[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            return f"model {key} has shape {_shape(value)}; the model needs {tuple(tensor.shape)}"
    opt = checkpoint["optimizer"]
    groups = [g["params"] for g in optimizer.param_groups]
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list)
            and [len(g.get("params", ())) if isinstance(g, dict) else -1
                 for g in opt["param_groups"]] == [len(g) for g in groups]):
        return "optimizer state does not match the model's parameters"
    params = [p for g in groups for p in g]
    for index, slots in opt["state"].items():
        if not (isinstance(index, int) and 0 <= index < len(params) and isinstance(slots, dict)):
            return f"optimizer state names parameter {index!r}, which the model does not have"
        for name, value in slots.items():
            if (isinstance(value, torch.Tensor) and value.dim() > 0
                    and value.shape != params[index].shape):
                return (f"optimizer {name} of parameter {index} has shape {_shape(value)}; the "
                        f"parameter has {tuple(params[index].shape)}")
    rng = checkpoint["torch_rng"]
    now = torch.get_rng_state()
    if not (isinstance(rng, torch.Tensor) and rng.dtype == now.dtype and rng.shape == now.shape):
        return f"torch_rng has shape {_shape(rng)}; expected {tuple(now.shape)}"
    history = checkpoint["history"]
    if not (isinstance(history, dict) and set(history) <= set(History().as_dict())
            and all(isinstance(v, list) for v in history.values())):
        return "history is not a table of per-epoch lists"
    best = (checkpoint.get("callbacks") or {}).get("early_stopping", {}) or {}
    weights = best.get("best_weights") if isinstance(best, dict) else None
    if weights is not None and not (isinstance(weights, dict) and set(weights) == set(wanted)
                                    and all(isinstance(weights[k], torch.Tensor)
                                            and weights[k].shape == t.shape
                                            for k, t in wanted.items())):
        return "early stopping's best weights do not match the model's"
    position = checkpoint.get("position")
    fields = {f.name for f in dataclasses.fields(EpochPosition)}
    if position is not None and not (isinstance(position, dict) and set(position) == fields):
        return "position is not an epoch position"
    return None


class CheckpointMismatch(RunError):
    """A checkpoint that does not fit the run's model or optimiser (refused before any change)."""


def restore_checkpoint(checkpoint: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                       history: History, source: str | Path = "checkpoint"
                       ) -> EpochPosition | None:
    """Put a loaded checkpoint back into model, optimiser, RNG and history; returns the position
    inside the epoch that was under way, if training stopped mid-epoch.

    Raises CheckpointMismatch (a RunError), before changing anything, when the checkpoint does
    not fit the model (`checkpoint_mismatch`); `source` names it in the message.
    """
    why = checkpoint_mismatch(checkpoint, model, optimizer)
    if why is not None:
        raise CheckpointMismatch(f"{source}: does not fit this run ({why}); cannot resume. "
                                 "Delete it to restart the run from epoch 1")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    if "cuda_rng" in checkpoint and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    for key, values in checkpoint["history"].items():
        getattr(history, key).extend(values)
    return EpochPosition(**checkpoint["position"]) if checkpoint.get("position") else None
