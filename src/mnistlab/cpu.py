"""CPU settings that training needs to run at full speed: flush-to-zero, and an allocator that
keeps freed memory for the next batch.

Both are process-level switches with no effect on the results the lab measures.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator

import torch

__all__ = ["flushing_denormals", "flush_denormals", "keep_freed_memory"]


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (a denormal times one is then 0)."""
    return bool((torch.tensor([1e-40]) * 1.0)[0] == 0)


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush float32 values below 1.2e-38 to zero while training, as TensorFlow's CPU threads do.

    Why: values that decay into the denormal range (e.g. RMSprop velocities of weights whose
    gradient stays zero) are computed ~100x slower by the CPU; they made hog/final epochs 1.5x
    slower (0.23 -> 0.34 s). Nothing the lab measures depends on numbers that small.
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
    mmap, and the first touch of each of its pages is a page fault; in a VM these faults made
    CNN chunks ~1.5x slower and MLP epochs ~1.1x slower (same process, same data, measured with
    MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ in benchmarks/RESULTS.md). Freed blocks are
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
