"""Keras's Dense layer with its products on oneDNN (fast.gemm), as drop-in `nn.Linear`s.

Why: a Dense layer's three products (forward, input gradient, weight gradient) are most of an
MLP's and of fashion/final's arithmetic, and oneDNN runs them faster than PyTorch's default
(MKL) on AMD CPUs (benchmarks/bench_gemm.py). The parameters, their names and initialisation
stay those of `nn.Linear`, so saved runs load either way.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast import gemm

__all__ = ["Dense", "DenseOverCHW"]


class _DenseProduct(torch.autograd.Function):
    """x W^T + b with its three gradient products, each through `fast.gemm` (oneDNN)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: D102
        ctx.save_for_backward(x, weight)
        return gemm.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight = ctx.saved_tensors
        grad_x = gemm.matmul(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, gemm.linear(grad.t(), x.t()), grad.sum(0)


class Dense(nn.Linear):
    """Keras's Dense kernel as an `nn.Linear` (same parameters and state-dict names) whose
    products run on oneDNN's AVX-512 kernels where PyTorch would take MKL's AVX2 ones
    (see fast.gemm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None and gemm.fits(x, self.weight):
            return _DenseProduct.apply(x, self.weight, self.bias)
        return super().forward(x)


class DenseOverCHW(Dense):
    """A Dense layer after Keras's Flatten whose input arrives in C, H, W order instead.

    The kernel stays in Keras's H, W, C order (same parameters, same saved weights); its columns
    are gathered into C, H, W order for each product (176,400 floats for fashion/final's, far
    less work than transposing every image's map), and autograd scatters the gradient back.
    """

    def __init__(self, in_features: int, out_features: int, map_shape: tuple[int, int, int]):
        super().__init__(in_features, out_features)
        h, w, c = map_shape
        hwc_of_chw = torch.arange(h * w * c).view(h, w, c).permute(2, 0, 1).reshape(-1)
        self.register_buffer("hwc_of_chw", hwc_of_chw, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.index_select(1, self.hwc_of_chw)
        if gemm.fits(x, weight):
            return _DenseProduct.apply(x, weight, self.bias)
        return torch.nn.functional.linear(x, weight, self.bias)
