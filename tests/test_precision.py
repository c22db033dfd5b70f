"""`training.precision = "bf16"`: training batches under bfloat16 autocast (checked against an
explicit autocast step), weights and evaluation in float32, refused without native bf16."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import mnistlab
from mnistlab.config.load import load_experiment
from mnistlab.errors import ConfigError, TrainingError
from mnistlab.fast.precision import bf16_supported, check_precision
from mnistlab.fast.switch import plan_for
from mnistlab.nn.build import build_model
from mnistlab.training.precision import BF16_LABEL

NATIVE_BF16, WHY = bf16_supported(torch.device("cpu"))
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason=f"no native bf16 on this CPU ({WHY})")


def _cnn():
    exp = load_experiment("cnn/final", ["training.precision=bf16"])
    return exp, build_model(exp.model, (28, 28), 10, seed=3)


def test_the_field_takes_fp32_or_bf16_only():
    with pytest.raises(ConfigError, match=r"training.precision.*'fp16'.*bf16"):
        load_experiment("cnn/final", ["training.precision=fp16"])
    assert load_experiment("cnn/final").training.precision == "fp32"


def test_a_bf16_step_is_an_autocast_forward_and_a_float32_loss():
    exp, model = _cnn()
    plan = plan_for(model, exp.training, exp.model)
    assert plan.model is model and plan.applied == (BF16_LABEL,)  # stock modules, said so
    x, y = torch.rand(16, 28, 28), torch.arange(16) % 10
    loss_sum, correct = plan.step(x, y)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.dtype == torch.bfloat16  # autocast really ran the layers in bfloat16
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    assert torch.equal(loss_sum, loss.detach().double() * 16)
    assert int(correct) == int((logits.float().argmax(1) == y).sum())
    for g, p in zip(got, model.parameters(), strict=True):
        assert g.dtype == torch.float32 and torch.equal(g, p.grad)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_chunks_under_bf16_add_up_to_the_batch():
    exp, model = _cnn()
    cfg = exp.training.__class__(**{**exp.training.__dict__, "chunk_size": 8})
    x, y = torch.rand(16, 28, 28), torch.arange(16) % 10
    plan_for(model, cfg, exp.model).step(x, y)
    chunked = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plan_for(model, exp.training, exp.model).step(x, y)
    for a, p in zip(chunked, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=2e-2, atol=1e-4)  # bf16 rounding per chunk


def test_bf16_is_refused_where_the_hardware_lacks_it(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    exp = load_experiment("cnn/final", ["training.precision=bf16"])
    with pytest.raises(TrainingError, match=r'precision = "bf16".*CPU AVX-512 BF16: False'):
        check_precision(exp.training, torch.device("cpu"))
    check_precision(load_experiment("cnn/final").training, torch.device("cpu"))  # fp32: fine


def test_a_refused_bf16_run_leaves_no_run_directory(monkeypatch, tiny_dataset, tmp_path):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    exp = load_experiment("raw/template", ["training.precision=bf16", "training.epochs=1"])
    with pytest.raises(TrainingError):
        mnistlab.run_experiment(exp, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@needs_bf16
def test_a_bf16_run_learns_and_records_its_precision(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", ["training.precision=bf16", "training.epochs=3",
                                           "data.validation=test"])
    result = mnistlab.run_experiment(exp, runs_dir=tmp_path / "runs")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["fast"] == [BF16_LABEL]
    assert 'precision = "bf16"' in (result.run_dir / "config.toml").read_text()
    assert "Precision: bf16" in (result.run_dir / "summary.txt").read_text()
    assert metrics["test_accuracy"] > 0.9  # the tiny dataset's bars are easy to learn
    weights = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert all(w.dtype == torch.float32 for w in weights.values())
