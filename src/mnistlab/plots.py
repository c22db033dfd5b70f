"""Figures from data: each function takes numbers (and an optional axis) and returns a Figure.

matplotlib is imported lazily with the Agg backend, so nothing needs a display and importing
mnistlab stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["curves_figure", "confusion_figure", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def curves_figure(history: dict[str, list[float]], metric: str = "loss", title: str = "",
                  ax: Any = None):
    """Training vs validation curve per epoch (the lab's 'error evolution' plot)."""
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    epochs = np.arange(1, len(history[metric]) + 1)
    ax.plot(epochs, history[metric], label=f"training {metric}")
    ax.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("categorical cross-entropy" if metric == "loss" else metric)
    ax.set_title(title or metric)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig if fig is not None else ax.figure


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                     title: str = "", ax: Any = None):
    """Confusion matrix with counts annotated: rows true labels, columns predictions."""
    plt = _pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(confusion)
    fig = None
    if ax is None:
        long_names = max(len(n) for n in class_names) > 3
        fig, ax = plt.subplots(figsize=(7.5, 6.5) if long_names else (6.4, 5.6), dpi=100)
    disp = ConfusionMatrixDisplay(cm, display_labels=list(class_names))
    disp.plot(ax=ax, cmap="Blues", values_format="d", colorbar=False,
              xticks_rotation=45 if max(len(n) for n in class_names) > 3 else "horizontal")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title or "confusion matrix")
    return fig if fig is not None else ax.figure


def save_figure(fig, path) -> None:
    """Write a PNG atomically and free the figure."""
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    _pyplot().close(fig)
