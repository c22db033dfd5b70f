"""The training loop, with Keras's `fit` semantics where the lab's curves depend on them.

Per epoch Keras logs `loss`/`accuracy` as the running mean over the epoch's batches, with dropout
active, weighted by batch size (so the last, smaller batch counts for what it holds), and
`val_loss`/`val_accuracy` as a full evaluation after the epoch. That is why a dropout network's
validation curve can sit below its training curve. We log the same, plus seconds per epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import OptimizerConfig, TrainingConfig
from .cpu import flush_denormals, flushing_denormals, keep_freed_memory
from .errors import TrainingError
from .fast_mlp import mlp_step_for
from .optim import RMSprop
from .sparse_input import forward_input, split_training_input

__all__ = ["History", "EvalResult", "resolve_device", "set_threads", "make_optimizer",
           "train_one_epoch", "evaluate", "fit", "epoch_generator", "EpochPosition",
           "StopTraining", "StopFlag", "stop_on_interrupt", "flush_denormals",
           "flushing_denormals"]

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")


@dataclass
class History:
    """Per-epoch logs, one list per key, as Keras's `History.history` plus `seconds`."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

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
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def make_optimizer(params, cfg: OptimizerConfig) -> RMSprop:
    return RMSprop(params, learning_rate=cfg.learning_rate, rho=cfg.rho, momentum=cfg.momentum,
                   epsilon=cfg.epsilon, centered=cfg.centered, clipvalue=cfg.clipvalue,
                   clipnorm=cfg.clipnorm, global_clipnorm=cfg.global_clipnorm)


@dataclass(frozen=True)
class EpochPosition:
    """Where a stopped epoch stands: its next batch and the exact running sums so far."""

    epoch: int  # 0-based epoch that was under way
    batch: int  # batches already done in it (the next one to run)
    loss_sum: float  # float64 sum of batch loss * batch size so far (exact as saved)
    correct: int  # correctly classified training samples so far
    seconds: float  # time already spent in this epoch


class StopTraining(KeyboardInterrupt):
    """Raised at a batch boundary after Ctrl-C; `position` is None at an epoch boundary."""

    def __init__(self, position: EpochPosition | None):
        super().__init__("training stopped at a batch boundary")
        self.position = position


class StopFlag:
    """Set by the first Ctrl-C; the training loop polls it between batches."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[StopFlag]:
    """First SIGINT asks the loop to stop at the next batch boundary; a second one aborts.

    Outside the main thread (Dask workers, notebooks' executor threads) signals cannot be
    caught, so the flag simply never rises there and Ctrl-C keeps its default behaviour.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    if previous is None:  # installed outside Python: restore Python's default on exit
        previous = signal.default_int_handler
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


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
    chunk_size: int | None = None,
) -> tuple[float, float]:
    """One pass over (x, y) in `order` -> (mean loss, accuracy), weighted by batch size.

    `start` continues a stopped epoch at its next batch with its sums; when `should_stop()`
    turns true between two batches, StopTraining carries the position to save (its `epoch`
    and `seconds` are filled in by `fit`). `chunk_size` splits each batch into pieces whose
    gradients add up before the one optimiser step (see `_chunked_backward`).
    """
    model.train()
    n = len(x)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    first = 0
    if start is not None:
        loss_sum += start.loss_sum
        correct += start.correct
        first = start.batch
    n_batches = math.ceil(n / batch_size)
    by_hand = mlp_step_for(model) if not chunk_size else None  # see mnistlab.fast_mlp
    for b in range(first, n_batches):
        if order is None:
            xb, yb = x[b * batch_size:(b + 1) * batch_size], y[b * batch_size:(b + 1) * batch_size]
        else:
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # 2x faster than x[idx]
        optimizer.zero_grad(set_to_none=True)
        if chunk_size and chunk_size < len(yb):
            batch_loss_sum, batch_correct = _chunked_backward(model, xb, yb, chunk_size)
            optimizer.step()
            loss_sum += batch_loss_sum
            correct += batch_correct
        elif by_hand is not None:
            batch_loss_sum, batch_correct = by_hand(xb, yb)
            optimizer.step()
            loss_sum += batch_loss_sum
            correct += batch_correct
        else:
            logits = forward_input(model, xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach().double() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
        if on_batch is not None:
            on_batch(b + 1, n_batches)
        if should_stop is not None and b + 1 < n_batches and should_stop():
            raise StopTraining(EpochPosition(-1, b + 1, float(loss_sum), int(correct), 0.0))
    return float(loss_sum) / n, int(correct) / n


def _chunked_backward(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, chunk_size: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the batch's mean loss, accumulated over chunks -> (loss sum, correct).

    sum_c (sum of losses in chunk c) / B is the batch mean, so the step equals the whole-batch
    step up to float rounding, while each chunk's activations stay in cache (a 4096-image
    batch of 28x28x9 maps is 115 MB; a 256-image chunk is 7 MB). Valid because no layer mixes
    samples (no batch normalisation).
    """
    n = len(yb)
    loss_sum = torch.zeros((), dtype=torch.float64, device=yb.device)
    correct = torch.zeros((), dtype=torch.int64, device=yb.device)
    for s in range(0, n, chunk_size):
        xc, yc = xb[s:s + chunk_size], yb[s:s + chunk_size]
        logits = model(xc)
        chunk_loss = F.cross_entropy(logits, yc, reduction="sum")
        (chunk_loss / n).backward()
        with torch.no_grad():
            loss_sum += chunk_loss.detach().double()
            correct += (logits.argmax(1) == yc).sum()
    return loss_sum, correct


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 8192) -> EvalResult:
    """Loss and accuracy over a whole set, without autograd, in large batches."""
    model.eval()
    loss_sum, probs = 0.0, []
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        yb = y[start:start + batch_size]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
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
    chunk_size: int | None = None,
) -> History:
    """Train from `len(history)` (and `position` within that epoch) up to `cfg.epochs`.

    `chunk_size` (e.g. `models.preferred_chunk_size`) bounds the images per forward pass in
    training and validation; the optimiser still steps once per `cfg.batch_size` batch.

    Raises TrainingError when the loss is NaN, and StopTraining when `should_stop()` turns true
    (checked between batches and after each epoch's callback).
    """
    keep_freed_memory()
    with flush_denormals():
        return _fit(model, optimizer, train, val, cfg, history, on_epoch_end, on_batch,
                    position, should_stop, chunk_size)


def _fit(model, optimizer, train, val, cfg, history, on_epoch_end, on_batch, position,
         should_stop, chunk_size) -> History:
    history = history if history is not None else History()
    x, y = train
    if not chunk_size:  # a mostly-zero input trains its first layer on a dense core + sparse rest
        x = split_training_input(model, x, cfg.batch_size)
    for epoch in range(len(history), cfg.epochs):
        pos = position if position is not None and position.epoch == epoch else None
        start = time.perf_counter() - (pos.seconds if pos else 0.0)
        order = (torch.randperm(len(x), generator=epoch_generator(cfg.seed, epoch)).to(x.device)
                 if cfg.shuffle else None)
        try:
            loss, acc = train_one_epoch(model, optimizer, x, y, cfg.batch_size, order, on_batch,
                                        pos, should_stop, chunk_size)
        except StopTraining as stop:
            p = stop.position
            raise StopTraining(EpochPosition(epoch, p.batch, p.loss_sum, p.correct,
                                             time.perf_counter() - start)) from None
        if not math.isfinite(loss):
            raise TrainingError(
                f"training loss became {loss} in epoch {epoch + 1}; the run diverged. Try a "
                "smaller optimizer.learning_rate (e.g. 1e-4) or set optimizer.clipnorm = 1.0"
            )
        result = evaluate(model, *val, **({"batch_size": chunk_size} if chunk_size else {}))
        logs = {"loss": loss, "accuracy": acc, "val_loss": result.loss,
                "val_accuracy": result.accuracy, "seconds": time.perf_counter() - start}
        history.append(logs)
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
        if should_stop is not None and epoch + 1 < cfg.epochs and should_stop():
            raise StopTraining(None)
    return history
