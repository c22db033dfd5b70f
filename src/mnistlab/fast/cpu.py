"""CPU settings for training at full speed without starving anything else: flush-to-zero, an
allocator that keeps freed memory, and cores shared fairly between mnistlab trainers.

None of them changes a result the lab measures. The OpenMP spin setting lives in
`fast.openmp` (it must be chosen before torch loads); the rest applies while training runs,
through `CoreShare.training()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mnistlab.training.device import usable_cores
from mnistlab.training.steps import BatchStep

__all__ = ["flushing_denormals", "flush_denormals", "keep_freed_memory", "prepare_process",
           "CoreShare", "SETTINGS"]

SETTINGS = ("denormals flushed to zero", "freed memory kept in glibc's heap",
            "cores shared with other mnistlab trainers")


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (a denormal times one is then 0)."""
    return bool((torch.tensor([1e-40]) * 1.0)[0] == 0)


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush float32 values below 1.2e-38 to zero while training, as TensorFlow's CPU threads do.

    Why: values that decay into the denormal range (e.g. RMSprop velocities of weights whose
    gradient stays zero) are computed many times slower by the CPU, and slowed MLP epochs
    noticeably (benchmarks/RESULTS.md). Nothing the lab measures depends on numbers that small.
    """
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_TRIM_THRESHOLD = 1024 * 1024 * 1024
_kept = False


def keep_freed_memory() -> bool:
    """Let glibc serve blocks up to 32 MB from its heap and keep up to 1 GB of freed memory.

    Why: by default every block above ~128 KB (a batch's activations, its gradients) is a fresh
    mmap, and the first touch of each of its pages is a page fault; in a VM these faults slowed
    CNN chunks and MLP epochs (measured with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_,
    benchmarks/RESULTS.md). Freed blocks are
    now reused at once. Returns whether the setting is in place (False off glibc, e.g. macOS).
    Applied once per process; the environment variables, when set, take precedence.
    """
    global _kept
    if _kept or not sys.platform.startswith("linux"):
        return _kept
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        _kept = True
        return _kept
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _kept


def prepare_process() -> bool:
    """Flush-to-zero on this thread before torch starts its worker threads, which inherit it
    (training turns it on for its own thread too), and the allocator setting. Returns the
    previous flush mode, for callers that restore it."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    keep_freed_memory()
    return before


class CoreShare:
    """Splits this machine's cores between the mnistlab trainers running on it.

    Why: each trainer asks for every core by default (`training.threads = 0`); two of them on
    two cores then run four busy threads, and each waits on the other's threads (several times
    slower epochs, benchmarks/RESULTS.md). Every trainer registers a file named by its PID in a
    shared folder; every half second of training it counts the live ones and takes
    cores // count threads, all of them again once it is alone. A trainer given `threads`
    explicitly keeps them.
    """

    POLL_SECONDS = 0.5

    def __init__(self, threads: int = 0, folder: Path | None = None):
        self.threads = threads
        self.folder = folder or Path(tempfile.gettempdir()) / f"mnistlab-trainers-{os.getuid()}"
        self._next_poll = 0.0

    def live_trainers(self) -> int:
        """Registered trainers whose process still runs (this one included)."""
        count = 0
        for entry in self.folder.glob("*.pid"):
            try:
                os.kill(int(entry.stem), 0)
                count += 1
            except (ValueError, ProcessLookupError):
                entry.unlink(missing_ok=True)
            except PermissionError:
                count += 1  # alive, another user's
        return max(count, 1)

    def rebalance(self) -> int:
        """Take this trainer's share of the cores now; returns the thread count."""
        if self.threads > 0:
            return torch.get_num_threads()
        share = max(1, usable_cores() // self.live_trainers())
        if share != torch.get_num_threads():
            torch.set_num_threads(share)
        return share

    def wrap(self, step: BatchStep) -> BatchStep:
        """`step`, re-dividing the cores at most every POLL_SECONDS between batches."""
        def shared(xb, yb):
            now = time.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + self.POLL_SECONDS
                self.rebalance()
            return step(xb, yb)

        return shared

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Registered as a trainer, denormals flushed, freed memory kept, for the block."""
        me = self.folder / f"{os.getpid()}.pid"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            me.touch()
        except OSError:
            me = None  # an unwritable temp folder: train without sharing
        keep_freed_memory()
        threads_before = torch.get_num_threads()
        try:
            with flush_denormals():
                self._next_poll = 0.0
                yield
        finally:
            if me is not None:
                me.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the last trainer leaves no folder behind
                    self.folder.rmdir()
            torch.set_num_threads(threads_before)
