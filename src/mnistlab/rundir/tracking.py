"""What the experiment trackers (TensorBoard, MLflow) share: the optional extra each needs, and a
run's config as flat `section.key` parameters."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

from mnistlab.errors import ConfigError

__all__ = ["require_extra", "flat_params", "TEST_METRICS"]

# metrics.json keys that trackers log as the run's final scores
TEST_METRICS = ("test_loss", "test_accuracy", "f1_macro", "f1_micro")


def require_extra(module: str, extra: str, needed_by: str) -> None:
    """Raise ConfigError (exit 2, before any work) when an optional extra is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{needed_by} needs the Python package {module}, which is not "
                          f"installed; install it with: pip install 'mnistlab[{extra}]'")


def flat_params(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """`{"model": {"hidden": [300]}}` -> `{"model.hidden": "[300]"}`: scalars as they are,
    lists and tables (a CNN's layers) as compact JSON, since trackers take only scalars."""
    flat: dict[str, str | int | float | bool] = {}
    for section, table in config.items():
        if not isinstance(table, dict):
            flat[section] = str(table)
            continue
        for key, value in table.items():
            flat[f"{section}.{key}"] = (value if isinstance(value, str | int | float | bool)
                                        else json.dumps(value, separators=(",", ":")))
    return flat
