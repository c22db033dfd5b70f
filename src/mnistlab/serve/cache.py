"""Answers kept as ready JSON bytes, keyed by the run files they were computed from.

Many clients asking about the same runs (a class at a lecture, a load test) then cost one
dictionary lookup each instead of re-reading predictions and re-running the tests; a run whose
files change gets a new key (`RunIndex.key`), so nothing stale is ever served.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["AnswerCache", "json_safe", "json_bytes"]


def json_safe(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_bytes(data: Any) -> bytes:
    return json.dumps(json_safe(data), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"), default=str).encode("utf-8")


class AnswerCache:
    """A small LRU of (HTTP status, JSON bytes), thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._pending: dict[Hashable, threading.Lock] = {}  # keys being computed right now
        self._lock = threading.Lock()

    def _cached(self, key: Hashable) -> tuple[int, bytes] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def get(self, key: Hashable | None, make: Callable[[], tuple[int, Any]]) -> tuple[int, bytes]:
        """The cached answer for `key`, else `make()`'s (status, data) encoded and kept when the
        status is 200 (errors are cheap and may be temporary). A None key is never cached.

        Callers asking for a key while it is being computed wait for that computation instead
        of repeating it (fifty clients opening the same comparison compute it once)."""
        if key is None:
            status, data = make()
            return status, json_bytes(data)
        if (hit := self._cached(key)) is not None:
            return hit
        with self._lock:
            computing = self._pending.setdefault(key, threading.Lock())
        try:
            with computing:
                if (hit := self._cached(key)) is not None:
                    return hit
                status, data = make()
                answer = (status, json_bytes(data))
                if status == 200:
                    with self._lock:
                        self._items[key] = answer
                        while len(self._items) > self.size:
                            self._items.popitem(last=False)
                return answer
        finally:
            with self._lock:
                self._pending.pop(key, None)
