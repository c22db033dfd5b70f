"""Running one experiment on a Dask worker, and receiving it: the worker trains into a
temporary folder and returns every file of the run as bytes; the client writes them into a
hidden folder inside its runs root and renames it into place, so workers need no shared file
system and a reader never sees half a run.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Any

from mnistlab.config.sections import Experiment
from mnistlab.errors import MnistlabError, RunError

__all__ = ["EVENT_TOPIC", "run_remote", "write_run_files", "move_into", "one_line"]

EVENT_TOPIC = "mnistlab-job-started"  # workers announce a task start; the client shows it running


def one_line(exc: BaseException) -> str:
    """An exception as one line: mnistlab's own message, else its type and first line."""
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
            from mnistlab.rundir.execute import (
                run_experiment,  # inside: a broken install is a failed job
            )

            run_experiment(exp, tmp, data_dir)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
            ok, error = False, one_line(exc)
            if not isinstance(exc, MnistlabError):
                error += " | " + traceback.format_exc(limit=-3).replace("\n", " ")[:2000]
        made = sorted(p for p in tmp.iterdir() if p.is_dir())
        name = made[0].name if made else None
        files = _read_tree(made[0]) if made else {}
        return {"ok": ok, "error": error, "name": name, "files": files,
                "host": socket.gethostname()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into(root: Path, src: Path, name: str) -> Path:
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
        return move_into(root, tmp, name)
    except OSError as exc:
        raise RunError(f"{root}: cannot write run {name} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


