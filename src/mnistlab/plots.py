"""Figures from data: each function takes numbers (and an optional axis) and returns a Figure.

matplotlib is imported lazily and figures are bare `Figure`s (Agg draws them when saved), so
nothing needs a display, a notebook's own plotting backend is left alone, and importing mnistlab
stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["curves_figure", "confusion_figure", "validation_overlay_figure", "save_figure",
           "hog_figure", "misclassified_figure", "preparation_figure", "upscale"]


class _Figures:
    """The three pyplot calls used here, made on bare `Figure`s that pyplot never sees.

    No backend is chosen or switched (pyplot's `use("Agg")` would take a notebook's inline
    plots away from its user), no GUI is needed, and a figure is freed once unreferenced.
    """

    @staticmethod
    def subplots(*args: Any, figsize=None, dpi=None, **kwargs: Any):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, dpi=dpi)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def figure(figsize=None, dpi=None):
        from matplotlib.figure import Figure

        return Figure(figsize=figsize, dpi=dpi)

    @staticmethod
    def close(fig) -> None:
        """Nothing holds a bare Figure but its caller."""


def _pyplot() -> _Figures:
    return _Figures()


def curves_figure(history: dict[str, list[float]], metric: str = "loss", title: str = "",
                  ax: Any = None, validation_is_test: bool = False):
    """Training vs validation curve per epoch (the lab's 'error evolution' plot). With
    `validation_is_test` the validation curve is labelled as the test set it was measured on;
    runs of up to 20 epochs get one integer tick per epoch, longer ones integer ticks only."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    epochs = np.arange(1, len(history[metric]) + 1)
    ax.plot(epochs, history[metric], label=f"training {metric}")
    val_label = "test (used as validation)" if validation_is_test else "validation"
    ax.plot(epochs, history[f"val_{metric}"], label=f"{val_label} {metric}")
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def validation_overlay_figure(curves: dict[str, Sequence[Sequence[float]]],
                              metric: str = "val_loss", title: str = "", ax: Any = None):
    """Validation curves of several configurations on one axis: the mean over a configuration's
    runs (seeds) as a line, their min-max range as a band when there are several."""
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=100)
    for label, runs in curves.items():
        runs = [list(r) for r in runs if len(r)]
        if not runs:
            continue
        length = min(len(r) for r in runs)  # runs of one configuration share their epochs
        values = np.array([r[:length] for r in runs], dtype=float)
        epochs = np.arange(1, length + 1)
        (line,) = ax.plot(epochs, values.mean(axis=0),
                          label=f"{label} (n={len(runs)})" if len(runs) > 1 else label)
        if len(runs) > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (categorical cross-entropy)" if metric == "val_loss"
                  else metric.replace("_", " "))
    ax.set_title(title or f"{metric.replace('_', ' ')} per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig if fig is not None else ax.figure


def save_figure(fig, path) -> None:
    """Write a PNG atomically (the run directory's one writer, with fsync) and free the figure."""
    import io
    from pathlib import Path

    from mnistlab.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def upscale(image: np.ndarray, size: int = 280) -> np.ndarray:
    """Each pixel repeated k x k times (k = the smallest factor reaching `size` pixels), so a
    28x28 picture is shown with sharp pixels at a readable size whatever the viewer does."""
    image = np.asarray(image)
    k = max(1, -(-size // max(image.shape[:2])))
    return np.kron(image, np.ones((k, k), dtype=image.dtype))


def _hog_glyphs(ax: Any, cells: np.ndarray, shape: tuple[int, int]) -> None:
    """Each cell's histogram as lines through its centre, one per orientation bin, along the
    edge (perpendicular to the bin's gradient direction, as scikit-image draws them), brightness
    proportional to the value: drawn as vectors, so 4-pixel cells stay readable."""
    from matplotlib.collections import LineCollection

    n_rows, n_cols, n_bins = cells.shape
    ch, cw = shape[0] / n_rows, shape[1] / n_cols
    radius = 0.45 * min(ch, cw)
    middle = np.pi * (np.arange(n_bins) + 0.5) / n_bins
    top = float(cells.max()) or 1.0
    segments, colours = [], []
    for r in range(n_rows):
        for c in range(n_cols):
            y, x = (r + 0.5) * ch - 0.5, (c + 0.5) * cw - 0.5
            for b in range(n_bins):
                dy, dx = np.cos(middle[b]) * radius, np.sin(middle[b]) * radius
                segments.append([(x + dx, y - dy), (x - dx, y + dy)])
                colours.append((1.0, 1.0, 1.0, float(cells[r, c, b]) / top))
    ax.imshow(np.zeros(shape), cmap="gray", vmin=0, vmax=1)
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=2.0))


def hog_figure(image: np.ndarray, hog_view: np.ndarray, title: str = "", ax: Any = None,
               cells: np.ndarray | None = None):
    """An image beside its HOG visualisation (as the lab's notebook showed). At 28x28 a 4-pixel
    cell's three-pixel lines cannot be read, so the picture is upscaled to 280 pixels, or, given
    `cells` ((rows, cols, orientations) histograms, e.g. the features), drawn as vector lines."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 5.4), dpi=100)
    else:
        fig = ax[0].figure
    ax[0].imshow(upscale(image), cmap="gray", interpolation="nearest")
    ax[0].set_title("input image")
    if cells is None:
        ax[1].imshow(upscale(hog_view), cmap="gray", interpolation="nearest")
    else:
        _hog_glyphs(ax[1], np.asarray(cells, dtype=float), tuple(np.asarray(hog_view).shape))
    ax[1].set_title("histogram of oriented gradients" if cells is None else
                    "HOG features per cell (line = edge direction, brightness = value)")
    for a in ax:
        a.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def misclassified_figure(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]],
                         title: str = ""):
    """Test images the model got wrong: one row per (true, predicted) pair, named by `rows[i][0]`,
    each image with its caption (e.g. the predicted probability)."""
    plt = _pyplot()
    n_cols = max(1, max((len(images) for _, images in rows), default=1))
    fig, axes = plt.subplots(max(1, len(rows)), n_cols, squeeze=False,
                             figsize=(1.9 * n_cols + 1.2, 2.1 * max(1, len(rows)) + 0.4), dpi=100)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            a = axes[r][c]
            a.set_xticks([])
            a.set_yticks([])
            if c >= len(images):
                a.axis("off")
                continue
            image, caption = images[c]
            a.imshow(image, cmap="gray_r", interpolation="nearest")
            a.set_title(caption, fontsize="small")
        axes[r][0].set_ylabel(label, fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def preparation_figure(original: np.ndarray, ink: np.ndarray,
                       box: tuple[int, int, int, int] | None, frame: np.ndarray, title: str = "",
                       notes: Sequence[str] = ("", "", "", ""), ax: Any = None):
    """How one image became a network input: the original, the ink found in it, the crop box
    and the 28x28 frame, side by side.

    Args:
        original: (H, W) grayscale in [0, 1], as loaded.
        ink: (H, W) in [0, 1], the detected ink (light on dark whatever the original's polarity).
        box: (top, bottom, left, right) of the crop, ends exclusive; None when nothing was found.
        frame: (28, 28) in [0, 1] (or uint8), what the network sees.
        notes: one line under each panel's title (e.g. paper and noise levels).
        ax: four axes to draw into; a new figure (title row, then the four panels) when None.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    head = None
    if ax is None:  # a thin top row holds the title: tight_layout (save_figure) leaves it room
        fig = plt.figure(figsize=(12, 3.9), dpi=100)
        grid = fig.add_gridspec(2, 4, height_ratios=(1, 10))
        head = fig.add_subplot(grid[0, :])
        head.axis("off")
        ax = [fig.add_subplot(grid[1, i]) for i in range(4)]
    else:
        fig = ax[0].figure
    rect = None if box is None else (box[2] - 0.5, box[0] - 0.5, box[3] - box[2], box[1] - box[0])
    panels = [("original", original), ("detected ink", ink),
              ("crop box", np.zeros((1, 1)) if box is None
               else original[box[0]:box[1], box[2]:box[3]]),
              ("28x28 input", frame)]
    for i, (name, image) in enumerate(panels):
        vmax = 255 if np.asarray(image).dtype == np.uint8 else 1.0
        ax[i].imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        note = notes[i] if i < len(notes) else ""
        ax[i].set_title(f"{name}\n{note}" if note else name, fontsize="small")
        ax[i].set_xticks([])
        ax[i].set_yticks([])
        if rect is not None and i < 2:
            ax[i].add_patch(Rectangle(rect[:2], rect[2], rect[3], fill=False, edgecolor="red",
                                      linewidth=1.5))
    if box is None:
        ax[2].text(0.5, 0.5, "no ink:\nnothing to crop", transform=ax[2].transAxes,
                   ha="center", va="center", color="red")
    if title and head is not None:
        head.text(0.5, 0.5, title, ha="center", va="center", fontsize="large",
                  transform=head.transAxes)
    elif title:
        fig.suptitle(title)
    return fig
