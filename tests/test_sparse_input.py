"""The dense-core + sparse-rest training input must give the plain dense path's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistlab.config.sections import ModelConfig
from mnistlab.data.load import load_dataset
from mnistlab.fast.sparse_input import (
    ALIGN,
    SplitBatch,
    SplitLinear,
    SplitMatrix,
    plan_split,
    split_autograd_step,
    split_training_input,
)
from mnistlab.nn.build import build_model
from mnistlab.nn.modules import KerasDropout
from mnistlab.nn.optim import RMSprop
from mnistlab.training.loop import epoch_generator, train_one_epoch

BIG_BATCH = 100_000  # plans made as for a large batch, so that these small inputs are split


def digit_like(n: int, side: int = 28, seed: int = 0) -> torch.Tensor:
    """Images whose ink sits in a central box (zero border, sparse inside), flattened."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, side, side)
    lo, hi = side // 5, side - side // 5
    inner = torch.rand(n, hi - lo, hi - lo, generator=g)
    x[:, lo:hi, lo:hi] = torch.where(inner > 0.6, inner, torch.zeros(()))
    stray = torch.rand(n, side, side, generator=g) > 0.995  # a few pixels outside the box
    x = torch.where(stray, torch.full((), 0.5), x)
    return x.reshape(n, -1)


def test_plan_keeps_the_dense_columns_and_aligns_the_core():
    x = digit_like(2000)
    plan = plan_split(x, batch_size=4096)
    assert plan is not None and plan.estimated_cost < 0.8
    assert len(plan.core) % ALIGN == 0
    assert torch.equal(torch.cat([plan.core, plan.rest]).sort().values, torch.arange(784))
    box = torch.zeros(28, 28, dtype=torch.bool)
    box[5:23, 5:23] = True
    assert box.reshape(-1)[plan.core].float().mean() > 0.9  # the core is (mostly) the ink box
    assert set(box.reshape(-1).nonzero().squeeze(1).tolist()) <= set(plan.core.tolist())


@pytest.mark.parametrize("x", [torch.rand(500, 784) + 0.1, torch.zeros(500, 20)],
                         ids=["dense", "narrow"])
def test_no_plan_when_the_split_does_not_pay(x):
    assert plan_split(x, batch_size=4096) is None


def test_small_batches_stay_dense():
    """Per batch the split touches every weight a few times: at batch 128 that costs more than
    the arithmetic it saves (measured), so the plan says no."""
    x = digit_like(2000)
    assert plan_split(x, batch_size=4096) is not None
    assert plan_split(x, batch_size=128) is None


def test_rows_come_back_exactly():
    x = digit_like(300, seed=1)
    split = SplitMatrix(x, plan_split(x, BIG_BATCH))
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:77]
    batch = split.index_select(0, idx)
    assert isinstance(batch, SplitBatch) and len(batch) == 77
    assert torch.equal(batch.core, x[idx][:, split.plan.core])
    assert torch.equal(batch.rest.to_dense(), x[idx][:, split.plan.rest])
    sliced = split[10:20]
    assert torch.equal(sliced.core, x[10:20][:, split.plan.core])
    assert torch.equal(sliced.rest.to_dense(), x[10:20][:, split.plan.rest])


def test_split_linear_equals_linear_and_its_gradients():
    x = digit_like(256, seed=2)
    split = SplitMatrix(x, plan_split(x, BIG_BATCH))
    batch = split.index_select(0, torch.arange(256))
    w = torch.randn(40, 784, requires_grad=True)
    b = torch.randn(40, requires_grad=True)
    upstream = torch.randn(256, 40)
    out = SplitLinear.apply(batch.core, batch.rest, w, b, split.plan.core, split.plan.rest)
    (out * upstream).sum().backward()
    gw, gb = w.grad.clone(), b.grad.clone()
    w.grad = b.grad = None
    ref = F.linear(x, w, b)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, b.grad, rtol=1e-5, atol=1e-5)


def _train(x, y, steps_input, epochs=2):
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=(32,), activation="tanh", dropout=0.5), (28, 28), 10,
                        seed=0)
    opt = RMSprop(model.parameters())
    logs = []
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=epoch_generator(0, epoch))
        logs.append(train_one_epoch(model, opt, steps_input(model, x), y, 100, order,
                                    step=split_autograd_step(model)))
    return logs, model


def test_training_on_the_split_matches_dense_training():
    x = digit_like(1000, seed=3).reshape(1000, 28, 28)
    y = torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(1))
    dense_logs, dense = _train(x, y, lambda model, x: x)
    split_logs, split = _train(x, y, lambda model, x: split_training_input(model, x, BIG_BATCH))
    assert isinstance(split_training_input(split, x, BIG_BATCH), SplitMatrix)
    np.testing.assert_allclose(split_logs, dense_logs, rtol=1e-5)
    for a, b in zip(split.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cnn_and_dense_inputs_stay_dense():
    cnn = build_model(ModelConfig(kind="cnn", layers=({"type": "flatten"},
                                                      {"type": "dense", "units": 8})),
                      (28, 28), 10, seed=0)
    x = digit_like(200).reshape(200, 28, 28)
    assert split_training_input(cnn, x, 50) is x
    mlp = build_model(ModelConfig(hidden=(8,)), (28, 28), 10, seed=0)
    dense = torch.rand(200, 28, 28) + 0.1
    assert split_training_input(mlp, dense, 50) is dense


def test_real_mnist_pixels_split(shared_data):
    ds = load_dataset("mnist", shared_data)
    x = torch.from_numpy(ds.train_images[:20000].reshape(20000, -1).astype(np.float32) / 255)
    plan = plan_split(x, 4096)
    assert plan is not None and 300 <= len(plan.core) <= 500 and plan.estimated_cost < 0.7


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keras_dropout_keeps_1_minus_rate_and_scales(rate):
    torch.manual_seed(0)
    layer = KerasDropout(rate).train()
    out = layer(torch.ones(400, 1000))
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - rate)) < 4 * (rate * (1 - rate) / 4e5) ** 0.5
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - rate)))
    assert torch.equal(layer.eval()(torch.ones(3, 3)), torch.ones(3, 3))
