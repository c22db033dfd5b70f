"""oneDNN products (mnistlab.fast.gemm) against PyTorch's stock float32 products (MKL) on this CPU.

The lab's Dense layers as they train: forward x W^T, the input gradient g W and the weight
gradient g^T x, for the shapes of raw/final, hog/final and fashion/final. Both sides run in this
process with the same threads; the median of `--repeats` timed calls is reported.

    PYTHONPATH=src python benchmarks/bench_gemm.py [--threads 2] [--repeats 30]
"""

# ruff: noqa: I001  (mnistlab is imported before torch on purpose)
from __future__ import annotations

import argparse

import mnistlab  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads, as training)
import torch
from timing import median_seconds

from mnistlab.fast import gemm

SHAPES = {  # (rows of the batch, inputs, units)
    "raw/final 784 -> 250, batch 4096": (4096, 784, 250),
    "hog/final 392 -> 200, batch 512": (512, 392, 200),
    "fashion/final 1764 -> 100, chunk 2048": (2048, 1764, 100),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not gemm.onednn_available():
        raise SystemExit("this PyTorch build has no oneDNN linear kernel")
    print(f"torch {torch.__version__}, {args.threads} threads; GFLOP/s, median of "
          f"{args.repeats} calls")
    print("| layer | product | torch (MKL) | oneDNN | oneDNN / torch |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for name, shape in SHAPES.items():
        _compare(name, *shape, g, args.repeats)


def _compare(name: str, m: int, k: int, n: int, g: torch.Generator, repeats: int) -> None:
    """One table row per product of one Dense layer's training step."""
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    grad, bias = torch.randn(m, n, generator=g), torch.zeros(n)
    products = {
        "forward x W^T + b": (lambda: torch.addmm(bias, x, w.t()),
                              lambda: gemm.linear(x, w, bias)),
        "input gradient g W": (lambda: grad @ w, lambda: gemm.matmul(grad, w)),
        "weight gradient g^T x": (lambda: grad.t() @ x, lambda: gemm.linear(grad.t(), x.t())),
    }
    flops = 2.0 * m * k * n
    for label, (stock, ours) in products.items():
        t_stock = median_seconds(stock, repeats)
        t_ours = median_seconds(ours, repeats)
        print(f"| {name} | {label} | {flops / t_stock / 1e9:.0f} | {flops / t_ours / 1e9:.0f} "
              f"| {t_stock / t_ours:.2f}x |", flush=True)

if __name__ == "__main__":
    main()
