"""Features a model sees: raw pixels in [0, 1], or HOG (scikit-image semantics), cached on disk.

HOG for 70,000 images is computed once per (dataset content, HOG arguments) and stored under the
cache folder; later runs memory-map it. Writes go to a temporary file and are renamed, so two
runs computing the same features at once cannot leave a partial file behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mnistlab.atomic import save_npy_atomic
from mnistlab.config.geometry import hog_kwargs
from mnistlab.config.sections import FeaturesConfig

__all__ = ["extract_features", "feature_cache_path"]

def feature_cache_path(cfg: FeaturesConfig, content_key: str, root: Path) -> Path:
    """Where HOG features of images with content `content_key` are cached."""
    args = json.dumps(hog_kwargs(cfg), sort_keys=True)
    digest = hashlib.sha256(f"hog-v2|{content_key}|{args}".encode()).hexdigest()[:24]
    return root / "features" / f"{digest}.npy"


def extract_features(
    cfg: FeaturesConfig,
    images: np.ndarray,
    content_key: str | None = None,
    cache_root: Path | None = None,
) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 features: (N, H, W) raw or (N, F) HOG.

    `content_key` identifies the images (e.g. the dataset file's SHA-256 plus a slice); when it
    and `cache_root` are given, HOG features are read from / written to the cache.
    """
    pixels = np.asarray(images, dtype=np.float32) / np.float32(255.0)
    if cfg.kind == "raw":
        return pixels
    path = None
    if content_key is not None and cache_root is not None:
        path = feature_cache_path(cfg, content_key, cache_root)
        cached = _read_cache(path, len(images))
        if cached is not None:
            return cached
    from mnistlab.features.hog import hog

    # The lab passed float32 images (x / 255) to scikit-image, which keeps float32.
    feats = hog(pixels, **hog_kwargs(cfg)).astype(np.float32)
    if path is not None:
        _write_cache(path, feats)
    return feats


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    # A writable in-memory copy: torch.from_numpy warns on (and must not alias) a read-only map.
    return np.array(arr) if arr.ndim == 2 and len(arr) == n else None


def _write_cache(path: Path, feats: np.ndarray) -> None:

    try:
        save_npy_atomic(path, feats)
    except OSError:
        pass  # a read-only or full cache only costs recomputation next time
