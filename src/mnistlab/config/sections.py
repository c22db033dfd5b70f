"""Experiment configuration as typed, frozen sections, one per concern of a run.

Each field has a default and a one-line comment; what each field accepts is in
`mnistlab.config.rules.RULES`, checked by `mnistlab.config.load` before any data is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIVATIONS", "INITIALIZERS", "BLOCK_NORMS", "DataConfig", "FeaturesConfig",
           "ModelConfig", "OptimizerConfig", "TrainingConfig", "AugmentationConfig",
           "ScheduleConfig", "EarlyStoppingConfig", "OutputConfig", "Experiment",
           "SECTIONS", "TOP_LEVEL_KEYS", "MLP_ONLY", "plain", "leave_out_unused"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "softplus", "linear")
INITIALIZERS = ("glorot_uniform", "he_uniform", "glorot_normal", "he_normal")
BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # registry name: mnist | fashion-mnist
    validation: str | float = 0.1  # "test" (the lab's habit) or a fraction held out of train
    train_samples: int = 0  # use only the first N training images (0 = all); for quick runs
    test_samples: int = 0  # use only the first N test images (0 = all)


@dataclass(frozen=True)
class FeaturesConfig:
    kind: str = "raw"  # raw pixels in [0, 1], or hog (scikit-image semantics)
    orientations: int = 8  # HOG: orientation bins over 0-180 degrees
    pixels_per_cell: int = 4  # HOG: square cell side in pixels
    cells_per_block: int = 1  # HOG: square block side in cells
    block_norm: str = "L2-Hys"  # HOG: L1 | L1-sqrt | L2 | L2-Hys
    transform_sqrt: bool = False  # HOG: power-law compression before gradients


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"  # mlp (from `hidden`) | cnn (from `layers`)
    hidden: tuple[int, ...] = (300,)  # MLP hidden layer widths, input to output
    activation: str = "relu"  # hidden-layer activation
    dropout: float = 0.0  # dropout rate after each hidden layer (0 = none), Keras semantics
    kernel_initializer: str = "glorot_uniform"  # Keras default; biases always start at zero
    layers: tuple[dict, ...] | None = None  # CNN layer tables (see config.layers.LAYER_RULES)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "rmsprop"  # rmsprop (the lab's) | adam | adamw | nadam | sgd, Keras semantics
    learning_rate: float = 0.001  # Keras default (sgd: 0.01)
    rho: float = 0.9  # rmsprop: decay of the squared-gradient average
    momentum: float = 0.0  # rmsprop, sgd: 0 = no momentum
    epsilon: float = 1e-7  # rmsprop: inside the square root; adam, nadam: outside, as Keras
    centered: bool = False  # rmsprop: subtract the squared mean gradient in the denominator
    beta_1: float | None = None  # adam, adamw, nadam: first-moment decay (Keras 0.9)
    beta_2: float | None = None  # adam, adamw, nadam: second-moment decay (Keras 0.999)
    amsgrad: bool | None = None  # adam, adamw: keep the running max of v (Keras False)
    nesterov: bool | None = None  # sgd: Nesterov momentum (Keras False)
    weight_decay: float | None = None  # decoupled: w -= w * weight_decay * lr (adamw: 0.004)
    clipvalue: float | None = None  # clip each gradient element to [-v, v]
    clipnorm: float | None = None  # clip each gradient tensor to this L2 norm
    global_clipnorm: float | None = None  # clip all gradients together to this L2 norm


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # samples per optimiser step
    seed: int = 0  # seeds init, shuffling, dropout and the validation split
    shuffle: bool = True  # reshuffle the training set every epoch, as Keras fit does
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for PyTorch (0 = all cores)
    fast: bool = True  # mnistlab's CPU speed-ups (mnistlab.fast); false = stock PyTorch modules
    chunk_size: int = 0  # images per forward pass inside a batch (0 = chosen by mnistlab.fast)
    precision: str = "fp32"  # fp32 | bf16 (autocast of training batches; weights stay fp32)
    label_smoothing: float = 0.0  # Keras: targets y * (1 - ls) + ls / classes, in every loss


@dataclass(frozen=True)
class AugmentationConfig:
    rotation: float = 0.0  # Keras RandomRotation factor: angle uniform in +-rotation x 360 deg
    shift: float = 0.0  # Keras RandomTranslation factor: +-shift x image size, each axis
    zoom: float = 0.0  # Keras RandomZoom factor: scale 1 + U(-zoom, zoom); > 0 zooms out
    fill_mode: str = "constant"  # constant (zeros) | nearest (edge pixels), for what comes in
    flip: bool = False  # Keras RandomFlip("horizontal"): mirror left-right, half the images

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.shift or self.zoom or self.flip)

    def describe(self) -> str:
        """One line for `mnistlab summary`: what each training batch goes through."""
        if not self.active:
            return "Augmentation: none"
        parts = [f"rotation +-{self.rotation * 360:g} deg" if self.rotation else "",
                 f"shift +-{self.shift:g} x size" if self.shift else "",
                 f"zoom x{1 - self.zoom:g} to x{1 + self.zoom:g}" if self.zoom else "",
                 "left-right flip of half the images" if self.flip else ""]
        return (f"Augmentation (training batches only, fill {self.fill_mode}): "
                + ", ".join(p for p in parts if p))


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning rate over training, starting from `optimizer.learning_rate`; which fields
    each schedule takes, and their defaults, are in `config.schedules.SCHEDULE_ARGS`."""

    name: str = "constant"  # constant | step | exponential | cosine | onecycle | plateau
    step_epochs: int | None = None  # step: multiply by `factor` every this many epochs
    factor: float | None = None  # step, plateau: the multiplier of each reduction (0.1)
    decay_steps: int | None = None  # exponential, cosine: optimiser steps (cosine 0 = to the end)
    decay_rate: float | None = None  # exponential: lr x decay_rate^(step / decay_steps)
    staircase: bool | None = None  # exponential: floor(step / decay_steps) (False)
    alpha: float | None = None  # cosine: final rate as a fraction of the start (0.0)
    warmup_target: float | None = None  # cosine: rate reached by a linear warmup (None = none)
    warmup_steps: int | None = None  # cosine: optimiser steps of the warmup (0)
    pct_start: float | None = None  # onecycle: fraction of steps spent climbing (0.3)
    anneal_strategy: str | None = None  # onecycle: cos | linear (cos)
    div_factor: float | None = None  # onecycle: start rate = learning_rate / div_factor (25)
    final_div_factor: float | None = None  # onecycle: end = start rate / this (1e4)
    three_phase: bool | None = None  # onecycle: climb, come back down, then anneal (False)
    monitor: str | None = None  # plateau: val_loss | val_accuracy | loss | accuracy
    patience: int | None = None  # plateau: epochs without improvement before reducing (10)
    mode: str | None = None  # plateau: auto | min | max (auto: from the monitor's name)
    min_delta: float | None = None  # plateau: smallest change that counts (1e-4)
    cooldown: int | None = None  # plateau: epochs to wait after a reduction (0)
    min_lr: float | None = None  # plateau: lower bound of the rate (0.0)

    @property
    def active(self) -> bool:
        return self.name != "constant"


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Keras 3's `EarlyStopping` callback (its defaults); on when the section is given."""

    enabled: bool = False  # true when [early_stopping] appears; false switches an inherited off
    monitor: str = "val_loss"  # val_loss | val_accuracy | loss | accuracy
    min_delta: float = 0.0  # smallest change that counts as an improvement
    patience: int = 0  # epochs without improvement before stopping
    mode: str = "auto"  # auto | min | max (auto: losses go down, accuracies up)
    baseline: float | None = None  # stop unless the monitor beats this within `patience`
    restore_best_weights: bool = False  # end with the best epoch's weights (Keras 3: always)
    start_from_epoch: int = 0  # epochs before monitoring starts

    def describe(self) -> str:
        """One line for `mnistlab summary`."""
        if not self.enabled:
            return "Early stopping: none"
        extra = "".join([f", baseline {self.baseline:g}" if self.baseline is not None else "",
                         f", from epoch {self.start_from_epoch + 1}"
                         if self.start_from_epoch else "",
                         ", restores the best epoch's weights" if self.restore_best_weights
                         else ""])
        from mnistlab.config.schedules import monitor_mode

        mode = monitor_mode(self.monitor, self.mode)
        return (f"Early stopping: {self.monitor} ({mode}), patience {self.patience}, "
                f"min_delta {self.min_delta:g}{extra}")


@dataclass(frozen=True)
class OutputConfig:
    name: str = ""  # run name (slug); defaults to the preset or file name
    plots: bool = True  # write loss/accuracy/confusion PNGs into the run
    tensorboard: bool = False  # write TensorBoard event files into <run>/tensorboard (tensorboardX)


@dataclass(frozen=True)
class Experiment:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    description: str = ""  # one line shown by `mnistlab presets`

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists, None dropped) for TOML/JSON. A CNN's model table
        leaves out `hidden` and `dropout`, which only an MLP uses, so a run's config.toml does
        not show settings the network does not have; likewise the optimizer table leaves out
        the arguments of other optimisers."""
        data = plain(dataclasses.asdict(self))
        if self.model.kind == "cnn":
            for key in MLP_ONLY:
                data["model"].pop(key, None)
        from mnistlab.config.optimizers import foreign_args

        for key in foreign_args(self.optimizer.name, list(data["optimizer"])):
            data["optimizer"].pop(key)
        if not self.augmentation.active:  # off: left out, so earlier runs keep their digest
            data.pop("augmentation")
        if not self.output.tensorboard:  # likewise: config.toml of earlier runs stays the same
            data["output"].pop("tensorboard")
        return leave_out_unused(self, data)


MLP_ONLY = ("hidden", "dropout")  # model fields a CNN (built from `layers`) does not use
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "features": FeaturesConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "training": TrainingConfig,
    "augmentation": AugmentationConfig,
    "schedule": ScheduleConfig,
    "early_stopping": EarlyStoppingConfig,
    "output": OutputConfig,
}
TOP_LEVEL_KEYS = ("description", "base")


def leave_out_unused(exp: Experiment, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a plain dict of `exp`) without the settings that are off: a constant schedule,
    no early stopping, no label smoothing. Runs made before these existed wrote none of them,
    so their config.toml and digest stay the same."""
    if not exp.schedule.active:
        data.pop("schedule", None)
    if not exp.early_stopping.enabled:
        data.pop("early_stopping", None)
    if not exp.training.label_smoothing:
        data.get("training", {}).pop("label_smoothing", None)
    return data


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
