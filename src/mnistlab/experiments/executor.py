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
import logging
import os
import queue
import shutil
import socket
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.config.load import config_digest
from mnistlab.config.sections import Experiment
from mnistlab.errors import ConfigError, MnistlabError, RunError, RunInterrupted
from mnistlab.runs.directory import read_status, runs_root

__all__ = ["JobOutcome", "find_complete_run", "complete_runs_by_digest", "check_runs_target",
           "run_jobs", "run_remote", "write_run_files", "cluster_address", "EVENT_TOPIC"]

EVENT_TOPIC = "mnistlab-job-started"  # workers announce a task start; the client shows it running
TASK_RETRIES = 2  # extra attempts for a task whose result could not be delivered

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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MnistlabError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _announce(index: int) -> None:
    """Tell the client this task started (a no-op outside a Dask worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(EVENT_TOPIC, {"index": index, "worker": worker.address})
    except (ImportError, ValueError):
        pass


def run_remote(exp: Experiment, data_dir: str | None = None, index: int = 0) -> dict[str, Any]:
    """The Dask task: train `exp` into a temporary folder and return the whole run as bytes.

    Returns {"ok", "error", "name", "files": {relative path: bytes}, "host"}. Errors are
    returned, not raised: a bad config or NaN loss fails the same way on every attempt, so it is
    recorded (with the failed run's files, if a run directory existed) instead of retried.
    """
    _announce(index)
    tmp = Path(tempfile.mkdtemp(prefix="mnistlab-job-"))
    try:
        ok, error = True, None
        try:
            from mnistlab.runs.execute import (
                run_experiment,  # inside: a broken install is a failed job
            )

            run_experiment(exp, tmp, data_dir)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
            ok, error = False, _one_line(exc)
            if not isinstance(exc, MnistlabError):
                error += " | " + traceback.format_exc(limit=-3).replace("\n", " ")[:2000]
        made = sorted(p for p in tmp.iterdir() if p.is_dir())
        name = made[0].name if made else None
        files = _read_tree(made[0]) if made else {}
        return {"ok": ok, "error": error, "name": name, "files": files,
                "host": socket.gethostname()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into(root: Path, src: Path, name: str) -> Path:
    """Rename `src` to `root/name` (suffixing -2, -3... rather than touching an existing run)."""
    for i in range(1, 1000):
        dest = root / (name if i == 1 else f"{name}-{i}")
        if dest.exists():
            continue
        try:
            os.rename(src, dest)
            return dest
        except OSError as exc:
            if dest.exists():
                continue
            raise RunError(f"{dest}: cannot move the run into place ({exc.strerror})") from None
    raise RunError(f"{root}: too many runs named {name}")


def write_run_files(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write a run received from a worker into `root/name`, all at once (hidden dir + rename)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".incoming-{uuid.uuid4().hex}"
    try:
        for rel, data in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise RunError(f"{rel}: refusing a run file outside its run directory")
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        return _move_into(root, tmp, name)
    except OSError as exc:
        raise RunError(f"{root}: cannot write run {name} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    from mnistlab.runs.execute import run_experiment

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
            status, metrics, error = "failed", None, _one_line(exc)
    finally:  # a failed or interrupted run still lands in the runs folder (resumable)
        made = [p for p in tmp.iterdir() if p.is_dir()]
        run_dir = _move_into(root, made[0], made[0].name) if made else None
        shutil.rmtree(tmp, ignore_errors=True)
    if stopped is not None:
        if isinstance(stopped, RunInterrupted) and stopped.run_dir and run_dir:  # say where now
            moved = RunInterrupted(str(stopped).replace(str(stopped.run_dir), str(run_dir)),
                                   run_dir)
            raise moved from None
        stopped.run_dir = run_dir
        raise stopped
    return JobOutcome(exp, status, run_dir, metrics, error)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        _run_on_dask(experiments, todo, root, data_dir, jobs, address, emit, outcomes)
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


def _connect(address: str | None, jobs: int):
    """(client, cluster or None, torch threads per task or None to keep the config's)."""
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            return Client(address, timeout="20s"), None, None
        except (OSError, TimeoutError) as exc:
            raise RunError(f"--cluster {address}: cannot reach the Dask scheduler ({exc}); "
                           "start one with `dask scheduler` or check MNISTLAB_DASK") from None
    threads = max(1, _usable_cores() // jobs)
    # One task per worker process: torch's thread count is per process, so two trainings in one
    # worker would fight over it; the worker's cores go to torch instead (workers x threads).
    local = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None,
                         silence_logs=logging.ERROR)  # not "worker still alive, killing"
    return Client(local), local, threads


def _run_on_dask(experiments, todo, root, data_dir, jobs, address, emit, outcomes) -> None:
    client, local, threads = _connect(address, jobs)
    started: queue.Queue = queue.Queue()

    def on_started(event) -> None:  # runs on the client's event-loop thread
        msg = event[1] if isinstance(event, tuple) else event
        started.put(msg)

    data_arg = str(data_dir) if data_dir is not None else None  # else: the worker's own lookup
    running: set[int] = set()
    try:
        client.subscribe_topic(EVENT_TOPIC, on_started)
        pending = {}
        for i in todo:
            exp = experiments[i]
            if threads is not None and exp.training.threads == 0:
                exp = dataclasses.replace(
                    exp, training=dataclasses.replace(exp.training, threads=threads))
            pending[i] = client.submit(run_remote, exp, data_arg, i, key=f"mnistlab-{i}-"
                                       f"{config_digest(exp)}-{uuid.uuid4().hex[:6]}",
                                       retries=TASK_RETRIES, pure=False)
        while pending:
            while not started.empty():
                msg = started.get()
                i = msg.get("index") if isinstance(msg, dict) else None
                if i in pending and i not in running:
                    running.add(i)
                    emit("started", i, {"worker": msg.get("worker")})
            finished = [i for i, f in pending.items() if f.done()]
            for i in finished:
                future = pending.pop(i)
                try:
                    outcomes[i] = _outcome_from_payload(root, experiments[i], future.result())
                except MnistlabError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after many deaths
                    outcomes[i] = JobOutcome(experiments[i], "failed", None, None,
                                             _one_line(exc))
                running.discard(i)
                _emit_outcome(emit, i, outcomes[i])
            if not finished:
                time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C here: the tasks under way are lost with the cluster
        for i in sorted(running):
            emit("interrupted", i, {"run_dir": None, "metrics": None,
                                    "error": "interrupted (Ctrl-C) on a Dask worker"})
        raise
    finally:
        client.close()
        if local is not None:
            local.close()
