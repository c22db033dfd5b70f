"""Suites: named lists of experiments, run with repeated seeds and resumed where they stopped.

A suite is `presets/suites/<name>.toml` (or any .toml path) holding a description and a list of
preset names or shell patterns (`raw/*`), so presets added later join the suite on their own:

    description = "The lab's chosen model of each experiment"
    experiments = ["raw/final", "hog/final", "cnn/final", "fashion/final"]

Repetition i of a preset trains with `training.seed = base seed + i` and is named
`<suite>-<preset>-s<seed>`. `epochs_scale` multiplies every preset's epochs (at least 1), which
changes the config, so quick runs never pass for full ones. Running goes through
`executor.run_jobs`, which skips experiments whose identical run is already complete: running a
suite again after an interruption continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from mnistlab.config.load import load_experiment, read_toml
from mnistlab.config.sections import Experiment
from mnistlab.errors import ConfigError

__all__ = ["Suite", "suite_names", "load_suite", "suite_experiments", "run_suite",
           "suite_run_pattern", "matches_suite"]


@dataclass(frozen=True)
class Suite:
    name: str  # used as the prefix of every run name
    description: str  # one line for `mnistlab suite list`
    patterns: tuple[str, ...]  # preset names or shell patterns, in order
    presets: tuple[str, ...]  # the patterns resolved to existing presets, duplicates removed
    missing: tuple[str, ...] = ()  # exact preset names not found (only when strict=False)


def _suite_files() -> dict[str, str]:
    root = resources.files("mnistlab.presets").joinpath("suites")
    return {item.name[:-5]: item.read_text(encoding="utf-8")
            for item in sorted(root.iterdir(), key=lambda p: p.name)
            if item.name.endswith(".toml")}


def suite_names() -> list[str]:
    """Names of the shipped suites."""
    return list(_suite_files())


def load_suite(name_or_path: str | Path, strict: bool = True) -> Suite:
    """A shipped suite by name, or a suite .toml file, with its patterns resolved to presets.

    Raises ConfigError for an unknown suite, a malformed file, or (when `strict`) an exact preset
    name that does not exist; a pattern that matches nothing is allowed (no such presets yet).
    """
    from mnistlab import presets

    text = str(name_or_path)
    files = _suite_files()
    if text in files:
        source, raw, name = f"suite {text}", tomllib.loads(files[text]), text
    elif text.endswith(".toml") or Path(text).is_file():
        source, raw, name = text, read_toml(Path(text)), Path(text).stem
    else:
        raise ConfigError(f"{text}: not a suite; shipped suites: {', '.join(files)} "
                          "(or give a suite .toml path)")
    unknown = sorted(set(raw) - {"description", "experiments"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed: description, "
                          "experiments")
    patterns = raw.get("experiments")
    if (not isinstance(patterns, list) or not patterns
            or not all(isinstance(p, str) and p for p in patterns)):
        raise ConfigError(f"{source}: experiments must be a non-empty list of preset names or "
                          f"patterns; got {patterns!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string; got {description!r}")
    resolved: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = presets.preset_names(pattern)
        elif presets.is_preset(pattern):
            matched = [pattern]
        elif strict:
            raise ConfigError(f"{source}: experiments names {pattern!r}, which is not a preset "
                              "(list them with `mnistlab presets`)")
        else:
            missing.append(pattern)
            continue
        resolved.extend(m for m in matched if m not in resolved)
    return Suite(name, description, tuple(patterns), tuple(resolved), tuple(missing))


def _slug(preset: str) -> str:
    return preset.replace("/", "-")


def suite_experiments(suite: Suite, seeds: int = 1, epochs_scale: float = 1.0,
                      overrides: list[str] | tuple[str, ...] = ()) -> list[Experiment]:
    """Every (preset, repetition) of the suite as a validated experiment, presets in order.

    `overrides` are `--set` strings applied to every preset (e.g. `data.train_samples=500`).
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be an int >= 1; got {seeds!r}")
    if not (isinstance(epochs_scale, int | float) and 0 < epochs_scale <= 100):
        raise ConfigError(f"--epochs-scale must be a number in (0, 100]; got {epochs_scale!r}")
    out: list[Experiment] = []
    for preset in suite.presets:
        base = load_experiment(preset, list(overrides))
        epochs = max(1, round(base.training.epochs * epochs_scale))
        for i in range(seeds):
            seed = base.training.seed + i
            training = dataclasses.replace(base.training, seed=seed, epochs=epochs)
            output = dataclasses.replace(base.output, name=f"{suite.name}-{_slug(preset)}-s{seed}")
            out.append(dataclasses.replace(base, training=training, output=output))
    return out


def suite_run_pattern(suite: Suite) -> re.Pattern[str]:
    """Matches the run names (`output.name`) this suite gives its runs, and only those."""
    slugs = "|".join(re.escape(_slug(p)) for p in suite.presets) or "(?!)"
    return re.compile(rf"^{re.escape(suite.name)}-(?:{slugs})-s\d+$")


def run_suite(suite: Suite, seeds: int = 1, epochs_scale: float = 1.0, jobs: int = 1,
              runs_dir=None, data_dir=None, cluster: str | None = None,
              overrides: list[str] | tuple[str, ...] = (), on_event=None):
    """Run every experiment of the suite not already complete; returns the executor's outcomes
    (`executor.JobOutcome`, one per experiment, in suite order). A bad `jobs` or runs folder is
    refused before anything is resumed or trained. An interrupted run that another process is
    resuming right now is left to it: its outcome is "failed", saying which process."""
    from mnistlab.experiments.executor import check_runs_target, run_jobs

    experiments = suite_experiments(suite, seeds, epochs_scale, overrides)
    check_runs_target(runs_dir, jobs)
    busy = _resume_interrupted(experiments, runs_dir, data_dir, on_event)
    todo = [i for i in range(len(experiments)) if i not in busy]
    emit = (lambda kind, i, payload: on_event(kind, todo[i], payload)) if on_event else None
    ran = run_jobs([experiments[i] for i in todo], runs_dir=runs_dir, data_dir=data_dir,
                   jobs=jobs, cluster=cluster, on_event=emit)
    outcomes = {**busy, **dict(zip(todo, ran, strict=True))}
    return [outcomes[i] for i in range(len(experiments))]


def _resume_interrupted(experiments: list[Experiment], runs_dir, data_dir, on_event) -> dict:
    """Finish runs a Ctrl-C stopped (status "interrupted", checkpoint kept) from their last
    checkpoint, so the executor then finds them complete instead of training them again.

    Returns {index: failed JobOutcome} for runs another live process holds (RunInUse): training
    them afresh here would duplicate its work, so they are reported instead.
    """
    from mnistlab.config.identity import config_digest
    from mnistlab.config.load import experiment_from_dict
    from mnistlab.errors import MnistlabError, RunInUse
    from mnistlab.experiments.executor import JobOutcome, find_complete_run
    from mnistlab.rundir.directory import list_runs, runs_root
    from mnistlab.rundir.execute import resume_run

    root = runs_root(runs_dir)
    wanted = {config_digest(e): i for i, e in enumerate(experiments)}
    busy: dict[int, JobOutcome] = {}
    for info in list_runs(root):
        if info.status != "interrupted" or info.config is None:
            continue
        try:
            digest = config_digest(experiment_from_dict(info.config, str(info.path),
                                                        check_memory=False))
        except MnistlabError:
            continue
        index = wanted.get(digest)
        if index is None or find_complete_run(root, experiments[index]) is not None:
            continue
        if on_event:
            on_event("started", index, {"worker": "local", "resumed": str(info.path)})
        try:
            resume_run(info.path, data_dir)
            busy.pop(index, None)
        except RunInUse as exc:
            busy[index] = JobOutcome(experiments[index], "failed", info.path, None, str(exc))
            if on_event:
                on_event("failed", index, {"run_dir": info.path, "metrics": None,
                                           "error": str(exc)})
        except MnistlabError:
            continue  # the executor trains this experiment afresh
    return busy


def matches_suite(run_name: str, suite: Suite) -> bool:
    """Whether a run's `output.name` is one this suite gives."""
    return bool(suite_run_pattern(suite).match(run_name))
