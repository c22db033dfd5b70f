"""`accelerate(model, training)`: the one entry point to everything in `mnistlab.fast`, and the
switch that turns all of it off.

Given a stock model (`mnistlab.nn.build`), it returns a `TrainingPlan` whose model shares the
stock model's parameters but runs on faster modules (`fast.rewrite`), whose step is written out
by hand for plain MLPs (`fast.mlp_step`), whose training input may be split into a dense core and
a sparse rest (`fast.sparse_input`), whose CNN batches run in cache-sized chunks
(`fast.chunking`), and whose CPU settings flush denormals, keep freed memory and share the cores
with other mnistlab trainers (`fast.cpu`). Every piece is proven equal to the stock path within
float rounding (tests/test_fast_switch.py trains whole runs both ways).

Off switch, strongest first: `--no-fast` (CLI), `MNISTLAB_FAST=0` (environment),
`training.fast = false` (TOML). Off, training uses `training.steps.stock_plan`: stock `torch.nn`
modules and autograd only.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mnistlab.config.sections import ModelConfig, TrainingConfig
from mnistlab.fast import cpu
from mnistlab.fast.chunking import preferred_chunk_size
from mnistlab.fast.dense import Dense
from mnistlab.fast.fused_conv import ConvReluPool, uses_native_kernels
from mnistlab.fast.mlp_step import mlp_step_for
from mnistlab.fast.native import kernel_is_built, native_kernel
from mnistlab.fast.openmp import FAST_ENV, off_by_environment
from mnistlab.fast.pooling import MaxPool2x2
from mnistlab.fast.rewrite import (
    INCREASING_ACTIVATIONS,
    Conv2dNHWC,
    FlattenCHW,
    rewrite_for_cpu,
)
from mnistlab.fast.small_conv import SmallConv2d
from mnistlab.fast.sparse_input import split_autograd_step, split_training_input
from mnistlab.training.precision import bf16_plan
from mnistlab.training.steps import (
    EVAL_BATCH_SIZE,
    TrainingPlan,
    chunked_step,
    stock_plan,
)

__all__ = ["accelerate", "fast_enabled", "plan_for", "FAST_ENV"]


def fast_enabled(cfg: TrainingConfig) -> bool:
    """Whether the speed-ups apply: `training.fast` and not `MNISTLAB_FAST=0`."""
    return cfg.fast and not off_by_environment()


def plan_for(model: nn.Module, cfg: TrainingConfig, model_cfg: ModelConfig,
             device: torch.device | str = "cpu", note=None) -> TrainingPlan:
    """The fast plan when the switch is on, else the stock one; a bf16 run (which the fp32
    kernels here cannot serve) gets the stock plan under bfloat16 autocast."""
    if cfg.precision == "bf16":
        return bf16_plan(model, cfg, device)
    if fast_enabled(cfg):
        return accelerate(model, cfg, model_cfg, device, note)
    return stock_plan(model, cfg)


def _moves_activations(model: nn.Module) -> bool:
    """Whether a pool (or the fused first layer) now runs before an increasing activation."""
    modules = [m for m in model.modules() if not isinstance(m, nn.Identity | nn.Sequential)]
    return any(isinstance(a, MaxPool2x2 | ConvReluPool) and isinstance(b, INCREASING_ACTIVATIONS)
               for a, b in pairwise(modules))


def _rewrites(model: nn.Module) -> list[str]:
    """What the rewritten model runs differently from the stock one, in words."""
    fused = [m for m in model.modules() if isinstance(m, ConvReluPool)]
    kinds = {
        "Dense products on oneDNN": any(isinstance(m, Dense) for m in model.modules()),
        "channels-last convolutions": any(isinstance(m, Conv2dNHWC) for m in model.modules()),
        "few-channel convolutions on compiled kernels": any(
            isinstance(m, SmallConv2d) for m in model.modules()),
        "strided 2x2 max pools (ReLU absorbed)": any(isinstance(m, MaxPool2x2)
                                                     for m in model.modules()),
        "max pools before increasing activations": _moves_activations(model),
        "fused first Conv2D + ReLU + pool": any(m.relu for m in fused),
        "fused first Conv2D + pool": any(not m.relu for m in fused),
        "planar flatten": any(isinstance(m, FlattenCHW) for m in model.modules()),
    }
    return [k for k, used in kinds.items() if used]


def accelerate(model: nn.Module, cfg: TrainingConfig, model_cfg: ModelConfig,
               device: torch.device | str = "cpu", note=None) -> TrainingPlan:
    """The fast plan for training stock `model` (described by `model_cfg`) on `device`.

    Off the CPU the stock plan is returned (every speed-up here is for the CPU), `note` hears
    so, and metrics.json's `fast` stays empty. `note(text)`, if given, also hears about a
    one-time kernel build before it starts (once per machine and version).
    """
    if torch.device(device).type != "cpu":
        if note is not None:
            note(f"mnistlab.fast speeds up the CPU only: training on {torch.device(device)} "
                 "uses stock PyTorch modules")
        return stock_plan(model, cfg)
    fast_model = rewrite_for_cpu(model)
    applied = _rewrites(fast_model)
    if uses_native_kernels(fast_model):
        if note is not None and not kernel_is_built():
            note("compiling mnistlab's CPU kernels for this machine (once, up to a minute)")
        native_kernel()  # build now rather than stall the first epoch's progress bar
    chunk = cfg.chunk_size or preferred_chunk_size(fast_model, model_cfg)
    if chunk:
        step, train_input = chunked_step(fast_model, chunk, cfg.label_smoothing), (lambda x: x)
        applied.append(f"chunks of {chunk} images")
    else:
        by_hand = mlp_step_for(fast_model, cfg.label_smoothing)
        step = (by_hand if by_hand is not None
                else split_autograd_step(fast_model, cfg.label_smoothing))
        applied.append("hand-written MLP step" if by_hand is not None else "autograd step")
        applied.append("dense core + sparse rest input when it saves work")

        def train_input(x):
            return split_training_input(fast_model, x, cfg.batch_size)

    applied.extend(cpu.SETTINGS)
    share = cpu.CoreShare(cfg.threads)
    return TrainingPlan(fast_model, share.wrap(step), eval_batch_size=chunk or EVAL_BATCH_SIZE,
                        train_input=train_input, settings=share.training,
                        applied=tuple(applied))
