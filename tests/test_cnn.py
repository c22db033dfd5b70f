"""CNNs: the lab's parameter counts, Keras's shape rules, rejected stacks, and the fast path."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnistlab.commands.main import main
from mnistlab.config.geometry import output_shapes
from mnistlab.config.load import experiment_from_dict, load_experiment
from mnistlab.config.sections import ModelConfig
from mnistlab.errors import ConfigError
from mnistlab.fast.rewrite import rewrite_for_cpu
from mnistlab.nn.build import build_model
from mnistlab.nn.optim import make_optimizer
from mnistlab.nn.summary import compare_text, count_parameters, summary_text
from mnistlab.training.loop import train_one_epoch
from mnistlab.training.steps import chunked_step

LAB_CNN = [
    {"type": "conv2d", "filters": 9, "kernel_size": 5, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 9, "kernel_size": 5, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 25},
]


def cnn(layers, **model) -> ModelConfig:
    return experiment_from_dict({"model": {"kind": "cnn", "layers": layers, **model}}).model


@pytest.mark.parametrize("preset, expected", [
    ("cnn/template", 7_465),
    ("cnn/final", 4_365),
    ("fashion/final", 177_600),
    ("fashion/run3-conv64", 1_256_150),
    ("fashion/conv9-dense25x2", 45_125),
    ("fashion/conv9-5x5-dense100", 177_744),
    ("fashion/conv9-dense50-b2048", 88_850),
    ("fashion/run1-lab-cnn-relu", 7_465),
    ("raw/final", 198_760),
    ("raw/template", 238_510),
])
def test_parameter_counts_equal_keras(preset, expected):
    exp = load_experiment(preset)
    assert count_parameters(exp.model, (28, 28)) == expected
    model = build_model(exp.model, (28, 28))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_hog_mlp_count():
    assert count_parameters(ModelConfig(hidden=(200,)), (392,)) == 80_610


def test_lab_cnn_shapes_follow_keras_including_7x7_pooled_to_3x3():
    shapes = output_shapes(cnn(LAB_CNN), (28, 28))
    assert shapes == [(28, 28, 9), (14, 14, 9), (14, 14, 9), (7, 7, 9), (7, 7, 16), (3, 3, 16),
                      (144,), (25,), (10,)]


@pytest.mark.parametrize("layer, expected", [
    ({"type": "conv2d", "filters": 4, "kernel_size": 5}, (24, 24, 4)),  # Keras default 'valid'
    ({"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
     (14, 14, 4)),
    ({"type": "conv2d", "filters": 4, "kernel_size": 4, "padding": "same"}, (28, 28, 4)),
    ({"type": "conv2d", "filters": 4, "kernel_size": 5, "strides": 3}, (8, 8, 4)),
    ({"type": "maxpool2d", "pool_size": 3}, (9, 9, 1)),
    ({"type": "maxpool2d", "pool_size": 3, "strides": 2}, (13, 13, 1)),
])
def test_shape_rules_match_the_built_network(layer, expected):
    """Keras arithmetic, and PyTorch's real output (asymmetric 'same' padding included)."""
    cfg = cnn([layer, {"type": "flatten"}])
    assert output_shapes(cfg, (28, 28))[0] == expected
    model = build_model(cfg, (28, 28), seed=0)
    x = torch.rand(2, 28, 28)
    feats = model[:-1](x)  # all but the output Dense (its softmax lives in the loss)
    assert feats.shape == (2, math.prod(expected))


@pytest.mark.parametrize("layers, message", [
    ([{"type": "conv2d", "filters": 9, "kernel_size": 3}, {"type": "dense", "units": 5},
      {"type": "flatten"}],
     "model.layers[1] (dense) must come after a flatten layer (its input is 26x26x9)"),
    ([{"type": "flatten"}, {"type": "conv2d", "filters": 9, "kernel_size": 3}],
     "model.layers[1] (conv2d) needs an HxWxC input but gets 784"),
    ([{"type": "maxpool2d", "pool_size": 4}] * 3,
     "model.layers[2] (maxpool2d) would produce an empty output: 4x4 'valid' pooling of 1x1x1"),
    ([{"type": "conv2d", "filters": 2, "kernel_size": 15},
      {"type": "conv2d", "filters": 2, "kernel_size": 15}],
     "model.layers[1] (conv2d) would produce an empty output: 15x15 'valid' convolution of "
     "14x14x2 -> 0x0x2"),
    ([{"type": "conv2d", "filters": 9, "kernel_size": 3}],
     "the output Dense(10) layer appended after model.layers must come after a flatten"),
    ([{"type": "conv3d", "filters": 9}],
     "model.layers[0].type must be one of 'conv2d', 'maxpool2d', 'avgpool2d', 'globalavgpool2d', "
     "'batchnorm', 'activation', 'dropout', 'flatten', 'dense'; got 'conv3d' (did you mean "
     "'conv2d'?)"),
    ([{"type": "dense", "unit": 9}], "unknown key model.layers[0].unit for a dense layer"),
    ([{"type": "flatten"}, {"type": "dense"}], "model.layers[1] (dense) needs 'units'"),
    ([{"type": "flatten"}, {"type": "dense", "units": 0}],
     "model.layers[1].units must be an int in [1, 65536]; got 0"),
    ([{"type": "flatten"}, {"type": "dropout", "rate": 1.0}], "model.layers[1].rate must be"),
    ([], "model.layers must be a list of 1 to 64 layer tables"),
])
def test_invalid_stacks_are_rejected_naming_the_layer(layers, message):
    with pytest.raises(ConfigError) as exc:
        experiment_from_dict({"model": {"kind": "cnn", "layers": layers}}, "exp.toml")
    assert str(exc.value).startswith("exp.toml: ")
    assert message in str(exc.value)


@pytest.mark.parametrize("raw, message", [
    ({"model": {"kind": "cnn"}}, "model.kind = 'cnn' needs model.layers"),
    ({"model": {"kind": "mlp", "layers": [{"type": "flatten"}]}},
     "model.layers is used only when model.kind = 'cnn'"),
    ({"model": {"kind": "cnn", "layers": [{"type": "flatten"}]}, "features": {"kind": "hog"}},
     "needs images, features.kind = 'raw'"),
])
def test_cnn_cross_field_rules(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        experiment_from_dict(raw, "exp.toml")


def test_layer_defaults_come_from_the_model():
    exp = load_experiment("fashion/run2-lab-cnn-tanh")
    acts = [m for m in build_model(exp.model, (28, 28)) if isinstance(m, torch.nn.Tanh)]
    assert len(acts) == 4  # three convolutions and l4: tanh everywhere
    run3 = build_model(load_experiment("fashion/run3-conv64").model, (28, 28), seed=0)
    conv = next(m for m in run3 if isinstance(m, torch.nn.Conv2d))
    limit = math.sqrt(6 / 9)  # he_uniform: fan_in = 3 x 3 x 1
    assert 0.95 * limit < float(conv.weight.detach().abs().max()) <= limit
    dense = next(m for m in run3 if isinstance(m, torch.nn.Linear))
    glorot = math.sqrt(6 / (12544 + 100))  # the dense layers keep Keras's glorot_uniform
    assert 0.95 * glorot < float(dense.weight.detach().abs().max()) <= glorot


def test_summary_explains_conv_and_dense_counts():
    exp = load_experiment("fashion/final")
    text = summary_text(exp.model, (28, 28), 10, "fashion-final")
    assert "Conv2D 3x3, 1 -> 9 channels: 3 x 3 x 1 x 9 = 81 weights + 9 biases = 90" in text
    assert "Dense 1764 -> 100: 1764 x 100 = 176,400 weights + 100 biases = 176,500" in text
    assert "total: 90 + 176,500 + 1,010 = 177,600" in text
    assert "maxpool2d (MaxPool2D)       14x14x9" in text
    assert "Multiply-adds per image: 240,904" in text  # 28*28*81 + 176,400 + 1,000
    table = compare_text([("mlp", load_experiment("raw/template").model, (28, 28), 10),
                          ("cnn", load_experiment("cnn/template").model, (28, 28), 10)])
    assert "238,510" in table and "7,465" in table and "640,654" in table


def _models(cfg, seed=3):
    """The stock model and its CPU rewrite (`mnistlab.fast`), with separate parameters."""
    plain = build_model(cfg, (28, 28), seed=seed)
    fast = rewrite_for_cpu(copy.deepcopy(plain))
    return plain, fast


@pytest.mark.parametrize("preset", ["cnn/template", "fashion/final"])
def test_fast_path_equals_plain_forward_and_gradients(preset):
    torch.manual_seed(0)
    plain, fast = _models(load_experiment(preset).model)
    x, y = torch.rand(96, 28, 28), torch.randint(0, 10, (96,))
    lp, lf = plain(x), fast(x)
    torch.testing.assert_close(lf, lp, rtol=1e-4, atol=1e-5)
    F.cross_entropy(lp, y).backward()
    F.cross_entropy(lf, y).backward()
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


def test_chunked_training_equals_whole_batch_training():
    """The rewritten model in chunks of 64 (gradient accumulation) vs stock whole batches."""
    cfg = load_experiment("cnn/template").model
    plain, fast = _models(cfg)
    opt_p = make_optimizer(plain.parameters(), load_experiment("cnn/template").optimizer)
    opt_f = make_optimizer(fast.parameters(), load_experiment("cnn/template").optimizer)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(768, 28, 28, generator=g), torch.randint(0, 10, (768,), generator=g)
    order = torch.randperm(768, generator=g)
    loss_p, acc_p = train_one_epoch(plain, opt_p, x, y, 256, order)
    loss_f, acc_f = train_one_epoch(fast, opt_f, x, y, 256, order,
                                   step=chunked_step(fast, 64))
    assert loss_f == pytest.approx(loss_p, rel=1e-5) and acc_f == acc_p
    # RMSprop's first steps are about lr * sqrt(10) = 3.2e-3 whatever the gradient's size, so a
    # rounding-level gradient difference on a near-zero gradient moves a weight by a fraction of
    # that: allow 5% of one step.
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1.6e-4)
    start = build_model(cfg, (28, 28), seed=3)
    moved = [float((p - s).detach().abs().max())
             for p, s in zip(plain.parameters(), start.parameters(), strict=True)]
    assert min(moved) > 3e-3  # the comparison is after real training, not of untouched weights


def test_chunked_gradients_equal_whole_batch_gradients():
    plain, fast = _models(load_experiment("cnn/final").model)
    x, y = torch.rand(300, 28, 28), torch.randint(0, 10, (300,))
    logits = plain(x)
    F.cross_entropy(logits, y).backward()
    loss_sum, correct = chunked_step(fast, 128)(x, y)  # chunks 128 + 128 + 44
    mean = float(F.cross_entropy(logits.detach(), y))
    assert float(loss_sum) / 300 == pytest.approx(mean, rel=1e-6)
    assert int(correct) == int((logits.argmax(1) == y).sum())
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


def test_short_real_cnn_run_writes_a_summary(shared_data, tmp_path, capsys):
    args = ["run", "fashion/final", "--set", "data.train_samples=400", "--set",
            "data.test_samples=200", "--epochs", "2", "--batch-size", "128", "--quiet",
            "--runs-dir", str(tmp_path / "r"), "--set", "output.plots=false"]
    assert main(args) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    summary = (run_dir / "summary.txt").read_text()
    assert "Total params: 177,600" in summary and "28x28x1" in summary
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"] == 177_600 and metrics["epochs"] == 2
    assert metrics["class_names"][0] == "T-shirt/top"
    assert sum(map(sum, metrics["confusion"])) == 200


def test_summary_cli_compares_two_models(capsys):
    assert main(["summary", "cnn/final", "--compare", "cnn/template"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 4,365" in out and "total parameters" in out
    assert "cnn-template has 1.71x the parameters" in out
