"""The few-channel convolution kernel must equal Conv2d, values and gradients, for every shape it
accepts (kernel 1-7, valid/same/partial padding, batches that are not whole 16-image blocks, with
or without a bias), whatever the thread count; and the rewrite must use it only where it was
measured faster."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config.sections import ModelConfig
from mnistlab.fast import small_conv
from mnistlab.fast.rewrite import Conv2dNHWC, rewrite_for_cpu
from mnistlab.fast.small_conv import SmallConv2d
from mnistlab.nn.build import build_model

# the lab CNN with doubled filters (benchmarks/models/cnn-18-18-32-d75.toml)
CNN_18_18_32 = (
    {"type": "conv2d", "filters": 18, "kernel_size": 5, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 18, "kernel_size": 5, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
    {"type": "dense", "units": 75})


def _pair(c_in, c_out, k, padding, bias=True, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=bias)
    fast = SmallConv2d.like(conv)
    fast.load_state_dict(conv.state_dict())
    return conv, fast


def _maps(n, c, h, w, seed, channels_last=True):
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    return x.to(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("c_in, c_out, k, padding, h, w, n, bias", [
    (9, 9, 5, 2, 14, 14, 40, True),     # the lab's second layer ('same'), 2.5 blocks of images
    (18, 18, 5, 2, 14, 14, 16, True),   # the 18-18-32 CNN's layers
    (18, 32, 3, 1, 7, 7, 33, True),
    (9, 16, 3, 1, 7, 7, 5, False),      # batchnorm follows: no bias; fewer images than a block
    (3, 5, 7, 0, 9, 12, 17, True),      # 'valid', a rectangular map
    (4, 6, 7, 6, 3, 2, 18, True),       # padding k - 1: output larger than the input
    (2, 1, 1, 0, 5, 5, 20, True),       # 1x1 kernel, one output channel
    (6, 7, 4, 1, 8, 8, 19, True),       # even kernel, symmetric padding
    (32, 3, 3, (1, 2), 6, 9, 16, True),  # different padding per axis
])
def test_values_and_gradients_equal_conv2d(kernel, c_in, c_out, k, padding, h, w, n, bias):
    conv, fast = _pair(c_in, c_out, k, padding, bias)
    x = _maps(n, c_in, h, w, seed=1)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, out = conv(xr), fast(xf)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    ref.backward(grad)
    out.backward(grad)
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(fast.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-4)
    else:
        assert fast.bias is None


def test_gradients_match_a_float64_reference(kernel):
    """Against the same convolution in float64: the kernel's float32 sums stay within float32
    rounding (stock float32 is not the yardstick of itself)."""
    conv, fast = _pair(18, 18, 5, 2, seed=3)
    x = _maps(48, 18, 14, 14, seed=4).requires_grad_()
    out = fast(x)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    out.backward(grad)
    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    ref = F.conv2d(x64, w64, conv.bias.double(), padding=2)
    ref.backward(grad.double())
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0, atol=2e-5)
    scale = w64.grad.abs().max().item()
    torch.testing.assert_close(fast.weight.grad.double(), w64.grad, rtol=0, atol=1e-6 * scale)


def test_planar_inputs_and_no_input_gradient(kernel):
    """A planar (NCHW) input is taken as well; an input that needs no gradient gets none, and
    the weight gradient is the same."""
    conv, fast = _pair(9, 16, 3, 1)
    x = _maps(21, 9, 7, 7, seed=6, channels_last=False)
    out, ref = fast(x), conv(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(fast.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    assert x.grad is None


def test_results_do_not_depend_on_the_thread_count(kernel):
    _, fast = _pair(18, 32, 3, 1)
    x = _maps(100, 18, 7, 7, seed=7)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fast.zero_grad()
            xg = x.clone().requires_grad_()
            out = fast(xg)
            out.square().sum().backward()
            results.append((out.detach(), xg.grad, fast.weight.grad.clone(),
                            fast.bias.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_without_the_compiled_kernel_it_runs_onednn(monkeypatch):
    conv, fast = _pair(9, 9, 5, 2)
    monkeypatch.setattr(small_conv, "native_kernel", lambda: None)
    x = _maps(4, 9, 14, 14, seed=8)
    torch.testing.assert_close(fast(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.fixture
def avx512(monkeypatch):
    """Eligibility as on the AVX-512 machines it was measured on, whatever this one is."""
    monkeypatch.setattr(small_conv, "wide_vectors", lambda: True)


def test_the_rewrite_uses_it_only_where_it_was_measured_faster(avx512, monkeypatch):
    stock = build_model(ModelConfig(kind="cnn", layers=CNN_18_18_32), (28, 28), 10, seed=0)
    model = rewrite_for_cpu(copy.deepcopy(stock))
    convs = [type(m) for m in model if isinstance(m, nn.Conv2d)]
    assert convs[1:] == [SmallConv2d, SmallConv2d]  # the first is the fused Conv2D + pool
    assert list(model.state_dict()) == list(stock.state_dict())
    assert SmallConv2d.eligible(nn.Conv2d(9, 16, 3, padding=1))
    assert not SmallConv2d.eligible(nn.Conv2d(16, 32, 3, padding=1))  # oneDNN's blocks are full
    assert not SmallConv2d.eligible(nn.Conv2d(32, 64, 3, padding=1))  # many channels
    assert not SmallConv2d.eligible(nn.Conv2d(9, 9, 3, stride=2))
    assert not SmallConv2d.eligible(nn.Conv2d(9, 9, 3, padding=3))  # padding >= kernel size
    assert not SmallConv2d.eligible(nn.Conv2d(1, 9, 3, padding=1))  # the fused first layer's
    assert type(rewrite_for_cpu(nn.Sequential(nn.Conv2d(16, 32, 3)))[0]) is Conv2dNHWC
    monkeypatch.setattr(small_conv, "wide_vectors", lambda: False)  # AVX2: never measured
    assert not SmallConv2d.eligible(nn.Conv2d(9, 16, 3, padding=1))


def test_this_cpu_is_asked_through_pytorch():
    assert small_conv.wide_vectors() == ("AVX512" in torch.backends.cpu.get_cpu_capability())


def test_the_18_18_32_cnn_trains_as_the_stock_model(kernel, avx512):
    """The whole rewritten CNN with its few-channel layers: outputs and every parameter's
    gradient as the stock model's."""
    cfg = ModelConfig(kind="cnn", activation="tanh", layers=CNN_18_18_32)
    stock = build_model(cfg, (28, 28), 10, seed=1)
    model = rewrite_for_cpu(copy.deepcopy(stock))
    assert sum(isinstance(m, SmallConv2d) for m in model) == 2
    x = torch.rand(50, 28, 28, generator=torch.Generator().manual_seed(9))
    y = torch.arange(50) % 10
    out, ref = model(x), stock(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    F.cross_entropy(out, y).backward()
    F.cross_entropy(ref, y).backward()
    for (name, p), q in zip(model.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
