"""The decoded-array cache: which IDX files were verified against the registry's checksum
(by path, size and mtime), and their decoded arrays as `.npy` files under the cache's `arrays/`,
so later loads are a memory map. A cached array is used only after its content hashes to the
registry's checksum again (all of MNIST in tens of milliseconds); a changed one is rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnistlab.atomic import save_npy_atomic, write_atomically
from mnistlab.data.idx import idx_sha256, read_idx
from mnistlab.data.registry import DatasetSpec
from mnistlab.errors import DataError

__all__ = ["VerifiedIndex", "load_verified"]


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


class VerifiedIndex:
    """Remembers which files were verified (by path, size, mtime) and where their arrays are."""

    def __init__(self, root: Path):
        self.path = root / "verified.json"
        try:
            self.entries: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps(self.entries, indent=1).encode()
            write_atomically(self.path, lambda fh: fh.write(data))
        except OSError:
            pass  # a read-only cache only costs speed


def _cached_array(array_path: Path, expected: str) -> np.ndarray | None:
    """The cached decoded array, memory-mapped, if its content still has the registry's
    checksum; None when it is missing, unreadable or changed (then it is rebuilt)."""
    try:
        array = np.load(array_path, mmap_mode="r")
        return array if idx_sha256(array) == expected else None
    except (OSError, ValueError, DataError):
        return None


def load_verified(spec: DatasetSpec, key: str, path: Path, index: VerifiedIndex) -> np.ndarray:
    """The array of the IDX file `path` (`spec`'s `key`): from the cache when both the file and
    the cached array check out, else read, verified against the registry and cached."""
    expected = spec.sha256[key]
    array_path = index.path.parent / "arrays" / f"{expected}.npy"
    stat_key = _stat_key(path)
    if index.entries.get(stat_key) == expected and array_path.is_file():
        cached = _cached_array(array_path, expected)
        if cached is not None:
            return cached
    # Never more than the registered size: a gzip file promising more is refused from its header.
    array, digest = read_idx(path, max_bytes=spec.sizes[key])
    if digest != expected:
        raise DataError(
            f"{path}: checksum mismatch for {spec.name} {key}: SHA-256 of the content is "
            f"{digest[:16]}..., expected {expected[:16]}...; the file is corrupt or not "
            f"{spec.title}. Delete it and fetch it again (see `mnistlab data`)."
        )
    _check_shape(spec, key, array, str(path))
    try:
        save_npy_atomic(array_path, array)
        index.entries[stat_key] = expected
    except OSError:
        pass
    return array


def _check_shape(spec: DatasetSpec, key: str, array: np.ndarray, name: str) -> None:
    want_ndim = 3 if key.endswith("images") else 1
    if array.ndim != want_ndim or array.dtype != np.uint8:
        raise DataError(
            f"{name}: {spec.name} {key} must be uint8 with {want_ndim} dimensions; "
            f"got {array.dtype} with shape {array.shape}"
        )
