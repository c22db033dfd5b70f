"""The private PyTorch APIs mnistlab uses, all here, each probed on first use with a public
fallback: a PyTorch upgrade that changes one costs speed, never a wrong result.

- `torch.ops.mkldnn._linear_pointwise`: oneDNN's float32 linear kernel (the one `torch.compile`
  uses for CPU linear layers). Fallback: `F.linear` (MKL on x86).
- `torch.ops.aten.{tanh,sigmoid,threshold}_backward`: the gradient kernels autograd itself runs
  for tanh, sigmoid and ReLU; one pass each. Fallback: the same formulas in public ops
  (g * (1 - y^2), g * y * (1 - y), g * (y > 0)), two or three passes.
- `torch.cpu._is_avx512_bf16_supported` / `_is_amx_tile_supported`: whether this CPU does
  bfloat16 natively (`training.precision = "bf16"`). Fallback: the flags in /proc/cpuinfo.

tests/test_torch_internals.py checks each probe against its fallback, so an upgrade that
breaks one fails loudly there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["onednn_linear", "onednn_linear_available", "activation_backward",
           "aten_backward_available", "cpu_bf16_support"]

_probed: dict[str, bool] = {}


def onednn_linear_available() -> bool:
    """Whether this PyTorch has oneDNN's linear kernel and it computes a product correctly."""
    if "onednn_linear" not in _probed:
        ok = False
        op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
        if op is not None and torch.backends.mkldnn.is_available():
            try:
                a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
                ok = bool(torch.equal(op(a, a, None, "none", [], ""), a @ a.t()))
            except (RuntimeError, NotImplementedError, TypeError):
                ok = False
        _probed["onednn_linear"] = ok
    return _probed["onednn_linear"]


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                  ) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias through oneDNN, else `F.linear`; reads strides, so
    transposed views need no copy."""
    if onednn_linear_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _public_backward(kind: type[nn.Module], grad: torch.Tensor, out: torch.Tensor
                     ) -> torch.Tensor:
    if kind is nn.Tanh:
        return grad * (1 - out * out)
    if kind is nn.Sigmoid:
        return grad * out * (1 - out)
    return grad * (out > 0).to(grad.dtype)


_ATEN_BACKWARD = {
    nn.Tanh: lambda grad, out: torch.ops.aten.tanh_backward(grad, out),
    nn.Sigmoid: lambda grad, out: torch.ops.aten.sigmoid_backward(grad, out),
    nn.ReLU: lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0),
}


def aten_backward_available() -> bool:
    """Whether aten's activation gradient kernels exist and agree with their formulas."""
    if "aten_backward" not in _probed:
        out = torch.tensor([-0.5, 0.0, 0.25, 0.75])
        grad = torch.tensor([1.0, 2.0, -3.0, 4.0])
        try:
            ok = all(torch.allclose(fn(grad, out), _public_backward(kind, grad, out))
                     for kind, fn in _ATEN_BACKWARD.items())
        except (AttributeError, RuntimeError, NotImplementedError, TypeError):
            ok = False
        _probed["aten_backward"] = ok
    return _probed["aten_backward"]


def activation_backward(kind: type[nn.Module], grad: torch.Tensor, out: torch.Tensor
                        ) -> torch.Tensor:
    """Gradient through activation `kind` (nn.Tanh, nn.Sigmoid or nn.ReLU) from its output."""
    if aten_backward_available():
        return _ATEN_BACKWARD[kind](grad, out)
    return _public_backward(kind, grad, out)


BACKWARD_KINDS = tuple(_ATEN_BACKWARD)  # the activations `activation_backward` handles


def cpu_bf16_support() -> dict[str, bool]:
    """{"AVX-512 BF16": ..., "AMX": ...} for this CPU, from PyTorch's own probes (what its
    oneDNN kernels dispatch on), else from the kernel's CPU flags."""
    probe_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    probe_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe_bf16 is not None and probe_amx is not None:
        return {"AVX-512 BF16": bool(probe_bf16()), "AMX": bool(probe_amx())}
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        flags = set()
    return {"AVX-512 BF16": "avx512_bf16" in flags, "AMX": "amx_bf16" in flags}
