"""How much memory training a model takes, worked out from the config alone (no torch), so a
model that cannot fit is refused at load time with the figure and the limit, instead of dying
while allocating after its run directory was created.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from mnistlab.config.geometry import (
    IMAGE_SHAPE,
    feature_shape,
    layer_weights,
    model_input_shape,
    output_shapes,
)
from mnistlab.config.layers import layer_specs
from mnistlab.config.sections import Experiment
from mnistlab.data.registry import get_dataset
from mnistlab.errors import ConfigError

__all__ = ["MemoryEstimate", "estimate_training_memory", "machine_memory_bytes", "check_memory"]

FLOAT_BYTES = 4  # everything is trained in float32
# Values kept per output value for the backward pass: Dense/Conv2D keep the pre-activation and
# the activation, Dropout its output and its mask, MaxPool2D its output and int64 indices (two
# floats' worth); Flatten is a view; BatchNorm keeps its input and output, an Activation layer
# its output, pools their output.
_KEPT_PER_OUTPUT = {"dense": 2, "conv2d": 2, "dropout": 2, "maxpool2d": 3, "flatten": 0,
                    "batchnorm": 2, "activation": 1, "avgpool2d": 1, "globalavgpool2d": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of `estimate_training_memory`, in bytes, for the message that refuses a model."""

    parameters: int  # weights and biases
    copies: int  # float32 copies of the parameters held while training
    rows: int  # samples in one forward pass: a batch, or a chunk of one
    activation_values: int  # float32 values one sample keeps for the backward pass
    parameter_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def estimate_training_memory(exp: Experiment) -> MemoryEstimate:
    """What training `exp` holds at once, in float32, from the layer arithmetic of
    `config.geometry` (the same `layer_weights` and `output_shapes` as `nn.summary`).

    Counts:
      - the parameters, their gradients and the optimiser's slots (`optimizer_slots`);
      - the activations of one forward pass over `rows` samples (a batch, or a chunk of one when
        `training.chunk_size` is set, never more than the training set holds): the input, and
        per layer the values kept for backward (see `_KEPT_PER_OUTPUT`), doubled for the
        gradients of the same size that the backward pass creates. With `chunk_size = 0`,
        `mnistlab.fast` may still split a CNN's batches; the estimate is for whole batches,
        which is what the stock path (`--no-fast`) holds.

    Not counted: the dataset and its features, the evaluation passes (no gradients, so smaller),
    PyTorch's own workspace. The estimate is for refusing what cannot fit, not for packing.
    """
    spec = get_dataset(exp.data.dataset)
    input_shape = IMAGE_SHAPE if exp.model.kind == "cnn" else feature_shape(exp.features)
    specs = layer_specs(exp.model, len(spec.class_names))
    shapes = output_shapes(exp.model, input_shape, len(spec.class_names))
    parameters, kept = 0, math.prod(input_shape)
    shape = model_input_shape(exp.model, input_shape)
    for layer, out in zip(specs, shapes, strict=True):
        weights, biases = layer_weights(layer, shape, out)
        parameters += weights + biases
        kept += _KEPT_PER_OUTPUT[layer["type"]] * math.prod(out)
        shape = out
    opt = exp.optimizer
    copies = 2 + optimizer_slots(opt)  # weights, gradients, the optimiser's slots
    train = exp.training
    rows = min(train.chunk_size, train.batch_size) if train.chunk_size else train.batch_size
    available = spec.n_items("train")
    if exp.data.train_samples:
        available = min(available, exp.data.train_samples)
    rows = max(1, min(rows, available))
    return MemoryEstimate(parameters, copies, rows, kept, parameters * copies * FLOAT_BYTES,
                          2 * rows * kept * FLOAT_BYTES)


def optimizer_slots(opt) -> int:
    """Tensors of a parameter's size the optimiser keeps: RMSprop its squared-gradient average
    (+ gradient average when centered, + momentum buffer); Adam/AdamW/Nadam two moments (+ the
    running max with amsgrad); SGD a momentum buffer when momentum > 0."""
    if opt.name == "rmsprop":
        return 1 + int(opt.centered) + int(opt.momentum > 0)
    if opt.name == "sgd":
        return int(opt.momentum > 0)
    return 2 + int(bool(opt.amsgrad))


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None when it cannot be told).

    The total, not what is free now: the same config should get the same answer on the same
    machine, whatever else happens to be running.
    """
    try:
        pages, page_bytes = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_bytes > 0:
            return pages * page_bytes
    except (AttributeError, ValueError, OSError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_memory(exp: Experiment, source: str = "<config>") -> None:
    """Refuse a model whose training cannot fit in this machine's memory, naming both figures."""
    limit = machine_memory_bytes()
    if limit is None:
        return
    est = estimate_training_memory(exp)
    if est.total_bytes <= limit:
        return
    what = "model.layers" if exp.model.kind == "cnn" else "model.hidden"
    raise ConfigError(
        f"{source}: training this model needs about {_gib(est.total_bytes)} of memory, more than "
        f"this machine's {_gib(limit)}: {est.parameters:,} parameters x {est.copies} float32 "
        f"copies (weights, gradients, optimiser slots) = {_gib(est.parameter_bytes)}, plus "
        f"activations of {est.rows:,} samples forward and backward = "
        f"{_gib(est.activation_bytes)}. Make {what} smaller, or lower training.batch_size (or "
        "set training.chunk_size)"
    )
