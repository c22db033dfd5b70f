"""The record presets (`best/*`, issue 13): they load, stay within their parameter budgets as
`mnistlab summary` counts them, and make every choice on the held-out split, never the test set.
No training here: the accuracies are measured by `mnistlab suite run best --seeds 3`
(benchmarks/RESULTS.md)."""

import re

import pytest

from mnistlab.config.geometry import feature_shape
from mnistlab.config.load import load_experiment
from mnistlab.experiments.suite import load_suite
from mnistlab.nn.summary import summary_text
from mnistlab.presets import preset_names

# preset -> (dataset, feature kind, model kind, parameter budget or None)
BUDGETS = {
    "best/mnist-mlp": ("mnist", "raw", "mlp", None),
    "best/mnist-hog": ("mnist", "hog", "mlp", None),
    "best/mnist-cnn": ("mnist", "raw", "cnn", 20_000),
    "best/fashion-cnn": ("fashion-mnist", "raw", "cnn", 200_000),
}
SHIPPED = [p for p in BUDGETS if p in preset_names("best/*")]  # in the suite's order


def total_params(name: str) -> int:
    """The `Total params` line of the preset's summary (non-trainable included, as Keras)."""
    exp = load_experiment(name)
    text = summary_text(exp.model, feature_shape(exp.features))
    return int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))


def test_every_best_preset_is_known_and_in_the_suite():
    assert set(preset_names("best/*")) == set(SHIPPED)
    suite = load_suite("best")
    assert list(suite.presets) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_best_preset_loads_with_its_kind_and_budget(name):
    dataset, features, model, budget = BUDGETS[name]
    exp = load_experiment(name)
    assert (exp.data.dataset, exp.features.kind, exp.model.kind) == (dataset, features, model)
    if model == "mlp":
        assert exp.model.layers is None  # raw pixels or HOG into dense layers, no convolutions
    if budget is not None:
        assert total_params(name) <= budget
    assert exp.description


@pytest.mark.parametrize("name", SHIPPED)
def test_best_preset_chooses_on_the_held_out_split(name):
    exp = load_experiment(name)
    assert exp.data.validation == pytest.approx(0.1)  # never "test": the test set is touched once
    if exp.early_stopping.enabled:
        assert exp.early_stopping.monitor.startswith("val_")
    if exp.schedule.name == "plateau":
        assert exp.schedule.monitor.startswith("val_")
