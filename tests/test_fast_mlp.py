"""The hand-written MLP step must give autograd's loss, accuracy and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mnistlab.config.sections import ModelConfig
from mnistlab.fast.mlp_step import mlp_step_for
from mnistlab.fast.sparse_input import SplitMatrix, plan_split
from mnistlab.nn.build import build_model


def _batch(n=64, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, side, side, generator=g)
    x[:, :2] = 0  # some always-zero pixels, as MNIST's border
    return x, torch.randint(0, 10, (n,), generator=g)


def _autograd(model, x, y, seed):
    torch.manual_seed(seed)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    return float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum())


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("hidden, dropout", [((32,), 0.0), ((32,), 0.5), ((24, 16), 0.3)])
def test_same_loss_accuracy_and_gradients_as_autograd(activation, hidden, dropout):
    x, y = _batch()
    model = build_model(ModelConfig(hidden=hidden, activation=activation, dropout=dropout),
                        (8, 8), 10, seed=1).train()
    reference = copy.deepcopy(model)
    ref_loss, ref_correct = _autograd(reference, x, y, seed=5)
    step = mlp_step_for(model)
    assert step is not None
    torch.manual_seed(5)  # same dropout masks, drawn in the same order
    loss, correct = step(x, y)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
    assert int(correct) == ref_correct
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_split_input_gives_the_same_gradients():
    x, y = _batch(n=256, side=28, seed=3)
    x[:, :, :6] = 0
    model = build_model(ModelConfig(hidden=(20,), activation="tanh"), (28, 28), 10, seed=0)
    reference = copy.deepcopy(model)
    _autograd(reference, x, y, seed=0)
    flat = x.reshape(len(x), -1)
    split = SplitMatrix(flat, plan_split(flat, 100_000))
    mlp_step_for(model)(split.index_select(0, torch.arange(len(x))), y)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [
    ModelConfig(hidden=(8,), activation="elu"),  # no hand-written derivative: autograd
    ModelConfig(kind="cnn", layers=({"type": "flatten"}, {"type": "dense", "units": 8}))])
def test_other_networks_use_autograd(cfg):
    assert mlp_step_for(build_model(cfg, (8, 8), 10, seed=0)) is None
