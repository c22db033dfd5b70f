"""Run many experiments: in this process, on a local Dask cluster, or on an existing scheduler.

Sweeps and suites hand a list of experiments to `run_jobs`. Whatever runs them, the runs folder
on this machine ends up holding one run directory per experiment: a Dask task trains into a
temporary folder on its worker, returns every file of the run as bytes, and the client writes
them into a hidden folder inside the runs root and renames it into place, so workers need no
shared file system and a reader never sees half a run. An experiment whose identical run (same
`config_digest`, seed included) is already complete is skipped, which is what makes an
interrupted sweep resumable. A worker that dies mid-task costs only that task: the scheduler
reschedules it on another worker (up to `distributed.scheduler.allowed-failures` times).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnistlab.config.identity import config_digest
from mnistlab.config.sections import Experiment
from mnistlab.errors import ConfigError, MnistlabError, RunError, RunInterrupted
from mnistlab.experiments.cluster import run_on_dask
from mnistlab.experiments.remote import move_into, one_line, run_remote, write_run_files
from mnistlab.rundir.directory import read_status, runs_root

__all__ = ["JobOutcome", "find_complete_run", "complete_runs_by_digest", "check_runs_target",
           "run_jobs", "run_remote", "write_run_files", "cluster_address"]

EventHandler = Callable[[str, int, dict], None]


@dataclass(frozen=True)
class JobOutcome:
    experiment: Experiment  # as submitted (training.seed set)
    status: str  # "complete" | "skipped" (an identical complete run existed) | "failed"
    run_dir: Path | None  # the local run directory (None if failed before one existed)
    metrics: dict | None  # metrics.json content when complete/skipped
    error: str | None  # one-line reason when failed


def _read_metrics(run_dir: Path) -> dict | None:
    try:
        data = json.loads((run_dir / "metrics.json").read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def complete_runs_by_digest(root: str | Path) -> dict[str, Path]:
    """config digest -> the newest complete run directory in `root` with that digest."""
    root = Path(root)
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for child in sorted(root.iterdir()):  # names start with a timestamp: newest wins
        if not child.is_dir() or child.name.startswith("."):
            continue
        if read_status(child)["status"] != "complete":
            continue
        metrics = _read_metrics(child)
        if metrics and isinstance(metrics.get("config_digest"), str):
            found[metrics["config_digest"]] = child
    return found


def find_complete_run(root: Path, exp: Experiment) -> Path | None:
    """A complete run in `root` whose config has the same digest as `exp` (seed included)."""
    return complete_runs_by_digest(root).get(config_digest(exp))


def check_runs_target(runs_dir=None, jobs: int = 1) -> Path:
    """The runs root, after refusing what would otherwise fail only after work had started:
    `jobs` < 1, or a runs folder that is a file, lies under a file, or cannot be written.
    Writes nothing (the folder is created by the first run)."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"--jobs must be an int >= 1; got {jobs!r}")
    root = runs_root(runs_dir)
    fix = "pass --runs-dir to a writable folder"
    try:
        existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    except OSError as exc:
        raise RunError(f"{root}: cannot reach the runs folder ({exc.strerror}); {fix}") from None
    if not existing.is_dir():
        where = "is a file" if existing == root else f"lies under {existing}, which is a file"
        raise RunError(f"{root}: runs folder {where}; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"{root}: runs folder is not writable ({existing}); {fix}")
    return root


def cluster_address(cluster: str | None = None) -> str | None:
    """`--cluster`, else env `MNISTLAB_DASK`, else None (run on this machine)."""
    return cluster or os.environ.get("MNISTLAB_DASK") or None


def _outcome_from_payload(root: Path, exp: Experiment, payload: dict) -> JobOutcome:
    run_dir = write_run_files(root, payload["name"], payload["files"]) if payload["name"] else None
    if payload["ok"] and run_dir is not None:
        return JobOutcome(exp, "complete", run_dir, _read_metrics(run_dir), None)
    return JobOutcome(exp, "failed", run_dir, None, payload["error"] or "unknown failure")


def _run_here(exp: Experiment, root: Path, data_dir) -> JobOutcome:
    """In this process, through the same hidden folder + rename as remote runs.

    A Ctrl-C still moves the run into place; the KeyboardInterrupt is raised again with
    `run_dir` set to where the run now is, so the caller can record it and `resume` finds it.
    """
    from mnistlab.rundir.execute import run_experiment

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".job-", dir=root))
    stopped: KeyboardInterrupt | None = None
    try:
        try:
            result = run_experiment(exp, tmp, data_dir)
            status, metrics, error = "complete", result.metrics, None
        except KeyboardInterrupt as exc:
            stopped = exc
        except Exception as exc:  # noqa: BLE001 - recorded; the other jobs continue
            status, metrics, error = "failed", None, one_line(exc)
    finally:  # a failed or interrupted run still lands in the runs folder (resumable)
        made = [p for p in tmp.iterdir() if p.is_dir()]
        run_dir = move_into(root, made[0], made[0].name) if made else None
        shutil.rmtree(tmp, ignore_errors=True)
    if stopped is not None:
        if isinstance(stopped, RunInterrupted) and stopped.run_dir and run_dir:  # say where now
            moved = RunInterrupted(str(stopped).replace(str(stopped.run_dir), str(run_dir)),
                                   run_dir, stopped.exit_code)
            raise moved from None
        stopped.run_dir = run_dir
        raise stopped
    return JobOutcome(exp, status, run_dir, metrics, error)


def run_jobs(experiments: list[Experiment], runs_dir=None, data_dir=None, jobs: int = 1,
             cluster: str | None = None, on_event: EventHandler | None = None
             ) -> list[JobOutcome]:
    """Run every experiment not already complete; one outcome per experiment, in input order.

    jobs=1 without a cluster runs here, one after another. jobs>1 starts a local Dask cluster of
    `jobs` single-task worker processes, each training with cores // jobs threads. `cluster`
    (or env MNISTLAB_DASK) submits to that scheduler instead. `on_event(kind, index, payload)`
    receives "skipped", "started", "complete" and "failed" as they happen, and "interrupted" for
    each run under way when Ctrl-C stops them (then the KeyboardInterrupt goes on up). Bad `jobs`
    or runs folder are refused before anything runs (`check_runs_target`).
    """
    root = check_runs_target(runs_dir, jobs)
    emit = on_event or (lambda kind, index, payload: None)
    outcomes: dict[int, JobOutcome] = {}
    done = complete_runs_by_digest(root)
    first_of: dict[str, int] = {}
    todo: list[int] = []
    for i, exp in enumerate(experiments):
        digest = config_digest(exp)
        if digest in done:
            outcomes[i] = JobOutcome(exp, "skipped", done[digest], _read_metrics(done[digest]),
                                     None)
            emit("skipped", i, {"run_dir": done[digest], "metrics": outcomes[i].metrics})
        elif digest not in first_of:
            first_of[digest] = i
            todo.append(i)
    address = cluster_address(cluster)
    if address is None and jobs == 1:
        for i in todo:
            emit("started", i, {"worker": "local"})
            try:
                outcomes[i] = _run_here(experiments[i], root, data_dir)
            except KeyboardInterrupt as exc:  # Ctrl-C: say which run it stopped, then stop
                emit("interrupted", i, {"run_dir": getattr(exc, "run_dir", None),
                                        "metrics": None, "error": "interrupted (Ctrl-C)"})
                raise
            _emit_outcome(emit, i, outcomes[i])
    elif todo:
        def on_result(i: int, result: dict | BaseException) -> None:
            if isinstance(result, MnistlabError):
                raise result
            outcomes[i] = (_outcome_from_payload(root, experiments[i], result)
                           if isinstance(result, dict) else
                           JobOutcome(experiments[i], "failed", None, None, one_line(result)))
            _emit_outcome(emit, i, outcomes[i])

        def on_interrupted(indices: list[int]) -> None:
            for i in indices:
                emit("interrupted", i, {"run_dir": None, "metrics": None,
                                        "error": "interrupted (Ctrl-C) on a Dask worker"})

        run_on_dask(experiments, todo, data_dir, jobs, address,
                    lambda i, worker: emit("started", i, {"worker": worker}), on_result,
                    on_interrupted)
    for i, exp in enumerate(experiments):  # repeats of an experiment share its run
        if i not in outcomes:
            first = outcomes[first_of[config_digest(exp)]]
            status = "skipped" if first.status == "complete" else first.status
            outcomes[i] = dataclasses.replace(first, experiment=exp, status=status)
            _emit_outcome(emit, i, outcomes[i])
    return [outcomes[i] for i in range(len(experiments))]


def _emit_outcome(emit: EventHandler, index: int, outcome: JobOutcome) -> None:
    emit(outcome.status, index, {"run_dir": outcome.run_dir, "metrics": outcome.metrics,
                                 "error": outcome.error})


