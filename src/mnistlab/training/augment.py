"""Data augmentation on the fly (`[augmentation]`): random rotation, shift, zoom and
left-right flip of each training image, as Keras's RandomRotation, RandomTranslation,
RandomZoom and RandomFlip("horizontal") layers draw them.

Why this shape: one affine matrix per image and one `affine_grid` + `grid_sample` per batch
(bilinear, vectorised over the batch), and the random numbers come from a generator seeded by
(seed, epoch, batch index) alone, so a run resumed mid-epoch after kill -9 draws exactly the
transforms the uninterrupted run would have. Only training batches pass through here; the
validation and test sets are never augmented.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mnistlab.config.sections import AugmentationConfig
from mnistlab.training.steps import TrainingPlan

__all__ = ["batch_generator", "draw_transforms", "affine_images", "augment_images",
           "make_augmenter", "augmented_plan"]

Augmenter = Callable[[torch.Tensor, int, int], torch.Tensor]  # (images, epoch, batch) -> images


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, batch): resume redraws the same numbers."""
    key = ((seed * 1_000_003 + epoch) * 1_000_033 + batch) * 31 + 7
    return torch.Generator().manual_seed(key % (2**63))


def draw_transforms(n: int, cfg: AugmentationConfig, gen: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    """Each image's angle (radians), scale and shift (fractions of the image size), uniform
    within the configured factors: four numbers per image whatever is switched on; with `flip`
    a fifth, drawn after them (so runs without it draw what they always drew): mirror when
    below 0.5, as RandomFlip does."""
    u = torch.rand((n, 4), generator=gen, dtype=torch.float64) * 2 - 1  # U(-1, 1)
    drawn = {"angle": u[:, 0] * cfg.rotation * 2 * math.pi, "scale": 1 + u[:, 1] * cfg.zoom,
             "shift_y": u[:, 2] * cfg.shift, "shift_x": u[:, 3] * cfg.shift}
    if cfg.flip:
        drawn["flip"] = torch.rand(n, generator=gen, dtype=torch.float64) < 0.5
    return drawn


def affine_images(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor,
                  shift_y: torch.Tensor, shift_x: torch.Tensor, fill_mode: str = "constant",
                  flip: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) images, each rotated by `angle` (counter-clockwise as displayed), zoomed out by
    `scale` (> 1 shrinks the content) and moved by `shift_*` x its size (down, right), then
    mirrored left-right where `flip` is true. In pixels around the centre,
    input = scale x R(angle) x (M output - shift) with M = diag(-1, 1) for a flipped image
    (the mirror of the rotated, zoomed and shifted image);
    pixels from outside the image are zeros ('constant') or the nearest edge pixel
    ('nearest'). A flip alone lands on pixel centres: it is an exact mirror."""
    n, height, width = x.shape
    half_w, half_h = width / 2, height / 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    dx, dy = shift_x * width, shift_y * height
    theta = torch.empty((n, 2, 3), dtype=torch.float64)
    # the pixel matrix [[cos, -sin], [sin, cos]] in affine_grid's [-1, 1] units (x right, y down)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * half_h / half_w
    theta[:, 1, 0], theta[:, 1, 1] = sin * half_w / half_h, cos
    theta[:, 0, 2] = -(cos * dx - sin * dy) / half_w
    theta[:, 1, 2] = -(sin * dx + cos * dy) / half_h
    if flip is not None:  # the output x coordinate enters negated: theta's first column flips
        theta[:, :, 0] *= torch.where(flip, -1.0, 1.0).to(torch.float64)[:, None]
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    padding = "zeros" if fill_mode == "constant" else "border"
    out = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode=padding,
                        align_corners=False)
    return out.squeeze(1)


def augment_images(x: torch.Tensor, cfg: AugmentationConfig, gen: torch.Generator
                   ) -> torch.Tensor:
    """(B, H, W) images transformed one random affine map each (one grid_sample per batch)."""
    return affine_images(x, **draw_transforms(len(x), cfg, gen), fill_mode=cfg.fill_mode)


def make_augmenter(cfg: AugmentationConfig, seed: int) -> Augmenter | None:
    """The training loop's transform of a batch, or None when augmentation is off."""
    if not cfg.active:
        return None

    def augment(x: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        return augment_images(x, cfg, batch_generator(seed, epoch, batch))

    return augment


def augmented_plan(plan: TrainingPlan) -> TrainingPlan:
    """`plan` stepping on plain image batches: a precomputed training input (the sparse raw
    pixel split of `mnistlab.fast`) would not survive moving the pixels, so it is dropped and
    the run records so in metrics.json's `fast`."""
    if not plan.applied:  # the stock plan steps on plain tensors already
        return plan
    applied = tuple(a for a in plan.applied if "sparse" not in a)
    return dataclasses.replace(plan, train_input=lambda x: x, applied=(
        *applied, "augmented batches stepped as dense images (no sparse input)"))
