"""Run directories: the contract every other command reads.

`runs/<timestamp>-<name>/` holds `status.json` (running / complete / failed / interrupted),
`config.toml` (written first), `history.csv`, `metrics.json`, `predictions.npz`, `model.pt`,
`summary.txt` and the plots. Every file is written to a temporary name, fsynced and renamed, so a
reader sees either the old file or the new one, never half of one. A run directory is never reused.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.atomic import atomic_write_text
from mnistlab.errors import RunError, RunInUse

__all__ = ["runs_root", "create_run_dir", "write_json", "write_status", "read_status",
           "write_history", "read_history", "RunInfo", "load_run", "list_runs", "safe_name",
           "resolve_run_dir", "lock_run_dir", "LOCK_FILE"]

STATUSES = ("running", "complete", "failed", "interrupted")
LOCK_FILE = ".lock"  # held (flock) by the process writing the run; holds that process's pid


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """`--runs-dir`, else env `MNISTLAB_RUNS`, else `./runs`."""
    if runs_dir is not None:
        return Path(runs_dir).expanduser()
    return Path(os.environ.get("MNISTLAB_RUNS") or "runs").expanduser()


SLUG_CHARS = 80  # a directory slug keeps at most this many characters...
SLUG_BYTES = 160  # ...and this many UTF-8 bytes (a path component is limited to 255 bytes)


def safe_name(name: str) -> str:
    """A run name usable as one path component: no separators, no dot-dot, no odd characters.

    Letters and digits of any script are kept (`数字🙂` -> `数字`), everything else
    becomes `-`; the name itself is kept unchanged in config.toml, only the folder uses the slug.
    """
    text = unicodedata.normalize("NFC", name)
    slug = re.sub(r"[^\w.-]+", "-", text).strip(".-")
    slug = slug[:SLUG_CHARS]
    while len(slug.encode("utf-8")) > SLUG_BYTES:
        slug = slug[:-1]
    return slug.strip(".-") or "run"


def create_run_dir(root: Path, name: str) -> Path:
    """Make a fresh `root/<timestamp>-<name>` (suffixing -2, -3... rather than reusing one)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{root}: cannot create the runs folder ({exc.strerror}); pass "
                       "--runs-dir to a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunError(f"{root}: runs folder is not writable; pass --runs-dir to a writable folder")
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(name)}"
    for i in range(1, 1000):
        path = root / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"{path}: cannot create run directory ({exc.strerror})") from None
    raise RunError(f"{root}: too many runs named {stem}")


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock while this process writes it, so that a second `resume`
    (or one while the original run still trains) stops before any work.

    An OS lock (`flock` on `run_dir/.lock`): the kernel drops it when the process ends, however
    it ends, so a killed run never stays locked. The file is left in place (deleting it would
    let two processes lock two different files).

    Raises:
        RunInUse: another live process holds the lock; its pid is in the message.
        RunError: the lock file cannot be created.
    """
    import fcntl

    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run's lock file ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd)
            who = f"process {pid}" if pid else "another process"
            raise RunInUse(f"{run_dir}: run is in use by {who} (training or resuming it); "
                           "wait for it to end, or stop it first", pid) from None
        except OSError as exc:
            raise RunError(f"{path}: cannot lock the run directory ({exc.strerror})") from None
        with contextlib.suppress(OSError):  # the pid only informs; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(fd: int) -> int | None:
    """The pid the lock's holder wrote (None if it has not written it yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """JSON as UTF-8 text: names and messages stay readable (`数字`, not `\\u6570\\u5b57`).

    Text that UTF-8 cannot hold (a lone surrogate from an undecodable argument) is escaped.
    """
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2, sort_keys=False)
    atomic_write_text(path, text + "\n")


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    assert status in STATUSES
    payload = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
               **extra}
    write_json(run_dir / "status.json", payload)


def read_status(run_dir: Path) -> dict[str, Any]:
    """Status of a run; an unreadable or missing status file reads as 'corrupt'."""
    try:
        data = json.loads((run_dir / "status.json").read_text())
        if data.get("status") not in STATUSES:
            raise ValueError
        return data
    except (OSError, ValueError, AttributeError):
        return {"status": "corrupt", "detail": "status.json missing or unreadable"}


def write_history(path: Path, history: dict[str, list[float]]) -> None:
    keys = list(history)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([i + 1, *(repr(float(history[k][i])) for k in keys)])
    atomic_write_text(path, buf.getvalue())


def read_history(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    return {k: [float(r[k]) for r in rows] for k in keys}


@dataclass
class RunInfo:
    """What listing, comparing and reporting need from a run; problems are recorded, not raised."""

    path: Path
    status: str
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None
    history: dict[str, list[float]] | None
    problems: list[str]

    @property
    def name(self) -> str:
        return self.path.name


def resolve_run_dir(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run given as a directory path, or as a plain name inside the runs folder.

    A name is looked up only as one path component (no separators, no leading dots), so a
    run name cannot point outside the runs folder.
    """
    text = str(run)
    path = Path(text).expanduser()
    if text and path.is_dir():
        return path
    root = runs_root(runs_dir)
    if text and safe_name(text) == text and (root / text).is_dir():
        return root / text
    raise RunError(f"{run}: no such run directory (not a folder, and no run of that name in "
                   f"{root}); list runs with `mnistlab runs`")


def _zip_problem(path: Path) -> str | None:
    """torch.save and np.savez write zip files: a truncated one has lost its central directory
    (at the end), so opening the directory catches truncation without reading the data."""
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()
    except FileNotFoundError:
        return f"{path.name}: missing"
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        return f"{path.name}: unreadable ({type(exc).__name__})"
    return None


def _process_gone(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _config_problem(config: dict[str, Any]) -> str | None:
    """Why a config.toml that parsed is still not one this version can use (None when it is):
    the same validation a resume applies, so `layers = 5` is caught here, not in a listing."""
    from mnistlab.config.load import experiment_from_dict
    from mnistlab.errors import ConfigError

    if not all(isinstance(v, dict) for k, v in config.items() if k != "description"):
        return "config.toml: not a table of sections"
    try:
        experiment_from_dict(config, "config.toml", check_memory=False)
    except ConfigError as exc:
        return str(exc)
    except (RecursionError, ValueError, TypeError) as exc:  # a hostile value, not a config
        return f"config.toml: {type(exc).__name__}"
    return None


def load_run(path: str | Path) -> RunInfo:
    """Read a run directory without ever raising on damaged content.

    A run whose config.toml does not validate, or whose files cannot be read, is returned with
    status "corrupt", `config` None and the reason in `problems`.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: not a run directory")
    try:
        return _read_run(path)
    except OSError as exc:  # e.g. a run folder without read permission
        why = exc.strerror or type(exc).__name__
        return RunInfo(path, "corrupt", None, None, None, [f"unreadable ({why})"])


def _read_run(path: Path) -> RunInfo:
    import tomllib

    problems: list[str] = []
    status = read_status(path)
    config = metrics = history = None
    bad_config = False
    try:
        config = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"config.toml: {type(exc).__name__}")
    if config is not None:
        problem = _config_problem(config)
        if problem:
            problems.append(problem)
            config, bad_config = None, True
    if status["status"] == "complete":
        try:
            metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"metrics.json: {type(exc).__name__}")
        if metrics is not None and not (isinstance(metrics, dict) and isinstance(
                metrics.get("test_accuracy"), int | float)):
            problems.append("metrics.json: no test_accuracy")
            metrics = None
        problems += [p for p in (_zip_problem(path / "model.pt"),
                                 _zip_problem(path / "predictions.npz")) if p]
    elif (path / "checkpoint.pt").exists():
        problems += [p for p in (_zip_problem(path / "checkpoint.pt"),) if p]
    if status["status"] == "running" and _process_gone(status.get("pid")):
        problems.append(f"process {status['pid']} is gone (killed?); `mnistlab resume` "
                        "continues from the last checkpoint")
    try:
        if (path / "history.csv").exists():
            history = read_history(path / "history.csv")
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        problems.append(f"history.csv: {type(exc).__name__}")
    if status["status"] == "corrupt":
        problems.insert(0, status["detail"])
    state = status["status"]
    if (state == "complete" and problems) or bad_config:
        state = "corrupt"
    return RunInfo(path, state, config, metrics, history, problems)


def list_runs(root: Path) -> list[RunInfo]:
    """Every run directory under `root`, oldest first; a damaged run is listed, never raised.

    Raises RunError when `root` is not a folder that can be listed (a missing root is empty).
    """
    try:
        if not root.exists():
            return []
        if not root.is_dir():
            raise RunError(f"{root}: is a file, not a runs folder; pass --runs-dir to a folder")
        children = sorted(root.iterdir())
    except OSError as exc:
        raise RunError(f"{root}: cannot list the runs folder ({exc.strerror})") from None
    return [load_run(child) for child in children
            if child.is_dir() and not child.name.startswith(".")]
