"""The private PyTorch APIs of mnistlab.fast.torch_internals: each must still exist and compute
what its public fallback computes. A PyTorch upgrade that changes one fails here, loudly, rather
than silently costing speed (the fallback) or, worse, changing results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.fast import torch_internals as ti


def test_onednn_linear_kernel_exists_and_equals_f_linear():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch build has no oneDNN")
    assert ti.onednn_linear_available(), "torch.ops.mkldnn._linear_pointwise changed or vanished"
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(64, 96, generator=g), torch.randn(32, 96, generator=g),
               torch.randn(32, generator=g))
    torch.testing.assert_close(ti.onednn_linear(x, w, b), F.linear(x, w, b), rtol=1e-5,
                               atol=1e-4)
    grad = torch.randn(64, 32, generator=g)  # transposed views, as the weight gradient uses
    torch.testing.assert_close(ti.onednn_linear(grad.t(), x.t(), None), grad.t() @ x,
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", [nn.Tanh, nn.Sigmoid, nn.ReLU])
def test_aten_activation_gradients_exist_and_equal_autograd(kind):
    assert ti.aten_backward_available(), "torch.ops.aten.*_backward changed or vanished"
    x = torch.randn(40, 30, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = kind()(x)
    upstream = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(ti.activation_backward(kind, upstream, out.detach()), expected)


@pytest.mark.parametrize("kind", [nn.Tanh, nn.Sigmoid, nn.ReLU])
def test_fallbacks_compute_the_same(monkeypatch, kind):
    monkeypatch.setitem(ti._probed, "aten_backward", False)
    monkeypatch.setitem(ti._probed, "onednn_linear", False)
    x = torch.randn(10, 7, generator=torch.Generator().manual_seed(2), requires_grad=True)
    out = kind()(x)
    upstream = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(ti.activation_backward(kind, upstream, out.detach()), expected)
    w = torch.randn(5, 7)
    torch.testing.assert_close(ti.onednn_linear(x.detach(), w, None), x.detach() @ w.t())
