"""Does the chunk size change what oneDNN's convolutions cost per image? (issue 17)

    python benchmarks/conv_chunks.py [--threads 2] [--reps 7]

For the convolutions that dominate the off-lab CNNs' epochs (layers 2-3 of the 18-18-32 CNN and
of fashion/run2: 9 -> 9 and 18 -> 18 5x5 at 14x14, 18 -> 32 3x3 at 7x7, 'same' padding), time
forward + both backward products (input and weight gradients) on channels-last batches of
256-4096 images, as the fast path runs them. Prints microseconds per image, the rate in GFLOP/s
(2 x multiply-adds x 3 products) and each size's ratio against 256 images, the reference.
Time on a quiet machine.
"""

# ruff: noqa: I001  (mnistlab is imported before torch on purpose)
from __future__ import annotations

import argparse

import mnistlab  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads, as training)
import torch
from timing import median_seconds

SHAPES = [(9, 9, 5, 14), (18, 18, 5, 14), (18, 32, 3, 7)]  # c_in, c_out, kernel, side
CHUNKS = [256, 1024, 4096]


def per_image_us(c_in: int, c_out: int, k: int, side: int, n: int, reps: int) -> float:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, k, padding="same").to(memory_format=torch.channels_last)
    x = torch.randn(n, c_in, side, side).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(n, c_out, side, side).to(memory_format=torch.channels_last)

    def step() -> None:  # fresh gradients each call: no accumulation into the last ones
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).backward(grad)

    return median_seconds(step, reps) / n * 1e6  # two warm-ups create oneDNN's primitives


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    for c_in, c_out, k, side in SHAPES:
        flop = 2 * c_in * c_out * k * k * side * side * 3
        ref = None
        for n in CHUNKS:
            us = per_image_us(c_in, c_out, k, side, n, args.reps)
            ref = ref or us
            print(f"{c_in:>2} -> {c_out:<2} {k}x{k} at {side}x{side}, {n:>4} images: "
                  f"{us:7.2f} us/image, {flop / us / 1e3:6.1f} GFLOP/s, "
                  f"{us / ref:.2f}x the 256-image cost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
