"""Training semantics: Keras-style history, determinism, learning, NaN handling."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistlab.config.sections import ModelConfig, OptimizerConfig, TrainingConfig
from mnistlab.errors import TrainingError
from mnistlab.fast.cpu import flushing_denormals
from mnistlab.fast.switch import plan_for
from mnistlab.nn.build import build_model
from mnistlab.nn.optim import make_optimizer
from mnistlab.training.loop import epoch_generator, evaluate, fit, train_one_epoch


def _data(n=150, seed=0, features=20):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :10].argmax(1)).long()
    return x, y


def test_epoch_logs_are_batch_size_weighted_means_before_each_update():
    x, y = _data(n=150)
    model = build_model(ModelConfig(hidden=(16,)), (20,), seed=0)
    opt = make_optimizer(model.parameters(), OptimizerConfig(learning_rate=0.01))
    ref_model, ref_opt = copy.deepcopy(model), None
    ref_opt = make_optimizer(ref_model.parameters(), OptimizerConfig(learning_rate=0.01))
    order = torch.randperm(150, generator=torch.Generator().manual_seed(1))
    loss, acc = train_one_epoch(model, opt, x, y, 64, order)  # batches of 64, 64, 22
    total, correct = 0.0, 0
    for start in range(0, 150, 64):
        idx = order[start:start + 64]
        logits = ref_model(x[idx])
        batch_loss = F.cross_entropy(logits, y[idx])
        total += float(batch_loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y[idx]).sum())
        ref_opt.zero_grad()
        batch_loss.backward()
        ref_opt.step()
    assert loss == pytest.approx(total / 150, rel=1e-6)
    assert acc == correct / 150


def test_validation_is_a_full_evaluation_without_dropout():
    x, y = _data()
    model = build_model(ModelConfig(hidden=(16,), dropout=0.5), (20,), seed=0)
    a, b = evaluate(model, x, y), evaluate(model, x, y, batch_size=7)
    assert a.loss == pytest.approx(b.loss, rel=1e-6) and a.accuracy == b.accuracy
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(x), y).item()
    assert a.loss == pytest.approx(expected, rel=1e-6)
    assert a.probabilities.shape == (150, 10)
    np.testing.assert_allclose(a.probabilities.sum(1), 1, rtol=1e-5)


def _fit(seed, epochs=3, **model_kw):
    x, y = _data()
    model = build_model(ModelConfig(hidden=(32,), **model_kw), (20,), seed=seed)
    opt = make_optimizer(model.parameters(), OptimizerConfig(learning_rate=0.01))
    cfg = TrainingConfig(epochs=epochs, batch_size=32, seed=seed)
    return fit(model, opt, (x, y), (x, y), cfg)


def test_same_seed_same_history_other_seed_differs():
    a, b, c = _fit(3, dropout=0.5), _fit(3, dropout=0.5), _fit(4, dropout=0.5)
    assert a.loss == b.loss and a.val_loss == b.val_loss
    assert a.loss != c.loss


def test_overfits_64_samples():
    x, y = _data(n=64, features=30)
    y = torch.arange(64) % 10  # arbitrary labels: only memorising fits them
    model = build_model(ModelConfig(hidden=(128,)), (30,), seed=0)
    opt = make_optimizer(model.parameters(), OptimizerConfig(learning_rate=0.01))
    history = fit(model, opt, (x, y), (x, y), TrainingConfig(epochs=150, batch_size=16))
    assert history.val_accuracy[-1] == 1.0
    assert history.loss[-1] < 0.05


def test_nan_loss_stops_with_advice():
    x, y = _data()
    x[0, 0] = float("nan")
    model = build_model(ModelConfig(hidden=(8,)), (20,), seed=0)
    opt = make_optimizer(model.parameters(), OptimizerConfig())
    with pytest.raises(TrainingError, match="learning_rate"):
        fit(model, opt, (x, y), (x, y), TrainingConfig(epochs=2, batch_size=200))


def test_shuffle_order_depends_only_on_seed_and_epoch():
    a = torch.randperm(50, generator=epoch_generator(1, 3))
    b = torch.randperm(50, generator=epoch_generator(1, 3))
    c = torch.randperm(50, generator=epoch_generator(1, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("fast", [True, False])
def test_fast_training_flushes_denormals_and_restores_the_mode(fast):
    torch.set_flush_denormal(False)
    seen = []
    x, y = _data()
    cfg, model_cfg = TrainingConfig(epochs=1, batch_size=50, fast=fast), ModelConfig(hidden=(8,))
    plan = plan_for(build_model(model_cfg, (20,), seed=0), cfg, model_cfg)
    opt = make_optimizer(plan.model.parameters(), OptimizerConfig())
    fit(plan.model, opt, (x, y), (x, y), cfg, plan=plan,
        on_batch=lambda b, n: seen.append(flushing_denormals()))
    assert seen == [fast] * 3  # stock training leaves the CPU's mode alone
    assert not flushing_denormals()
    assert float(torch.tensor([1e-40]) * 1.0) > 0  # denormals are back outside training
