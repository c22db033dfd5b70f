"""features.hog against scikit-image's `feature.hog`: features, lengths, errors and the drawing.

Tolerance: 1e-6 absolute on features (they lie in [0, 1]); scikit-image sums cells in float32
and we in float64, which the generated cases below measure at ~1e-7.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistlab.features.hog import (
    _line_offsets,
    _mod180,
    hog,
    hog_feature_length,
    hog_image,
    validate_hog_args,
)

skimage_feature = pytest.importorskip("skimage.feature")
skimage_draw = pytest.importorskip("skimage.draw")

NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
ATOL = 1e-6


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def reference(images, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), **kw):
    """scikit-image's features, one image at a time: (N, F)."""
    return np.stack([
        skimage_feature.hog(
            image, orientations, pair(pixels_per_cell), pair(cells_per_block),
            feature_vector=True, visualize=False, channel_axis=None, **kw,
        )
        for image in images
    ])


def assert_matches(images, **kw):
    ours = hog(images, **kw)
    expected = reference(images, **kw)
    assert ours.dtype == np.float64 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)


def generated_images(rng, kind, shape):
    """(n, H, W) images of one kind: the image types HOG must handle."""
    if kind == "zero":
        return np.zeros(shape)
    if kind == "constant":
        return np.full(shape, 0.7)
    if kind == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "float32":
        return rng.random(shape, dtype=np.float32)
    if kind == "sparse":  # digit-like: mostly zero, a few strokes, many exact-edge angles
        return (rng.random(shape) < 0.2) * rng.integers(1, 4, shape) / 3.0
    return rng.random(shape)


def _cases():
    """Seeded sample of the argument space, including non-divisors and rectangular cells."""
    rng = np.random.default_rng(2022)
    kinds = ("random", "uint8", "float32", "sparse", "zero", "constant")
    cells = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 9), (14, 14),
             (3, 5), (4, 7), (6, 2), (11, 13), (12, 10)]
    cases = []
    for i in range(60):
        cell = cells[i % len(cells)]
        shape = (int(rng.integers(cell[0], 40)), int(rng.integers(cell[1], 40)))
        grid = (shape[0] // cell[0], shape[1] // cell[1])
        block = tuple(int(rng.integers(1, min(3, n) + 1)) for n in grid)
        cases.append(dict(
            shape=shape, kind=kinds[i % len(kinds)], orientations=1 + i % 16,
            pixels_per_cell=cell, cells_per_block=block, block_norm=NORMS[i % 4],
            transform_sqrt=bool(i % 3 == 1),
        ))
    return cases


@pytest.mark.parametrize("case", _cases(), ids=lambda c: "{kind}-{shape}-o{orientations}-p"
                         "{pixels_per_cell}-b{cells_per_block}-{block_norm}".format(**c))
def test_matches_skimage_on_generated_images(case):
    case = dict(case)
    rng = np.random.default_rng(len(str(case)))
    images = generated_images(rng, case.pop("kind"), (3, *case.pop("shape")))
    assert_matches(images, **case)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_matches_skimage_property(data):
    cell = (data.draw(st.integers(1, 14)), data.draw(st.integers(1, 14)))
    shape = (data.draw(st.integers(cell[0], 36)), data.draw(st.integers(cell[1], 36)))
    grid = (shape[0] // cell[0], shape[1] // cell[1])
    block = (data.draw(st.integers(1, min(3, grid[0]))), data.draw(st.integers(1, min(3, grid[1]))))
    seed = data.draw(st.integers(0, 2**32 - 1))
    kind = data.draw(st.sampled_from(["random", "uint8", "float32", "sparse", "zero"]))
    images = generated_images(np.random.default_rng(seed), kind, (2, *shape))
    assert_matches(
        images, orientations=data.draw(st.integers(1, 16)), pixels_per_cell=cell,
        cells_per_block=block, block_norm=data.draw(st.sampled_from(NORMS)),
        transform_sqrt=data.draw(st.booleans()),
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float16, np.float32, ">f4", np.float64,
                                   np.int64, bool])
def test_every_input_dtype_is_converted_like_skimage(dtype):
    rng = np.random.default_rng(3)
    images = (rng.integers(0, 200, (3, 20, 24)) * (1 if dtype is not bool else 0.01)).astype(dtype)
    assert_matches(images, orientations=9, pixels_per_cell=(4, 6), cells_per_block=(2, 2))


@pytest.mark.parametrize("orientations", range(1, 17))
def test_angles_exactly_on_bin_edges(orientations):
    """Ramps with gradients at multiples of 45 degrees (and 180) sit on many bin edges."""
    r, c = np.mgrid[:12, :12]
    images = np.stack([a * r + b * c for a in (-2, -1, 0, 1, 2) for b in (-2, -1, 0, 1, 3)])
    assert_matches(images.astype(np.float64) / 7, orientations=orientations,
                   pixels_per_cell=(3, 4), cells_per_block=(1, 1), block_norm="L1")


def test_orientation_rounding_to_180_votes_nowhere():
    """A tiny negative angle + 180 rounds to 180.0: scikit-image drops it from every bin."""
    image = np.zeros((1, 8, 8))
    image[0, :, 4] = [0, 1e-30, 0, 0, 0, 0, 0, 0]  # g_row = -1e-30 next to g_col = +1e-30
    image[0, 3, :] += np.arange(8) * 0.5
    for orientations in (1, 7, 8, 13):
        assert_matches(image, orientations=orientations, pixels_per_cell=(4, 4),
                       cells_per_block=(1, 1))


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_huge_and_tiny_pixel_values(scale):
    images = np.random.default_rng(4).random((2, 16, 16)) * scale
    assert_matches(images, orientations=8, pixels_per_cell=4, cells_per_block=2)
    assert np.isfinite(hog(images, 8, 4, 2)).all()


def test_mod180_is_numpy_remainder_bit_for_bit():
    rng = np.random.default_rng(0)
    specials = [-180.0, 180.0, 0.0, -0.0, -1e-20, -1e-14, 1e-300, -5e-324, np.nextafter(180, 0)]
    angles = np.concatenate([rng.uniform(-180, 180, 100_000), specials, np.rad2deg(
        np.arctan2(rng.integers(-3, 4, 1000), rng.integers(-3, 4, 1000)))])
    assert np.array_equal(_mod180(angles.copy()), angles % 180)


def _idx_images(path: Path, count: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:count]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("pixels, orientations", [(4, 8), (7, 8), (7, 16), (4, 16), (8, 9)])
def test_matches_skimage_on_real_images(dataset, pixels, orientations):
    """The lab's settings on 100 real images, as the pipeline feeds them (float32 / 255)."""
    path = SHARED_DATA / dataset / "train-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    images = _idx_images(path, 100).astype(np.float32) / np.float32(255)
    for batch in (images, images.astype(np.float64)):
        assert_matches(batch, orientations=orientations, pixels_per_cell=(pixels, pixels),
                       cells_per_block=(1, 1))
    assert_matches(images[:20], orientations=orientations, pixels_per_cell=pixels,
                   cells_per_block=2, block_norm="L1", transform_sqrt=True)


def test_chunks_and_threads_do_not_change_results():
    images = np.random.default_rng(5).random((37, 28, 28))
    kw = dict(orientations=8, pixels_per_cell=4, cells_per_block=2)
    whole = hog(images, chunk_size=100, workers=1, **kw)
    for chunk_size, workers in [(1, 1), (5, 2), (16, 3)]:
        assert np.array_equal(hog(images, chunk_size=chunk_size, workers=workers, **kw), whole)


def test_int_arguments_mean_square_cells_and_blocks():
    images = np.random.default_rng(6).random((2, 28, 28))
    assert np.array_equal(hog(images, 8, 4, 2), hog(images, 8, (4, 4), (2, 2)))


def test_empty_batch_has_the_feature_width():
    assert hog(np.zeros((0, 28, 28)), 8, 4, 1).shape == (0, 392)


@pytest.mark.parametrize("shape, orientations, cell, block", [
    ((28, 28), 8, 4, 1), ((28, 28), 8, 7, 1), ((28, 28), 16, 7, 1), ((28, 28), 16, 4, 1),
    ((28, 28), 9, 8, 3), ((28, 28), 8, 5, 1), ((28, 28), 8, 6, 2), ((28, 28), 8, 9, 1),
    ((28, 28), 3, 28, 1), ((30, 17), 7, (4, 3), (2, 3)), ((5, 40), 1, (5, 1), (1, 40)),
])
def test_feature_length_matches_skimage(shape, orientations, cell, block):
    expected = reference(np.zeros((1, *shape)), orientations, cell, block).shape[1]
    assert hog_feature_length(shape, orientations, cell, block) == expected


def test_lab_feature_lengths():
    lengths = [hog_feature_length((28, 28), o, p, 1) for p, o in [(4, 8), (7, 8), (7, 16), (4, 16)]]
    assert lengths == [392, 128, 256, 784]


@pytest.mark.parametrize("kw, message", [
    (dict(orientations=0), "features.orientations must be an int >= 1; got 0"),
    (dict(orientations=2.5), "features.orientations must be an int >= 1; got 2.5"),
    (dict(pixels_per_cell=30), "features.pixels_per_cell must be <= image size 28; got 30"),
    (dict(pixels_per_cell=(4, 29)), "must be <= image size 28; got (4, 29)"),
    (dict(pixels_per_cell=0), "features.pixels_per_cell must be an int >= 1 or a pair of them"),
    (dict(pixels_per_cell=(4, 4, 4)), "features.pixels_per_cell must be an int >= 1 or a pair"),
    (dict(cells_per_block=8), "features.cells_per_block must be <= the 7 cell grid of a 28 image"
                              " with pixels_per_cell 4; got 8"),
    (dict(cells_per_block=(1, True)), "features.cells_per_block must be an int >= 1 or a pair"),
    (dict(block_norm="L3"), "features.block_norm must be one of L1, L1-sqrt, L2, L2-Hys; got 'L3'"),
])
def test_invalid_arguments_are_named_with_range_and_value(kw, message):
    args = dict(orientations=8, pixels_per_cell=4, cells_per_block=1, block_norm="L2-Hys") | kw
    with pytest.raises(ValueError, match=None) as info:
        validate_hog_args((28, 28), **args)
    assert message in str(info.value)
    with pytest.raises(ValueError) as info:
        hog(np.zeros((2, 28, 28)), **args)
    assert message in str(info.value)


def test_prefix_names_the_caller_field():
    with pytest.raises(ValueError, match=r"^orientations must be an int >= 1; got 0$"):
        validate_hog_args((28, 28), 0, 4, 1, prefix="")


@pytest.mark.parametrize("shape, cell, block", [((28, 28), 9, 4), ((10, 30), (3, 8), (4, 2))])
def test_rejects_what_skimage_rejects(shape, cell, block):
    with pytest.raises(ValueError):
        reference(np.zeros((1, *shape)), 8, cell, block)
    with pytest.raises(ValueError, match="cells_per_block"):
        hog_feature_length(shape, 8, cell, block)


@pytest.mark.parametrize("images", [np.zeros((28, 28)), np.zeros((2, 28, 28), complex),
                                    np.array([["a"]])])
def test_rejects_what_is_not_a_batch_of_real_images(images):
    with pytest.raises(ValueError, match="images must be"):
        hog(images, 8, 4, 1)


@pytest.mark.parametrize("d_row, d_col", [(r, c) for r in range(-6, 7) for c in range(-6, 7)])
def test_line_offsets_match_skimage_draw_line(d_row, d_col):
    rows, cols = _line_offsets(d_row, d_col)
    expected = skimage_draw.line(10, 10, 10 + d_row, 10 + d_col)
    assert np.array_equal(rows + 10, expected[0]) and np.array_equal(cols + 10, expected[1])


@pytest.mark.parametrize("kind, orientations, cell, sqrt", [
    ("random", 9, (8, 8), False), ("uint8", 8, (4, 4), False), ("float32", 16, (7, 7), True),
    ("sparse", 5, (5, 3), False), ("random", 12, (14, 9), True), ("uint8", 7, (2, 3), False),
    ("zero", 4, (4, 4), False), ("random", 6, (1, 6), False),
])
def test_hog_image_matches_skimage_visualisation(kind, orientations, cell, sqrt):
    image = generated_images(np.random.default_rng(orientations), kind, (1, 29, 33))[0]
    _, expected = skimage_feature.hog(image, orientations, cell, (1, 1), visualize=True,
                                      transform_sqrt=sqrt)
    ours = hog_image(image, orientations, cell, transform_sqrt=sqrt)
    assert ours.dtype == np.float64 and ours.shape == image.shape
    # Same float32 cell sums as scikit-image: equal up to the order of additions.
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)


def test_hog_image_clips_lines_where_skimage_raises():
    image = np.random.default_rng(1).random((9, 7))
    with pytest.raises(IndexError):
        skimage_feature.hog(image, 7, (3, 1), (1, 1), visualize=True)
    drawing = hog_image(image, 7, (3, 1))
    assert drawing.shape == (9, 7) and np.isfinite(drawing).all() and drawing.max() > 0


@pytest.mark.parametrize("value, sqrt, message", [
    (np.nan, False, "images must be finite"), (-1.0, True, "transform_sqrt needs images >= 0")])
def test_nan_features_are_an_error(value, sqrt, message):
    images = np.zeros((2, 16, 16))
    images[1, 5, 5] = value
    with pytest.raises(ValueError, match=message):
        hog(images, 8, 4, 1, transform_sqrt=sqrt)


def test_large_cells_replay_skimage_float32_sums_exactly():
    """Past 1024 pixels per cell, float64 sums would drift from scikit-image's float32 ones."""
    images = np.random.default_rng(8).random((3, 130, 100))
    ours = hog(images, 2, (64, 48), 1, "L1")
    assert np.array_equal(ours, reference(images, 2, (64, 48), (1, 1), block_norm="L1"))
