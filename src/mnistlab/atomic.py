"""The one way mnistlab writes a file: to a fresh temporary name beside it, flushed to disk, then
renamed over the final name. A reader (or a crash, or a second writer) sees the old file or the
new one, never half of one. Run directories, dataset and feature caches, checkpoints, figures
and reports all go through `write_atomically`.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnistlab.errors import RunError

__all__ = ["write_atomically", "atomic_write_bytes", "atomic_write_text", "save_npy_atomic"]

_serial = itertools.count()  # temp names unique within the process (threads included)


def write_atomically(path: Path, write: Callable[[BinaryIO], object],
                     verify: Callable[[Path], object] | None = None) -> None:
    """Call `write(fh)` on a temporary file beside `path`, fsync it, `verify(temporary path)` if
    given (a download's checksum), and rename it to `path`.

    Whatever `write` or `verify` raise (OSError for a full disk, a missing folder, no
    permission) propagates after the temporary file is removed; `path` keeps its old content.
    """
    path = Path(path)
    _refuse_special(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _refuse_special(path: Path) -> None:
    """A rename would replace a device, FIFO or socket with a regular file: `-o /dev/null` run
    as root would turn the machine's /dev/null into a file. Only regular files are replaced."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "is a device, FIFO or socket, not a regular file; mnistlab "
                      "only replaces regular files", str(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a run's file atomically; failures become one RunError line naming the file."""
    try:
        write_atomically(path, lambda fh: fh.write(data))
    except OSError as exc:
        hint = ("; the disk is full: free space or pass --runs-dir on another disk"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        raise RunError(f"{path}: cannot write ({exc.strerror or exc}){hint}") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """`np.save` atomically, creating the folder (the array and feature caches). Raises OSError:
    a cache that cannot be written only costs recomputation, so callers may ignore it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(path), lambda fh: np.save(fh, array))
