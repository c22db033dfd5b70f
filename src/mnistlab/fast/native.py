"""mnistlab's compiled CPU kernels (csrc/*.cpp), built on first use and loaded once per process.

Why compiled: the lab's CNNs spend most of their time in layers with 1-18 channels, where
PyTorch's stock kernels make several memory passes per layer or half fill their vectors
(fast.fused_conv, fast.pooling, fast.small_conv say which). The sources are compiled with
PyTorch's C++ extension builder (a C++ compiler and ninja, a dependency) with -march=native into
`$MNISTLAB_KERNELS` (default `~/.cache/mnistlab/kernels`), once per machine, source version and
PyTorch version; concurrent processes wait for one build. Without a compiler, or with
`MNISTLAB_NATIVE=0`, `native_kernel()` returns None, after one `NativeKernelWarning`, and every
caller uses PyTorch's stock modules instead (same results, slower).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["NativeKernelWarning", "native_kernel", "kernel_is_built", "kernels_dir"]

_SOURCES = tuple(Path(__file__).with_name("csrc") / name
                 for name in ("conv_relu_pool.cpp", "relu_pool.cpp", "small_conv.cpp"))
_lock = threading.Lock()
_loaded: dict[str, object] = {}


class NativeKernelWarning(UserWarning):
    """The compiled kernels could not be built or loaded; training falls back to stock modules."""


def kernels_dir() -> Path:
    """Where compiled kernels live: `$MNISTLAB_KERNELS`, else the user cache's `kernels/`."""
    if os.environ.get("MNISTLAB_KERNELS"):
        return Path(os.environ["MNISTLAB_KERNELS"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnistlab" / "kernels"


def _build_name() -> str:
    """Source, PyTorch version and this CPU's flags: a kernel built with -march=native for one
    machine is never loaded on another."""
    digest = hashlib.sha256()
    for source in _SOURCES:
        digest.update(source.read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(platform.machine().encode())
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(("flags", "Features")))
        digest.update(flags.encode())
    except (OSError, StopIteration):
        pass
    return f"mnistlab_kernels_{digest.hexdigest()[:12]}"


def kernel_is_built() -> bool:
    """Whether the kernel is loaded, or compiled for this machine and source already."""
    if _loaded.get("module") is not None:
        return True
    folder = kernels_dir() / _build_name()
    return any(folder.glob("*.so"))


def native_kernel():
    """The compiled extension module, or None when it is switched off or cannot be built."""
    if os.environ.get("MNISTLAB_NATIVE", "1") == "0":
        return None
    with _lock:
        if "module" not in _loaded:
            _loaded["module"] = _build()
        return _loaded["module"]


def _build():
    try:
        from torch.utils import cpp_extension

        # ninja (a dependency) sits beside this interpreter even when the venv is not activated
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        name = _build_name()
        build_dir = kernels_dir() / name
        build_dir.mkdir(parents=True, exist_ok=True)
        flags = ["-O3", "-fopenmp", "-march=native", "-mprefer-vector-width=512"]
        # -fopenmp links libgomp.so.1; PyTorch's own copy of it is loaded already, so the
        # kernel's parallel loops share PyTorch's thread pool instead of starting a second one.
        return cpp_extension.load(name=name, sources=[str(s) for s in _SOURCES], extra_cflags=flags,
                                  extra_ldflags=["-fopenmp"], build_directory=str(build_dir),
                                  verbose=False)
    except Exception as exc:  # no compiler, no headers, read-only cache: stock modules instead
        warnings.warn(f"mnistlab's compiled CPU kernels are unavailable ({exc!s:.300}); "
                      "training uses PyTorch's stock modules (same results, slower)",
                      NativeKernelWarning, stacklevel=3)
        return None
