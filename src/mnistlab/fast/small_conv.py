"""Conv2D layers with few channels (2-32 in and out) on a compiled kernel, forward and backward.

Why: oneDNN blocks channels by 16, so layers of 9 or 18 channels fill its vectors by half (the
lab's 9-9-16 CNNs, the 18-18-32 CNN other students ran), and on these maps of 7-14 pixels it ran
the lab's convolutions at 103-191 GFLOP/s against 163-309 for its dense products
(benchmarks/RESULTS.md, "Chunk size is not a lever"). csrc/small_conv.cpp puts 16 images in the
vector lanes instead, so every multiply-add is a whole vector for any channel count or map width;
forward, input gradient and weight gradient each run close to the dense rate
(benchmarks/bench_small_conv.py measures it against oneDNN on the lab's shapes and wider ones).
Where oneDNN's blocks are full (both channel counts multiples of 16) or channels are many, it is
as fast or faster, so those layers stay on it (`SmallConv2d.eligible`); so do all layers on CPUs
without AVX-512, where the kernel's 16-float vectors would be split in two and it was never
measured.

Same function as Conv2d (stride 1, square kernel 1-7, symmetric zero padding up to k - 1, with
or without a bias), in float32 on the CPU; tests/test_small_conv.py proves values and gradients
equal to the stock module's. Without the compiled kernels (`MNISTLAB_NATIVE=0`, no compiler) or
for any other input it runs oneDNN's channels-last convolution instead (same results).
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast.native import native_kernel

__all__ = ["SmallConv2d", "MAX_CHANNELS", "wide_vectors"]

MAX_CHANNELS = 32  # measured: above this, or with both counts multiples of 16, oneDNN is as fast


def wide_vectors() -> bool:
    """Whether this CPU has AVX-512, the kernel's 16-float vectors (what it was measured on)."""
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


class _SmallConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pads, kernel):  # noqa: D102
        images = x.permute(0, 2, 3, 1).contiguous()  # free for a channels-last x
        empty = weight.new_empty(0)
        y = kernel.small_conv_forward(images, weight.contiguous(),
                                      empty if bias is None else bias.contiguous(), *pads)
        ctx.save_for_backward(images, weight)
        ctx.pads, ctx.kernel, ctx.has_bias = pads, kernel, bias is not None
        return y.permute(0, 3, 1, 2)  # (N, C, H, W) sizes over channels-last memory

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        images, weight = ctx.saved_tensors
        grad = grad.permute(0, 2, 3, 1).contiguous()  # free when it is channels-last already
        grad_x, grad_w, grad_b = ctx.kernel.small_conv_backward(
            grad, images, weight.contiguous(), *ctx.pads, ctx.needs_input_grad[0])
        return (grad_x.permute(0, 3, 1, 2) if ctx.needs_input_grad[0] else None, grad_w,
                grad_b if ctx.has_bias else None, None, None)


def _pads(conv: nn.Conv2d) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a symmetric zero padding the kernel takes, else None."""
    if conv.padding_mode != "zeros" or not isinstance(conv.padding, tuple):
        return None
    ph, pw = conv.padding
    k = conv.kernel_size[0]
    return (ph, ph, pw, pw) if 0 <= ph < k and 0 <= pw < k else None


class SmallConv2d(nn.Conv2d):
    """Conv2d on csrc/small_conv.cpp for float32 CPU inputs, else oneDNN in channels-last memory
    (the same parameters and state-dict names as the Conv2d it replaces)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = native_kernel() if self._native_fits(x) else None
        if kernel is None:
            return super().forward(x.contiguous(memory_format=torch.channels_last))
        return _SmallConvFunction.apply(x, self.weight, self.bias, _pads(self), kernel)

    def _native_fits(self, x: torch.Tensor) -> bool:
        k = self.kernel_size[0]
        return (x.device.type == "cpu" and x.dtype == torch.float32 == self.weight.dtype
                and x.dim() == 4 and len(x) > 0
                and x.shape[-2] + 2 * self.padding[0] >= k
                and x.shape[-1] + 2 * self.padding[1] >= k
                and not torch.is_autocast_enabled("cpu"))

    @classmethod
    def eligible(cls, conv: nn.Module) -> bool:
        """A plain Conv2d of a shape the kernel handles and (measured) runs faster than oneDNN:
        2-32 channels in and out, not both multiples of 16, stride 1, no dilation or groups,
        a square kernel of 1-7, symmetric zero padding below the kernel size; an AVX-512 CPU."""
        if type(conv) is not nn.Conv2d or not wide_vectors():
            return False
        c_in, c_out = conv.in_channels, conv.out_channels
        k = conv.kernel_size
        return (1 < c_in <= MAX_CHANNELS and 1 <= c_out <= MAX_CHANNELS
                and not (c_in % 16 == 0 and c_out % 16 == 0)
                and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
                and k[0] == k[1] and 1 <= k[0] <= 7 and _pads(conv) is not None)

    @classmethod
    def like(cls, conv: nn.Conv2d) -> SmallConv2d:
        """A layer of `conv`'s shape (its parameters are then `conv`'s: see fast.rewrite)."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=1,
                   padding=conv.padding, bias=conv.bias is not None)
