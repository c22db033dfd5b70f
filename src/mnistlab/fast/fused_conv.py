"""A CNN's first layer, Conv2D(1 -> C) + 2x2 max pool (+ ReLU), as one compiled kernel on the CPU.

Why: on one input channel oneDNN's convolution reorders its blocked output back to PyTorch's
layout (a full extra pass, seen in ONEDNN_VERBOSE) and leaves ReLU and pooling to separate passes;
the pooling's gradient takes several more (benchmarks/bench_fused_conv.py measures the fused
layer against the stock modules; figures in benchmarks/RESULTS.md). The
lab's first layers (fashion/final's 3x3 -> 9, cnn/final's 5x5 -> 9) have only k x k x C
weights, so one pass over each image can compute the convolution row pair by row pair in
registers, pool it, and write just the pooled map (channels-last for a next convolution, planar
for a Flatten + Dense that reads it through `DenseOverCHW`) and a byte per window saying where
its maximum was. The weight gradient then needs only the pooled
gradient and those bytes. The input never needs a gradient (it is data).

Same semantics as Conv2d + ReLU + MaxPool2d(2) (PyTorch's and Keras's): 'valid' pooling drops an
odd last row/column, the gradient goes to the first maximum of each window in row-major order, a
window whose maximum is not positive passes none. tests/test_fused_conv.py proves the values and
gradients equal to the stock modules'.

Other increasing activations (tanh, sigmoid, ELU, ...) commute with the max pool too, so
`fast.rewrite` moves them after the pool: the kernel then runs without its ReLU (`relu=False`,
a plain max pool whose gradient always reaches the window's first maximum) and the activation
runs on a quarter of the values.

The kernel (csrc/conv_relu_pool.cpp) is compiled on first use (see fast.native). Without a
compiler, or with `MNISTLAB_NATIVE=0`, the stock modules run instead (slower, same results),
after one `NativeKernelWarning`.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast.native import native_kernel
from mnistlab.fast.pooling import MaxPool2x2
from mnistlab.fast.small_conv import SmallConv2d

__all__ = ["ConvReluPool", "uses_native_kernels", "KERNEL_SIZES"]


class _ConvReluPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, weight, bias, pads, planar, relu, kernel):  # noqa: D102
        pooled, code = kernel.forward(images, weight, bias, *pads, planar, relu)
        ctx.save_for_backward(images, weight, bias, code)
        ctx.pads, ctx.planar, ctx.kernel = pads, planar, kernel
        # (N, C, H2, W2): planar, or a view of the channels-last (N, H2, W2, C) result
        return pooled if planar else pooled.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        images, weight, bias, code = ctx.saved_tensors
        # free when the gradient already has the output's layout (as it does in the lab's CNNs)
        grad = grad.contiguous() if ctx.planar else grad.permute(0, 2, 3, 1).contiguous()
        grad_w, grad_b = ctx.kernel.backward(grad, code, images, weight, bias, *ctx.pads,
                                             ctx.planar)
        return None, grad_w, grad_b, None, None, None, None


KERNEL_SIZES = (1, 3, 5, 7)  # the sizes the compiled kernel is register-blocked for
_POOLS = {True: MaxPool2x2(relu=True), False: MaxPool2x2()}  # the fallback's (stateless) pools


def _compiled_shape(conv: nn.Conv2d) -> bool:
    """One input channel, stride 1, no dilation or groups, a square kernel of KERNEL_SIZES,
    symmetric zero padding, a bias."""
    return (conv.in_channels == 1 and conv.groups == 1 and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.kernel_size[0] in KERNEL_SIZES and conv.bias is not None
            and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros")


class ConvReluPool(nn.Conv2d):
    """Conv2d(1 -> C, stride 1) followed by ReLU (unless `relu` is False) and a 2x2 max pool, in
    one module (the same parameters and state-dict names as the Conv2d it replaces).

    The output is (N, C, H2, W2); in memory channels-last (what a next convolution reads), or
    planar when `planar_output` is set (what `DenseOverCHW` reads after a plain flatten).
    """

    planar_output: bool = False
    relu: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = native_kernel() if self._native_fits(x) else None
        if kernel is None:
            return _POOLS[self.relu](super().forward(x))
        pad_h, pad_w = self.padding
        images = x.reshape(len(x), x.shape[-2], x.shape[-1]).contiguous()
        return _ConvReluPoolFunction.apply(images, self.weight.contiguous(),
                                           self.bias.contiguous(), (pad_h, pad_h, pad_w, pad_w),
                                           self.planar_output, self.relu, kernel)

    def _native_fits(self, x: torch.Tensor) -> bool:
        return (_compiled_shape(self) and x.device.type == "cpu" and x.dtype == torch.float32
                and x.dim() == 4 and len(x) > 0 and not x.requires_grad
                and x.shape[-2] + 2 * self.padding[0] - self.kernel_size[0] + 1 >= 2
                and x.shape[-1] + 2 * self.padding[1] - self.kernel_size[1] + 1 >= 2)

    @classmethod
    def eligible(cls, conv: nn.Module) -> bool:
        """Whether `conv` is a plain Conv2d of the shape the compiled kernel handles."""
        return type(conv) is nn.Conv2d and _compiled_shape(conv)

    @classmethod
    def like(cls, conv: nn.Conv2d, relu: bool = True) -> ConvReluPool:
        """A fused layer of `conv`'s shape (its parameters are then `conv`'s: see fast.rewrite)."""
        fused = cls(1, conv.out_channels, conv.kernel_size, stride=1, padding=conv.padding)
        fused.relu = relu
        return fused

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.relu else ", relu=False")


def uses_native_kernels(model: nn.Module) -> bool:
    """Whether `model` has layers that run on mnistlab's compiled kernels when they can."""
    return any(isinstance(m, ConvReluPool | MaxPool2x2 | SmallConv2d) for m in model.modules())
