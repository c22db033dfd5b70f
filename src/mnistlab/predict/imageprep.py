"""Real image files -> MNIST-style 28x28 inputs, so a trained network sees what it was trained on.

A network trained on MNIST only knows white ink on black, a 20x20 box and a centred centre of
mass; a phone photo of a digit is none of that. This module reproduces the MNIST framing
(LeCun et al.: size-normalise to a 20x20 box keeping the aspect ratio, antialiased, then centre
the centre of mass in 28x28) and the Fashion-MNIST framing (longest side 28, centred box).
Files are decoded by `imageload`; `prepare_frame` keeps every step for `predict --explain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.predict.imageload import MAX_PIXELS, ImageInputError, load_image

# ImageInputError, load_image and MAX_PIXELS live in imageload; they are re-exported here.
__all__ = ["ImageInputError", "Preparation", "load_image", "to_mnist_frame", "prepare_frame",
           "frame_has_ink", "prepare", "MAX_PIXELS"]

FRAME = 28  # output side, as in MNIST
DIGIT_BOX = 20  # MNIST digits fit a 20x20 box inside the 28x28 frame
COM_TARGET = 14.0  # MNIST centres of mass sit at (14, 14) in array indices (measured: 13.99, 14.00)
NOISE_SIGMAS = 3.5  # ink must exceed the paper by this many noise sigmas (estimated on the border)
FAINT = 0.05  # after stretching, levels below this are background haze (MNIST strokes hit 1.0)
MIN_CONTRAST = 0.08  # ink-paper difference below this (in [0, 1]) means "no ink at all"
EXTREMES = 0.1  # percent of pixels at each end that show which side of the paper the ink is on
CLIPPED_NOISE = 2.0  # noise clipped at pure paper reads ~0.48-0.62x in `_local_noise`
CLIPPED_SHARE = 0.1  # ... which shows as this share of pixels at pure paper (or more),
SOLID_PAPER = 0.25  # ... few of them (under this share) inside solid patches of pure paper


@dataclass(frozen=True)
class Preparation:
    """Every step `to_mnist_frame` took on one image, kept so `predict --explain` can show them."""

    gray: np.ndarray  # (H, W) float32 in [0, 1]: the image as loaded
    inverted: bool  # True when dark ink on light paper was flipped to light on dark
    paper: float  # paper level after the flip
    noise_sigma: float  # noise estimate behind the ink thresholds
    ink_level: float  # ink brightness stretched to 1.0; 0.0 when no ink was found
    ink: np.ndarray  # (H, W) float32 in [0, 1]: the detected ink, stretched; 0 elsewhere
    box: tuple[int, int, int, int] | None  # (top, bottom, left, right) crop, ends exclusive
    frame: np.ndarray  # (28, 28) float32 in [0, 1]: the network's input

    @property
    def has_ink(self) -> bool:
        return frame_has_ink(self.frame)


def to_mnist_frame(gray: np.ndarray, *, digit_style: bool = True) -> np.ndarray:
    """Frame a grayscale image the way MNIST (or Fashion-MNIST) frames its images.

    Steps, in order (`prepare_frame` returns each one):
      1. Polarity: the paper is the median of the outer border (5% of the short side, at least
         1 px); the ink is on the side of it where the image's extremes (0.1% of the pixels at
         each end) stray further (on a tie: dark ink when the paper is lighter than 0.5). Dark
         ink is inverted, so ink is always light on dark, whatever the paper's own shade.
      2. Noise: sigma is the smaller of two estimates. The border's 1.4826 x (75th percentile -
         median) is right when the border is paper, even with noise clipped at pure white or
         black. The whole image's second differences (`_local_noise`, doubled when noise is
         clipped at pure paper, see `_clipped`) stay right when the border is
         ink (a digit cropped to its bounding box) and ignores smooth shading.
      3. Contrast: subtract the paper. The ink level is the 99th percentile of pixels above
         max(3.5 sigma, 0.04); below max(0.08, 7 sigma) there is no ink and zeros are returned.
         Divide by the level and clip to [0, 1], so the ink reaches 1; pixels under
         max(3.5 sigma, 5% of the level), and lone specks with no such 8-neighbour, become 0.
      4. Crop to the bounding box of the ink.
      5. digit_style=True (MNIST): scale so the longest side is 20 px keeping the aspect ratio
         (Lanczos, antialiased), re-stretch the peak to 1, and paste into 28x28 at the integer
         offset that puts the centre of mass nearest to (14, 14), kept inside the frame.
         digit_style=False (Fashion-MNIST): longest side 28, pasted centred by bounding box.

    Uneven lighting (shadows across a photo) is not corrected: crop photos close to the ink.

    Returns:
        (28, 28) float32 in [0, 1]; all zeros when there is no ink (see `frame_has_ink`).
    Raises:
        ImageInputError: `gray` is not a finite 2-D array in [0, 1].
    """
    return prepare_frame(gray, digit_style=digit_style).frame


def prepare_frame(gray: np.ndarray, *, digit_style: bool = True) -> Preparation:
    """`to_mnist_frame` with its intermediate results (polarity, noise, ink, crop box)."""
    original = _check_gray(gray)
    x = original
    width = max(1, min(x.shape) // 20)
    border = np.concatenate([x[:width].ravel(), x[-width:].ravel(),
                             x[:, :width].ravel(), x[:, -width:].ravel()])
    paper = float(np.median(border))
    inverted = _dark_ink(x, paper)
    if inverted:
        x, border, paper = 1.0 - x, 1.0 - border, 1.0 - paper
    sigma = min(1.4826 * (float(np.percentile(border, 75)) - paper),
                _local_noise(x) * (CLIPPED_NOISE if _clipped(x) else 1.0))
    ink = x - paper  # signed: darker-than-paper pixels are negative and never count as ink
    zeros = np.zeros((FRAME, FRAME), np.float32)
    nothing = Preparation(original, inverted, paper, sigma, 0.0, np.zeros_like(x), None, zeros)
    mask = _ink_mask(ink, max(NOISE_SIGMAS * sigma, 0.5 * MIN_CONTRAST))
    if not mask.any():
        return nothing
    level = float(np.percentile(ink[mask], 99))
    if level < max(MIN_CONTRAST, 2 * NOISE_SIGMAS * sigma):
        return nothing
    y = np.clip(ink / level, 0.0, 1.0)
    mask = _ink_mask(y, max(NOISE_SIGMAS * sigma / level, FAINT))
    y = np.where(mask, y, 0.0).astype(np.float32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    frame = _place(y[box[0]:box[1], box[2]:box[3]], digit_style)
    return Preparation(original, inverted, paper, sigma, level, y, box, frame)


def _dark_ink(x: np.ndarray, paper: float) -> bool:
    """Whether the ink is darker than the paper: the side whose extremes (the 0.1% of pixels
    furthest out) stray further from the paper. Without a clear winner (no ink, or ink on both
    sides), light paper means dark ink, as on most paper and screens."""
    lighter = float(np.percentile(x, 100 - EXTREMES)) - paper
    darker = paper - float(np.percentile(x, EXTREMES))
    if abs(lighter - darker) < MIN_CONTRAST:
        return paper > 0.5
    return darker > lighter


def _clipped(x: np.ndarray) -> bool:
    """Whether noise on the paper is clipped at black: many pixels at 0, but scattered (each
    has four 0 neighbours with odds ~1/16) rather than in solid patches of clean paper."""
    zero = x <= 0.0
    count = int(np.count_nonzero(zero))
    if count < CLIPPED_SHARE * x.size:
        return False
    solid = zero[1:-1, 1:-1] & zero[:-2, 1:-1] & zero[2:, 1:-1] & zero[1:-1, :-2] & zero[1:-1, 2:]
    return np.count_nonzero(solid) < SOLID_PAPER * count


def _local_noise(x: np.ndarray) -> float:
    """Noise sigma from second differences, robust to ink anywhere and to smooth shading.

    The 3x3 operator outer([1, -2, 1], [1, -2, 1]) (Immerkaer 1996) cancels constant and linear
    intensity, so ramps and antialiased edges barely count; on i.i.d. noise its output has
    sigma 6 x the noise. Its 25th percentile in absolute value (0.3186 x that sigma for
    Gaussian noise) is taken, not the median, so stroke edges can fill up to 3/4 of a small,
    tightly cropped image before they inflate the estimate.
    Noise clipped at pure black paper reads about half as large (the caller corrects it).
    """
    if min(x.shape) < 3:
        return float("inf")  # too small to tell noise from ink: the border estimate decides
    d = x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:]  # second difference along rows
    d = d[:-2] - 2 * d[1:-1] + d[2:]  # ... then along columns
    return float(np.percentile(np.abs(d), 25)) / (0.3186 * 6.0)


def _place(box: np.ndarray, digit_style: bool) -> np.ndarray:
    """The cropped ink scaled and pasted into the 28x28 frame (step 5 of `to_mnist_frame`)."""
    frame = np.zeros((FRAME, FRAME), np.float32)
    box = _resize_longest(box, DIGIT_BOX if digit_style else FRAME)
    peak = float(box.max())
    if peak <= 0:
        return frame
    box /= peak
    h, w = box.shape
    if digit_style:
        com_r, com_c = ndimage.center_of_mass(box)
        top = min(max(int(np.floor(COM_TARGET - com_r + 0.5)), 0), FRAME - h)
        left = min(max(int(np.floor(COM_TARGET - com_c + 0.5)), 0), FRAME - w)
    else:
        top, left = (FRAME - h) // 2, (FRAME - w) // 2
    frame[top:top + h, left:left + w] = box
    return frame


def _check_gray(gray: np.ndarray) -> np.ndarray:
    """A finite float32 (H, W) copy in [0, 1], or a message saying what was passed instead."""
    x = np.asarray(gray)
    if x.ndim != 2 or x.size == 0:
        raise ImageInputError(None, f"must be a non-empty 2-D (H, W) grayscale array; got shape "
                              f"{x.shape} (use load_image, or convert colour images first)")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ImageInputError(None, "must contain only finite values; got NaN or inf")
    if x.min() < 0 or x.max() > 1:
        raise ImageInputError(None, f"values must be in [0, 1]; got [{x.min():g}, {x.max():g}] "
                              "(divide 8-bit images by 255)")
    return x


def _ink_mask(values: np.ndarray, cut: float) -> np.ndarray:
    """Pixels above `cut` with at least one 8-neighbour also above it (drops lone noise specks)."""
    above = values > cut
    count = ndimage.convolve(above.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    return above & (count >= 2)  # the count includes the pixel itself


def _resize_longest(box: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longest side is `side` px, keeping the aspect ratio (Lanczos, antialiased)."""
    h, w = box.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL sizes are (width, height)
    if size == (w, h):
        return box.astype(np.float32)
    out = Image.fromarray(box.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)  # Lanczos overshoots slightly


def frame_has_ink(frame: np.ndarray, min_intensity: float = 0.5) -> bool:
    """Whether a frame holds any ink; `to_mnist_frame` returns zeros for blank images."""
    return bool(np.max(frame) >= min_intensity)


def prepare(path: str | Path, *, digit_style: bool = True,
            max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One call from an image file to a (28, 28) float32 network input: load, then frame."""
    return to_mnist_frame(load_image(path, max_pixels=max_pixels), digit_style=digit_style)
