"""Finding, verifying and loading datasets, and splitting them for training.

Lookup order (first complete, verified copy wins): an explicit `data_dir`, env `MNISTLAB_DATA`,
the user cache (`$MNISTLAB_CACHE` or `~/.cache/mnistlab`), folders other tools fill (Debian's
`/usr/share/datasets`, Keras's `~/.keras/datasets`, a torchvision root such as `./data`), then a
verified download into the cache. An explicit `data_dir` that is missing or not a folder is an
error, never skipped. Content is checked by SHA-256 of the decompressed IDX bytes on first use;
the decoded arrays are cached as `.npy` so later loads are a memory map, whose content is hashed
again (tens of milliseconds) before it is used (`data.cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.cache import VerifiedIndex, load_verified
from mnistlab.data.idx import idx_sha256
from mnistlab.data.registry import DatasetSpec, get_dataset
from mnistlab.errors import DataError

__all__ = [
    "Dataset",
    "Splits",
    "cache_dir",
    "candidate_roots",
    "find_dataset_files",
    "load_dataset",
    "make_splits",
    "to_float",
    "dataset_status",
]

KEYS = ("train-images", "train-labels", "test-images", "test-labels")
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    source: str  # where the files were found


@dataclass(frozen=True)
class Splits:
    """Float images in [0, 1] and int64 labels; `validation_is_test` marks the lab's habit."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    validation_is_test: bool


def cache_dir() -> Path:
    """`$MNISTLAB_CACHE`, else `$XDG_CACHE_HOME/mnistlab`, else `~/.cache/mnistlab`."""
    if os.environ.get("MNISTLAB_CACHE"):
        return Path(os.environ["MNISTLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnistlab"


def candidate_roots(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(why, folder) pairs in lookup order; folders may hold datasets in any known layout."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get("MNISTLAB_DATA"):
        roots.append(("MNISTLAB_DATA", Path(os.environ["MNISTLAB_DATA"]).expanduser()))
    roots.append(("cache", cache_dir()))
    roots.append(("system", Path("/usr/share/datasets")))
    roots.append(("keras", Path("~/.keras/datasets").expanduser()))
    roots.append(("torchvision", Path("data").absolute()))
    return roots


def _layouts(spec: DatasetSpec, root: Path, explicit: bool) -> list[Path]:
    folders = [root / spec.name, root / _TORCHVISION_NAMES[spec.name] / "raw"]
    if explicit:
        folders.insert(0, root)  # --data-dir may point straight at the dataset folder
    return folders


def unreadable_folder(folder: Path, exc: OSError) -> DataError:
    """The one-line data error for a dataset folder the OS refuses to read (permissions)."""
    why = exc.strerror or type(exc).__name__
    return DataError(f"{folder}: cannot read the dataset folder ({why}); fix its permissions "
                     "or pass --data-dir to a readable folder")


def _is_file(path: Path) -> bool:
    """`path.is_file()`, except that a folder without permission to look inside is a DataError
    naming it (pathlib raises PermissionError there rather than answering False)."""
    try:
        return path.is_file()
    except OSError as exc:
        raise unreadable_folder(path.parent, exc) from None


def _files_in(folder: Path, spec: DatasetSpec) -> dict[str, Path] | None:
    found = {}
    for key in KEYS:
        name = spec.files[key]
        hits = [folder / (name + ".gz"), folder / name, folder / name.replace("-idx", ".idx")]
        hit = next((p for p in hits if _is_file(p)), None)
        if hit is None:
            return None
        found[key] = hit
    return found


def find_dataset_files(
    name: str, data_dir: str | Path | None = None
) -> tuple[dict[str, Path] | Path | None, list[str]]:
    """Locate a dataset without reading it -> (files or a Keras .npz or None, places looked).

    Raises DataError when `data_dir` is given but is missing or not a folder: looking elsewhere
    instead would train on data the caller did not ask for.
    """
    spec = get_dataset(name)
    if data_dir is not None:
        _check_data_dir(spec, Path(data_dir).expanduser())
    looked: list[str] = []
    for why, root in candidate_roots(data_dir):
        explicit = why in ("--data-dir", "MNISTLAB_DATA")
        for folder in _layouts(spec, root, explicit):
            looked.append(f"{folder} ({why})")
            files = _files_in(folder, spec)
            if files:
                return files, looked
        if why == "keras" and spec.name == "mnist" and _is_file(root / "mnist.npz"):
            return root / "mnist.npz", looked
    return None, looked


def _check_data_dir(spec: DatasetSpec, path: Path) -> None:
    fix = (f"pass the folder that holds {spec.name}/ (or its four IDX files), or leave --data-dir "
           "out to search MNISTLAB_DATA, the cache and the usual places")
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.exists()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, no permission
        raise DataError(f"--data-dir {path}: cannot be used as a folder ({exc}); {fix}") from None
    if not exists:
        raise DataError(f"--data-dir {path}: folder not found; {fix}")
    if not is_dir:
        raise DataError(f"--data-dir {path}: is a file, not a folder; {fix}")


def _load_keras_npz(spec: DatasetSpec, path: Path) -> dict[str, np.ndarray]:
    names = {"train-images": "x_train", "train-labels": "y_train", "test-images": "x_test",
             "test-labels": "y_test"}
    try:
        with np.load(path) as npz:
            arrays = {k: np.asarray(npz[v], dtype=np.uint8) for k, v in names.items()}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a readable Keras mnist.npz ({exc})") from None
    for key, array in arrays.items():
        if idx_sha256(array) != spec.sha256[key]:
            raise DataError(f"{path}: {key} content does not match the canonical {spec.title}")
    return arrays


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool | None = None
) -> Dataset:
    """Find (or download), verify and load a dataset; raises DataError saying where it looked."""
    spec = get_dataset(name)
    found, looked = find_dataset_files(name, data_dir)
    if found is None:
        if download is None:
            download = os.environ.get("MNISTLAB_OFFLINE", "") in ("", "0")
        if not download:
            raise _not_found(spec, looked, "downloads are off (MNISTLAB_OFFLINE)")
        from mnistlab.data.download import download_dataset

        try:
            found = download_dataset(spec, cache_dir() / spec.name)
        except DataError as exc:
            raise _not_found(spec, looked, str(exc)) from None
    if isinstance(found, Path):
        arrays = _load_keras_npz(spec, found)
        source = str(found)
    else:
        index = VerifiedIndex(cache_dir())
        arrays = {key: load_verified(spec, key, path, index) for key, path in found.items()}
        index.save()
        source = str(found["train-images"].parent)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}-images"]), len(arrays[f"{split}-labels"])
        if n_img != n_lab:
            raise DataError(f"{source}: {split} has {n_img} images but {n_lab} labels")
    return Dataset(spec, arrays["train-images"], arrays["train-labels"],
                   arrays["test-images"], arrays["test-labels"], source)


def _not_found(spec: DatasetSpec, looked: list[str], why: str) -> DataError:
    places = "\n  ".join(looked)
    return DataError(
        f"dataset {spec.name!r} not found and not downloaded ({why}). Looked in:\n  {places}\n"
        f"Fix: put the four IDX files ({', '.join(f + '.gz' for f in spec.files.values())}) in "
        f"DIR/{spec.name}/ and pass --data-dir DIR or set MNISTLAB_DATA=DIR."
    )


def make_splits(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    validation: str | float,
    seed: int,
) -> Splits:
    """Hold out validation data from already-extracted features.

    `validation="test"` reproduces the lab (validate on the test set); a fraction holds out a
    seeded random part of the training set, so the test set is touched once, at the end.
    """
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    if validation == "test":
        return Splits(x_train, y_train, x_test, y_test, x_test, y_test, True)
    n_val = int(round(len(x_train) * float(validation)))
    if not 0 < n_val < len(x_train):
        raise DataError(
            f"data.validation={validation} leaves {n_val} of {len(x_train)} training images for "
            "validation; need at least one on each side"
        )
    order = np.random.default_rng(seed).permutation(len(x_train))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Splits(x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx],
                  x_test, y_test, False)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1], as the lab did (x / 255)."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def dataset_status(data_dir: str | Path | None = None, verify: bool = True) -> list[dict]:
    """One row per registered dataset: found where, verified or not (for `mnistlab data`)."""
    from mnistlab.data.registry import DATASETS

    rows = []
    for name in DATASETS:
        found, looked = find_dataset_files(name, data_dir)
        row = {"dataset": name, "location": None, "verified": False, "detail": ""}
        if found is not None:
            where = found if isinstance(found, Path) else found["train-images"].parent
            row["location"] = str(where)
            if verify:
                try:
                    load_dataset(name, data_dir, download=False)
                    row["verified"] = True
                except DataError as exc:
                    row["detail"] = str(exc).splitlines()[0]
        else:
            row["detail"] = f"not found ({len(looked)} places looked)"
        rows.append(row)
    return rows
