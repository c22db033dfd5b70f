"""The private PyTorch APIs mnistlab uses, all here, each probed on first use with a public
fallback: a PyTorch upgrade that changes one costs speed, never a wrong result.

- `torch.ops.mkldnn._linear_pointwise`: oneDNN's float32 linear kernel (the one `torch.compile`
  uses for CPU linear layers). Fallback: `F.linear` (MKL on x86).
- `torch.ops.aten.{tanh,sigmoid,threshold}_backward`: the gradient kernels autograd itself runs
  for tanh, sigmoid and ReLU; one pass each. Fallback: the same formulas in public ops
  (g * (1 - y^2), g * y * (1 - y), g * (y > 0)), two or three passes.

tests/test_torch_internals.py checks each probe against its fallback, so an upgrade that
breaks one fails loudly there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["onednn_linear", "onednn_linear_available", "activation_backward",
           "aten_backward_available"]

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
