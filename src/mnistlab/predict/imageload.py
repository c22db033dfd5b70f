"""Image files -> float grayscale, refusing anything doubtful before a network ever sees it.

Decoding is where untrusted input meets Pillow: formats are limited, sizes are checked from the
header before decoding, a full decode is forced to reveal truncation, and every failure becomes
one `ImageInputError` naming the file. `imageprep` then frames the grayscale image.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageInputError", "load_image", "FORMATS", "ALLOWED", "MAX_PIXELS"]

FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's JPEG opener also takes phones' MPO files
ALLOWED = "a PNG, JPEG, BMP or GIF image"
MAX_PIXELS = 40_000_000  # ~160 MB as float32; larger files are refused before decoding

# Pillow raises many types on corrupt data; all of them mean "this file cannot be decoded".
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
                  struct.error, Image.DecompressionBombError)


class ImageInputError(ValueError):
    """An image file or array cannot be used as network input; `path` is the file (or None)."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path if path is not None else 'image array'}: {problem}")

    def __reduce__(self):  # keeps the two-argument form picklable (multiprocessing, Dask)
        return type(self), (self.path, self.problem)


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to float32 grayscale (H, W) in [0, 1], refusing anything doubtful.

    Accepts PNG (8/16-bit, grey, RGB, palette), JPEG, BMP and GIF (first frame), with EXIF
    rotation applied. Colour becomes luma (ITU-R 601). Alpha is composited over the paper, so
    transparent pixels become paper: if the opaque pixels cover less than half the image they are
    the ink, and the paper is the opposite extreme of their mean grey (white under dark ink, black
    under light ink); otherwise the paper is the median grey of the opaque pixels.

    Raises:
        ImageInputError: missing, unreadable, a directory, empty, not one of the formats,
            more than `max_pixels` pixels (checked from the header, before decoding), truncated
            or corrupt (a full decode is forced).
    """
    path = Path(path)
    try:
        if path.is_dir():  # checked first: Windows reports opening a folder as PermissionError
            raise ImageInputError(path, f"is a directory; give the path of {ALLOWED}")
        with open(path, "rb") as fh:
            if not fh.read(1):
                raise ImageInputError(path, f"is empty (0 bytes); expected {ALLOWED}")
            fh.seek(0)
            with warnings.catch_warnings():
                # our own max_pixels check below is the policy; Pillow's bomb *error* still counts
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = _open_checked(fh, path, max_pixels)
    except FileNotFoundError:
        raise ImageInputError(path, f"does not exist; give the path of {ALLOWED}") from None
    except PermissionError:
        raise ImageInputError(path, "cannot be read (permission denied)") from None
    except IsADirectoryError:  # a race with the check above, or an odd filesystem
        raise ImageInputError(path, f"is a directory; give the path of {ALLOWED}") from None
    except OSError as exc:  # e.g. a name too long, a broken network drive
        raise ImageInputError(path, f"cannot be read ({exc.strerror or exc})") from None
    return _to_gray(img)


def _open_checked(fh: BinaryIO, path: Path, max_pixels: int) -> Image.Image:
    """Read the header, refuse oversize images, then force the full decode of frame 0."""
    try:
        img = Image.open(fh, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageInputError(path, f"is not {ALLOWED} (the content is not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(path, f"is too large to decode safely ({exc}); at most "
                              f"{max_pixels:,} pixels are allowed") from None
    except _DECODE_ERRORS as exc:
        raise ImageInputError(path, f"has a corrupt header ({exc}); expected {ALLOWED}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageInputError(path, f"is {width}x{height} = {width * height:,} pixels; at most "
                              f"{max_pixels:,} are allowed (downscale it or raise max_pixels)")
    if width * height == 0:
        raise ImageInputError(path, f"has no pixels ({width}x{height})")
    try:
        img.load()  # Image.open is lazy: only a full decode reveals truncation
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS as exc:
        raise ImageInputError(path, f"{img.format} data is truncated or corrupt ({exc}); "
                              "re-export or re-download the file") from None


def _to_gray(img: Image.Image) -> np.ndarray:
    """(H, W) float32 luma in [0, 1], with alpha composited onto the paper colour."""
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        la = np.asarray(img.convert("RGBA").convert("LA"), dtype=np.float32) / 255.0
        return _composite(la[..., 0], la[..., 1])
    if img.mode.startswith("I"):  # 16-bit grey PNG: keep the precision, scale to [0, 1]
        return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _composite(lum: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend over the paper (rule in `load_image`); semi-transparent edges stay antialiased."""
    if alpha.mean() >= 0.5:
        paper = float(np.median(lum[alpha >= 0.5]))
    else:
        weight = float(alpha.sum())
        ink = float((alpha * lum).sum()) / weight if weight > 0 else 0.0
        paper = 1.0 if ink < 0.5 else 0.0
    return (alpha * lum + (1.0 - alpha) * paper).astype(np.float32)
