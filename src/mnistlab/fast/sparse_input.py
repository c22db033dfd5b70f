"""A training matrix split into a dense core and a sparse rest, so the first Dense layer does less
arithmetic on mostly-zero inputs.

Why: MNIST pixels are 81% zeros and the zeros sit mostly in the same places (the border). The
first Dense layer's two products, the forward `X W^T` and the weight gradient `gz^T X`, are about
60% of a raw/final epoch. Keeping as a dense matrix only the K columns that hold nearly all the
non-zeros, and the other columns as a CSR sparse matrix, halves those products' arithmetic. The
sums are the same; only the order of the additions (float rounding) changes.

K is chosen from the data by a fixed cost model (never by timing), so the same data always gives
the same split and a run stays reproducible. When the split would not save at least a fifth of
the work (dense inputs such as Fashion-MNIST pixels), `plan_split` returns None and training uses
the plain dense path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from mnistlab.fast import gemm
from mnistlab.training.steps import BatchStep, autograd_step

__all__ = ["SplitPlan", "SplitMatrix", "SplitBatch", "SplitLinear", "plan_split",
           "split_training_input", "forward_input", "split_autograd_step"]

# Cost model, in "dense columns per row": one core column costs 1 per row of the batch. Fitted
# on the development machine (benchmarks/RESULTS.md) from the
# first layer's forward + weight gradient at batch 128, 512 and 4096, raw and HOG inputs:
# - each non-zero of the sparse rest costs ~26 columns (row gather, sparse product, sparse
#   gradient);
# - each batch costs ~144 x D / B columns per row, work that touches every weight once or
#   twice (gathering the core and rest columns of W, scattering the gradient back) plus the
#   sparse calls' set-up. That is why small batches stay dense.
# Fitted with MKL's dense products; with oneDNN's (fast.gemm) the split chosen for raw/final
# still pays (benchmarks/epoch_vs_keras.py --variants dense-input, benchmarks/RESULTS.md).
SPARSE_NONZERO_COST = 26.0
BATCH_WEIGHT_COST = 144.0
MIN_SAVING = 0.2  # use the split only when it saves at least this share of the dense work
ALIGN = 16  # the core's width is a multiple of this (aligned rows keep the GEMM fast)


@dataclass(frozen=True)
class SplitPlan:
    """Which input columns go to the dense core and which to the sparse rest."""

    core: torch.Tensor  # sorted column indices, int64
    rest: torch.Tensor  # sorted column indices, int64
    estimated_cost: float  # of the split, as a fraction of the dense path's


def plan_split(x: torch.Tensor, batch_size: int) -> SplitPlan | None:
    """The cheapest core/rest split of a 2-D training matrix, or None when dense is as good."""
    n, d = x.shape
    if n == 0 or d < 2 * ALIGN:
        return None
    counts = (x != 0).sum(0).to(torch.float64)
    order = torch.argsort(counts, descending=True, stable=True)
    sorted_counts = counts[order]
    rest_after = sorted_counts.flip(0).cumsum(0).flip(0)  # rest_after[k]: non-zeros past k
    rest_after = torch.cat([rest_after, torch.zeros(1, dtype=torch.float64)])
    batch_cost = BATCH_WEIGHT_COST * d / max(batch_size, 1)
    best_k, best_cost = d, float(d)
    for k in range(ALIGN, d, ALIGN):
        cost = k + SPARSE_NONZERO_COST * float(rest_after[k]) / n + batch_cost
        if cost < best_cost:
            best_k, best_cost = k, cost
    if best_cost > (1.0 - MIN_SAVING) * d:
        return None
    core = order[:best_k].sort().values
    rest = order[best_k:].sort().values
    return SplitPlan(core, rest, best_cost / d)


@dataclass(frozen=True)
class SplitBatch:
    """A batch of rows: the dense core (B, K) and the rest as a CSR matrix (B, R)."""

    core: torch.Tensor
    rest: torch.Tensor
    plan: SplitPlan

    def __len__(self) -> int:
        return len(self.core)


class SplitMatrix:
    """The (N, D) training matrix as a dense (N, K) core plus CSR rows of the other columns."""

    def __init__(self, x: torch.Tensor, plan: SplitPlan):
        self.plan = plan
        self.shape = tuple(x.shape)
        self.device = x.device
        self.core = x.index_select(1, plan.core).contiguous()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            rest = x.index_select(1, plan.rest).to_sparse_csr()
        self._crow = rest.crow_indices()
        self._col = rest.col_indices()
        self._val = rest.values()

    def __len__(self) -> int:
        return self.shape[0]

    def index_select(self, dim: int, idx: torch.Tensor) -> SplitBatch:
        """Rows `idx` (dim must be 0), as the training loop gathers a shuffled batch."""
        if dim != 0:
            raise ValueError("SplitMatrix selects rows only (dim=0)")
        starts = self._crow[idx]
        lengths = self._crow[idx + 1] - starts
        crow = torch.zeros(len(idx) + 1, dtype=self._crow.dtype)
        torch.cumsum(lengths, 0, out=crow[1:])
        total = int(crow[-1])
        pos = torch.arange(total, dtype=crow.dtype) + torch.repeat_interleave(
            starts - crow[:-1], lengths, output_size=total)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rest = torch.sparse_csr_tensor(crow, self._col[pos], self._val[pos],
                                           (len(idx), len(self.plan.rest)))
        return SplitBatch(self.core.index_select(0, idx), rest, self.plan)

    def __getitem__(self, rows: slice) -> SplitBatch:
        start, stop, step = rows.indices(len(self))
        return self.index_select(0, torch.arange(start, stop, step))


class SplitLinear(torch.autograd.Function):
    """`F.linear` on a SplitBatch: core @ W[:, core]^T + rest @ W[:, rest]^T + b.

    Backward gives the gradients of W (both column sets, scattered back into W's shape) and b
    only: the inputs are data, never trained.
    """

    @staticmethod
    def forward(ctx, core, rest, weight, bias, core_idx, rest_idx):  # noqa: D102
        ctx.save_for_backward(core, weight, core_idx, rest_idx)
        ctx.rest = rest
        out = gemm.linear(core, weight.index_select(1, core_idx), bias)
        wt_rest = weight.t().index_select(0, rest_idx)  # (R, H), contiguous
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out += rest @ wt_rest
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        core, weight, core_idx, rest_idx = ctx.saved_tensors
        grad_w = torch.empty_like(weight)
        grad_w[:, core_idx] = gemm.linear(grad_out.t(), core.t())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grad_w[:, rest_idx] = (ctx.rest.t() @ grad_out).t()
        return None, None, grad_w, grad_out.sum(0), None, None


def _first_linear(model: nn.Module) -> int | None:
    """Index of the first Dense layer of an MLP whose earlier modules only flatten, else None."""
    if not isinstance(model, nn.Sequential):
        return None
    for i, module in enumerate(model):
        if isinstance(module, nn.Linear):
            return i
        if not isinstance(module, nn.Flatten):
            return None
    return None


def split_training_input(model: nn.Module, x: torch.Tensor, batch_size: int
                         ) -> torch.Tensor | SplitMatrix:
    """`x` as a SplitMatrix when `model` starts with a Dense layer (after Flatten), `x` lives on
    the CPU and the split pays; otherwise `x` unchanged."""
    first = _first_linear(model)
    if first is None or x.device.type != "cpu" or not x.dtype.is_floating_point:
        return x
    flat = x.reshape(len(x), -1)
    if flat.shape[1] != model[first].in_features:
        return x
    plan = plan_split(flat, batch_size)
    return x if plan is None else SplitMatrix(flat, plan)


def forward_input(model: nn.Module, xb: torch.Tensor | SplitBatch) -> torch.Tensor:
    """`model(xb)`, taking the split path for a SplitBatch."""
    if not isinstance(xb, SplitBatch):
        return model(xb)
    first = _first_linear(model)
    assert first is not None, "a SplitBatch needs a model that starts with a Dense layer"
    linear = model[first]
    bias = linear.bias if linear.bias is not None else torch.zeros(
        linear.out_features, dtype=xb.core.dtype)
    h = SplitLinear.apply(xb.core, xb.rest, linear.weight, bias, xb.plan.core, xb.plan.rest)
    return model[first + 1:](h)


def split_autograd_step(model: nn.Module, label_smoothing: float = 0.0) -> BatchStep:
    """`training.steps.autograd_step`, taking the split path for SplitBatch inputs (for MLPs the
    hand-written step does not cover, e.g. GELU activations)."""
    return autograd_step(model, lambda xb: forward_input(model, xb), label_smoothing)
