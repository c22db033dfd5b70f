"""Compare recorded runs: group repeated seeds into configurations and tabulate them (the tests
of their differences are in `verdicts`).

Runs whose configs are identical except for the seed form one configuration (a `Group`). Every
number comes from the run directories; damaged or unfinished runs are listed as skipped, never
raised on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import RunError
from mnistlab.report.stats import Summary, summarize
from mnistlab.rundir.directory import RunInfo, list_runs, load_run, runs_root

__all__ = ["Group", "Comparison", "collect_runs", "group_runs", "experiment_of",
           "config_differences", "compare", "EXPERIMENTS", "REQUIRED_METRICS",
           "test_validation_warning", "groups_test_validation_warning"]

EXPERIMENTS = {"raw": "MLP on raw pixels", "hog": "MLP on HOG features",
               "cnn": "CNN on MNIST", "fashion": "CNN on Fashion-MNIST"}
REQUIRED_METRICS = ("test_loss", "test_accuracy", "f1_macro", "params", "seed", "confusion",
                    "class_names")
BOUNDED_METRICS = ("test_accuracy", "f1_macro", "f1_micro")  # in [0, 1]; losses in [0, inf)
_NOT_CONFIG = ("output.name", "description", "training.seed", "training.device",
               "training.threads", "output.plots", "output.tensorboard")


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def experiment_of(config: dict) -> str:
    """Which of the lab's four experiments a config belongs to, read from the config itself."""
    if config.get("data", {}).get("dataset") == "fashion-mnist":
        return "fashion"
    if config.get("model", {}).get("kind") == "cnn":
        return "cnn"
    if config.get("features", {}).get("kind") == "hog":
        return "hog"
    return "raw"


def _group_key(config: dict) -> str:
    flat = {k: v for k, v in _flatten(config).items() if k not in _NOT_CONFIG}
    blob = json.dumps(flat, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class Group:
    """One configuration and its complete runs, sorted by seed."""

    key: str
    label: str
    config: dict  # config.toml of the first run
    runs: list[RunInfo] = field(default_factory=list)

    @property
    def experiment(self) -> str:
        return experiment_of(self.config)

    @property
    def representative(self) -> RunInfo:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return [int(r.metrics["seed"]) for r in self.runs]

    def values(self, metric: str) -> list[float]:
        return [float(r.metrics[metric]) for r in self.runs]

    def by_seed(self, metric: str) -> dict[int, float]:
        return {int(r.metrics["seed"]): float(r.metrics[metric]) for r in self.runs}

    def summary(self, metric: str) -> Summary:
        bounded = metric in BOUNDED_METRICS
        return summarize(self.values(metric), bounds=(0.0, 1.0) if bounded else (0.0, math.inf))

    @cached_property
    def best_epochs(self) -> list[int]:
        return [int(np.argmin(r.history["val_loss"])) + 1 for r in self.runs]


def _usable(info: RunInfo) -> str | None:
    """Why a run cannot be compared, or None when it can."""
    if info.status != "complete":
        detail = "; ".join(info.problems)
        return f"status {info.status}" + (f" ({detail})" if detail else "")
    if info.config is None:
        return "config.toml unreadable"
    m = info.metrics or {}
    missing = [k for k in REQUIRED_METRICS if k not in m]
    if missing:
        return f"metrics.json lacks {', '.join(missing)}"
    h = info.history or {}
    if not h.get("loss") or not h.get("val_loss") or len(h["loss"]) != len(h["val_loss"]):
        return "history.csv missing or incomplete"
    return None


def _is_run_dir(path: Path) -> bool:
    return (path / "status.json").exists() or (path / "config.toml").exists()


def collect_runs(targets: Sequence[str | Path], runs_dir: str | Path | None = None
                 ) -> tuple[list[RunInfo], list[tuple[Path, str]]]:
    """Resolve run directories, folders of runs, suite names or run-name patterns to runs.

    A suite name selects the runs in the runs folder that the suite named (`<suite>-<preset>-s<N>`);
    a sweep file or sweep name selects the complete runs of its points.
    A pattern (`*raw-final*`) matches run directory names in the runs folder. Returns the
    comparable runs and (path, reason) for the ones skipped; raises RunError when a target
    matches nothing at all.
    """
    from mnistlab.experiments.suite import load_suite, matches_suite, suite_names
    from mnistlab.experiments.sweep_results import is_sweep, sweep_run_dirs

    root = runs_root(runs_dir)
    found: dict[Path, RunInfo] = {}
    for target in targets:
        path = Path(target)
        if path.is_dir() and _is_run_dir(path):
            infos = [load_run(path)]
        elif path.is_dir():
            infos = list_runs(path)
        elif is_sweep(target, runs_dir):
            infos = [load_run(d) for d in sweep_run_dirs(target, runs_dir)]
        elif str(target) in suite_names() or str(target).endswith(".toml"):
            suite = load_suite(target, strict=False)  # report what exists
            infos = [i for i in list_runs(root)
                     if matches_suite((i.config or {}).get("output", {}).get("name", ""), suite)]
        else:
            infos = [i for i in list_runs(root)
                     if re.fullmatch(_glob_regex(str(target)), i.name)]
        if not infos:
            raise RunError(f"{target}: matches no run; give run directories, a folder of runs, "
                           f"a suite or sweep name or a run-name pattern found in {root}")
        for info in infos:
            found.setdefault(info.path.resolve(), info)
    usable, skipped = [], []
    for info in found.values():
        reason = _usable(info)
        (skipped.append((info.path, reason)) if reason else usable.append(info))
    return usable, skipped


def _glob_regex(pattern: str) -> str:
    import fnmatch

    return fnmatch.translate(pattern)


def group_runs(infos: Sequence[RunInfo]) -> list[Group]:
    """Configurations in order of first appearance; each holds its runs sorted by seed.

    A seed recorded twice for one configuration keeps the newest run only.
    """
    groups: dict[str, Group] = {}
    for info in infos:
        key = _group_key(info.config)
        name = info.config.get("output", {}).get("name") or info.name
        label = re.sub(r"-s\d+$", "", name)
        groups.setdefault(key, Group(key, label, info.config)).runs.append(info)
    for g in groups.values():
        newest: dict[int, RunInfo] = {}
        for r in sorted(g.runs, key=lambda r: r.name):
            newest[int(r.metrics["seed"])] = r
        g.runs = [newest[s] for s in sorted(newest)]
    labels = [g.label for g in groups.values()]
    for g in groups.values():
        if labels.count(g.label) > 1:  # same name, different configs (e.g. epochs scaled)
            g.label = f"{g.label} [{g.key[:6]}]"
    return list(groups.values())


def config_differences(groups: Sequence[Group]) -> dict[str, dict[str, Any]]:
    """For each group key: the config fields whose values differ between the groups.

    A CNN's layers are compared one field at a time (`model.layers[7].activation`), each layer
    with the activation it really has (its own, or the model's default), and without the
    MLP-only `model.hidden`/`model.dropout` that older runs recorded; so "differs in" names the
    layer that changed, not the whole stack or a field the network does not use."""
    def flat(config: dict) -> dict[str, Any]:
        out = {k: v for k, v in _flatten(config).items() if k not in _NOT_CONFIG}
        model = config.get("model", {})
        if model.get("kind") != "cnn" or not isinstance(model.get("layers"), list):
            return out
        for key in ("model.hidden", "model.dropout", "model.activation", "model.layers"):
            out.pop(key, None)
        for i, layer in enumerate(model["layers"]):
            layer = dict(layer) if isinstance(layer, dict) else {"value": layer}
            if layer.get("type") in ("dense", "conv2d"):
                layer.setdefault("activation", model.get("activation", "relu"))
            out.update({f"model.layers[{i}].{k}": v for k, v in layer.items()})
        return out

    flats = {g.key: flat(g.config) for g in groups}
    keys = sorted({k for f in flats.values() for k in f})
    varying = [k for k in keys if len({json.dumps(f.get(k), default=str)
                                       for f in flats.values()}) > 1]
    return {g: {k: f.get(k) for k in varying} for g, f in flats.items()}


def test_validation_warning(metrics_by_run: Mapping[str, Mapping[str, Any] | None]) -> str:
    """One line naming the runs that validated on the test set (the lab's setting), or ""."""
    names = [n for n, m in metrics_by_run.items() if m and m.get("validation") == "test"]
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"warning: {len(names)} run(s) validated on the test set ({shown}): their validation "
            "curves and best epoch were measured on the test set, so their test scores are not "
            "held-out estimates")


def groups_test_validation_warning(groups: Sequence[Group]) -> str:
    """The test-set warning for every run of these configurations (compare, the report)."""
    return test_validation_warning({r.name: r.metrics for g in groups for r in g.runs})


@dataclass(frozen=True)
class Comparison:
    groups: list[Group]
    differences: dict[str, dict[str, Any]]
    skipped: list[tuple[Path, str]]

    def rows(self) -> list[dict[str, Any]]:
        """One row per configuration: what differs, size, scores (mean over seeds) and time."""
        out = []
        for g in self.groups:
            diff = self.differences.get(g.key, {})
            out.append({
                "configuration": g.label,
                "differences": ", ".join(f"{k}={_short(v)}" for k, v in diff.items()),
                "runs": len(g.runs),
                "params": int(g.representative.metrics["params"]),
                "test_loss": g.summary("test_loss"),
                "test_accuracy": g.summary("test_accuracy"),
                "f1_macro": g.summary("f1_macro"),
                "best_epoch": g.best_epochs,
                "epochs": len(g.representative.history["val_loss"]),
                "train_seconds": float(np.mean([r.metrics.get("train_seconds", np.nan)
                                                for r in g.runs])),
            })
        return out

    def overlay_figure(self, title: str = ""):
        from mnistlab.plots import validation_overlay_figure

        curves = {self.legend_label(g): [r.history["val_loss"] for r in g.runs]
                  for g in self.groups}
        return validation_overlay_figure(curves, "val_loss", title or "validation loss per epoch")

    def legend_label(self, g: Group) -> str:
        """A sweep point (`s-p001`, a name that says nothing) by what sets it apart from the
        others (`hidden=[100], activation=tanh`); any other configuration by its name."""
        differs = config_differences(self.groups).get(g.key) or {}
        if not differs or not re.search(r"-p\d+$", g.label):
            return g.label
        return ", ".join(f"{key.rsplit('.', 1)[-1]}={_short(value)}"
                         for key, value in differs.items())


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]" if len(str(value)) < 40 else "[...]"
    return "-" if value is None else str(value)


def compare(targets: Sequence[str | Path], runs_dir: str | Path | None = None) -> Comparison:
    """Runs, folders, suites or patterns -> grouped configurations ready to tabulate and test."""
    usable, skipped = collect_runs(targets, runs_dir)
    groups = group_runs(usable)
    return Comparison(groups, config_differences(groups), skipped)
