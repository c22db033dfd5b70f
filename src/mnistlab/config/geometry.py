"""Shapes, computed without computing anything: what a layer list outputs (Keras's rules) and how
many features HOG arguments give. Config validation, model building and summaries share them.

Shapes follow Keras (channels last, no batch dimension): Conv2D 'same' gives ceil(H / s),
'valid' gives ceil((H - k + 1) / s); MaxPool2D 'valid' gives floor((H - p) / s) + 1, so a 7x7
map pooled 2x2 becomes 3x3. HOG follows scikit-image: cells tile from the top-left corner,
partial cells are ignored, blocks slide one cell at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mnistlab.config.layers import layer_specs
from mnistlab.config.sections import BLOCK_NORMS, FeaturesConfig, ModelConfig
from mnistlab.errors import ConfigError

__all__ = ["IMAGE_SHAPE", "model_input_shape", "output_shapes", "layer_weights",
           "layer_non_trainable", "check_shapes",
           "validate_hog_args", "hog_feature_length", "hog_kwargs", "feature_shape",
           "check_feature_args", "shape_text", "as_pair"]

IMAGE_SHAPE = (28, 28)  # every dataset in the registry has 28x28 images

Pair = int | Sequence[int]  # an int n means (n, n)


def model_input_shape(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A CNN sees (H, W) images as (H, W, 1); an MLP sees its features as given."""
    shape = tuple(input_shape)
    return (*shape, 1) if cfg.kind == "cnn" and len(shape) == 2 else shape


def _conv_out(size: int, k: int, s: int, padding: str) -> int:
    return math.ceil(size / s) if padding == "same" else math.ceil((size - k + 1) / s)


def _next_shape(spec: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    """One layer's Keras output shape; ValueError says why the layer cannot take `shape`."""
    kind = spec["type"]
    if kind in ("conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d") and len(shape) != 3:
        raise ValueError(f"needs an HxWxC input but gets {shape_text(shape)}; put it before the "
                         "flatten layer")
    if kind == "dense" and len(shape) != 1:
        raise ValueError(f"must come after a flatten layer (its input is {shape_text(shape)})")
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "dense":
        return (spec["units"],)
    if kind in ("dropout", "batchnorm", "activation"):
        return shape
    h, w, c = shape
    if kind == "globalavgpool2d":
        return (c,)
    if kind == "conv2d":
        k, s, pad = spec["kernel_size"], spec["strides"], spec["padding"]
        out = (_conv_out(h, k, s, pad), _conv_out(w, k, s, pad), spec["filters"])
        what = f"{k}x{k} '{pad}' convolution"
    elif kind == "avgpool2d" and spec["padding"] == "same":
        s = spec["strides"]
        out = (math.ceil(h / s), math.ceil(w / s), c)
        what = "'same' pooling"
    else:
        p, s = spec["pool_size"], spec["strides"]
        out = ((h - p) // s + 1 if h >= p else 0, (w - p) // s + 1 if w >= p else 0, c)
        what = f"{p}x{p} 'valid' pooling"
    if min(out) <= 0:
        raise ValueError(f"would produce an empty output: {what} of {shape_text(shape)} -> "
                         f"{'x'.join(str(max(d, 0)) for d in out)}")
    return out


def output_shapes(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int = 10
                  ) -> list[tuple[int, ...]]:
    """Keras output shape of every layer (ValueError naming the layer when one cannot work)."""
    shape, shapes = model_input_shape(cfg, input_shape), []
    specs = layer_specs(cfg, n_classes)
    for i, spec in enumerate(specs):
        try:
            shape = _next_shape(spec, shape)
        except ValueError as exc:
            if cfg.kind == "cnn" and i < len(specs) - 1:
                raise ValueError(f"model.layers[{i}] ({spec['type']}) {exc}") from None
            raise ValueError(f"the output Dense({n_classes}) layer appended after "
                             f"model.layers {exc}") from None
        shapes.append(shape)
    return shapes


def layer_weights(spec: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
                  ) -> tuple[int, int]:
    """Trainable (weights, biases) of one layer: Dense n_in x n_out + n_out, Conv2D k x k x c_in
    x c_out + c_out (no biases with use_bias = false), BatchNormalization gamma + beta (one each
    per channel), nothing for the others. Summaries and the memory estimate both count with it."""
    if spec["type"] == "dense":
        return in_shape[-1] * out_shape[0], out_shape[0]
    if spec["type"] == "conv2d":
        k = spec["kernel_size"]
        return k * k * in_shape[-1] * out_shape[-1], out_shape[-1] if spec["use_bias"] else 0
    if spec["type"] == "batchnorm":
        return out_shape[-1], out_shape[-1]
    return 0, 0


def layer_non_trainable(spec: dict, out_shape: tuple[int, ...]) -> int:
    """Non-trainable values Keras counts as parameters: BatchNormalization's moving mean and
    moving variance, one each per channel (so Keras shows 4 per channel, 2 trainable)."""
    return 2 * out_shape[-1] if spec["type"] == "batchnorm" else 0


def check_shapes(cfg: ModelConfig, input_shape: tuple[int, ...], source: str,
                 n_classes: int = 10) -> None:
    """Reject a layer stack that cannot be built, naming the layer index and the problem."""
    try:
        output_shapes(cfg, input_shape, n_classes)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_pair(value: Pair) -> tuple[int, int]:
    return (int(value), int(value)) if _is_int(value) else (int(value[0]), int(value[1]))


def _show(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else str(pair)


def validate_hog_args(
    image_shape: Sequence[int],
    orientations: int,
    pixels_per_cell: Pair,
    cells_per_block: Pair,
    block_norm: str = "L2-Hys",
    *,
    prefix: str = "features.",
) -> None:
    """Reject HOG arguments that cannot produce features, before any image is read.

    Raises:
        ValueError: naming the argument (after `prefix`), what is allowed and the value given.
    """
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(_is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"image shape must be two ints >= 1 (rows, cols); got {image_shape!r}")
    if not _is_int(orientations) or orientations < 1:
        raise ValueError(f"{prefix}orientations must be an int >= 1; got {orientations!r}")
    for name, value in (("pixels_per_cell", pixels_per_cell), ("cells_per_block", cells_per_block)):
        is_seq = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str)
        items = [value] * 2 if _is_int(value) else list(value) if is_seq else []
        if len(items) != 2 or not all(_is_int(v) and v >= 1 for v in items):
            raise ValueError(f"{prefix}{name} must be an int >= 1 or a pair of them; got {value!r}")
    shape, cell, block = as_pair(shape), as_pair(pixels_per_cell), as_pair(cells_per_block)
    if cell[0] > shape[0] or cell[1] > shape[1]:
        raise ValueError(
            f"{prefix}pixels_per_cell must be <= image size {_show(shape)}; got {_show(cell)}"
        )
    grid = (shape[0] // cell[0], shape[1] // cell[1])
    if block[0] > grid[0] or block[1] > grid[1]:
        raise ValueError(
            f"{prefix}cells_per_block must be <= the {_show(grid)} cell grid of a {_show(shape)}"
            f" image with pixels_per_cell {_show(cell)}; got {_show(block)}"
        )
    if block_norm not in BLOCK_NORMS:
        raise ValueError(
            f"{prefix}block_norm must be one of {', '.join(BLOCK_NORMS)}; got {block_norm!r}"
        )


def hog_feature_length(
    image_shape: Sequence[int], orientations: int, pixels_per_cell: Pair, cells_per_block: Pair
) -> int:
    """Features per image: blocks x cells per block x orientations (not 28*28*o/p^2).

    Raises:
        ValueError: as `validate_hog_args`, e.g. when not even one block fits in the image.
    """
    validate_hog_args(image_shape, orientations, pixels_per_cell, cells_per_block)
    (rows, cols), (cr, cc) = image_shape, as_pair(pixels_per_cell)
    br, bc = as_pair(cells_per_block)
    return (rows // cr - br + 1) * (cols // cc - bc + 1) * br * bc * orientations



def hog_kwargs(cfg: FeaturesConfig) -> dict:
    """The features section as scikit-image's `hog` keyword arguments."""
    return {
        "orientations": cfg.orientations,
        "pixels_per_cell": (cfg.pixels_per_cell, cfg.pixels_per_cell),
        "cells_per_block": (cfg.cells_per_block, cfg.cells_per_block),
        "block_norm": cfg.block_norm,
        "transform_sqrt": cfg.transform_sqrt,
    }


def feature_shape(cfg: FeaturesConfig, image_shape: tuple[int, int] = IMAGE_SHAPE) -> tuple:
    """Shape of one sample's features: (28, 28) for raw, (F,) for HOG."""
    if cfg.kind == "raw":
        return tuple(image_shape)
    kw = hog_kwargs(cfg)
    return (hog_feature_length(image_shape, kw["orientations"], kw["pixels_per_cell"],
                               kw["cells_per_block"]),)


def check_feature_args(cfg: FeaturesConfig, source: str = "<config>",
                       image_shape: tuple[int, int] = IMAGE_SHAPE) -> None:
    """Reject HOG arguments that cannot produce features, before anything is computed."""
    if cfg.kind != "hog":
        return
    kw = hog_kwargs(cfg)
    try:
        validate_hog_args(image_shape, kw["orientations"], kw["pixels_per_cell"],
                          kw["cells_per_block"], kw["block_norm"])
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
