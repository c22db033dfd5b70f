"""2x2 max pooling (stride 2, 'valid') written with four strided views, optionally fused with the
ReLU in front of it.

Why: PyTorch's CPU max-pool kernel took more of a fashion/final training pass than the
convolution (torch profiler, benchmarks/RESULTS.md). Three elementwise maxima over
the four corners of each window do the same in a fraction of the time, and a ReLU before the pool
commutes with the max (relu(max(a, b, c, d)) = max(relu(a), ..., relu(d))), so it runs on a
quarter of the values.

On a channels-last map (the lab's CNNs after their first layer), with or without the ReLU, the
compiled kernel in csrc/relu_pool.cpp (fast.native) does the same in one pass each way, keeping
one byte per window for the backward instead of the input map; elsewhere, the strided views.

Semantics are Keras's and PyTorch's: an odd last row/column is dropped; the gradient goes to
the first maximum of each window in row-major order; with the ReLU, a window whose maximum is not
positive passes no gradient (as ReLU's gradient at 0 is 0).
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast.native import native_kernel

__all__ = ["MaxPool2x2", "fast_pool_eligible"]


def _corners(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four corners of every 2x2 window: (top-left, top-right, bottom-left, bottom-right)."""
    h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
    return (x[..., 0:2 * h2:2, 0:2 * w2:2], x[..., 0:2 * h2:2, 1:2 * w2:2],
            x[..., 1:2 * h2:2, 0:2 * w2:2], x[..., 1:2 * h2:2, 1:2 * w2:2])


def _u8(mask: torch.Tensor) -> torch.Tensor:
    """Bool -> uint8 view: multiplying by it is cheaper than masked_fill/where on the CPU."""
    return mask.view(torch.uint8)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, relu: bool):  # noqa: D102
        c00, c01, c10, c11 = _corners(x)
        out = torch.maximum(torch.maximum(c00, c01), torch.maximum(c10, c11))
        if relu:
            out = out.clamp_min_(0)
        ctx.relu = relu
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, out = ctx.saved_tensors
        c00, c01, c10, c11 = _corners(x)
        top, bottom = torch.maximum(c00, c01), torch.maximum(c10, c11)
        upper = _u8(top >= bottom)  # ties go to the first maximum in row-major order
        lower = 1 - upper
        if ctx.relu:
            grad = grad * _u8(out > 0)
        g_top, g_bottom = grad * upper, grad * lower
        grad_in = torch.zeros_like(x)
        g00, g01, g10, g11 = _corners(grad_in)
        left = _u8(c00 >= c01)
        torch.mul(g_top, left, out=g00)
        torch.mul(g_top, 1 - left, out=g01)
        left = _u8(c10 >= c11)
        torch.mul(g_bottom, left, out=g10)
        torch.mul(g_bottom, 1 - left, out=g11)
        return grad_in, None


class _NativeReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel, relu: bool):  # noqa: D102
        out, code = kernel.relu_pool_forward(x, relu)
        ctx.save_for_backward(code)
        ctx.kernel, ctx.size = kernel, x.shape[-2:]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (code,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)  # free: it is already
        return ctx.kernel.relu_pool_backward(grad, code, *ctx.size), None, None


def _native_fits(x: torch.Tensor) -> bool:
    return (x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
            and x.shape[-2] >= 2 and x.shape[-1] >= 2 and len(x) > 0
            and x.is_contiguous(memory_format=torch.channels_last))


class MaxPool2x2(nn.Module):
    """MaxPool2D(pool_size=2, strides=2, padding='valid'); `relu=True` applies a ReLU first."""

    def __init__(self, relu: bool = False):
        super().__init__()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _native_fits(x):
            kernel = native_kernel()
            if kernel is not None:
                return _NativeReluPool.apply(x, kernel, self.relu)
        return _MaxPool2x2.apply(x, self.relu)

    def extra_repr(self) -> str:
        return "relu=True" if self.relu else ""


def fast_pool_eligible(pool: nn.Module) -> bool:
    """Whether `pool` is a plain 2x2, stride-2, unpadded max pool that MaxPool2x2 replaces."""
    def pair(v):
        return tuple(v) if isinstance(v, tuple | list) else (v, v)

    return (isinstance(pool, nn.MaxPool2d) and pair(pool.kernel_size) == (2, 2)
            and pair(pool.stride) == (2, 2) and pair(pool.padding) == (0, 0)
            and pair(pool.dilation) == (1, 1) and not pool.ceil_mode
            and not pool.return_indices)
