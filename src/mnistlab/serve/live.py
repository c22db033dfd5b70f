"""Live curves: server-sent events carrying each epoch as the trainer writes it.

The trainer rewrites `history.csv` atomically after every epoch (a new file with one more row);
rows once written never change. So the stream keeps the byte offset it has read up to and, when
the file's (inode, mtime, size) changes, reads only the bytes after that offset and sends only
the new rows. A shorter file or a different header (a run resumed from an earlier checkpoint)
sends a `reset` and the whole history once. `status.json` is watched the same way; the stream
ends with an `end` event once the run is no longer running.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["HistoryFollower", "sse", "run_events", "POLL_SECONDS", "HEARTBEAT_SECONDS"]

POLL_SECONDS = 0.5  # two stat() calls per open page per interval
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies and browsers from timing out
ENDED = ("complete", "failed", "interrupted", "corrupt", "stalled")


def sse(event: str, data: Any) -> str:
    """One server-sent event (`event:` + one `data:` line of JSON)."""
    return f"event: {event}\ndata: {json.dumps(data, allow_nan=False, default=str)}\n\n"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class HistoryFollower:
    """Reads the rows `history.csv` gained since the last call, and nothing else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signature: tuple[int, int, int] | None = None
        self.header = b""
        self.offset = 0  # bytes of the file already turned into rows
        self.rows = 0  # rows sent so far

    def poll(self) -> tuple[bool, list[dict[str, float]]]:
        """(reset, new rows): reset means the rows sent so far no longer hold."""
        sig = _signature(self.path)
        if sig is None or sig == self.signature:
            return False, []
        self.signature = sig
        reset = False
        try:
            with open(self.path, "rb") as fh:
                header = fh.readline()
                if header != self.header or sig[2] < self.offset:
                    reset = self.offset > 0
                    self.header, self.offset, self.rows = header, len(header), 0
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return False, []
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a row still being written waits
        self.offset += len(complete)
        keys = next(csv.reader([self.header.decode("utf-8", "replace")]), [])
        rows = []
        for cells in csv.reader(io.StringIO(complete.decode("utf-8", "replace"))):
            try:
                rows.append({k: float(v) for k, v in zip(keys, cells, strict=True)})
            except ValueError:
                continue  # a damaged row: skipped here, reported by the run's problems
        self.rows += len(rows)
        return reset, rows


async def run_events(history: Path, status: Path, progress: Callable[[list[dict]], dict],
                     disconnected: Callable[[], Awaitable[bool]], after: int = 0,
                     poll_seconds: float = POLL_SECONDS) -> AsyncIterator[str]:
    """Events for one open run page: `epoch` per new row (after the first `after`), `reset`,
    `status` (progress, ETA) whenever the status or history changes, then `end`."""
    follower = HistoryFollower(history)
    all_rows: list[dict] = []
    status_sig: object = ()
    last_sent = time.monotonic()
    while True:
        reset, rows = follower.poll()
        if reset:
            all_rows = []
            after = 0
            yield sse("reset", {})
        for row in rows:
            all_rows.append(row)
            if len(all_rows) > after:
                yield sse("epoch", row)
        sig = _signature(status)
        if rows or reset or sig != status_sig:
            status_sig = sig
            state = await asyncio.to_thread(progress, list(all_rows))  # reads the run again
            yield sse("status", state)
            last_sent = time.monotonic()
            if state["status"] in ENDED:
                yield sse("end", {"epochs": len(all_rows)})
                return
        elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if await disconnected():
            return
        await asyncio.sleep(poll_seconds)
