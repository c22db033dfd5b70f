"""The runs folder as the app sees it: a cached listing, and the only way from a name to a run.

Every request that names a run looks the name up here, among the folder's own entries, so a URL
can never reach a path the listing did not produce (`..`, encoded slashes and absolute paths
simply match no name). Entries that are symbolic links leading out of the runs folder are left
out, and so is any run file that resolves outside it. A run is re-read (`runs.load_run`, the same
reader as `mnistlab runs`) only when one of its files changed, so many clients polling the
listing cost a few `stat` calls each.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.rundir.directory import RunInfo, load_run

__all__ = ["RunIndex", "run_row", "run_file", "WATCHED_FILES"]

WATCHED_FILES = ("status.json", "config.toml", "metrics.json", "history.csv", "model.pt",
                 "predictions.npz", "checkpoint.pt")
LISTING_SECONDS = 1.0  # the listing is rebuilt at most this often, however many clients ask
RUNNING_SECONDS = 5.0  # a running run is re-read this often even unchanged (its process may die)
_SWEEP_NAME = re.compile(r"^(?P<sweep>.+)-p\d{3,}-s\d+$")


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def run_file(info: RunInfo, name: str, root: Path) -> Path | None:
    """`info.path / name` when it is a file inside the runs folder (not a link out of it)."""
    path = info.path / name
    try:
        return path if path.is_file() and _inside(path, root.resolve()) else None
    except OSError:
        return None


def _signature(path: Path) -> tuple:
    sig = []
    for name in WATCHED_FILES:
        try:
            st = (path / name).stat()
            sig.append((st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append(None)
    return tuple(sig)


@dataclass
class _Entry:
    signature: tuple
    info: RunInfo
    read_at: float


class RunIndex:
    """The runs of one folder, refreshed lazily; thread-safe (handlers run in a thread pool)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self._entries: dict[str, _Entry] = {}
        self._listed_at = -1e9
        self._lock = threading.Lock()
        self.error: str | None = None  # why the folder cannot be listed, shown on the page

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first (by folder name, which starts with its time stamp)."""
        with self._lock:
            now = time.monotonic()
            if now - self._listed_at >= LISTING_SECONDS:
                self._refresh(now)
                self._listed_at = now
            return [self._entries[k].info for k in sorted(self._entries)]

    def get(self, name: str) -> RunInfo | None:
        """The run listed under exactly this name, or None (never a path built from `name`)."""
        self.runs()
        with self._lock:
            entry = self._entries.get(name) if isinstance(name, str) else None
            return entry.info if entry is not None else None

    def key(self, info: RunInfo) -> tuple:
        """What a cached answer about `info` depends on: its name and its files' signature."""
        with self._lock:
            entry = self._entries.get(info.name)
            return (info.name, entry.signature if entry is not None else None)

    def version(self) -> tuple:
        """Changes whenever a run appears, disappears or changes (the listing's cache key)."""
        self.runs()
        with self._lock:
            return tuple((k, self._entries[k].signature) for k in sorted(self._entries))

    def _children(self) -> list[Path]:
        try:
            if not self.root.is_dir():
                self.error = (f"{self.root}: no such runs folder" if not self.root.exists()
                              else f"{self.root}: is a file, not a runs folder")
                return []
            children = sorted(self.root.iterdir())
        except OSError as exc:
            self.error = f"{self.root}: cannot list the runs folder ({exc.strerror})"
            return []
        self.error = None
        root = self.root.resolve()
        return [c for c in children if not c.name.startswith(".") and c.is_dir()
                and _inside(c, root)]

    def _refresh(self, now: float) -> None:
        fresh: dict[str, _Entry] = {}
        for child in self._children():
            sig = _signature(child)
            old = self._entries.get(child.name)
            stale = old is None or old.signature != sig or (
                old.info.status == "running" and now - old.read_at >= RUNNING_SECONDS)
            if stale:
                try:
                    old = _Entry(sig, load_run(child), now)
                except Exception:  # noqa: BLE001 - gone between listing and reading
                    continue
            fresh[child.name] = old
        self._entries = fresh


@functools.lru_cache(maxsize=1)
def _suite_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The shipped suites' run-name patterns (read once: they ship with the package)."""
    from mnistlab.experiments.suite import load_suite, suite_names, suite_run_pattern

    out = []
    for suite_name in suite_names():
        try:
            out.append((suite_name, suite_run_pattern(load_suite(suite_name, strict=False))))
        except Exception:  # noqa: BLE001 - a suite file that does not load names no group
            continue
    return tuple(out)


def _group_of(run_name: str) -> str:
    """The suite (shipped suites) or sweep a run belongs to, from its `output.name`."""
    for suite_name, pattern in _suite_patterns():
        if pattern.match(run_name):
            return f"suite {suite_name}"
    m = _SWEEP_NAME.match(run_name)
    return f"sweep {m['sweep']}" if m else ""


def _model_text(model: dict) -> str:
    if model.get("kind") == "cnn":
        return f"cnn {len(model.get('layers', []))} layers {model.get('activation', '')}".strip()
    hidden = "-".join(map(str, model.get("hidden", []))) or "-"
    return f"mlp {hidden} {model.get('activation', '')} drop {model.get('dropout', 0)}"


def run_row(info: RunInfo) -> dict[str, Any]:
    """One row of the runs table: what `mnistlab runs` shows, plus validation accuracy."""
    from mnistlab.report.compare import experiment_of

    cfg = info.config or {}
    data, feats = cfg.get("data", {}), cfg.get("features", {})
    training, opt = cfg.get("training", {}), cfg.get("optimizer", {})
    features = feats.get("kind", "")
    if features == "hog":
        features = f"hog p={feats.get('pixels_per_cell')} o={feats.get('orientations')}"
    history = info.history or {}
    val = history.get("val_accuracy") or []
    metrics = info.metrics or {}
    name = cfg.get("output", {}).get("name") or info.name
    return {
        "name": info.name,
        "run_name": name,
        "status": info.status,
        "problems": list(info.problems),
        "experiment": experiment_of(cfg) if cfg else "",
        "group": _group_of(name) if cfg else "",
        "dataset": data.get("dataset", ""),
        "features": features,
        "model": _model_text(cfg.get("model", {})) if cfg else "",
        "optimizer": f"{opt.get('name', '')} lr {opt.get('learning_rate', '')}" if opt else "",
        "batch_size": training.get("batch_size"),
        "epochs_done": len(history.get("loss") or []),
        "epochs": training.get("epochs"),
        "seed": training.get("seed"),
        "validation": data.get("validation"),
        "val_accuracy": val[-1] if val else None,
        "test_accuracy": metrics.get("test_accuracy"),
        "params": metrics.get("params"),
    }
