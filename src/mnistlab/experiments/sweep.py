"""Hyper-parameter sweeps: a base experiment, fixed overrides and axes, as a grid or a search.

A sweep file (TOML) reads:

    base = "raw/template"          # preset name or experiment .toml (relative to this file)
    seeds = 3                      # 3 -> seeds 0, 1, 2; or a list such as [0, 7]
    mode = "grid"                  # or "random", with trials = 20 (and sample_seed = 0)
    [set]                          # applied to every point, like --set
    "training.epochs" = 30
    [axes]                         # any config field -> the values to try
    "model.hidden" = [[50], [100]]
    "model.activation" = ["relu", "tanh"]

Every point is built and validated before anything runs; a sweep of more than MAX_POINTS runs
(points x seeds) is refused unless asked for with a larger `max_points` (`--max-points N`).
Runs are named `<sweep>-p003-s1` (point 3, seed 1) and found again by their config digest, so
a sweep can be interrupted, rerun (finished points are skipped) and shown from the runs folder
alone; `sweep_manifest` keeps the sweep's own record beside the runs.
"""

from __future__ import annotations

import copy
import itertools
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.config.identity import config_digest
from mnistlab.config.load import (
    LAB_SPLIT,
    ValidationNotice,
    experiment_from_dict,
    inherits_lab_validation,
    lab_validation_notice,
    read_toml,
    resolve_raw,
)
from mnistlab.config.sections import Experiment
from mnistlab.errors import ConfigError
from mnistlab.experiments.executor import (
    JobOutcome,
    check_runs_target,
    run_jobs,
)
from mnistlab.experiments.sweep_manifest import append_outcome, write_manifest
from mnistlab.rundir.directory import runs_root, safe_name

__all__ = ["Sweep", "SweepPoint", "load_sweep", "sweep_points", "sweep_size", "check_size",
           "run_sweep", "sweep_dir", "SWEEP_KEYS", "MAX_POINTS"]

SWEEP_KEYS = ("name", "base", "seeds", "mode", "trials", "sample_seed", "set", "axes",
              "description")
MAX_POINTS = 1000  # runs (points x seeds) a sweep may ask for without --max-points
NOT_AXES = {"training.seed": "use seeds = N", "output.name": "points are named by the sweep"}


@dataclass(frozen=True)
class Sweep:
    name: str  # sweep name (slug); runs are <name>-pNNN-sS
    source: str  # the sweep file, for messages
    base: str  # preset name or absolute path of the base experiment file
    seeds: tuple[int, ...]  # repetitions of every point
    mode: str  # grid | random
    trials: int  # random mode: points drawn from the grid (without repeats)
    sample_seed: int  # random mode: seeds the draw
    fixed: dict[str, Any]  # "section.key" -> value, applied to every point
    axes: dict[str, list[Any]]  # "section.key" -> values to try, in file order


@dataclass(frozen=True)
class SweepPoint:
    point: int  # 1-based point number
    seed: int
    values: dict[str, Any]  # axis -> value at this point
    experiment: Experiment


def _fail(source: str, what: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{source}: {what} must be {allowed}; got {value!r}")


def _field(source: str, where: str, key: Any) -> tuple[str, str]:
    parts = key.split(".") if isinstance(key, str) else []
    if len(parts) != 2 or not all(parts):
        raise _fail(source, f"{where} key", key, 'a config field "section.key" such as '
                    '"model.hidden"')
    return parts[0], parts[1]


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file's shape (its points are checked by `sweep_points`)."""
    path = Path(path)
    raw, src = read_toml(path), str(path)
    for key in raw:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{src}: unknown key {key!r}; allowed: {', '.join(SWEEP_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise _fail(src, "name", name, "a non-empty string")
    base = raw.get("base")
    if not isinstance(base, str):
        raise _fail(src, "base", base, "a preset name or an experiment .toml path")
    from mnistlab.presets import is_preset

    if not is_preset(base) and not Path(base).is_absolute():
        try:
            base = str((path.parent / base).resolve())
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
            raise _fail(src, "base", base, f"a usable preset name or file path ({exc})") from None
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and 1 <= seeds <= 1000:
        seeds = tuple(range(seeds))
    elif (isinstance(seeds, list) and seeds
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
          and len(set(seeds)) == len(seeds)):
        seeds = tuple(seeds)
    else:
        raise _fail(src, "seeds", seeds, "an int in [1, 1000] or a list of distinct ints >= 0")
    mode = raw.get("mode", "grid")
    if mode not in ("grid", "random"):
        raise _fail(src, "mode", mode, "one of 'grid', 'random'")
    trials = raw.get("trials")
    if (trials is not None or mode == "random") and not (
            isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
        raise _fail(src, "trials", trials, "an int >= 1 (points to draw in random mode)")
    sample_seed = raw.get("sample_seed", 0)
    if not isinstance(sample_seed, int) or isinstance(sample_seed, bool):
        raise _fail(src, "sample_seed", sample_seed, "an int")
    fixed, axes = raw.get("set", {}), raw.get("axes", {})
    for table, value in (("[set]", fixed), ("[axes]", axes)):
        if not isinstance(value, dict):
            raise _fail(src, table, value, 'a table of "section.key" = value')
    for key, values in axes.items():
        _field(src, "[axes]", key)
        if key in NOT_AXES:
            raise ConfigError(f"{src}: axis {key} is not allowed ({NOT_AXES[key]})")
        if not isinstance(values, list) or not values:
            raise _fail(src, f"axis {key}", values, "a non-empty list of values")
        for j, v in enumerate(values):
            if values.index(v) != j:
                raise _fail(src, f"axis {key}[{j}]", v, "a value not already listed")
    for key in fixed:
        _field(src, "[set]", key)
    fixed = _held_out_validation(src, base, fixed, axes)
    return Sweep(safe_name(name), src, base, seeds, mode, trials or 0, sample_seed,
                 dict(fixed), {k: list(v) for k, v in axes.items()})


def _held_out_validation(src: str, base: str, fixed: dict[str, Any],
                         axes: dict[str, Any]) -> dict[str, Any]:
    """A sweep on a lab preset that validates on the test set gets the held-out split, unless
    its [set] or [axes] chooses data.validation itself (then the lab's choice is its own)."""
    if "data.validation" in fixed or "data.validation" in axes:
        return dict(fixed)
    if not inherits_lab_validation(base, {}):
        return dict(fixed)
    warnings.warn(lab_validation_notice(src, base), ValidationNotice, stacklevel=3)
    return {**fixed, "data.validation": LAB_SPLIT}


def _with(raw: dict[str, Any], assignments: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in assignments.items():
        section, name = key.split(".")
        if not isinstance(out.get(section, {}), dict):
            raise ConfigError(f"{key}: [{section}] is not a table in the base experiment")
        out.setdefault(section, {})[name] = value
    return out


def _grid_size(sweep: Sweep) -> int:
    total = 1
    for values in sweep.axes.values():
        total *= len(values)
    return total


def sweep_size(sweep: Sweep) -> tuple[int, int]:
    """(points, runs) without listing them: the grid (random mode: `trials`, at most the grid),
    and points x seeds, the number of trainings."""
    points = _grid_size(sweep)
    if sweep.mode == "random":
        points = min(sweep.trials, points)
    return points, points * len(sweep.seeds)


def _combos(sweep: Sweep) -> list[tuple[Any, ...]]:
    if sweep.mode == "grid":
        return list(itertools.product(*sweep.axes.values()))
    sizes = [len(v) for v in sweep.axes.values()]
    total = _grid_size(sweep)
    rng = random.Random(sweep.sample_seed)
    k = min(sweep.trials, total)
    if total <= sys.maxsize:
        picks = rng.sample(range(total), k)
    else:  # range() has no len() past sys.maxsize: draw until k distinct (k is far smaller)
        seen: set[int] = set()
        picks = []
        while len(picks) < k:
            flat = rng.randrange(total)
            if flat not in seen:
                seen.add(flat)
                picks.append(flat)
    combos = []
    for flat in picks:  # mixed-radix decoding, so a huge grid is never listed
        digits = []
        for values, n in zip(reversed(list(sweep.axes.values())), reversed(sizes), strict=True):
            flat, d = divmod(flat, n)
            digits.append(values[d])
        combos.append(tuple(reversed(digits)))
    return combos


def check_size(sweep: Sweep, max_points: int | None = MAX_POINTS) -> None:
    """ConfigError when the sweep asks for more than `max_points` runs (None: no limit), before
    a single point is built: a grid typed one axis too wide costs a message, not a day."""
    points, runs = sweep_size(sweep)
    if max_points is not None and runs > max_points:
        raise ConfigError(f"{sweep.source}: {runs:,} runs ({points:,} points x "
                          f"{len(sweep.seeds)} seeds) is more than --max-points {max_points:,}; "
                          f"pass --max-points {runs} to run them all, or narrow the axes")


def sweep_points(sweep: Sweep, max_points: int | None = MAX_POINTS) -> list[SweepPoint]:
    """Every (point, seed) as a validated experiment; any bad axis value fails here, by name.

    More than `max_points` runs (points x seeds) is refused first (`check_size`)."""
    check_size(sweep, max_points)
    base, _ = resolve_raw(sweep.base)
    base = _with(base, {})
    base.pop("description", None)
    fixed_raw = _with(base, sweep.fixed)
    experiment_from_dict(fixed_raw, f"{sweep.source} [set]")
    for key, values in sweep.axes.items():  # one value at a time: the message names it
        for j, value in enumerate(values):
            experiment_from_dict(_with(fixed_raw, {key: value}),
                                 f"{sweep.source} axis {key}[{j}] = {value!r}")
    points = []
    for p, combo in enumerate(_combos(sweep), start=1):
        values = dict(zip(sweep.axes, combo, strict=True))
        label = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base"
        for seed in sweep.seeds:
            name = f"{sweep.name}-p{p:03d}-s{seed}"
            raw = _with(fixed_raw, {**values, "training.seed": seed, "output.name": name})
            exp = experiment_from_dict(raw, f"{sweep.source} point {p} ({label})")
            points.append(SweepPoint(p, seed, values, exp))
    return points


def sweep_dir(name: str, runs_dir: str | Path | None = None) -> Path:
    """Where a sweep's manifest, results table and plots go: <runs root>/.sweeps/<name>/."""
    return runs_root(runs_dir) / ".sweeps" / safe_name(name)


def _manifest(sweep: Sweep, points: list[SweepPoint], digests: list[str]) -> dict:
    return {"name": sweep.name, "source": sweep.source, "base": sweep.base, "mode": sweep.mode,
            "seeds": list(sweep.seeds), "axes": sweep.axes, "set": sweep.fixed,
            "points": [{"point": pt.point, "seed": pt.seed, "values": pt.values,
                        "name": pt.experiment.output.name, "digest": digest}
                       for pt, digest in zip(points, digests, strict=True)]}


OUTCOME_KINDS = ("complete", "skipped", "failed", "interrupted")  # recorded in outcomes.jsonl


def run_sweep(sweep: Sweep, runs_dir=None, data_dir=None, jobs: int = 1,
              cluster: str | None = None, on_event=None,
              max_points: int | None = MAX_POINTS) -> list[JobOutcome]:
    """Validate every point, then run those not yet complete; returns one outcome per run.

    Refused before anything is written: more than `max_points` runs, `jobs` < 1, a runs folder
    that is a file or cannot be created. The manifest is written once; each outcome is then one
    appended line, and a Ctrl-C records the runs under way as "interrupted" (their run
    directories keep the checkpoint for `mnistlab resume`).
    """
    points = sweep_points(sweep, max_points)
    check_runs_target(runs_dir, jobs)
    folder = sweep_dir(sweep.name, runs_dir)
    digests = [config_digest(pt.experiment) for pt in points]
    write_manifest(folder, _manifest(sweep, points, digests))

    def record(kind: str, index: int, payload: dict) -> None:
        if kind in OUTCOME_KINDS:
            run = payload.get("run_dir")
            pt = points[index]
            append_outcome(folder, {"digest": digests[index], "point": pt.point, "seed": pt.seed,
                                    "status": kind, "run": run.name if run else None,
                                    "error": payload.get("error")})
        if on_event:
            on_event(kind, index, payload)

    return run_jobs([pt.experiment for pt in points], runs_dir, data_dir, jobs, cluster, record)
