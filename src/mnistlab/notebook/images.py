"""Arrays of images -> the same preparation `mnistlab predict` gives image files -> classes.

An array is read as the grey levels an image file would decode to (8-bit: divided by 255; float:
already in [0, 1]), then goes through `imageprep.prepare_frame` (polarity, ink, crop, the
dataset's framing), is quantised to 8 bits and classified by the run's `Predictor`. So the
classes and probabilities equal those `mnistlab predict` gives for the same pixels saved as PNG.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnistlab.errors import ConfigError
from mnistlab.predict.imageprep import ImageInputError, prepare_frame
from mnistlab.predict.predictor import NO_INK, Predictor, quantise_frame

__all__ = ["Predictions", "predict_images", "as_gray_images"]

ACCEPTED = "one (H, W) image, an (N, H, W) batch or a list of (H, W) images"


@dataclass(frozen=True, eq=False)
class Predictions:
    """Classes for N images; an image where no ink was found has class -1 and its error."""

    classes: np.ndarray  # (N,) int64 class index, best first; -1: no ink found
    probabilities: np.ndarray  # (N, classes) float64 softmax; NaN rows where no ink was found
    class_names: tuple[str, ...]
    frames: np.ndarray  # (N, 28, 28) uint8: what the network saw (zeros where no ink)
    errors: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return f"Predictions({len(self)} images, classes={self.classes.tolist()})"

    @property
    def names(self) -> list[str | None]:
        """Each image's class name (None where no ink was found)."""
        return [self.class_names[c] if c >= 0 else None for c in self.classes]

    @property
    def confidence(self) -> np.ndarray:
        """(N,) the predicted class's probability (NaN where no ink was found)."""
        return np.array([p[c] if c >= 0 else np.nan
                         for p, c in zip(self.probabilities, self.classes, strict=True)])

    def _repr_html_(self) -> str:
        rows = []
        for i, (frame, c, err) in enumerate(zip(self.frames, self.classes, self.errors,
                                                strict=True)):
            name = "" if err or self.class_names[c] == str(c) else f" {self.class_names[c]}"
            said = (html.escape(err) if err else
                    f"{c}{html.escape(name)} ({self.probabilities[i, c]:.3f})")
            rows.append(f'<tr><td>{i}</td><td><img src="{_png_uri(frame)}" width="56" '
                        f'height="56" style="image-rendering:pixelated" alt="input {i}"></td>'
                        f"<td>{said}</td></tr>")
        return ("<table><thead><tr><th>#</th><th>network input</th><th>prediction "
                "(probability)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _png_uri(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")  # (28, 28) uint8 -> mode L
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def as_gray_images(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """(H, W) float32 grey levels in [0, 1] per image, as `load_image` decodes a file.

    Raises:
        ConfigError: not 2-D images, an unsupported dtype, integers outside [0, 255].
    """
    if isinstance(images, list | tuple):
        items = [np.asarray(a) for a in images]
    else:
        batch = np.asarray(images)
        if batch.ndim not in (2, 3):
            raise ConfigError(f"images: must be {ACCEPTED}; got shape {batch.shape}")
        items = [batch] if batch.ndim == 2 else list(batch)
    out = []
    for i, a in enumerate(items):
        if a.ndim != 2 or a.size == 0:
            raise ConfigError(f"images[{i}]: must be a non-empty (H, W) array ({ACCEPTED}); "
                              f"got shape {a.shape}")
        if a.dtype == np.bool_:
            out.append(a.astype(np.float32))
        elif np.issubdtype(a.dtype, np.integer):
            if a.min() < 0 or a.max() > 255:
                raise ConfigError(f"images[{i}]: integer pixels must be in [0, 255]; got "
                                  f"[{a.min()}, {a.max()}]")
            out.append(a.astype(np.float32) / 255.0)  # as load_image turns 8-bit files to floats
        elif np.issubdtype(a.dtype, np.floating):
            out.append(a.astype(np.float32))  # prepare_frame checks the [0, 1] range
        else:
            raise ConfigError(f"images[{i}]: must hold numbers (uint8 0-255 or floats in "
                              f"[0, 1]); got dtype {a.dtype}")
    return out


def predict_images(predictor: Predictor, images: np.ndarray | Sequence[np.ndarray]
                   ) -> Predictions:
    """Classify arrays with a run's model after `mnistlab predict`'s own preparation.

    Raises:
        ConfigError: an array that is not a grayscale image (see `as_gray_images`), or floats
            outside [0, 1].
    """
    n_classes = len(predictor.class_names)
    no_ink = NO_INK.format(thing="digit" if predictor.digit_style else "object")
    gray = as_gray_images(images)
    frames = np.zeros((len(gray), 28, 28), np.uint8)
    errors: list[str | None] = []
    for i, g in enumerate(gray):
        try:
            prep = prepare_frame(g, digit_style=predictor.digit_style)
        except ImageInputError as exc:
            raise ConfigError(f"images[{i}]: {exc.problem}") from None
        if prep.has_ink:
            frames[i] = quantise_frame(prep.frame)
        errors.append(None if prep.has_ink else no_ink)
    inked = np.array([e is None for e in errors], dtype=bool)
    probabilities = np.full((len(gray), n_classes), np.nan)
    probabilities[inked] = predictor.probabilities(frames[inked])
    classes = np.full(len(gray), -1, np.int64)
    if inked.any():
        classes[inked] = np.argmax(probabilities[inked], axis=1)
    return Predictions(classes, probabilities, predictor.class_names, frames, tuple(errors))
