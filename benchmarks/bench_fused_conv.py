"""The fused first layer (mnistlab.fast.fused_conv) against the stock modules it replaces.

Stock: nn.Conv2d (oneDNN) + the ReLU-absorbing MaxPool2x2 that mnistlab used before, forward
and backward (weight and bias gradients; the input is data). Fused: ConvReluPool, the same
computation in one compiled kernel. The lab's first layers: fashion/final's Conv2D(9, 3x3,
same) and cnn/final's Conv2D(9, 5x5, same), on chunks of real MNIST-sized images; both sides in
this process with the same threads, median of `--repeats`.

    PYTHONPATH=src python benchmarks/bench_fused_conv.py [--threads 2] [--batch 2048]
"""

# ruff: noqa: I001  (mnistlab is imported before torch on purpose)
from __future__ import annotations

import argparse

import mnistlab  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads, as training)
import torch
from timing import median_seconds
from torch import nn

from mnistlab.fast.cpu import flush_denormals, keep_freed_memory
from mnistlab.fast.fused_conv import ConvReluPool
from mnistlab.fast.native import native_kernel
from mnistlab.fast.pooling import MaxPool2x2

LAYERS = {"fashion/final Conv2D(9, 3x3)": 3, "cnn/final Conv2D(9, 5x5)": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if native_kernel() is None:
        raise SystemExit("the fused kernel is unavailable here (see the warning above)")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    x[x < 0.55] = 0  # MNIST-like: most pixels are background
    print(f"torch {torch.__version__}, {args.threads} threads, {args.batch} images per call; "
          "microseconds per image, forward + backward")
    print("| layer | stock Conv2d + MaxPool2x2 | fused ConvReluPool | stock / fused |")
    print("|---|---|---|---|")
    with flush_denormals():
        for name, k in LAYERS.items():
            _compare(name, k, x, g, args.repeats)


def _compare(name: str, k: int, x: torch.Tensor, g: torch.Generator, repeats: int) -> None:
    """One table row: stock modules vs the fused layer, forward + backward per image."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 9, k, padding=k // 2)
    stock = nn.Sequential(conv, MaxPool2x2(relu=True))
    fused = ConvReluPool.replacing(conv)
    fused.planar_output = k == 3  # as fashion/final uses it (a Flatten follows)
    upstream = torch.randn(len(x), 9, 14, 14, generator=g)

    def step(module: nn.Module) -> None:
        module.zero_grad(set_to_none=True)
        (module(x) * upstream).sum().backward()

    t_stock = median_seconds(lambda: step(stock), repeats)
    t_fused = median_seconds(lambda: step(fused), repeats)
    per = 1e6 / len(x)
    print(f"| {name} | {t_stock * per:.2f} | {t_fused * per:.2f} | {t_stock / t_fused:.2f}x |",
          flush=True)

if __name__ == "__main__":
    main()
