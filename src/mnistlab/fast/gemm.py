"""Float32 matrix products through oneDNN (shipped inside PyTorch's CPU build) instead of MKL.

Why: PyTorch sends a float32 `addmm`/`mm` on the CPU to MKL, and MKL runs its AVX2 kernels on AMD
processors even where they have AVX-512. oneDNN chooses its kernels by instruction set alone,
and on the AMD development machine reaches about twice MKL's GFLOP/s on the lab's Dense layers,
for the forward product and both gradient products alike (benchmarks/bench_gemm.py; figures in
benchmarks/RESULTS.md). The
products are the same float32 sums; only the order of the additions, and the last bits, differ.

The kernel is PyTorch's private `torch.ops.mkldnn._linear_pointwise` (the one `torch.compile`
uses for CPU linear layers), called through `mnistlab.fast.torch_internals`. Where it is missing
(a build without oneDNN) or the operands are not 2-D float32 CPU tensors, every function here
falls back to the stock PyTorch product.
`MNISTLAB_GEMM=torch` turns oneDNN off for a whole process; `use_onednn(False)` does in code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from mnistlab.fast.torch_internals import onednn_linear, onednn_linear_available

__all__ = ["fits", "linear", "matmul", "onednn_available", "onednn_enabled", "use_onednn"]

_state = {"enabled": os.environ.get("MNISTLAB_GEMM", "") != "torch"}


def onednn_available() -> bool:
    """Whether this PyTorch build has the oneDNN linear kernel and it computes a product."""
    return onednn_linear_available()


def onednn_enabled() -> bool:
    """Whether products go through oneDNN now (available and not switched off)."""
    return bool(_state["enabled"]) and onednn_available()


@contextlib.contextmanager
def use_onednn(enabled: bool) -> Iterator[None]:
    """Within the block, send products to oneDNN (True) or to PyTorch's stock kernels (False)."""
    before = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = before


def fits(*operands: torch.Tensor) -> bool:
    """Whether a product of these operands goes to oneDNN: non-empty 2-D float32 CPU tensors,
    with oneDNN available and switched on."""
    return all(t.dim() == 2 and t.dtype == torch.float32 and t.device.type == "cpu"
               and t.numel() > 0 for t in operands) and onednn_enabled()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
           ) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), as `F.linear`; not tracked by autograd.

    Either operand may be a transposed view: oneDNN reads strides, so `linear(g.t(), x.t())` is
    the weight gradient g^T x with no copy.
    """
    if fits(x, weight):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) @ b (K, N) -> (M, N) for 2-D float32 operands, through oneDNN when it can."""
    return linear(a, b.t())
