"""A sweep's record in the runs folder: `manifest.json` written once, outcomes appended.

`<runs>/.sweeps/<name>/manifest.json` holds the sweep (axes, fixed values) and every point with
its config digest; it is written once when `sweep run` starts. Each finished, failed, skipped or
interrupted run then appends one line to `outcomes.jsonl`, so a sweep of thousands of runs costs
one short append per run instead of rewriting the whole manifest each time. Readers merge the two
by config digest (the last line for a digest wins), which also carries outcomes across reruns of
the same sweep file. A line cut short by a crash is ignored; the runs folder stays the truth for
complete runs (`executor.complete_runs_by_digest`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mnistlab.errors import RunError
from mnistlab.rundir.directory import write_json

__all__ = ["MANIFEST", "OUTCOMES", "write_manifest", "append_outcome", "read_manifest"]

MANIFEST = "manifest.json"
OUTCOMES = "outcomes.jsonl"


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the sweep and its points (each with a "digest"); done once per `sweep run`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{folder}: cannot create the sweep folder ({exc.strerror or exc}); "
                       "pass --runs-dir to a writable folder") from None
    write_json(folder / MANIFEST, manifest)


def append_outcome(folder: Path, outcome: dict[str, Any]) -> None:
    """Append one outcome line ({"digest", "status", "run", "error", ...}), flushed to disk."""
    line = json.dumps(outcome, ensure_ascii=False) + "\n"
    try:
        with open(folder / OUTCOMES, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise RunError(f"{folder / OUTCOMES}: cannot record a sweep outcome "
                       f"({exc.strerror or exc})") from None


def _outcomes(folder: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    try:
        lines = (folder / OUTCOMES).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line of a sweep killed mid-append
        if isinstance(record, dict) and isinstance(record.get("digest"), str):
            found[record["digest"]] = record
    return found


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest with each point's latest outcome merged in; {} when there is none."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("points"), list):
        return {}
    outcomes = _outcomes(folder)
    keep = ("status", "run", "error")
    manifest["points"] = [
        {**p, **{k: outcomes[p["digest"]].get(k) for k in keep}}
        if isinstance(p, dict) and isinstance(p.get("digest"), str) and p["digest"] in outcomes
        else p
        for p in manifest["points"]]
    return manifest
