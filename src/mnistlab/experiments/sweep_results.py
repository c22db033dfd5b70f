"""Reading a sweep's results back: one row per point with its runs' scores over seeds, from the
sweep file or the name it was recorded under (for `sweep show`, `compare` and `report`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from mnistlab.config.identity import config_digest
from mnistlab.errors import ConfigError
from mnistlab.experiments.executor import complete_runs_by_digest
from mnistlab.experiments.sweep import load_sweep, sweep_dir, sweep_points
from mnistlab.experiments.sweep_manifest import read_manifest
from mnistlab.rundir.directory import read_history, runs_root

__all__ = ["PointResult", "sweep_results", "is_sweep", "sweep_run_dirs", "value_label"]


@dataclass(frozen=True)
class PointResult:
    """One row of a sweep's table: a point's values and its runs' scores over seeds."""

    point: int
    values: dict[str, Any]
    seeds: int  # runs asked for
    accuracies: list[float]  # test accuracy of each complete run
    f1_macro: list[float]
    seconds: list[float]
    errors: list[str]  # one per failed run
    # validation accuracy of each complete run at its LAST epoch (history.csv): the weights that
    # were tested; the best epoch's value would be picked on the same numbers it reports
    val_accuracies: list[float] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)  # metrics.json "validation" of each run

    @property
    def mean(self) -> float | None:
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else None

    @property
    def val_mean(self) -> float | None:
        """Mean last-epoch validation accuracy over seeds: what points are ranked by."""
        vals = [v for v in self.val_accuracies if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    @property
    def validated_on_test(self) -> bool:
        return "test" in self.validation

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None with fewer than two runs)."""
        n = len(self.accuracies)
        if n < 2:
            return None
        m = self.mean
        return (sum((a - m) ** 2 for a in self.accuracies) / (n - 1)) ** 0.5


def _manifest_points(source: str | Path, runs_dir) -> tuple[str, list[dict]]:
    path = Path(source)
    if path.is_file():
        sweep = load_sweep(path)
        old = {p["digest"]: p for p in _read_manifest(sweep.name, runs_dir).get("points", [])
               if isinstance(p, dict) and isinstance(p.get("digest"), str)}
        pts = [{"point": pt.point, "seed": pt.seed, "values": pt.values,
                "digest": config_digest(pt.experiment)} for pt in sweep_points(sweep, None)]
        return sweep.name, [{**old.get(p["digest"], {}), **p} for p in pts]
    manifest = _read_manifest(str(source), runs_dir)
    if not manifest:
        raise ConfigError(f"{source}: not a sweep file, and no sweep of that name in "
                          f"{runs_root(runs_dir) / '.sweeps'}")
    return manifest["name"], manifest["points"]


def _read_manifest(name: str, runs_dir) -> dict:
    return read_manifest(sweep_dir(name, runs_dir))


def sweep_results(source: str | Path, runs_dir=None) -> tuple[str, list[str], list[PointResult]]:
    """(sweep name, axes, one row per point) from a sweep file or a sweep name."""
    name, pts = _manifest_points(source, runs_dir)
    done = complete_runs_by_digest(runs_root(runs_dir))
    rows: dict[int, dict] = {}
    for p in pts:
        row = rows.setdefault(p["point"], {"values": p["values"], "n": 0, "acc": [], "f1": [],
                                           "sec": [], "err": [], "val": [], "kind": []})
        row["n"] += 1
        run = done.get(p["digest"])
        if run is not None:
            m = json.loads((run / "metrics.json").read_text())
            row["acc"].append(m["test_accuracy"])
            row["f1"].append(m.get("f1_macro", float("nan")))
            row["sec"].append(m.get("train_seconds", float("nan")))
            row["val"].append(_last_val_accuracy(run))
            row["kind"].append(str(m.get("validation", "")))
        elif p.get("status") == "failed":
            row["err"].append(p.get("error") or "failed")
    axes = list(pts[0]["values"]) if pts else []
    return name, axes, [PointResult(k, r["values"], r["n"], r["acc"], r["f1"], r["sec"], r["err"],
                                    r["val"], r["kind"]) for k, r in sorted(rows.items())]


def _last_val_accuracy(run: Path) -> float:
    """The last epoch's `val_accuracy` in history.csv (nan when the file or column is missing:
    metrics.json records no validation accuracy)."""
    try:
        values = read_history(run / "history.csv").get("val_accuracy") or []
    except (OSError, ValueError, KeyError):
        return float("nan")
    return float(values[-1]) if values else float("nan")


def is_sweep(source: str | Path, runs_dir=None) -> bool:
    """A sweep file (a TOML with [axes]) or the name of a sweep recorded in the runs folder."""
    path = Path(source)
    if path.is_file():
        try:
            return "axes" in tomllib.loads(path.read_text())
        except (OSError, ValueError):
            return False
    return bool(_read_manifest(str(source), runs_dir))


def sweep_run_dirs(source: str | Path, runs_dir=None) -> list[Path]:
    """The complete runs of a sweep's points (for `compare` and `report`)."""
    _, pts = _manifest_points(source, runs_dir)
    done = complete_runs_by_digest(runs_root(runs_dir))
    return [done[p["digest"]] for p in pts if p["digest"] in done]


def value_label(value: Any) -> str:
    """`[100, 50]` -> `100-50`, `0.5` -> `0.5`: short tick and column labels."""
    if isinstance(value, list):
        return "-".join(value_label(v) for v in value)
    return re.sub(r"\s+", "", str(value))
