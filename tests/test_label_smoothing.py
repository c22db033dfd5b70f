"""Label smoothing (`training.label_smoothing`): Keras's CategoricalCrossentropy targets
y * (1 - ls) + ls / K in every reported loss, the same on the stock and the fast path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_resume import _tiny

from mnistlab import load_experiment
from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import ModelConfig
from mnistlab.errors import ConfigError
from mnistlab.fast.mlp_step import mlp_step_for
from mnistlab.nn.build import build_model
from mnistlab.rundir.execute import prepare_data, run_experiment
from mnistlab.training.loop import evaluate
from mnistlab.training.steps import autograd_step


def _keras_smoothed_ce(logits: np.ndarray, labels: np.ndarray, ls: float) -> float:
    """Keras CategoricalCrossentropy(label_smoothing=ls) on softmax outputs, by hand."""
    k = logits.shape[1]
    target = np.eye(k)[labels] * (1 - ls) + ls / k
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-(target * log_p).sum(1).mean())


def _batch(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("ls", [0.0, 0.1, 0.5])
def test_losses_are_keras_smoothed_cross_entropy(ls):
    x, y = _batch()
    model = build_model(ModelConfig(hidden=(16,)), (8, 8), 10, seed=0)
    with torch.no_grad():
        logits = model(x).double().numpy()
    expected = _keras_smoothed_ce(logits, y.numpy(), ls)
    assert evaluate(model, x, y, label_smoothing=ls).loss == pytest.approx(expected, rel=1e-5)
    loss_sum, _ = autograd_step(model.train(), label_smoothing=ls)(x, y)
    assert float(loss_sum) / len(y) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("activation, dropout", [("relu", 0.0), ("tanh", 0.3)])
def test_hand_written_mlp_step_smooths_like_autograd(activation, dropout):
    x, y = _batch()
    model = build_model(ModelConfig(hidden=(24, 16), activation=activation, dropout=dropout),
                        (8, 8), 10, seed=1).train()
    reference = copy.deepcopy(model)
    torch.manual_seed(5)
    ref_loss, ref_correct = autograd_step(reference, label_smoothing=0.2)(x, y)
    torch.manual_seed(5)  # same dropout masks
    loss, correct = mlp_step_for(model, label_smoothing=0.2)(x, y)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    assert int(correct) == int(ref_correct)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_run_reports_smoothed_losses_on_both_paths(tiny_dataset, tmp_path):
    """history and test_loss are the smoothed loss (Keras's compiled loss), fast on = off."""
    args = [*_tiny(epochs=2), "training.label_smoothing=0.2"]
    exp = load_experiment("raw/template", args)
    on = run_experiment(exp, tmp_path / "on")
    off = run_experiment(load_experiment("raw/template", [*args, "training.fast=false"]),
                         tmp_path / "off")
    assert "hand-written MLP step" in on.metrics["fast"]
    for key in ("loss", "val_loss"):
        assert on.history[key] == pytest.approx(off.history[key], rel=1e-5)
    splits, _ = prepare_data(exp)
    model = build_model(exp.model, (28, 28), 10)
    model.load_state_dict(torch.load(on.run_dir / "model.pt"))
    x, y = torch.from_numpy(splits.x_test), torch.from_numpy(splits.y_test)
    assert on.metrics["test_loss"] == pytest.approx(evaluate(model, x, y, 8192, 0.2).loss,
                                                    rel=1e-6)
    assert on.metrics["test_loss"] != pytest.approx(evaluate(model, x, y).loss, rel=1e-3)


def test_config():
    assert "label_smoothing" not in to_toml(load_experiment("raw/final"))
    zero = experiment_from_dict({"training": {"label_smoothing": 0.0}}, "x.toml")
    assert config_digest(zero) == config_digest(experiment_from_dict({}, "x.toml"))
    assert "label_smoothing = 0.1" in to_toml(
        experiment_from_dict({"training": {"label_smoothing": 0.1}}, "x.toml"))
    with pytest.raises(ConfigError) as err:
        experiment_from_dict({"training": {"label_smoothing": 1.0}}, "x.toml")
    assert str(err.value) == ("x.toml: training.label_smoothing must be a number in [0, 1); "
                              "got 1.0")
