import math

import pytest
import torch

from mnistlab.config.sections import ModelConfig
from mnistlab.nn.build import build_model
from mnistlab.nn.summary import count_parameters, describe_layers, summary_text


@pytest.mark.parametrize("hidden, input_shape, expected", [
    ((300,), (28, 28), 238_510),  # 235,500 + 3,010
    ((250,), (28, 28), 198_760),  # 196,250 + 2,510
    ((200,), (392,), 80_610),  # HOG p=4 o=8: 78,600 + 2,010
])
def test_parameter_counts_match_the_lab(hidden, input_shape, expected):
    cfg = ModelConfig(hidden=hidden)
    assert count_parameters(cfg, input_shape) == expected
    model = build_model(cfg, input_shape)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_summary_explains_the_count():
    text = summary_text(ModelConfig(hidden=(250,), dropout=0.5), (28, 28))
    assert "Dense 784 -> 250: 784 x 250 = 196,000 weights + 250 biases = 196,250" in text
    assert "196,250 + 2,510 = 198,760" in text
    assert "Total params: 198,760" in text


def test_deep_has_more_capacity_than_shallow_with_more_layers():
    shallow = count_parameters(ModelConfig(hidden=(100,)), (28, 28))
    deep = count_parameters(ModelConfig(hidden=(100, 100, 100)), (28, 28))
    assert deep - shallow == 2 * (100 * 100 + 100)


def test_keras_initialisation():
    model = build_model(ModelConfig(hidden=(300,)), (28, 28), seed=0)
    dense = [m for m in model if isinstance(m, torch.nn.Linear)]
    for layer in dense:
        fan_out, fan_in = layer.weight.shape
        limit = math.sqrt(6 / (fan_in + fan_out))  # glorot uniform
        assert float(layer.weight.detach().abs().max()) <= limit
        assert float(layer.weight.detach().abs().max()) > 0.95 * limit
        assert float(layer.weight.detach().std()) == pytest.approx(limit / math.sqrt(3), rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0
    he = build_model(ModelConfig(hidden=(300,), kernel_initializer="he_uniform"), (28, 28), seed=0)
    first = next(m for m in he if isinstance(m, torch.nn.Linear))
    assert float(first.weight.detach().abs().max()) <= math.sqrt(6 / 784)
    assert float(first.weight.detach().abs().max()) > 0.95 * math.sqrt(6 / 784)


def test_same_seed_same_weights():
    a = build_model(ModelConfig(), (28, 28), seed=7)
    b = build_model(ModelConfig(), (28, 28), seed=7)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_dropout_and_layers_in_order():
    kinds = [i.kind for i in describe_layers(ModelConfig(hidden=(64, 32), dropout=0.5), (28, 28))]
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
