"""The torch modules a model is built from, where PyTorch has no module with Keras's semantics:
Keras's dropout masks, the channel dimension of an image, Keras's flatten order.

Everything else is a stock `torch.nn` module (`nn.Linear`, `nn.Conv2d`, `nn.MaxPool2d`, the
activations), chosen in `mnistlab.nn.build`. These three are the reference too: `mnistlab.fast`
rewrites other modules for speed but keeps these, so a run draws the same dropout masks with its
speed-ups on or off.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["KerasDropout", "ImagesIn", "FlattenHWC", "ACTIVATION_MODULES"]


class KerasDropout(nn.Module):
    """Dropout as Keras/TensorFlow computes it: keep where uniform[0, 1) >= rate, scale by
    1 / (1 - rate).

    On the CPU the uniform numbers are integers from NumPy's SFC64 generator, seeded for every
    mask from torch's global generator (so `torch.manual_seed` and a checkpoint's saved torch RNG
    state still fix every mask). When rate x 256 is a whole number (0.5, 0.25, ...) one random
    byte per unit decides exactly (keep iff byte >= rate x 256); otherwise 32 bits do (keep
    probability within 2^-32 of 1 - rate, finer than a float32 uniform's 2^-24 steps). Why: masks
    drawn with `bernoulli_` or torch's per-element generator were a sizeable share of an MLP
    epoch; 64 random bits per draw from SFC64 cost a fraction of that (benchmarks/RESULTS.md).
    Both speed settings draw these same masks, so a run is reproducible with fast on or off.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)

    def keep_mask(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Boolean mask, True where a unit is kept (probability 1 - rate)."""
        n = math.prod(shape)
        if torch.device(device).type != "cpu":
            return torch.rand(shape, device=device) >= self.rate
        seed = int(torch.randint(0, 2**63 - 1, ()))
        bits = np.random.Generator(np.random.SFC64(seed)).bit_generator
        byte_threshold = self.rate * 256
        if byte_threshold == int(byte_threshold):
            draws = bits.random_raw((n + 7) // 8).view(np.uint8)[:n]
            keep = draws >= np.uint8(byte_threshold)  # rate < 1, so the threshold is < 256
        else:
            draws = bits.random_raw((n + 1) // 2).view(np.uint32)[:n]
            keep = draws >= np.uint32(math.ceil(self.rate * 2**32))
        return torch.from_numpy(keep).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = self.keep_mask(x.shape, x.device)
        return x * (keep.to(x.dtype) * (1.0 / (1.0 - self.rate)))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "linear": nn.Identity,
}




class ImagesIn(nn.Module):
    """(B, H, W) images -> (B, 1, H, W): a CNN's single input channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


class FlattenHWC(nn.Module):
    """Keras's Flatten of an (H, W, C) map: (B, C, H, W) -> (B, H * W * C), so the next Dense
    layer's weights line up with a Keras model's. `map_shape` is the (H, W, C) it expects.

    For a channels-last tensor the permute is a free view; for NCHW it costs one small copy.
    `flatten(1)` rather than a reshape to `len(x)`: a traced (TorchScript) model keeps its batch
    size free instead of freezing the one it was traced with.
    """

    def __init__(self, map_shape: tuple[int, int, int]):
        super().__init__()
        self.map_shape = tuple(map_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)

    def extra_repr(self) -> str:
        return f"map_shape={self.map_shape}"
