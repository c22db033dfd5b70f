"""Benchmark: `mnistlab.hog.hog` vs a Python loop over `skimage.feature.hog`, all of MNIST.

Experiment 2's features (orientations 8, 4x4-pixel cells, 1-cell blocks) for the 70,000 MNIST
images (train + test) as the pipeline feeds them (uint8 -> float32 / 255, then float64).
Prints absolute times, images per second, the speed-up, and the largest difference between the
two results (over every image the reference computed).

    PYTHONPATH=src python benchmarks/bench_hog.py                  # reference on all 70,000
    PYTHONPATH=src python benchmarks/bench_hog.py --subset 5000    # extrapolate the reference
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import time
from pathlib import Path

import numpy as np
import skimage
from skimage.feature import hog as skimage_hog

from mnistlab.features.hog import hog

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")


def read_idx_images(path: Path) -> np.ndarray:
    """uint8 (N, 28, 28) from a gzipped IDX image file (16-byte header)."""
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def best_of(repeats: int, fn) -> tuple[float, np.ndarray]:
    """Fastest wall-clock seconds of `repeats` calls, and the last result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the MNIST .gz files")
    parser.add_argument("--subset", type=int, default=0,
                        help="time the scikit-image loop on this many images and extrapolate")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = parser.parse_args()

    pixels = np.concatenate([read_idx_images(args.data / name) for name in FILES])
    images = (pixels.astype(np.float32) / np.float32(255)).astype(args.dtype)
    kw = dict(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(1, 1))
    n = len(images)
    print(f"MNIST {n:,} images {images.shape[1]}x{images.shape[2]}, {args.dtype} in [0, 1]; {kw}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-image "
          f"{skimage.__version__}, {os.cpu_count()} CPU cores, load average {load:.2f}")

    hog(images[:1000], **kw)  # warm-up: first-touch allocations, caches
    ours_1, _ = best_of(3, lambda: hog(images, workers=1, **kw))
    ours, features = best_of(3, lambda: hog(images, **kw))
    print(f"mnistlab.hog, 1 thread (best of 3):   {ours_1:7.3f} s  {n / ours_1:>10,.0f} images/s")
    print(f"mnistlab.hog, all cores (best of 3):  {ours:7.3f} s  {n / ours:>10,.0f} images/s")

    count = args.subset or n
    start = time.perf_counter()
    expected = np.stack([skimage_hog(image, **kw) for image in images[:count]])
    seconds = (time.perf_counter() - start) * n / count
    how = f"{count:,} images, extrapolated" if count < n else "all images, once"
    print(f"skimage.feature.hog loop ({how}): {seconds:7.3f} s  {n / seconds:>10,.0f} images/s")
    print(f"speed-up: {seconds / ours:.1f}x (all cores), {seconds / ours_1:.1f}x (1 thread)")
    difference = np.abs(features[:count] - expected).max()
    print(f"max |difference| over {count:,} images: {difference:.2e} (tolerance 1e-6)")
    if difference > 1e-6:
        raise SystemExit("FAILED: features differ from scikit-image")


if __name__ == "__main__":
    main()
