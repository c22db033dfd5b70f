"""The one switch: with `mnistlab.fast` off, training uses stock torch.nn modules and autograd only,
and whole runs give what they give with it on.

Tolerances (float32, different summation orders in every product and chunked batches): per-epoch
losses within 1e-4 relative, accuracies within 0.2 percentage points (2 of 1000 images changing
their argmax), test metrics the same way. Seeds, data order and dropout masks are identical.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import mnistlab
from mnistlab.commands.main import main
from mnistlab.config.load import load_experiment
from mnistlab.config.sections import ModelConfig, TrainingConfig
from mnistlab.fast.openmp import FAST_ENV
from mnistlab.fast.switch import fast_enabled, plan_for
from mnistlab.nn import keras_layers
from mnistlab.nn import modules as keras_modules
from mnistlab.nn.build import build_model
from mnistlab.rundir.directory import read_history

PRESETS = ["raw/final", "cnn/final", "fashion/final"]


def _is_stock(module: nn.Module) -> bool:
    """A torch.nn module, or one of the Keras-semantics modules of mnistlab.nn."""
    return type(module).__module__.startswith("torch.nn") or type(module) in (
        keras_modules.KerasDropout, keras_modules.ImagesIn, keras_modules.FlattenHWC,
        keras_layers.KerasBatchNorm, keras_layers.AvgPoolSame, keras_layers.GlobalAvgPool)


@pytest.mark.parametrize("preset", PRESETS)
def test_switched_off_every_module_is_stock_and_on_the_parameters_are_shared(preset):
    exp = load_experiment(preset)
    stock = build_model(exp.model, (28, 28), 10, seed=0)
    assert all(_is_stock(m) for m in stock.modules())
    off = plan_for(stock, TrainingConfig(fast=False), exp.model)
    assert off.model is stock and off.applied == ()
    on = plan_for(stock, TrainingConfig(), exp.model)
    assert not all(_is_stock(m) for m in on.model.modules())  # the switch does something
    assert on.model.state_dict().keys() == stock.state_dict().keys()
    assert {id(p) for p in on.model.parameters()} == {id(p) for p in stock.parameters()}


def test_environment_and_config_switch_it_off(monkeypatch):
    cfg = TrainingConfig()
    assert fast_enabled(cfg)
    assert not fast_enabled(TrainingConfig(fast=False))
    monkeypatch.setenv(FAST_ENV, "0")
    assert not fast_enabled(cfg)
    model_cfg = ModelConfig(hidden=(8,))
    assert plan_for(build_model(model_cfg, (20,)), cfg, model_cfg).applied == ()


def _run(preset: str, fast: bool, tmp_path):
    exp = load_experiment(preset, ["training.epochs=2", "data.train_samples=3000",
                                   "data.test_samples=1000", "output.plots=false",
                                   f"training.fast={str(fast).lower()}"])
    return mnistlab.run_experiment(exp, runs_dir=tmp_path / ("on" if fast else "off"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_whole_runs_agree_with_fast_on_and_off(preset, shared_data, tmp_path):
    on, off = _run(preset, True, tmp_path), _run(preset, False, tmp_path)
    assert on.metrics["fast"] and off.metrics["fast"] == []
    assert "fast = true" in (on.run_dir / "config.toml").read_text()
    assert "fast = false" in (off.run_dir / "config.toml").read_text()
    for key in ("loss", "val_loss"):
        assert on.history[key] == pytest.approx(off.history[key], rel=1e-4), key
    for key in ("accuracy", "val_accuracy"):
        assert on.history[key] == pytest.approx(off.history[key], abs=2e-3), key
    assert on.metrics["test_loss"] == pytest.approx(off.metrics["test_loss"], rel=1e-4)
    assert on.metrics["test_accuracy"] == pytest.approx(off.metrics["test_accuracy"], abs=2e-3)
    assert on.history["loss"][1] < on.history["loss"][0]  # it trained: not two untouched models
    saved_on = torch.load(on.run_dir / "model.pt", weights_only=True)
    saved_off = torch.load(off.run_dir / "model.pt", weights_only=True)
    assert saved_on.keys() == saved_off.keys()  # either run's weights load into the other


def test_no_fast_flag_is_recorded_in_the_run(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(FAST_ENV, raising=False)
    args = ["run", "raw/template", "--epochs", "1", "--quiet", "--no-fast",
            "--data-dir", str(tiny_dataset), "--runs-dir", str(tmp_path / "r"),
            "--set", "output.plots=false"]
    try:
        assert main(args) == 0
    finally:
        import os

        os.environ.pop(FAST_ENV, None)  # main() sets it for its own process
    run_dir = next((tmp_path / "r").iterdir())
    assert "fast = false" in (run_dir / "config.toml").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["fast"] == []
    assert len(read_history(run_dir / "history.csv")["loss"]) == 1


def test_chunking_is_refused_for_layers_that_mix_samples(monkeypatch):
    """The one list of sample-mixing layer types decides both an explicit training.chunk_size
    (refused at load, naming the layer) and the automatic chunks of mnistlab.fast (none)."""
    from mnistlab.config import layers
    from mnistlab.errors import ConfigError
    from mnistlab.fast.chunking import preferred_chunk_size

    exp = load_experiment("cnn/template", ["training.chunk_size=64"])
    model = build_model(exp.model, (28, 28), 10, seed=0)
    assert plan_for(model, exp.training, exp.model).eval_batch_size == 64
    assert preferred_chunk_size(model, exp.model) is not None
    assert "batchnorm" in layers.SAMPLE_MIXING_LAYERS
    bn = '[{type="conv2d", filters=4, kernel_size=3}, {type="batchnorm"}, {type="flatten"}]'
    with pytest.raises(ConfigError, match=r"training.chunk_size = 64 .* batchnorm"):
        load_experiment("cnn/template", [f"model.layers={bn}", "training.chunk_size=64"])
    bn_exp = load_experiment("cnn/template", [f"model.layers={bn}"])
    assert preferred_chunk_size(build_model(bn_exp.model, (28, 28), 10), bn_exp.model) is None
    # the same list decides for any layer type: pretend max pooling mixed samples
    monkeypatch.setattr(layers, "SAMPLE_MIXING_LAYERS", frozenset({"maxpool2d"}))
    with pytest.raises(ConfigError, match=r"training.chunk_size = 64 .* maxpool2d"):
        load_experiment("cnn/template", ["training.chunk_size=64"])
    assert preferred_chunk_size(model, exp.model) is None
    assert load_experiment("cnn/template").training.chunk_size == 0  # auto stays allowed


def test_explicit_chunks_train_the_stock_model_in_pieces():
    exp = load_experiment("cnn/template", ["training.chunk_size=50", "training.fast=false"])
    model = build_model(exp.model, (28, 28), 10, seed=0)
    plan = plan_for(model, exp.training, exp.model)
    assert plan.model is model and plan.eval_batch_size == 50
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    x, y = torch.rand(120, 28, 28), torch.arange(120) % 10
    plan.step(x, y)
    assert calls == [50, 50, 20]
