"""The few-channel convolution kernel (mnistlab.fast.small_conv) against oneDNN's convolution.

Both sides compute the same Conv2D layer, forward and backward (input, weight and bias
gradients), on channels-last batches of `--batch` images in this process with the same threads,
median of `--repeats`: oneDNN through nn.Conv2d (what the fast path ran before, `Conv2dNHWC`),
ours through `SmallConv2d`. The default shapes are the lab's and the 18-18-32 CNN's layers 2-3,
then wider ones, where the rewrite keeps oneDNN (`SmallConv2d.eligible` says which).

    PYTHONPATH=src python benchmarks/bench_small_conv.py [--threads 2] [--batch 256] \\
        [--shapes 9,9,5,14 18,18,5,14]      # c_in,c_out,kernel,side
"""

# ruff: noqa: I001  (mnistlab is imported before torch on purpose)
from __future__ import annotations

import argparse

import mnistlab  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads, as training)
import torch
from timing import median_seconds
from torch import nn

from mnistlab.fast.cpu import flush_denormals, keep_freed_memory
from mnistlab.fast.native import native_kernel
from mnistlab.fast.small_conv import SmallConv2d

SHAPES = ["9,9,5,14", "9,16,3,7", "18,18,5,14", "18,32,3,7",  # the lab's, the 18-18-32 CNN's
          "16,32,3,14", "16,16,3,28", "32,32,3,28", "32,64,3,7", "64,128,3,7"]


def step_seconds(conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward (fresh gradients each call)."""
    def step() -> None:
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).backward(grad)

    return median_seconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shapes", nargs="+", default=SHAPES)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    flush_denormals()
    if native_kernel() is None:
        raise SystemExit("the compiled kernels are unavailable here (see the warning above)")
    print(f"{args.batch} images, {args.threads} threads; forward + backward per image, "
          f"median of {args.repeats}")
    print("| c_in -> c_out, kernel, map | oneDNN us (GFLOP/s) | ours us (GFLOP/s) | oneDNN / ours "
          "| rewrite uses ours |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        c_in, c_out, k, side = map(int, shape.split(","))
        torch.manual_seed(0)
        stock = nn.Conv2d(c_in, c_out, k, padding=k // 2)
        ours = SmallConv2d.like(stock)
        ours.load_state_dict(stock.state_dict())
        x = torch.randn(args.batch, c_in, side, side).to(memory_format=torch.channels_last)
        x.requires_grad_()
        grad = torch.randn(args.batch, c_out, side, side).to(memory_format=torch.channels_last)
        flop = 3 * 2 * args.batch * side * side * c_in * c_out * k * k  # forward + 2 gradients
        t_stock = step_seconds(stock, x, grad, args.repeats)
        t_ours = step_seconds(ours, x, grad, args.repeats)
        print(f"| {c_in} -> {c_out}, {k}x{k}, {side}x{side} "
              f"| {t_stock / args.batch * 1e6:.1f} ({flop / t_stock / 1e9:.0f}) "
              f"| {t_ours / args.batch * 1e6:.1f} ({flop / t_ours / 1e9:.0f}) "
              f"| {t_stock / t_ours:.2f}x | {'yes' if SmallConv2d.eligible(stock) else 'no'} |",
              flush=True)


if __name__ == "__main__":
    main()
