"""Shared fixtures: isolated cache/runs folders, the real datasets, and tiny generated IDX sets."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab.data.idx import idx_bytes
from mnistlab.fast.native import NativeKernelWarning, native_kernel
from mnistlab.rundir.directory import read_history

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The compiled convolution kernel is built once into the checkout's build/ (ignored by git) and
# reused by every test and every subprocess, instead of once per temporary cache.
KERNELS = Path(__file__).resolve().parents[1] / "build" / "kernels"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache for the whole session, so real datasets are verified and decoded once."""
    return tmp_path_factory.mktemp("mnistlab-cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, session_cache, tmp_path):
    """No test reads the user's cache, writes into the repo, or tries the network."""
    monkeypatch.setenv("MNISTLAB_CACHE", str(session_cache))
    monkeypatch.setenv("MNISTLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    if "MNISTLAB_KERNELS" not in os.environ:
        monkeypatch.setenv("MNISTLAB_KERNELS", str(KERNELS))
    monkeypatch.delenv("MNISTLAB_MIRRORS", raising=False)
    monkeypatch.delenv("MNISTLAB_DASK", raising=False)
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("MNISTLAB_DATA", str(SHARED_DATA))
    else:
        monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # the torchvision-style ./data lookup sees an empty folder


@pytest.fixture
def shared_data() -> Path:
    """The real MNIST / Fashion-MNIST files beside the repository (skip when absent)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def make_idx_dataset(n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Learnable toy data: class k has a bright k-th row band, plus noise."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 250
        arrays[f"{split}-images"], arrays[f"{split}-labels"] = images, labels
    return arrays


def write_idx_dataset(folder: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    from mnistlab.data.registry import DATASETS

    names = DATASETS["mnist"].files
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / f"{names[key]}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / names[key]).write_bytes(data)


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """A tiny IDX dataset registered as 'mnist' with its own checksums; returns its data root."""
    import hashlib

    from mnistlab.data import registry as datasets

    arrays = make_idx_dataset()
    root = tmp_path / "tiny-data"
    write_idx_dataset(root / "mnist", arrays)
    spec = datasets.DATASETS["mnist"]
    sums = {k: hashlib.sha256(idx_bytes(a)).hexdigest() for k, a in arrays.items()}
    sizes = {k: len(idx_bytes(a)) for k, a in arrays.items()}
    import dataclasses

    monkeypatch.setitem(datasets.DATASETS, "mnist", dataclasses.replace(spec, sha256=sums,
                                                                        sizes=sizes))
    monkeypatch.setenv("MNISTLAB_DATA", str(root))
    return root


TIMING_KEYS = {"train_seconds", "seconds_per_epoch", "finished"}  # differ between equal runs


def same_run_result(run_a: Path, run_b: Path) -> None:
    """Identical history (minus seconds), metrics (minus timing), predictions and weights."""
    ha, hb = read_history(run_a / "history.csv"), read_history(run_b / "history.csv")
    ha.pop("seconds"), hb.pop("seconds")
    assert ha == hb
    ma = json.loads((run_a / "metrics.json").read_text())
    mb = json.loads((run_b / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in mb.items() if k not in TIMING_KEYS}
    pa, pb = np.load(run_a / "predictions.npz"), np.load(run_b / "predictions.npz")
    for key in ("y_true", "y_pred", "probabilities"):
        np.testing.assert_array_equal(pa[key], pb[key])
    wa = torch.load(run_a / "model.pt", weights_only=True)
    wb = torch.load(run_b / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class CtrlCAt:
    """A run reporter that presses Ctrl-C (a real SIGINT to this process) at one batch count,
    for tests of interrupting and resuming in-process runs."""

    def __init__(self, at: int):
        self.at, self.seen = at, 0

    def start(self, name, epochs, first_epoch): ...
    def epoch(self, epoch, logs): ...
    def stop(self): ...

    def batch(self, done, total):
        self.seen += 1
        if self.seen == self.at:
            import signal

            signal.raise_signal(signal.SIGINT)


@pytest.fixture(scope="module")
def kernel():
    """mnistlab's compiled CPU kernels, or a skip where they cannot be built here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", NativeKernelWarning)
        try:
            module = native_kernel()
        except NativeKernelWarning as exc:  # no compiler on this machine
            pytest.skip(str(exc))
    if module is None:
        pytest.skip("MNISTLAB_NATIVE=0")
    return module
