"""The fast CNN pieces (fused ReLU + 2x2 max pool, channels-last convolutions) must give what the
stock model of `nn.build` gives: same outputs, same gradients, same parameter names."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mnistlab.config.load import load_experiment
from mnistlab.fast.fused_conv import ConvReluPool
from mnistlab.fast.native import native_kernel
from mnistlab.fast.pooling import MaxPool2x2, fast_pool_eligible
from mnistlab.fast.rewrite import Conv2dNHWC, rewrite_for_cpu
from mnistlab.nn.build import build_model


@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (2, 9, 28, 28), (3, 2, 5, 6), (1, 1, 2, 2)])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_relu_then_maxpool_including_ties(shape, relu, channels_last):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(-3, 4, shape, generator=g).float()  # small integers: many tied maxima
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=g)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = nn.MaxPool2d(2)(torch.relu(a) if relu else a)
    out = MaxPool2x2(relu)(b)
    ref.backward(upstream)
    out.backward(upstream)
    assert torch.equal(out, ref)
    assert torch.equal(b.grad, a.grad)  # each window's gradient goes to its first maximum


@pytest.mark.parametrize("relu", [True, False])
def test_channels_last_pools_take_the_compiled_kernel(relu):
    """So that the equality test above covers the compiled path, not only the fallback."""
    if native_kernel() is None:
        pytest.skip("compiled kernels unavailable here")
    x = torch.randn(2, 9, 14, 14).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = MaxPool2x2(relu=relu)(x)
    assert type(out.grad_fn).__name__ == "_NativeReluPoolBackward"
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert type(MaxPool2x2(relu=True)(x.detach().contiguous()).grad_fn).__name__ != (
        "_NativeReluPoolBackward")


def test_no_gradient_bookkeeping_without_autograd():
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(MaxPool2x2(True)(x), nn.MaxPool2d(2)(torch.relu(x)))


@pytest.mark.parametrize("pool, eligible", [
    (nn.MaxPool2d(2), True), (nn.MaxPool2d(2, 2), True), (nn.MaxPool2d(3), False),
    (nn.MaxPool2d(2, 1), False), (nn.MaxPool2d(2, padding=1), False),
    (nn.MaxPool2d(2, ceil_mode=True), False), (nn.ReLU(), False)])
def test_only_plain_2x2_pools_are_replaced(pool, eligible):
    assert fast_pool_eligible(pool) is eligible


def test_channels_last_conv_equals_conv():
    torch.manual_seed(0)
    plain = nn.Conv2d(9, 16, 3, padding=1)
    fast = Conv2dNHWC(9, 16, 3, padding=1)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(5, 9, 7, 7)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["cnn/template", "cnn/final", "fashion/final",
                                    "fashion/run2-lab-cnn-tanh", "cnn/l4-sigmoid-25"])
def test_lab_cnns_equal_their_stock_pytorch_version(preset):
    exp = load_experiment(preset)
    plain = build_model(exp.model, (28, 28), 10, seed=0)  # stock torch.nn modules only
    model = rewrite_for_cpu(copy.deepcopy(plain))
    assert any(isinstance(m, MaxPool2x2 | ConvReluPool) for m in model)
    assert list(model.state_dict()) == list(plain.state_dict())  # saved weights load either way
    x = torch.rand(8, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 10
    out, ref = model(x), plain(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    nn.functional.cross_entropy(out, y).backward()
    nn.functional.cross_entropy(ref, y).backward()
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
