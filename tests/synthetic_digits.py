"""Seeded digit images that are *not* in MNIST's framing, for tests and benchmarks of imageprep.

Two sources: digits typeset with DejaVu fonts (sizes, strokes, colours, alpha, canvases), and
real MNIST digits rescaled, moved, inverted, tinted and noised inside larger canvases. Both
return PIL images so callers can save them in any format. Same seed, same images. Plus
`crop_tightly`: a digit cut to its bounding box, as someone cropping a scan or photo would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["FONT_DIR", "FONT_FILES", "available_fonts", "render_font_digits",
           "paste_mnist_digits", "crop_tightly"]

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
              "DejaVuSans-Oblique.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf")


def available_fonts(font_dir: Path = FONT_DIR) -> list[Path]:
    """The DejaVu fonts present on this machine (tests skip when the list is empty)."""
    return [font_dir / name for name in FONT_FILES if (font_dir / name).is_file()]


def _contrasting_colours(rng: np.random.Generator) -> tuple[tuple, tuple]:
    """(ink, paper) RGB with a luma gap of at least ~0.45, dark-on-light or light-on-dark."""
    dark = tuple(int(v) for v in rng.integers(0, 90, size=3))
    light = tuple(int(v) for v in rng.integers(190, 256, size=3))
    return (dark, light) if rng.random() < 0.6 else (light, dark)


def render_font_digits(n: int, seed: int = 0, fonts: list[Path] | None = None
                       ) -> list[tuple[Image.Image, int]]:
    """`n` typeset digits (labels cycle 0..9) on canvases from 20x20 to 300x200.

    Varies: font (sans, serif, mono, bold, oblique), glyph height (35-90% of the canvas height),
    position, stroke width, ink and paper colours (either polarity), and the mode: RGB, L, RGBA
    on opaque paper, or RGBA on fully transparent paper (whose hidden RGB is random).
    """
    fonts = available_fonts() if fonts is None else fonts
    if not fonts:
        raise FileNotFoundError(f"no DejaVu fonts under {FONT_DIR}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 10
        width, height = int(rng.integers(20, 301)), int(rng.integers(20, 201))
        font_path = fonts[int(rng.integers(len(fonts)))]
        ink, paper = _contrasting_colours(rng)
        mode = ("RGB", "L", "RGBA", "RGBA-transparent")[int(rng.integers(4))]
        size = max(8, int(min(width, height) * rng.uniform(0.45, 1.0)))
        stroke = int(rng.integers(0, max(1, size // 14) + 1))
        font = ImageFont.truetype(str(font_path), size)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        while True:  # shrink until the glyph (with its stroke) fits the canvas
            left, top, right, bottom = probe.textbbox((0, 0), str(label), font=font,
                                                      stroke_width=stroke)
            if (right - left <= width and bottom - top <= height) or size <= 6:
                break
            size = max(6, int(size * 0.85))
            stroke = min(stroke, size // 14)
            font = ImageFont.truetype(str(font_path), size)
        x = int(rng.integers(0, max(0, width - (right - left)) + 1)) - left
        y = int(rng.integers(0, max(0, height - (bottom - top)) + 1)) - top
        if mode == "RGBA-transparent":
            hidden = tuple(int(v) for v in rng.integers(0, 256, size=3))
            img = Image.new("RGBA", (width, height), hidden + (0,))
            draw = ImageDraw.Draw(img)
            draw.text((x, y), str(label), font=font, fill=ink + (255,), stroke_width=stroke,
                      stroke_fill=ink + (255,))
        else:
            img = Image.new("RGB", (width, height), paper)
            ImageDraw.Draw(img).text((x, y), str(label), font=font, fill=ink,
                                     stroke_width=stroke, stroke_fill=ink)
            img = img.convert(mode)
        out.append((img, label))
    return out


def paste_mnist_digits(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0
                       ) -> list[tuple[Image.Image, int]]:
    """`n` MNIST digits reframed: item i is `images[i % len(images)]`, so callers can compare.

    Each digit is rescaled x0.5 to x4 (Lanczos), placed at a random spot in a canvas with a
    margin of 0-120 px, then rendered one of four ways: as is (white on black), inverted,
    tinted (random contrasting ink and paper RGB), or inverted with Gaussian noise (sigma
    0.02-0.06). Returns "L" or "RGB" images.
    """
    images = np.asarray(images)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = i % len(images)
        digit = Image.fromarray(images[k].astype(np.float32) / 255.0)
        side = max(8, round(28 * rng.uniform(0.5, 4.0)))
        v = np.clip(np.asarray(digit.resize((side, side), Image.Resampling.LANCZOS)), 0, 1)
        width = side + int(rng.integers(0, 121))
        height = side + int(rng.integers(0, 121))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        canvas = np.zeros((height, width), np.float32)
        canvas[top:top + side, left:left + side] = v
        style = ("plain", "inverted", "tinted", "noisy")[i % 4]
        if style == "tinted":
            ink, paper = (np.array(c, np.float32) / 255.0 for c in _contrasting_colours(rng))
            rgb = paper + (ink - paper) * canvas[..., None]  # (H, W, 3)
            img = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
        else:
            if style == "noisy":
                canvas = canvas + rng.normal(0.0, rng.uniform(0.02, 0.06), canvas.shape)
            if style != "plain":
                canvas = 1.0 - canvas
            img = Image.fromarray(np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8))
        out.append((img, int(labels[k])))
    return out


def crop_tightly(image: np.ndarray, side: int = 64, margin: int = 0) -> np.ndarray:
    """A light-on-dark digit (uint8 or [0, 1]) cut to the bounding box of its nonzero pixels,
    scaled (Lanczos, aspect kept) so its longest side is `side`, then given `margin` px of
    paper on every side. margin=0 is a crop whose ink touches the image border.

    Returns (H, W) float32 in [0, 1].
    """
    x = np.asarray(image, np.float32)
    x = x / 255.0 if x.max() > 1 else x
    rows, cols = np.flatnonzero(x.max(1) > 0), np.flatnonzero(x.max(0) > 0)
    box = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = side / max(box.shape)
    size = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    big = np.asarray(Image.fromarray(box).resize(size, Image.Resampling.LANCZOS))
    return np.pad(np.clip(big, 0.0, 1.0), margin).astype(np.float32)
