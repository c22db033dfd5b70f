"""`predict --explain`: one PNG per file showing how imageprep turned it into the network's input.

The numbers come from `imageprep.prepare_frame` (kept on each `Prediction` when `predict_files`
is called with `explain=True`); the drawing is `plots.preparation_figure`. A file that could
not be decoded has nothing to show and gets no PNG (its error is reported anyway).
"""

from __future__ import annotations

from pathlib import Path

from mnistlab.plots import preparation_figure, save_figure
from mnistlab.predict.imageprep import Preparation
from mnistlab.predict.predictor import Prediction, output_folder

__all__ = ["explanation_notes", "save_explanations"]


def explanation_notes(prep: Preparation) -> tuple[str, str, str, str]:
    """One line per panel: polarity, the levels behind the ink thresholds, the crop, the frame."""
    polarity = "dark on light: inverted" if prep.inverted else "light on dark"
    levels = f"paper {prep.paper:.2f}, noise {prep.noise_sigma:.3f}, ink {prep.ink_level:.2f}"
    if prep.box is None:
        crop = "no ink found"
    else:
        top, bottom, left, right = prep.box
        crop = f"rows {top}-{bottom - 1}, columns {left}-{right - 1}"
    return polarity, levels, crop, "" if prep.has_ink else "empty: nothing found"


def save_explanations(predictions: list[Prediction], folder: str | Path,
                      prefix: str = "") -> list[Path]:
    """Write `<prefix><n>-<stem>-explain.png` for each prediction that kept its preparation.

    n is the file's position in the batch (names stay unique when stems repeat). Returns the
    paths written.

    Raises:
        RunError: the folder cannot be created.
    """
    folder = output_folder(folder, "--explain")
    written = []
    for i, p in enumerate(predictions, 1):
        prep = p.preparation
        if prep is None:
            continue
        outcome = (f"{p.top[0][1]} ({p.top[0][2]:.2f})" if p.ok else p.error.split(":")[0])
        frame = prep.frame if p.frame is None else p.frame  # the 8-bit input, when predicted
        fig = preparation_figure(prep.gray, prep.ink, prep.box, frame,
                                 title=f"{p.path.name}: {outcome}",
                                 notes=explanation_notes(prep))
        target = folder / f"{prefix}{i:04d}-{p.path.stem}-explain.png"
        save_figure(fig, target)
        written.append(target)
    return written
