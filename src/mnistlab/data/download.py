"""Verified download of a dataset into the cache: mirrors tried in turn, retried, checked, renamed.

A file only appears under its final name after its decompressed content matched the registry's
SHA-256, so an interrupted or corrupted download never poses as data. Mirrors can be replaced
with env `MNISTLAB_MIRRORS` (comma-separated base URLs), which is also how tests reach a local
server.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from mnistlab.atomic import write_atomically
from mnistlab.data.idx import read_idx
from mnistlab.data.registry import DatasetSpec
from mnistlab.errors import DataError

__all__ = ["download_dataset", "mirrors_for"]

CHUNK_BYTES = 1 << 16


def mirrors_for(spec: DatasetSpec) -> list[str]:
    env = os.environ.get("MNISTLAB_MIRRORS", "").strip()
    bases = [m.strip() for m in env.split(",") if m.strip()] if env else list(spec.mirrors)
    return [b if b.endswith("/") else b + "/" for b in bases]


def _fetch(url: str, fh: BinaryIO, timeout_seconds: float, progress) -> None:
    """Stream `url` into `fh`, updating a rich progress task if given."""
    with urllib.request.urlopen(url, timeout=timeout_seconds) as resp:
        total = int(resp.headers.get("Content-Length") or 0)
        task = progress.add_task(url.rsplit("/", 1)[-1], total=total or None) if progress else None
        while chunk := resp.read(CHUNK_BYTES):
            fh.write(chunk)
            if task is not None:
                progress.advance(task, len(chunk))
        if total and fh.tell() != total:
            raise DataError(f"{url}: got {fh.tell()} of {total} bytes")


def download_dataset(
    spec: DatasetSpec,
    dest_dir: Path,
    *,
    attempts_per_mirror: int = 2,
    timeout_seconds: float = 30.0,
    show_progress: bool = True,
) -> dict[str, Path]:
    """Download the four IDX files of `spec` into `dest_dir`; returns key -> final path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    progress = None
    if show_progress:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            transient=True)
    results: dict[str, Path] = {}
    try:
        if progress:
            progress.start()
        for key, name in spec.files.items():
            final = dest_dir / f"{name}.gz"
            if final.is_file():
                results[key] = final
                continue
            results[key] = _download_one(spec, key, final, attempts_per_mirror, timeout_seconds,
                                         progress)
    finally:
        if progress:
            progress.stop()
    return results


def _check_digest(spec: DatasetSpec, key: str, path: Path) -> None:
    _, digest = read_idx(path, max_bytes=spec.sizes[key])
    if digest != spec.sha256[key]:
        raise DataError(f"checksum mismatch (got {digest[:12]}...)")


def _download_one(spec, key, final: Path, attempts: int, timeout_seconds: float, progress) -> Path:
    errors = []
    for base in mirrors_for(spec):
        url = base + final.name
        for attempt in range(attempts):
            try:
                write_atomically(final,
                                 lambda fh, url=url: _fetch(url, fh, timeout_seconds, progress),
                                 verify=lambda tmp, key=key: _check_digest(spec, key, tmp))
                return final
            except (OSError, urllib.error.URLError, DataError, ValueError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
                if attempt + 1 < attempts:
                    time.sleep(0.2 * (attempt + 1))
    raise DataError(f"could not download {final.name}: " + "; ".join(errors[-4:]))
