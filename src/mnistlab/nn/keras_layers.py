"""Keras layers whose semantics no stock torch module has: BatchNormalization (moving variance
from the *biased* batch variance, momentum as Keras counts it), AveragePooling2D with 'same'
padding (the padding is not counted in the average, and the odd pixel goes at the end) and
GlobalAveragePooling2D (output (B, C), so a Dense layer can follow it directly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KerasBatchNorm", "AvgPoolSame", "GlobalAvgPool"]


class KerasBatchNorm(nn.Module):
    """Keras BatchNormalization over dimension 1 (channels of (B, C, H, W), features of (B, F)).

    Training: normalise with the batch mean and biased variance, then
    moving = moving * momentum + batch * (1 - momentum) for both moments (Keras 3's `call`;
    torch's BatchNorm would use the unbiased variance and momentum 1 - 0.99). Inference:
    normalise with the moving mean and variance. gamma/beta are trainable (`weight`/`bias`),
    the moving moments are buffers, saved in model.pt.
    """

    def __init__(self, channels: int, momentum: float = 0.99, epsilon: float = 1e-3):
        super().__init__()
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.moving_mean, self.moving_variance, self.weight,
                                self.bias, False, 0.0, self.epsilon)
        with torch.no_grad():
            dims = [d for d in range(x.dim()) if d != 1]
            var, mean = torch.var_mean(x, dim=dims, correction=0)
            self.moving_mean.mul_(self.momentum).add_(mean, alpha=1.0 - self.momentum)
            self.moving_variance.mul_(self.momentum).add_(var, alpha=1.0 - self.momentum)
        # torch's fused kernel normalises with the biased batch variance, as Keras does
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.epsilon)

    def extra_repr(self) -> str:
        return f"{len(self.weight)}, momentum={self.momentum}, epsilon={self.epsilon}"


class AvgPoolSame(nn.Module):
    """AveragePooling2D(padding='same'): output ceil(H / s); each window averages only the
    pixels inside the image (Keras/TensorFlow), with the extra padding pixel at the end."""

    def __init__(self, pool_size: int, strides: int, pads: tuple[int, int, int, int]):
        super().__init__()
        self.pool_size, self.strides, self.pads = pool_size, strides, tuple(pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.pool_size, self.strides
        total = F.avg_pool2d(F.pad(x, self.pads), k, s, divisor_override=1)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(F.pad(ones, self.pads), k, s, divisor_override=1)
        return total / count

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, strides={self.strides}, pads={self.pads}"


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C): the mean of each channel's map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
