"""Rewrites of a stock model into faster modules with the same parameters and the same results.

Each rewrite swaps modules of `mnistlab.nn.build`'s stock model for ones that compute the same
function faster on the CPU, and hands them the very same `Parameter` objects: the stock model
keeps seeing the trained weights, and state dicts have the same names either way (a replaced
module keeps its index; a module absorbed by its neighbour leaves an `nn.Identity`).

In order: Dense products on oneDNN (`fast.dense`); convolutions with several input channels on
the compiled few-channel kernel (`fast.small_conv`) where it is faster, else in channels-last
memory; 2x2 max pools as strided maxima, absorbing a ReLU in front
(`fast.pooling`); other increasing activations moved after the pool they precede (the pool
commutes with them: act(max(a, b, c, d)) = max(act(a), ..., act(d)), so they run on a quarter of
the values); a first Conv2D(1 -> C) (+ ReLU) + pool as one compiled kernel (`fast.fused_conv`);
that kernel's planar output read straight by a following Flatten + Dense.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.fast.dense import Dense, DenseOverCHW
from mnistlab.fast.fused_conv import ConvReluPool
from mnistlab.fast.pooling import MaxPool2x2, fast_pool_eligible
from mnistlab.fast.small_conv import SmallConv2d
from mnistlab.nn.modules import FlattenHWC

__all__ = ["Conv2dNHWC", "FlattenCHW", "INCREASING_ACTIVATIONS", "rewrite_for_cpu"]

# Elementwise activations that never decrease: a max pool commutes with them. (ReLU is one too,
# but the pools absorb it; GELU dips below zero, so it is not.) When two pre-activations round to
# the same activation, the stock pool's gradient picks the first of them and the moved one the
# larger pre-activation: the same value, at most one ulp of the activation's slope apart.
INCREASING_ACTIVATIONS = (nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.Softplus)


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
    if SmallConv2d.eligible(module):
        return _share(SmallConv2d.like(module), module)
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


def _is_increasing(module: nn.Module) -> bool:
    return type(module) in INCREASING_ACTIVATIONS and getattr(module, "alpha", 0.0) >= 0


def _pools_before_activations(modules: list[nn.Module]) -> list[nn.Module]:
    """[increasing activation, MaxPool2x2] -> [MaxPool2x2, the activation]."""
    out = list(modules)
    for i in range(1, len(out)):
        if (isinstance(out[i], MaxPool2x2) and not out[i].relu
                and _is_increasing(out[i - 1])):
            out[i - 1], out[i] = out[i], out[i - 1]
    return out


def _fuse_first_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """[Conv2d(1 -> C), Identity (an absorbed ReLU or a linear activation), MaxPool2x2] or
    [Conv2d(1 -> C), MaxPool2x2 (an activation moved after it)] -> [ConvReluPool, Identity, ...]
    (the pool's slot becomes an Identity; a moved activation stays where it is)."""
    out = list(modules)
    for i in range(len(out) - 1):
        if not ConvReluPool.eligible(out[i]):
            continue
        pool = i + 2 if isinstance(out[i + 1], nn.Identity) and i + 2 < len(out) else i + 1
        if isinstance(out[pool], MaxPool2x2):
            out[i] = _share(ConvReluPool.like(out[i], relu=out[pool].relu), out[i])
            out[pool] = nn.Identity()
    return out


def _planar_flatten(modules: list[nn.Module]) -> list[nn.Module]:
    """[ConvReluPool, Identity or increasing activation..., FlattenHWC, Dense] -> the fused layer
    writes planar maps (elementwise layers do not care), the flatten is a free view and the Dense
    gathers its kernel's columns (same results)."""
    out = list(modules)
    for i, module in enumerate(out):
        if not isinstance(module, ConvReluPool):
            continue
        j = i + 1
        while j < len(out) and (isinstance(out[j], nn.Identity) or _is_increasing(out[j])):
            j += 1
        if (j + 1 < len(out) and isinstance(out[j], FlattenHWC)
                and type(out[j + 1]) is Dense):
            dense = out[j + 1]
            over = DenseOverCHW(dense.in_features, dense.out_features, out[j].map_shape)
            module.planar_output = True
            out[j], out[j + 1] = FlattenCHW(), _share(over, dense)
    return out


def rewrite_for_cpu(model: nn.Sequential) -> nn.Sequential:
    """A new Sequential computing `model`'s function faster on the CPU, sharing its parameters
    (`model` itself is left as it is).

    Building the new modules initialises throwaway weights from torch's global generator; the
    generator is restored afterwards, so dropout masks are the same with fast on or off.
    """
    with torch.random.fork_rng(devices=[]):
        modules = [_channels_last_conv(_dense(m)) for m in model]
        modules = _pools_before_activations(_fast_pools(modules))
        return nn.Sequential(*_planar_flatten(_fuse_first_layers(modules)))
