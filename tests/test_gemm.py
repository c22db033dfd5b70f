"""oneDNN products (mnistlab.gemm) and the Dense layer must equal PyTorch's stock kernels."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config.sections import ModelConfig
from mnistlab.fast import gemm
from mnistlab.fast.dense import Dense
from mnistlab.fast.mlp_step import mlp_step_for
from mnistlab.nn.build import build_model

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(),
                                  reason="this PyTorch build has no oneDNN linear kernel")


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@needs_onednn
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 5, 7), (17, 392, 200), (257, 784, 250),
                                     (64, 1764, 100)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_f_linear(m, k, n, with_bias):
    x, w, b = _rand(m, k, seed=1), _rand(n, k, seed=2), _rand(n, seed=3) if with_bias else None
    assert gemm.onednn_enabled()
    torch.testing.assert_close(gemm.linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@needs_onednn
def test_transposed_views_give_both_gradient_products():
    g, x, w = _rand(300, 40, seed=4), _rand(300, 70, seed=5), _rand(40, 70, seed=6)
    torch.testing.assert_close(gemm.linear(g.t(), x.t()), g.t() @ x, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gemm.matmul(g, w), g @ w, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gemm.linear(x[:, ::2], w[:, ::2]), x[:, ::2] @ w[:, ::2].t(),
                               rtol=1e-5, atol=1e-4)


@needs_onednn
def test_weights_changed_in_place_are_seen():
    """The optimiser updates weights in place: no product may reuse a stale packed copy."""
    x, w, b = _rand(32, 20, seed=7), _rand(10, 20, seed=8), torch.zeros(10)
    first = gemm.linear(x, w, b)
    w.mul_(-2.0)
    b.add_(1.0)
    second = gemm.linear(x, w, b)
    torch.testing.assert_close(second, -2.0 * first + 1.0, rtol=1e-5, atol=1e-5)


def test_switched_off_or_other_dtypes_use_stock_kernels_exactly():
    x, w, b = _rand(20, 30, seed=9), _rand(8, 30, seed=10), _rand(8, seed=11)
    with gemm.use_onednn(False):
        assert not gemm.onednn_enabled()
        assert torch.equal(gemm.linear(x, w, b), F.linear(x, w, b))
    x64, w64 = x.double(), w.double()
    assert torch.equal(gemm.linear(x64, w64), F.linear(x64, w64))
    empty = torch.zeros(0, 30)
    assert gemm.linear(empty, w, b).shape == (0, 8)


@pytest.mark.slow
def test_environment_variable_turns_onednn_off():
    code = "from mnistlab.fast import gemm; print(gemm.onednn_enabled())"
    env = {**os.environ, "MNISTLAB_GEMM": "torch"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_dense_is_a_linear_with_the_same_state_dict():
    torch.manual_seed(0)
    dense = Dense(12, 5)
    linear = nn.Linear(12, 5)
    linear.load_state_dict(dense.state_dict())
    assert isinstance(dense, nn.Linear)
    assert list(dense.state_dict()) == list(linear.state_dict())


@needs_onednn
def test_dense_forward_and_gradients_equal_nn_linear():
    torch.manual_seed(0)
    dense = Dense(50, 7)
    linear = nn.Linear(50, 7)
    linear.load_state_dict(dense.state_dict())
    x = _rand(33, 50, seed=12).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, ref = dense(x), linear(x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    upstream = _rand(33, 7, seed=13)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense.weight.grad, linear.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense.bias.grad, linear.bias.grad, rtol=1e-5, atol=1e-5)
    three_d = _rand(2, 4, 50, seed=14)  # not a 2-D batch: the stock path
    torch.testing.assert_close(dense(three_d), linear(three_d))


@needs_onednn
@pytest.mark.parametrize("activation, dropout", [("tanh", 0.5), ("relu", 0.0), ("sigmoid", 0.3)])
def test_hand_written_step_on_onednn_equals_autograd_on_stock_kernels(activation, dropout):
    x = _rand(128, 8, 8, seed=15)
    y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(16))
    model = build_model(ModelConfig(hidden=(40,), activation=activation, dropout=dropout),
                        (8, 8), 10, seed=2).train()
    reference = copy.deepcopy(model)
    with gemm.use_onednn(False):
        torch.manual_seed(3)
        F.cross_entropy(reference(x), y).backward()
    torch.manual_seed(3)
    mlp_step_for(model)(x, y)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
