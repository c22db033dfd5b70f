"""Layers beyond the lab's (batchnorm, activation, avgpool2d, globalavgpool2d, conv2d use_bias):
Keras's formulas written out in NumPy, Keras's parameter counts, and the load-time rules."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mnistlab
from mnistlab.config.load import load_experiment
from mnistlab.config.sections import ModelConfig
from mnistlab.errors import ConfigError
from mnistlab.fast.chunking import preferred_chunk_size
from mnistlab.fast.switch import plan_for
from mnistlab.nn.build import build_model
from mnistlab.nn.keras_layers import AvgPoolSame, KerasBatchNorm
from mnistlab.nn.summary import count_parameters, describe_layers, summary_text

BN_CNN = (
    '[{type="conv2d", filters=8, kernel_size=3, padding="same", activation="linear",'
    ' use_bias=false}, {type="batchnorm"}, {type="activation", activation="relu"},'
    ' {type="maxpool2d"}, {type="conv2d", filters=6, kernel_size=3}, {type="batchnorm"},'
    ' {type="avgpool2d", pool_size=3, strides=2, padding="same"}, {type="dropout", rate=0.25},'
    ' {type="globalavgpool2d"}, {type="dense", units=12}]'
)


def _model_cfg(layers: str = BN_CNN) -> ModelConfig:
    return load_experiment("cnn/template", [f"model.layers={layers}"]).model


def test_batchnorm_follows_kerass_formulas_in_training_and_inference():
    """Keras 3: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's biased variance
    in training, moving = moving * momentum + batch * (1 - momentum); moving moments when not."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (5, 4, 3, 3)).astype(np.float32)
    bn = KerasBatchNorm(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 3.0]))
    gamma, beta = bn.weight.detach().numpy()[None, :, None, None], bn.bias.detach().numpy()[
        None, :, None, None]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # NumPy's var is the biased one
    y = bn.train()(torch.from_numpy(x)).detach().numpy()
    expect = gamma * (x - mean[None, :, None, None]) / np.sqrt(
        var[None, :, None, None] + 1e-3) + beta
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    moving_mean, moving_var = 0.01 * mean, 0.99 + 0.01 * var
    np.testing.assert_allclose(bn.moving_mean.numpy(), moving_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), moving_var, rtol=1e-5)
    y_eval = bn.eval()(torch.from_numpy(x)).detach().numpy()
    expect_eval = gamma * (x - moving_mean[None, :, None, None]) / np.sqrt(
        moving_var[None, :, None, None] + 1e-3) + beta
    np.testing.assert_allclose(y_eval, expect_eval, rtol=1e-5, atol=1e-5)



def test_batchnorm_moving_moments_after_a_few_steps_and_its_gradient():
    """Three training steps of a (B, F) input against the NumPy recurrence with momentum 0.9,
    then the gradient of sum(y * w) against the batch-norm backward formula."""
    rng = np.random.default_rng(2)
    bn = KerasBatchNorm(3, momentum=0.9, epsilon=1e-2).train()
    mean_ref, var_ref = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, (6, 3))
        bn(torch.tensor(x, dtype=torch.float32))
        mean_ref = mean_ref * 0.9 + x.mean(axis=0) * 0.1
        var_ref = var_ref * 0.9 + x.var(axis=0) * 0.1
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean_ref, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var_ref, rtol=1e-5)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w = rng.normal(size=(6, 3))
    (bn.double()(xt) * torch.from_numpy(w)).sum().backward()
    n, inv = x.shape[0], 1.0 / np.sqrt(x.var(axis=0) + 1e-2)
    xhat = (x - x.mean(axis=0)) * inv
    dx = inv / n * (n * w - w.sum(axis=0) - xhat * (w * xhat).sum(axis=0))  # gamma = 1
    np.testing.assert_allclose(xt.grad.numpy(), dx, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(bn.weight.grad.numpy(), (w * xhat).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.bias.grad.numpy(), w.sum(axis=0), rtol=1e-6)


def test_global_average_pooling_is_the_mean_of_each_map():
    cfg = _model_cfg('[{type="conv2d", filters=5, kernel_size=3}, {type="globalavgpool2d"}]')
    model = build_model(cfg, (28, 28), 10, seed=0)
    x = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(0))
    maps = model[:3](x).detach().numpy()  # ImagesIn, Conv2d, ReLU: (4, 5, 26, 26)
    pooled = model[3](torch.from_numpy(maps)).numpy()
    np.testing.assert_allclose(pooled, maps.reshape(4, 5, -1).mean(axis=2), rtol=1e-6)
    assert [i.output_shape for i in describe_layers(cfg, (28, 28))][:2] == [(26, 26, 5), (5,)]
    assert count_parameters(cfg, (28, 28)) == 50 + 60  # Conv 3x3x1x5 + 5; Dense 5x10 + 10


def test_conv_then_batchnorm_counts_like_keras():
    """Keras: Conv2D(16, 3) on 28x28x1 has 3*3*1*16 + 16 = 160 parameters, then
    BatchNormalization 4 x 16 = 64 (32 trainable, 32 non-trainable); with use_bias=False the
    convolution has 144."""
    for bias, conv in (("true", 160), ("false", 144)):
        cfg = _model_cfg(f'[{{type="conv2d", filters=16, kernel_size=3, use_bias={bias}}},'
                         ' {type="batchnorm"}, {type="flatten"}]')
        infos = describe_layers(cfg, (28, 28))
        assert [i.params for i in infos[:2]] == [conv, 64]
        assert (infos[1].trainable, infos[1].non_trainable) == (32, 32)
        dense = 26 * 26 * 16 * 10 + 10
        text = summary_text(cfg, (28, 28))
        assert f"Trainable params: {conv + 32 + dense:,}" in text
        assert "Non-trainable params: 32" in text
        model = build_model(cfg, (28, 28), 10, seed=0)
        assert sum(p.numel() for p in model.parameters()) == conv + 32 + dense
        assert (model[1].bias is None) == (bias == "false")

def _avg_pool_same_reference(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow's 'same' average pool: windows start at i * s - pad_before, the padding (odd
    pixel at the end) is excluded from each window's count."""
    b, c, h, w = x.shape
    out_h, out_w = math.ceil(h / s), math.ceil(w / s)
    top = max((out_h - 1) * s + k - h, 0) // 2
    left = max((out_w - 1) * s + k - w, 0) // 2
    out = np.zeros((b, c, out_h, out_w), np.float64)
    for i in range(out_h):
        for j in range(out_w):
            r0, c0 = i * s - top, j * s - left
            win = x[:, :, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)]
            out[:, :, i, j] = win.mean(axis=(2, 3))
    return out


@pytest.mark.parametrize(("size", "k", "s"), [(7, 2, 2), (7, 3, 2), (6, 3, 1), (5, 2, 3)])
def test_avgpool_same_excludes_the_padding_like_keras(size, k, s):
    x = np.random.default_rng(1).normal(size=(2, 3, size, size)).astype(np.float32)
    cfg = _model_cfg(f'[{{type="avgpool2d", pool_size={k}, strides={s}, padding="same"}},'
                     ' {type="flatten"}]')
    model = build_model(cfg, (size, size), 10, seed=0)
    pool = next(m for m in model if isinstance(m, AvgPoolSame))
    np.testing.assert_allclose(pool(torch.from_numpy(x)).numpy(),
                               _avg_pool_same_reference(x, k, s), rtol=1e-5, atol=1e-6)
    shape = describe_layers(cfg, (size, size))[0].output_shape
    assert shape == (math.ceil(size / s), math.ceil(size / s), 1)


def test_parameter_counts_equal_kerass():
    """Keras: Conv2D(8, 3, use_bias=False) on 1 channel 72; BatchNormalization(8) 32 (16
    trainable); Conv2D(6, 3) on 8 channels 438; BatchNormalization(6) 24 (12 trainable);
    Dense(12) after GlobalAveragePooling2D 84; Dense(10) 130."""
    cfg = _model_cfg()
    infos = describe_layers(cfg, (28, 28))
    assert [i.params for i in infos if i.params] == [72, 32, 438, 24, 84, 130]
    assert [i.non_trainable for i in infos if i.non_trainable] == [16, 12]
    assert count_parameters(cfg, (28, 28)) == 780
    model = build_model(cfg, (28, 28), 10, seed=0)
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    assert (trainable, buffers) == (780 - 28, 28)
    text = summary_text(cfg, (28, 28))
    assert "Trainable params: 752" in text and "Non-trainable params: 28" in text
    assert "BatchNormalization" in text and "GlobalAveragePooling2D" in text


def test_fast_model_matches_stock_with_the_new_layers():
    cfg = _model_cfg()
    exp = load_experiment("cnn/template")
    stock = build_model(cfg, (28, 28), 10, seed=0)
    fast = plan_for(build_model(cfg, (28, 28), 10, seed=0), exp.training, cfg).model
    x = torch.rand(16, 28, 28)
    for mode in (True, False):
        stock.train(mode)
        fast.train(mode)
        torch.manual_seed(3)
        a = stock(x)
        torch.manual_seed(3)
        b = fast(x)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert preferred_chunk_size(fast, cfg) is None  # batchnorm mixes samples: never chunked


@pytest.mark.parametrize(("layers", "message"), [
    ('[{type="batchnrom"}, {type="flatten"}]',
     r"model.layers\[0\].type must be one of .*; got 'batchnrom' \(did you mean 'batchnorm'\?\)"),
    ('[{type="globalavgpoll2d"}]', r"did you mean 'globalavgpool2d'"),
    ('[{type="batchnorm", momentum=1.0}, {type="flatten"}]',
     r"model.layers\[0\].momentum must be a number in \[0, 1\); got 1.0"),
    ('[{type="batchnorm", epsilon=0}, {type="flatten"}]', r"epsilon must be a number in \(0, 1\]"),
    ('[{type="avgpool2d", pool_size=0}, {type="flatten"}]',
     r"model.layers\[0\].pool_size must be an int in \[1, 28\]; got 0"),
    ('[{type="avgpool2d", pool_size=29}, {type="flatten"}]', r"pool_size .*; got 29"),
    ('[{type="maxpool2d", pool_size=5}, {type="avgpool2d", pool_size=6}, {type="flatten"}]',
     r"model.layers\[1\] \(avgpool2d\) would produce an empty output"),
    ('[{type="avgpool2d", padding="full"}, {type="flatten"}]', r"padding must be one of"),
    ('[{type="activation"}, {type="flatten"}]', r"layers\[0\] \(activation\) needs 'activation'"),
    ('[{type="conv2d", filters=3, kernel_size=3, use_bias="no"}, {type="flatten"}]',
     r"use_bias must be true or false; got 'no'"),
    ('[{type="flatten"}, {type="globalavgpool2d"}]', r"globalavgpool2d\) needs an HxWxC input"),
])
def test_bad_layers_are_refused_with_field_value_and_rule(layers, message):
    with pytest.raises(ConfigError, match=message):
        _model_cfg(layers)


def test_batchnorm_with_an_explicit_chunk_size_is_refused():
    with pytest.raises(ConfigError, match=r"training.chunk_size = 64 .* exact only when no layer "
                                          r"mixes samples; this model has batchnorm"):
        load_experiment("cnn/template", [f"model.layers={BN_CNN}", "training.chunk_size=64"])
    assert load_experiment("cnn/template", [f"model.layers={BN_CNN}"]).training.chunk_size == 0


FAST_CASES = {
    "conv without bias": '[{type="conv2d", filters=4, kernel_size=3, use_bias=false},'
                         ' {type="maxpool2d"}, {type="flatten"}]',
    "batchnorm + activation": '[{type="conv2d", filters=4, kernel_size=3, activation="linear",'
                              ' use_bias=false}, {type="batchnorm"},'
                              ' {type="activation", activation="relu"}, {type="maxpool2d"},'
                              ' {type="flatten"}]',
    "avgpool same": '[{type="conv2d", filters=4, kernel_size=3}, {type="avgpool2d",'
                    ' pool_size=3, strides=2, padding="same"}, {type="flatten"}]',
    "avgpool valid + global": '[{type="conv2d", filters=4, kernel_size=3},'
                              ' {type="avgpool2d"}, {type="globalavgpool2d"}]',
    "activation around a pool": '[{type="conv2d", filters=4, kernel_size=3,'
                                ' activation="linear"}, {type="activation", activation="elu"},'
                                ' {type="maxpool2d"}, {type="activation", activation="tanh"},'
                                ' {type="flatten"}]',
}


@pytest.mark.parametrize("layers", FAST_CASES.values(), ids=FAST_CASES.keys())
def test_fast_path_equals_stock_with_each_new_layer(layers):
    """Outputs, gradients and BatchNorm's moving moments agree fast on and off, in training
    mode; a model with batchnorm is never trained in chunks."""
    exp = load_experiment("cnn/template", [f"model.layers={layers}"])
    stock = build_model(exp.model, (28, 28), 10, seed=0)
    plan = plan_for(copy.deepcopy(stock), exp.training, exp.model)
    fast = plan.model
    assert list(fast.state_dict()) == list(stock.state_dict())  # weights load either way
    x = torch.rand(8, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 10
    out, ref = fast.train()(x), stock.train()(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    nn.functional.cross_entropy(out, y).backward()
    nn.functional.cross_entropy(ref, y).backward()
    for (name, p), q in zip(fast.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    reference = stock.state_dict()
    for name, value in fast.state_dict().items():  # BatchNorm's moving moments included
        torch.testing.assert_close(value, reference[name], msg=name)
    torch.testing.assert_close(fast.eval()(x), stock.eval()(x), rtol=1e-5, atol=1e-5)
    if "batchnorm" in layers:
        assert not any("chunks" in a for a in plan.applied)


def test_one_epoch_with_batchnorm_and_global_average_pooling(tiny_dataset, tmp_path):
    """End to end on the tiny IDX fixture: the run completes, records Keras's parameter count
    (moving moments included) and saves the moving moments in model.pt."""
    layers = ('[{type="conv2d", filters=4, kernel_size=3, use_bias=false, activation="linear"},'
              ' {type="batchnorm"}, {type="activation", activation="relu"},'
              ' {type="globalavgpool2d"}]')
    exp = load_experiment("cnn/template", [f"model.layers={layers}", "training.epochs=1",
                                           "output.plots=false"])
    run = mnistlab.run_experiment(exp, runs_dir=tmp_path / "runs")
    assert len(run.history["loss"]) == 1 and math.isfinite(run.history["loss"][0])
    assert run.metrics["fast"] and not any("chunks" in a for a in run.metrics["fast"])
    # 36 kernel weights + 16 (BatchNorm, 8 trainable) + Dense 4 -> 10: 50
    assert run.metrics["params"] == 36 + 16 + 50 == count_parameters(exp.model, (28, 28))
    saved = torch.load(run.run_dir / "model.pt", weights_only=True)
    moving = [k for k in saved if k.endswith(("moving_mean", "moving_variance"))]
    assert len(moving) == 2 and not torch.equal(saved[moving[0]], torch.zeros(4))


def test_summary_columns_stay_aligned_with_long_keras_names():
    cfg = _model_cfg('[{type="conv2d", filters=4, kernel_size=3}, {type="batchnorm"},'
                     ' {type="globalavgpool2d"}]')
    lines = summary_text(cfg, (28, 28)).splitlines()
    column = lines[2].index("Output shape")
    rows = {line.split()[1]: line for line in lines[4:8]}
    assert rows["(BatchNormalization)"].index("26x26x4") == column
    assert rows["(GlobalAveragePooling2D)"][column:].split()[:2] == ["4", "0"]


def test_example_batchnorm_file_loads_with_kerass_counts():
    """examples/cnn-batchnorm.toml validates; Keras: bias-free 3x3 convolutions 1->16->16->32->32
    (144 + 2,304 + 4,608 + 9,216), BatchNormalization 4 per channel over 16+16+32+32 channels,
    Dense 32 -> 10 (330)."""
    root = Path(__file__).resolve().parents[1]
    exp = load_experiment(str(root / "examples" / "cnn-batchnorm.toml"))
    conv = 9 * (1 * 16 + 16 * 16 + 16 * 32 + 32 * 32)
    channels = 16 + 16 + 32 + 32
    assert count_parameters(exp.model, (28, 28)) == conv + 4 * channels + 330
    text = summary_text(exp.model, (28, 28))
    assert f"Non-trainable params: {2 * channels}" in text
    assert exp.training.chunk_size == 0 and exp.data.validation == 0.1
    assert "examples/cnn-batchnorm.toml" in (root / "README.md").read_text()
