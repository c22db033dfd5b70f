"""The fused Conv2D(1 -> C) + ReLU + 2x2 max pool (and its ReLU-less form, for activations moved
after the pool) must equal the stock modules, values and gradients, for every kernel size and
shape it accepts, and training through it must too."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config.sections import ModelConfig, OptimizerConfig
from mnistlab.fast import native, small_conv
from mnistlab.fast.chunking import FUSED_CNN_CHUNK_SIZE, preferred_chunk_size
from mnistlab.fast.dense import DenseOverCHW
from mnistlab.fast.fused_conv import ConvReluPool
from mnistlab.fast.native import NativeKernelWarning, native_kernel
from mnistlab.fast.rewrite import Conv2dNHWC, rewrite_for_cpu
from mnistlab.fast.small_conv import SmallConv2d
from mnistlab.nn.build import build_model
from mnistlab.nn.optim import make_optimizer
from mnistlab.training.loop import train_one_epoch
from mnistlab.training.steps import chunked_step


def _fused_like(conv: nn.Conv2d, relu: bool = True) -> ConvReluPool:
    fused = ConvReluPool.like(conv, relu=relu)
    fused.load_state_dict(conv.state_dict())
    return fused


def _images(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, h, w, generator=g)
    x[x < 0.4] = 0  # digit-like: many exact zeros, so windows tie and maxima are <= 0
    return x


def _reference(conv, x, relu=True):
    return F.max_pool2d(F.relu(conv(x)) if relu else conv(x), 2)


@pytest.mark.parametrize("k, channels, padding, h, w", [
    (3, 9, 1, 28, 28),   # fashion/final's first layer
    (5, 9, 2, 28, 28),   # cnn/final's
    (1, 4, 0, 28, 28),
    (7, 3, 3, 20, 20),
    (3, 5, 0, 13, 11),   # 'valid', odd outputs: the last row/column is dropped
    (5, 17, 2, 9, 40),   # wider than one tile, more channels than one register group
    (4, 2, 1, 12, 12),   # an even kernel: not compiled for, the stock modules run
    (3, 1, 1, 2, 2),
])
@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("relu", [True, False])
def test_values_and_gradients_equal_the_stock_modules(kernel, k, channels, padding, h, w, planar,
                                                      relu):
    torch.manual_seed(k * 100 + channels)
    conv = nn.Conv2d(1, channels, k, padding=padding)
    nn.init.uniform_(conv.bias, -0.3, 0.3)  # some channels negative: windows with no gradient
    fused = _fused_like(conv, relu)
    fused.planar_output = planar
    x = _images(37, h, w, seed=k)
    out, ref = fused(x), _reference(conv, x, relu)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    scale = conv.weight.grad.abs().max().item() + 1.0
    torch.testing.assert_close(fused.weight.grad, conv.weight.grad, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(fused.bias.grad, conv.bias.grad, rtol=1e-5, atol=1e-5 * scale)


def test_ties_and_non_positive_windows_follow_pytorch(kernel):
    """Constant windows: the first corner in row-major order gets the gradient; a window whose
    maximum is 0 (all-zero image, zero bias) passes none."""
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.bias.copy_(torch.tensor([0.0, 0.5]))
    fused = _fused_like(conv)
    x = torch.zeros(3, 1, 6, 6)
    x[1] = 1.0
    x[2, 0, 2:4, 2:4] = torch.tensor([[2.0, 2.0], [2.0, 1.0]])
    out, ref = fused(x), _reference(conv, x)
    torch.testing.assert_close(out, ref)
    (out.sum()).backward()
    ref.sum().backward()
    torch.testing.assert_close(fused.weight.grad, conv.weight.grad)
    torch.testing.assert_close(fused.bias.grad, conv.bias.grad)


def test_results_do_not_depend_on_the_thread_count(kernel):
    conv = nn.Conv2d(1, 9, 5, padding=2)
    x = _images(100, 28, 28, seed=3)
    grads = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fused = _fused_like(conv)
            fused(x).square().sum().backward()
            grads.append(fused.weight.grad.clone())
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1])


def test_built_cnns_fuse_their_first_layer_and_keep_weight_names():
    cfg = ModelConfig(kind="cnn", layers=(
        {"type": "conv2d", "filters": 9, "kernel_size": 3, "padding": "same"},
        {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
        {"type": "dense", "units": 100}))
    stock = build_model(cfg, (28, 28), 10, seed=0)
    model = rewrite_for_cpu(stock)
    assert isinstance(model[1], ConvReluPool) and model[1].planar_output
    assert isinstance(model[3], nn.Identity)  # the pool now inside the fused layer
    assert isinstance(model[5], DenseOverCHW)  # reads the planar map in Keras's H, W, C order
    assert model.state_dict().keys() == stock.state_dict().keys()
    assert model[1].weight is stock[1].weight and model[5].weight is stock[5].weight  # shared
    assert not any(type(m) is not nn.Conv2d and isinstance(m, nn.Conv2d) for m in stock)
    assert preferred_chunk_size(model, cfg) == FUSED_CNN_CHUNK_SIZE
    tanh = ModelConfig(kind="cnn", activation="tanh", layers=cfg.layers)
    fast_tanh = rewrite_for_cpu(build_model(tanh, (28, 28), 10, seed=0))
    # tanh commutes with the pool: fused without the ReLU, tanh on the pooled (planar) map
    assert isinstance(fast_tanh[1], ConvReluPool) and not fast_tanh[1].relu
    assert fast_tanh[1].planar_output and isinstance(fast_tanh[3], nn.Tanh)
    gelu = ModelConfig(kind="cnn", activation="gelu", layers=cfg.layers)
    fast_gelu = rewrite_for_cpu(build_model(gelu, (28, 28), 10, seed=0))
    assert not any(isinstance(m, ConvReluPool) for m in fast_gelu)  # GELU is not monotonic


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "elu", "selu", "softplus", "linear",
                                        "gelu"])
def test_cnns_with_other_activations_equal_the_stock_model(kernel, activation):
    """Whatever the activation, the rewritten CNN computes the stock one's outputs and gradients
    (increasing ones are moved after their pools; GELU is left in place)."""
    cfg = ModelConfig(kind="cnn", activation=activation, layers=(
        {"type": "conv2d", "filters": 6, "kernel_size": 5, "padding": "same"},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "conv2d", "filters": 5, "kernel_size": 3, "padding": "same"},
        {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
        {"type": "dense", "units": 16}))
    stock = build_model(cfg, (28, 28), 10, seed=2)
    model = rewrite_for_cpu(copy.deepcopy(stock))
    assert isinstance(model[1], ConvReluPool) == (activation != "gelu")
    x = _images(40, 28, 28, seed=7)[:, 0]
    y = torch.arange(40) % 10
    out, ref = model(x), stock(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    F.cross_entropy(out, y).backward()
    F.cross_entropy(ref, y).backward()
    for (name, p), q in zip(model.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fusion_leaves_other_layers_alone(monkeypatch):
    monkeypatch.setattr(small_conv, "wide_vectors", lambda: True)  # as on AVX-512 machines
    three = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    assert type(rewrite_for_cpu(three)[0]) is SmallConv2d  # three input channels: not fused
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    assert type(rewrite_for_cpu(wide)[0]) is Conv2dNHWC  # too many channels for SmallConv2d
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
    assert type(rewrite_for_cpu(strided)[0]) is nn.Conv2d


def test_training_steps_equal_the_stock_path(kernel):
    cfg = ModelConfig(kind="cnn", layers=(
        {"type": "conv2d", "filters": 6, "kernel_size": 5, "padding": "same"},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
        {"type": "dense", "units": 16}))
    stock = build_model(cfg, (28, 28), 10, seed=4)
    fused = rewrite_for_cpu(copy.deepcopy(stock))
    assert isinstance(fused[1], ConvReluPool)
    x = _images(300, 28, 28, seed=5)[:, 0]
    y = torch.randint(0, 10, (300,), generator=torch.Generator().manual_seed(6))
    for model in (fused, stock):  # one batch: the gradients agree to float rounding
        F.cross_entropy(model(x), y).backward()
    for p, q in zip(fused.parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    results = []
    for model in (fused, stock):  # an epoch of RMSprop steps in chunks, as fit trains
        model.zero_grad()
        opt = make_optimizer(model.parameters(), OptimizerConfig())
        results.append(train_one_epoch(model, opt, x, y, 64, None, step=chunked_step(model, 32)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    # RMSprop divides by the root of the squared gradients, so rounding in a near-zero gradient
    # can move a weight by part of one step (learning rate 1e-3): far below that, not equal.
    for p, q in zip(fused.parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=3e-4)


@pytest.mark.slow
def test_switched_off_it_falls_back_to_stock_modules():
    code = ("import torch; from mnistlab.fast.fused_conv import ConvReluPool; "
            "from mnistlab.fast.native import native_kernel; c = ConvReluPool(1, 3, 3, padding=1); "
            "print(native_kernel(), tuple(c(torch.rand(2, 1, 8, 8)).shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "MNISTLAB_NATIVE": "0"}, check=True)
    assert out.stdout.split() == ["None", "(2,", "3,", "4,", "4)"]


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_SOURCES", (tmp_path / "missing.cpp",))
    monkeypatch.setattr(native, "_build_name", lambda: "broken")
    monkeypatch.setenv("MNISTLAB_KERNELS", str(tmp_path / "kernels"))
    with pytest.warns(NativeKernelWarning, match="stock modules"):
        assert native_kernel() is None
    conv = ConvReluPool(1, 2, 3, padding=1)
    x = _images(4, 8, 8, seed=0)
    stock = nn.Conv2d(1, 2, 3, padding=1)
    stock.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), _reference(stock, x))
