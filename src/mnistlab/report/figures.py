"""A run's figures as PNG bytes: the files the run recorded, drawn again from its data if missing.

The report and a notebook's display of a run both show these, so both show the same pictures.
"""

from __future__ import annotations

from collections.abc import Callable

from mnistlab.report.document import figure_png
from mnistlab.rundir.directory import RunInfo

__all__ = ["PNG_MAGIC", "run_png", "loss_png", "accuracy_png", "confusion_png"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_png(info: RunInfo, name: str, draw: Callable) -> bytes:
    """The figure the run recorded (so report and run agree), drawn from data if missing."""
    try:
        data = (info.path / name).read_bytes()
        if data.startswith(PNG_MAGIC):
            return data
    except OSError:
        pass
    return figure_png(draw())


def _curves_png(info: RunInfo, metric: str) -> bytes:
    from mnistlab.plots import curves_figure

    return run_png(info, f"{metric}.png", lambda: curves_figure(
        info.history, metric, f"{info.name}: {metric} per epoch",
        validation_is_test=(info.metrics or {}).get("validation") == "test"))


def loss_png(info: RunInfo) -> bytes:
    """Training vs validation loss per epoch (needs `info.history`)."""
    return _curves_png(info, "loss")


def accuracy_png(info: RunInfo) -> bytes:
    """Training vs validation accuracy per epoch (needs `info.history`)."""
    return _curves_png(info, "accuracy")


def confusion_png(info: RunInfo) -> bytes:
    """The test confusion matrix (needs `info.metrics`)."""
    from mnistlab.plots import confusion_figure

    m = info.metrics
    return run_png(info, "confusion.png", lambda: confusion_figure(
        m["confusion"], m["class_names"], f"{info.name}: test confusion matrix"))
