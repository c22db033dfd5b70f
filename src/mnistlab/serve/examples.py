"""The test images behind one cell of a run's confusion matrix, with the run's probabilities.

`predictions.npz` holds, for each scored test image, its true class, the predicted class, the
softmax probabilities and its position in the dataset's test split (`test_index`; older runs
scored the whole split in order). The pixels are read back from the dataset itself, as the
report's misclassified figure does, after checking that its labels are the ones the run scored.
"""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.rundir.directory import RunInfo
from mnistlab.serve.index import run_file

__all__ = ["cell_examples", "png_data_url", "MAX_EXAMPLES", "ExampleError", "TestImages"]

MAX_EXAMPLES = 60  # images per request; a diagonal cell can hold a thousand


class ExampleError(MnistlabError):
    """The images of a cell cannot be shown (no predictions, dataset missing, wrong test set)."""


def png_data_url(image: np.ndarray) -> str:
    """(H, W) uint8 -> a `data:image/png;base64,...` URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class TestImages:
    """The datasets' test splits, each loaded (and verified) once per app, on first use."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self._loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def __call__(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of `dataset`'s test split; MnistlabError when not found here."""
        from mnistlab.data.load import load_dataset

        with self._lock:
            if dataset not in self._loaded:
                ds = load_dataset(dataset, self.data_dir, download=False)
                self._loaded[dataset] = (ds.test_images, ds.test_labels)
            return self._loaded[dataset]


def _predictions(info: RunInfo, root: Path) -> dict[str, np.ndarray]:
    path = run_file(info, "predictions.npz", root)
    if path is None:
        raise ExampleError(f"{info.name}/predictions.npz: missing (only a complete run has it)")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in ("y_true", "y_pred", "probabilities")}
            out["test_index"] = (data["test_index"] if "test_index" in data.files
                                 else np.arange(len(out["y_true"])))
    except (OSError, ValueError, KeyError) as exc:
        raise ExampleError(f"{info.name}/predictions.npz: unreadable "
                           f"({type(exc).__name__})") from None
    return out


def cell_examples(info: RunInfo, root: Path, true: int, predicted: int,
                  test_images: TestImages, limit: int = 24) -> dict[str, Any]:
    """The test images with this (true, predicted) pair, the most confident first.

    Returns count (all such images), and per image shown: its test-set position, its pixels as
    a PNG data URL and the run's top-3 probabilities.

    Raises:
        ExampleError: no readable predictions, classes out of range, or the dataset found here
            is not the one the run was scored on.
    """
    metrics = info.metrics or {}
    names = list(metrics.get("class_names") or [])
    if not (0 <= true < len(names) and 0 <= predicted < len(names)):
        raise ExampleError(f"true={true}, predicted={predicted}: classes must be in "
                           f"[0, {len(names) - 1}] for {info.name}")
    limit = max(1, min(int(limit), MAX_EXAMPLES))
    pred = _predictions(info, root)
    where = np.flatnonzero((pred["y_true"] == true) & (pred["y_pred"] == predicted))
    conf = pred["probabilities"][where, predicted]
    chosen = where[np.argsort(-conf, kind="stable")[:limit]]
    dataset = metrics.get("dataset", "mnist")
    try:
        images, labels = test_images(dataset)
    except MnistlabError as exc:
        raise ExampleError(f"the {dataset} test images are not available here "
                           f"({str(exc).splitlines()[0]})") from None
    index = pred["test_index"]
    if index.max(initial=-1) >= len(images) or not np.array_equal(labels[index], pred["y_true"]):
        raise ExampleError(f"the {dataset} test set found here is not the one {info.name} was "
                           "scored on (its labels differ)")
    shown = []
    for i in chosen:
        probs = pred["probabilities"][i]
        top = np.argsort(-probs, kind="stable")[:3]
        shown.append({"test_index": int(index[i]), "image": png_data_url(images[int(index[i])]),
                      "top": [{"class": int(c), "name": names[c], "probability": float(probs[c])}
                              for c in top]})
    return {"true": true, "predicted": predicted, "true_name": names[true],
            "predicted_name": names[predicted], "count": int(len(where)), "images": shown}
