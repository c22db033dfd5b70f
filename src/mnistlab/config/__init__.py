"""Experiments as frozen, validated configuration: sections, rule tables, loading, shapes.

    sections.py  the dataclasses (one per concern of a run), a comment per field
    rules.py     what each field accepts, one message shape for a bad value
    layers.py    what each layer type accepts; a model config as one list of layer dicts
    geometry.py  output shapes of layer lists and HOG arguments, without computing anything
    memory.py    what training a model holds in memory; models that cannot fit are refused
    origin.py    held-out validation for files on lab presets (and its notice); descriptions
    load.py      preset / TOML / `base` / `--set` -> validated `Experiment`
    identity.py  a config's digest (same experiment?) and its TOML text (config.toml)
"""

from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import (
    apply_overrides,
    experiment_from_dict,
    load_experiment,
    parse_override,
    read_toml,
    resolve_raw,
)
from mnistlab.config.rules import RULES, Rule
from mnistlab.config.sections import (
    ACTIVATIONS,
    DataConfig,
    Experiment,
    FeaturesConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    TrainingConfig,
)

__all__ = ["DataConfig", "FeaturesConfig", "ModelConfig", "OptimizerConfig", "TrainingConfig",
           "OutputConfig", "Experiment", "RULES", "Rule", "ACTIVATIONS", "load_experiment",
           "experiment_from_dict", "apply_overrides", "parse_override", "read_toml",
           "resolve_raw", "config_digest", "to_toml"]
