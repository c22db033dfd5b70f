"""Rewrites of a stock model into faster modules with the same parameters and the same results.

Each rewrite swaps modules of `mnistlab.nn.build`'s stock model for ones that compute the same
function faster on the CPU, and hands them the very same `Parameter` objects: the stock model
keeps seeing the trained weights, and state dicts have the same names either way (a replaced
module keeps its index; a module absorbed by its neighbour leaves an `nn.Identity`).

In order: Dense products on oneDNN (`fast.dense`); convolutions with several input channels in
channels-last memory; 2x2 max pools as strided maxima, absorbing a ReLU in front
(`fast.pooling`); a first Conv2D(1 -> C) + ReLU + pool as one compiled kernel
(`fast.fused_conv`); that kernel's planar output read straight by a following Flatten + Dense.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast.dense import Dense, DenseOverCHW
from mnistlab.fast.fused_conv import ConvReluPool
from mnistlab.fast.pooling import MaxPool2x2, fast_pool_eligible
from mnistlab.nn.modules import FlattenHWC

__all__ = ["Conv2dNHWC", "FlattenCHW", "rewrite_for_cpu"]


class Conv2dNHWC(nn.Conv2d):
    """Conv2d that computes in channels-last memory (same parameters, same results).

    Why: with several input channels oneDNN's channels-last kernels take about half the time of
    NCHW ones, forward + backward; with one input channel NCHW is faster (benchmarks/RESULTS.md),
    so only layers with C_in > 1 use this.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class FlattenCHW(nn.Flatten):
    """(B, C, H, W) -> (B, C * H * W) in C, H, W order: a free view of a planar map, for a
    `DenseOverCHW` that knows the order."""


def _share(new: nn.Module, old: nn.Module) -> nn.Module:
    """`new` takes `old`'s weight and bias objects (training one trains the other)."""
    new.weight = old.weight
    new.bias = old.bias
    return new


def _dense(module: nn.Module) -> nn.Module:
    if type(module) is nn.Linear and module.bias is not None:
        return _share(Dense(module.in_features, module.out_features), module)
    return module


def _channels_last_conv(module: nn.Module) -> nn.Module:
    if type(module) is nn.Conv2d and module.in_channels > 1:
        conv = Conv2dNHWC(module.in_channels, module.out_channels, module.kernel_size,
                          module.stride, module.padding, module.dilation, module.groups,
                          module.bias is not None, module.padding_mode)
        return _share(conv, module)
    return module


def _fast_pools(modules: list[nn.Module]) -> list[nn.Module]:
    """2x2 max pools -> MaxPool2x2, absorbing a ReLU right before them (its slot -> Identity)."""
    out = list(modules)
    for i, module in enumerate(out):
        if fast_pool_eligible(module):
            relu = i > 0 and type(out[i - 1]) is nn.ReLU
            if relu:
                out[i - 1] = nn.Identity()
            out[i] = MaxPool2x2(relu=relu)
    return out


def _fuse_first_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """[Conv2d(1 -> C), Identity (an absorbed ReLU), MaxPool2x2(relu)] -> [ConvReluPool,
    Identity, Identity]."""
    out = list(modules)
    for i in range(len(out) - 2):
        if (ConvReluPool.eligible(out[i]) and isinstance(out[i + 1], nn.Identity)
                and isinstance(out[i + 2], MaxPool2x2) and out[i + 2].relu):
            out[i] = _share(ConvReluPool.like(out[i]), out[i])
            out[i + 2] = nn.Identity()
    return out


def _planar_flatten(modules: list[nn.Module]) -> list[nn.Module]:
    """[ConvReluPool, Identity, Identity, FlattenHWC, Dense] -> the fused layer writes planar maps,
    the flatten is a free view and the Dense gathers its kernel's columns (same results)."""
    out = list(modules)
    for i in range(len(out) - 4):
        if (isinstance(out[i], ConvReluPool) and isinstance(out[i + 1], nn.Identity)
                and isinstance(out[i + 2], nn.Identity) and isinstance(out[i + 3], FlattenHWC)
                and type(out[i + 4]) is Dense):
            dense = out[i + 4]
            over = DenseOverCHW(dense.in_features, dense.out_features, out[i + 3].map_shape)
            out[i].planar_output = True
            out[i + 3], out[i + 4] = FlattenCHW(), _share(over, dense)
    return out


def rewrite_for_cpu(model: nn.Sequential) -> nn.Sequential:
    """A new Sequential computing `model`'s function faster on the CPU, sharing its parameters
    (`model` itself is left as it is).

    Building the new modules initialises throwaway weights from torch's global generator; the
    generator is restored afterwards, so dropout masks are the same with fast on or off.
    """
    with torch.random.fork_rng(devices=[]):
        modules = [_channels_last_conv(_dense(m)) for m in model]
        return nn.Sequential(*_planar_flatten(_fuse_first_layers(_fast_pools(modules))))
