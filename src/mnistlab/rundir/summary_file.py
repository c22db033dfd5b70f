"""summary.txt: what a run is, in the words `mnistlab summary` uses, written when the run starts
and again at its end when early stopping decided which epoch's weights it keeps."""

from __future__ import annotations

from typing import Any

from mnistlab.config.optimizers import optimizer_text
from mnistlab.config.schedules import schedule_text
from mnistlab.config.sections import Experiment
from mnistlab.nn.summary import summary_text

__all__ = ["summary_file_text", "weights_outcome"]


def summary_file_text(exp: Experiment, in_shape: tuple[int, ...], n_classes: int,
                      outcome: str = "") -> str:
    """The model's layers, the optimiser, the settings beyond the lab's (schedule, early
    stopping, label smoothing, augmentation, precision) and, once trained, `outcome`."""
    lines = [f"Optimizer: {optimizer_text(exp.optimizer)}"]
    if exp.schedule.active:
        lines.append(schedule_text(exp.schedule, exp.optimizer.learning_rate))
    if exp.training.label_smoothing:
        lines.append(f"Label smoothing: {exp.training.label_smoothing:g}")
    if exp.early_stopping.enabled:
        lines.append(exp.early_stopping.describe())
    if exp.augmentation.active:
        lines.append(exp.augmentation.describe())
    if exp.training.precision != "fp32":
        lines.append(f"Precision: {exp.training.precision} (training batches under autocast; "
                     "weights and evaluation float32)")
    if outcome:
        lines.append(outcome)
    return (summary_text(exp.model, in_shape, n_classes, title=exp.output.name)
            + "".join(f"{line}\n" for line in lines))


def weights_outcome(record: dict[str, Any], epochs_trained: int, epochs_asked: int) -> str:
    """Which epoch `model.pt` and the test figures come from, from early stopping's record."""
    weights = (f"(best {record['monitor']} {record['best']:.6g}); "
               if record["restored_best_weights"] else "(the last); ")
    ending = (f"early stopping ended training after epoch {record['stopped_epoch']} of "
              f"{epochs_asked}" if record["stopped_early"]
              else f"trained all {epochs_asked} epochs")
    return f"Weights: from epoch {record['weights_epoch']} of {epochs_trained} {weights}{ending}"
