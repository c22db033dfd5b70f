"""How much work a run is, roughly: what `--jobs` uses to start the longest runs first.

With N workers, runs started in suite order leave the slowest (the lab lists its Fashion CNNs
last) to finish alone with the other cores idle, each worker's torch threads fixed at cores // N.
Longest-first scheduling (LPT) starts them at once and lets the short runs fill the tail. The
measure is the run's layer arithmetic: multiply-adds per image from `nn.summary.describe_layers`
(what `mnistlab summary` prints), three products per training image and one per validation
image, times the epochs. Only the order it gives matters, not seconds.
"""

from __future__ import annotations

from mnistlab.config.geometry import feature_shape
from mnistlab.config.sections import Experiment
from mnistlab.data.registry import get_dataset
from mnistlab.nn.summary import describe_layers

__all__ = ["work_per_epoch", "estimated_work", "longest_first"]


def estimated_work(exp: Experiment) -> float:
    """Multiply-adds the run's epochs do in its layers (forward and backward, validation)."""
    return float(exp.training.epochs) * work_per_epoch(exp)


def work_per_epoch(exp: Experiment) -> float:
    """Multiply-adds of one epoch: 3 products per training image, 1 per validation image."""
    spec = get_dataset(exp.data.dataset)  # the registry's split sizes, as the loader has them
    mult_adds = sum(layer.mult_adds for layer in describe_layers(
        exp.model, feature_shape(exp.features), len(spec.class_names)))
    total = exp.data.train_samples or spec.n_items("train")
    if exp.data.validation == "test":
        n_train, n_val = total, exp.data.test_samples or spec.n_items("test")
    else:
        n_val = round(total * float(exp.data.validation))  # as data.load.make_splits
        n_train = total - n_val
    return float(mult_adds * (3 * n_train + n_val))


def longest_first(experiments: list[Experiment], todo: list[int]) -> list[int]:
    """`todo` reordered by decreasing estimated work; equal work keeps the given order."""
    work = {i: estimated_work(experiments[i]) for i in todo}
    return sorted(todo, key=lambda i: -work[i])
