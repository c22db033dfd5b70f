"""Histogram of Oriented Gradients for a batch: scikit-image's `hog`, exact and vectorised.

`skimage.feature.hog` runs one 28x28 image at a time in a Python loop (half a minute for
MNIST; benchmarks/bench_hog.py); here a batch goes through NumPy in chunks (bounded memory)
on several threads (NumPy releases the GIL).
Semantics are scikit-image 0.26's (`feature/_hog.py`, `feature/_hoghistogram.pyx`):
- cast to its float type (float32 stays, float16 -> float32, the rest float64), optional sqrt,
  central differences with zero first/last row (column) in the row (column) gradient;
- orientation = rad2deg(arctan2(g_row, g_col)) % 180 with the same float64 NumPy calls, so pixels
  exactly on a bin edge (0, 45, 90 degrees: common in digits) fall in the same bin. Bin o holds
  o * (180 / n) <= angle < (o + 1) * (180 / n); an angle past the last edge votes nowhere;
- cells tile from the top-left corner and partial cells are ignored; a cell's value is the sum
  of its magnitudes per bin divided by its pixel count, in float32. scikit-image adds in float32
  one pixel at a time; we add in float64 and round once (features differ by ~1e-7) or, for
  cells over 1024 pixels, replay its float32 additions;
- blocks are normalised with eps = 1e-5 (L1, L1-sqrt, L2, L2-Hys clipping at 0.2) and flattened
  as (block_row, block_col, cell_row, cell_col, orientation).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mnistlab.config.geometry import Pair, as_pair, hog_feature_length, validate_hog_args
from mnistlab.config.sections import BLOCK_NORMS

__all__ = ["BLOCK_NORMS", "hog", "hog_feature_length", "hog_image", "validate_hog_args"]

_EPS = 1e-5  # scikit-image's block-normalisation epsilon
_HYS_CLIP = 0.2  # L2-Hys clips normalised values at 0.2, then normalises again
_REPLAY_PIXELS = 1024  # cells larger than this replay scikit-image's float32 sums exactly
_CHUNK_PIXELS = 200_704  # default chunk: 256 MNIST images, ~20 MB of work arrays


def _float_type(dtype: np.dtype) -> type:
    """The float type scikit-image computes in: float32 stays, float16 widens, the rest float64."""
    return np.float32 if np.dtype(dtype).char in "ef" else np.float64  # any byte order


def _mod180(angle: np.ndarray) -> np.ndarray:
    """`angle % 180` for angles in [-180, 180], bit for bit, 20x cheaper than np.remainder.

    NumPy's remainder is fmod (exact here: 180 -> 0, negatives unchanged) plus one rounded
    addition of 180 for negatives. Branch-free arithmetic, as the signs are random.
    """
    result = angle + 180.0 * (angle < 0)
    result[angle == 180.0] = 0.0  # arctan2(+0, negative): a gradient pointing left
    return result


@lru_cache(maxsize=4)
def _slot_table(b: int, h: int, w: int, cell: tuple[int, int], orientations: int) -> np.ndarray:
    """(B*H*W,) first histogram slot of each pixel's cell; slots are (image, cell, bin).

    Each image has a spare cell (for pixels outside whole cells, which scikit-image ignores) and
    each cell a spare bin (for angles past the last edge): no pixel needs filtering out.
    """
    (cr, cc), (ncr, ncc) = cell, (h // cell[0], w // cell[1])
    n_cells, n_bins = ncr * ncc + 1, orientations + 1
    cell_of_pixel = np.full((h, w), n_cells - 1)
    cell_of_pixel[: ncr * cr, : ncc * cc] = (np.arange(ncr * cr) // cr)[:, None] * ncc + (
        np.arange(ncc * cc) // cc
    )
    table = ((np.arange(b)[:, None] * n_cells + cell_of_pixel.ravel()) * n_bins).ravel()
    table = table.astype(np.int32) if table[-1] < 2**31 else table  # int32: half the traffic
    table.flags.writeable = False  # shared between calls and threads
    return table


def _votes(
    images: np.ndarray, orientations: int, cell: tuple[int, int], transform_sqrt: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(B, H, W) images -> histogram slot and gradient magnitude of each voting pixel, (V,) each.

    Only pixels with a non-zero gradient vote (a zero magnitude adds nothing): ~30% of an MNIST
    digit, which is where most of the speed comes from. Votes are in row-major pixel order.
    """
    x = np.ascontiguousarray(images, dtype=_float_type(images.dtype))
    if transform_sqrt:
        if x.size and x.min() < 0:  # scikit-image would return NaN features
            raise ValueError(f"transform_sqrt needs images >= 0; got a minimum of {x.min()}")
        x = np.sqrt(x)
    b, h, w = x.shape
    flat = x.reshape(-1)  # (B*H*W,): one long difference beats B*H short ones
    g_row = np.empty_like(flat)
    np.subtract(flat[2 * w :], flat[: -2 * w], out=g_row[w:-w])
    g_row.reshape(b, h, w)[:, 0, :] = 0  # these also overwrite differences across two images
    g_row.reshape(b, h, w)[:, -1, :] = 0
    g_col = np.empty_like(flat)
    np.subtract(flat[2:], flat[:-2], out=g_col[1:-1])
    g_col.reshape(b, h, w)[:, :, 0] = 0
    g_col.reshape(b, h, w)[:, :, -1] = 0

    voting = np.flatnonzero((g_row != 0) | (g_col != 0))  # (V,) indices into (B*H*W,)
    g_row = np.take(g_row, voting).astype(np.float64, copy=False)  # (V,) contiguous, like
    g_col = np.take(g_col, voting).astype(np.float64, copy=False)  # scikit-image's arrays
    # Within 2 ulp of scikit-image's np.hypot, 3x cheaper; squares could only overflow where its
    # float32 cell sums overflow too.
    magnitude = np.sqrt(g_row * g_row + g_col * g_col)
    angle = _mod180(np.rad2deg(np.arctan2(g_row, g_col)))  # (V,) scikit-image's exact values
    if np.isnan(angle).any():  # scikit-image would return NaN features
        raise ValueError("images must be finite; got pixels giving NaN gradients")

    # Bin o is [o * step, (o + 1) * step); one multiply guesses it, at most one off at an edge.
    step = 180.0 / orientations
    bins = (angle * (orientations / 180.0)).astype(np.intp)  # (V,) in [0, orientations]
    bins -= angle < bins * step
    bins += angle >= (bins + 1) * step  # == orientations: past the last edge, no vote
    return np.take(_slot_table(b, h, w, cell, orientations), voting) + bins, magnitude


def _float32_sums(slot: np.ndarray, magnitude: np.ndarray, n_slots: int) -> np.ndarray:
    """Per-slot sums replaying scikit-image's float32 additions, bit for bit: O(V log V).

    Round k adds the k-th vote (in pixel order) of every slot that has one; slots are sorted by
    vote count, so those are a prefix and each round is one vectorised step.
    """
    order = np.argsort(slot, kind="stable")  # votes grouped by slot, pixel order kept
    slots, starts, counts = np.unique(slot[order], return_index=True, return_counts=True)
    by_count = np.argsort(-counts, kind="stable")  # (S,) most votes first
    slots, starts, counts = slots[by_count], starts[by_count], counts[by_count]
    sorted_magnitude = magnitude[order]
    totals = np.zeros(len(slots), np.float32)
    for k in range(counts.max(initial=0)):
        n = np.searchsorted(-counts, -k, side="left")  # slots with more than k votes
        totals[:n] += sorted_magnitude[starts[:n] + k]  # float32 + float64 -> float32, as in C
    sums = np.zeros(n_slots, np.float32)
    sums[slots] = totals
    return sums


def _cell_histograms(
    images: np.ndarray, orientations: int, cell: tuple[int, int], transform_sqrt: bool, *,
    float32_sums: bool = False,
) -> np.ndarray:
    """(B, H, W) images -> (B, H // cr, W // cc, orientations) float32 cell histograms.

    scikit-image sums each (cell, bin) in float32, pixel by pixel. We sum in float64 (one
    bincount) and round once, which drifts from it with the cell size (2.5e-7 in features for
    28x28-pixel cells, 6e-7 for 64x64): past `_REPLAY_PIXELS` per cell, or with `float32_sums`,
    we replay its float32 additions instead (3x slower).
    """
    b, h, w = images.shape
    (cr, cc), (ncr, ncc) = cell, (h // cell[0], w // cell[1])
    n_slots = b * (ncr * ncc + 1) * (orientations + 1)
    slot, magnitude = _votes(images, orientations, cell, transform_sqrt)
    if float32_sums or cr * cc > _REPLAY_PIXELS:
        sums = _float32_sums(slot, magnitude, n_slots)
    else:
        sums = np.bincount(slot, weights=magnitude, minlength=n_slots)
    sums = sums.reshape(b, ncr * ncc + 1, orientations + 1)[:, :-1, :-1]  # drop the spares
    # float32(sum) / float32(pixels per cell), in float32 like scikit-image's cell_hog.
    return np.divide(sums, cr * cc, dtype=np.float32).reshape(b, ncr, ncc, orientations)


def _normalize_blocks(hist: np.ndarray, block: tuple[int, int], block_norm: str) -> np.ndarray:
    """(B, ncr, ncc, O) cell histograms -> (B, F) normalised blocks, in float64 as scikit-image."""
    v = hist.astype(np.float64)  # (B, ncr, ncc, O): float32 values widen exactly
    if block != (1, 1):  # (B, nbr, nbc, O, br, bc) view -> (B, nbr, nbc, br, bc, O) -> (..., K)
        windows = sliding_window_view(v, block, axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        v = np.ascontiguousarray(windows).reshape(*windows.shape[:3], -1)
    if block_norm in ("L1", "L1-sqrt"):
        v = v / (np.abs(v).sum(axis=-1, keepdims=True) + _EPS)
        v = np.sqrt(v) if block_norm == "L1-sqrt" else v
    else:
        v = v / np.sqrt(np.einsum("...k,...k->...", v, v) + _EPS**2)[..., None]
        if block_norm == "L2-Hys":
            np.minimum(v, _HYS_CLIP, out=v)
            v /= np.sqrt(np.einsum("...k,...k->...", v, v) + _EPS**2)[..., None]
    return v.reshape(len(v), -1)


def hog(
    images: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: Pair = (8, 8),
    cells_per_block: Pair = (3, 3),
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
    *,
    chunk_size: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """HOG features of a batch, equal to `skimage.feature.hog(image, ...)` of each image.

    Args:
        images: (N, H, W) grayscale images of any real dtype.
        chunk_size: images per chunk (default: ~200,000 pixels, 256 MNIST images); a chunk
            needs ~100 bytes per pixel while computed, and chunks the CPU caches hold are fastest.
        workers: threads working on chunks at once (default: one per available CPU core).

    Returns:
        (N, F) float64 features, F = `hog_feature_length((H, W), ...)`.

    Raises:
        ValueError: for a batch that is not (N, H, W) real numbers, NaN gradients, or arguments
            that `validate_hog_args` rejects.
    """
    images = np.asarray(images)
    if images.ndim != 3 or not (images.dtype == bool or np.issubdtype(images.dtype, np.number)):
        raise ValueError(f"images must be an (N, H, W) array; got {images.dtype} {images.shape}")
    if np.iscomplexobj(images):
        raise ValueError("images must be real; got complex values")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_PIXELS // max(1, images.shape[1] * images.shape[2]))
    if chunk_size < 1 or (workers is not None and workers < 1):
        raise ValueError(f"chunk_size and workers must be >= 1; got {chunk_size}, {workers}")
    validate_hog_args(images.shape[1:], orientations, pixels_per_cell, cells_per_block, block_norm)
    cell, block = as_pair(pixels_per_cell), as_pair(cells_per_block)
    n_features = hog_feature_length(images.shape[1:], orientations, cell, block)
    out = np.empty((len(images), n_features))

    def run(start: int) -> None:
        chunk = images[start : start + chunk_size]
        blocks = _normalize_blocks(_cell_histograms(chunk, orientations, cell, transform_sqrt),
                                   block, block_norm)
        # scikit-image stores the blocks in the image's float type: round the same way.
        out[start : start + len(chunk)] = blocks.astype(_float_type(images.dtype), copy=False)

    starts = range(0, len(images), chunk_size)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n_threads = min(len(starts), workers or cpus or 1)
    if n_threads <= 1:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, starts))  # list() re-raises a worker's exception here
    return out


def _line_offsets(d_row: int, d_col: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of `skimage.draw.line(0, 0, d_row, d_col)`: Bresenham, stepping the long axis."""
    steep = abs(d_row) > abs(d_col)
    (d_long, d_short) = (d_row, d_col) if steep else (d_col, d_row)
    long_step, short_step = (1 if d_long > 0 else -1), (1 if d_short > 0 else -1)
    along, across, error, s = [], [], 2 * abs(d_short) - abs(d_long), 0
    for i in range(abs(d_long)):
        along.append(i * long_step)
        across.append(s)
        while error >= 0:
            s += short_step
            error -= 2 * abs(d_long)
        error += 2 * abs(d_short)
    along.append(d_long)  # scikit-image sets the end point exactly
    across.append(d_short)
    rows, cols = (along, across) if steep else (across, along)
    return np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)


def hog_image(
    image: np.ndarray, orientations: int = 9, pixels_per_cell: Pair = (8, 8),
    transform_sqrt: bool = False,
) -> np.ndarray:
    """The picture `skimage.feature.hog(..., visualize=True)` draws, as an (H, W) float64 array.

    Each cell gets, per bin, a line through its centre perpendicular to the bin's middle
    orientation, with intensity equal to the cell's histogram value (lines add up). With a cell
    1 pixel wide, scikit-image raises IndexError for lines leaving the image; we clip them.
    """
    image = np.asarray(image)
    if image.ndim != 2 or np.iscomplexobj(image):
        raise ValueError(f"image must be a real (H, W) array; got {image.dtype} {image.shape}")
    validate_hog_args(image.shape, orientations, pixels_per_cell, 1)
    (cr, cc), (h, w) = as_pair(pixels_per_cell), image.shape
    hist = _cell_histograms(image[None], orientations, (cr, cc), transform_sqrt, float32_sums=True)
    values = hist.reshape(-1, orientations).astype(np.float64)  # (cells, O), row-major cells
    ncr, ncc = h // cr, w // cc
    radius = min(cr, cc) // 2 - 1
    middle = np.pi * (np.arange(orientations) + 0.5) / orientations  # (O,) bin middles
    d_rows, d_cols = radius * np.sin(middle), radius * np.cos(middle)
    centre_row = np.repeat(np.arange(ncr) * cr + cr // 2, ncc)  # (cells,)
    centre_col = np.tile(np.arange(ncc) * cc + cc // 2, ncr)
    drawing = np.zeros((h, w), _float_type(image.dtype))  # scikit-image draws in this type
    for o in range(orientations):
        # End points as scikit-image computes them (int() truncates), (cells,) each.
        r0 = np.trunc(centre_row - d_cols[o]).astype(np.intp)
        c0 = np.trunc(centre_col + d_rows[o]).astype(np.intp)
        deltas = np.stack([np.trunc(centre_row + d_cols[o]) - r0,
                           np.trunc(centre_col - d_rows[o]) - c0], axis=1).astype(np.intp)
        for d_row, d_col in np.unique(deltas, axis=0):  # usually one line shape for all cells
            same = np.flatnonzero((deltas[:, 0] == d_row) & (deltas[:, 1] == d_col))
            line_rows, line_cols = _line_offsets(int(d_row), int(d_col))  # (L,) each
            rows, cols = r0[same, None] + line_rows, c0[same, None] + line_cols  # (cells, L)
            inside = (rows < h) & (cols < w)  # trunc() never goes below 0
            pixel_values = np.broadcast_to(values[same, o, None], rows.shape)[inside]
            np.add.at(drawing, (rows[inside], cols[inside]), pixel_values)
    return drawing.astype(np.float64)
