"""Early stopping (`[early_stopping]`), as Keras 3's `EarlyStopping` callback decides it.

At the end of every epoch from `start_from_epoch` on (Keras 3, callbacks/early_stopping.py):

    restore_best_weights and no best weights yet: keep these weights as the best (this epoch)
    wait += 1
    improved (first value, or beyond best by min_delta in the monitor's direction):
        best = value, best epoch = this one, keep these weights (restore_best_weights);
        wait = 0 only if there is no baseline or the value also beats the baseline
    otherwise, if wait >= patience and this is not the first epoch: stop training

At the end of training, with `restore_best_weights`, the model goes back to the best epoch's
weights. Keras 3 does this whenever training ends, early or not (since keras-team/keras
commit 8c126e33, "Update early stopping weight restoration behavior", Nov 2023; Keras 2 restored
only when it stopped early): mnistlab does the same, so with restore_best_weights the saved
model, the test metrics and predictions always come from the best epoch, and metrics.json says
which one. The best weights, best value, wait counter and stop decision travel in every
checkpoint, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mnistlab.config.schedules import monitor_mode
from mnistlab.config.sections import EarlyStoppingConfig

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Keras 3 `EarlyStopping`'s state and rules for one run."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.minimise = monitor_mode(cfg.monitor, cfg.mode) == "min"
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = 0  # 0-based, as Keras
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None  # 0-based epoch after which training stopped
        self.restored_epoch: int | None = None  # 0-based epoch whose weights the model ends with

    def _improves(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.minimise:
            return value + self.cfg.min_delta < reference
        return value - self.cfg.min_delta > reference

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: nn.Module) -> bool:
        """Update the state after epoch `epoch` (0-based); True when training should stop."""
        cfg = self.cfg
        if epoch < cfg.start_from_epoch:
            return False
        value = logs[cfg.monitor]
        if cfg.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _copy(model), epoch
        self.wait += 1
        if self._improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if cfg.restore_best_weights:
                self.best_weights = _copy(model)
            if cfg.baseline is None or self._improves(value, cfg.baseline):
                self.wait = 0
            return False
        if self.wait >= cfg.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def on_train_end(self, model: nn.Module) -> None:
        """Keras 3: with restore_best_weights, back to the best epoch's weights."""
        if self.cfg.restore_best_weights and self.best_weights is not None:
            model.load_state_dict(self.best_weights)
            self.restored_epoch = self.best_epoch

    def record(self, epochs_trained: int) -> dict[str, Any]:
        """What metrics.json says: where training stopped and which epoch the weights are from
        (1-based epochs, as history.csv counts them)."""
        restored = self.restored_epoch is not None
        return {
            "monitor": self.cfg.monitor,
            "best": self.best,
            "best_epoch": None if self.best is None else self.best_epoch + 1,
            "stopped_early": self.stopped,
            "stopped_epoch": None if self.stopped_epoch is None else self.stopped_epoch + 1,
            "restored_best_weights": restored,
            "weights_epoch": self.restored_epoch + 1 if restored else epochs_trained,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.best = int(state["wait"]), state["best"]
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), state["stopped_epoch"]
        self.best_weights = state["best_weights"]


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers (batch-norm statistics too, as Keras's get_weights)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
