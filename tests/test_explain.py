"""`predict --explain`'s pieces without a trained model: the figure from data, the notes, and
the PNG per file (computing in imageprep, drawing in plots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.errors import RunError
from mnistlab.plots import preparation_figure
from mnistlab.predict.explain import explanation_notes, save_explanations
from mnistlab.predict.imageprep import prepare_frame
from mnistlab.predict.predictor import Prediction


def _digit() -> np.ndarray:
    """A dark '7' on white paper, 50 wide x 70 high, in [0, 1]."""
    img = Image.new("L", (50, 70), 255)
    draw = ImageDraw.Draw(img)
    draw.line((10, 12, 40, 12), fill=0, width=6)
    draw.line((40, 12, 20, 60), fill=0, width=6)
    return np.asarray(img, np.float32) / 255.0


def test_preparation_figure_shows_original_ink_crop_and_frame():
    prep = prepare_frame(_digit())
    top, bottom, left, right = prep.box
    fig = preparation_figure(prep.gray, prep.ink, prep.box, prep.frame, title="seven",
                             notes=explanation_notes(prep))
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 4 and "seven" in [t.get_text() for ax in fig.axes for t in ax.texts]
    shown = [np.asarray(ax.images[0].get_array()) for ax in axes]
    np.testing.assert_array_equal(shown[0], prep.gray)
    np.testing.assert_array_equal(shown[1], prep.ink)
    np.testing.assert_array_equal(shown[2], prep.gray[top:bottom, left:right])
    np.testing.assert_array_equal(shown[3], prep.frame)
    for ax in axes[:2]:  # the crop box drawn on the original and on the ink
        (rect,) = ax.patches
        assert rect.get_xy() == (left - 0.5, top - 0.5)
        assert (rect.get_width(), rect.get_height()) == (right - left, bottom - top)
    assert "inverted" in axes[0].get_title() and "paper 0.00" in axes[1].get_title()
    assert f"rows {top}-{bottom - 1}" in axes[2].get_title()


def test_preparation_figure_of_an_empty_image_says_there_was_no_ink():
    prep = prepare_frame(np.full((40, 30), 0.6, np.float32))
    fig = preparation_figure(prep.gray, prep.ink, prep.box, prep.frame,
                             notes=explanation_notes(prep))
    axes = [ax for ax in fig.axes if ax.images]
    assert all(not ax.patches for ax in axes)
    assert "no ink" in " ".join(t.get_text() for t in axes[2].texts)
    assert "no ink found" in axes[2].get_title()
    assert "nothing found" in axes[3].get_title()


def test_save_explanations_writes_one_png_per_prepared_file(tmp_path):
    prep = prepare_frame(_digit())
    blank = prepare_frame(np.zeros((10, 10), np.float32))
    predictions = [
        Prediction(Path("a/seven.png"), ((7, "7", 0.9),), frame=np.zeros((28, 28), np.uint8),
                   preparation=prep),
        Prediction(Path("b/broken.png"), error="is empty"),  # never loaded: nothing to draw
        Prediction(Path("c/blank.png"), error="no digit found: ...", preparation=blank),
    ]
    written = save_explanations(predictions, tmp_path / "out", prefix="run-")
    assert [p.name for p in written] == ["run-0001-seven-explain.png",
                                         "run-0003-blank-explain.png"]
    for path in written:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 2 * img.height
    (tmp_path / "taken").write_text("a file where the folder should go")
    with pytest.raises(RunError, match="cannot create the --explain folder"):
        save_explanations(predictions, tmp_path / "taken" / "sub")
