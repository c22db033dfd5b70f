"""Per-class scores and the misclassified test images of a configuration, for every experiment.

The images are read back from the dataset by the test-set positions the run recorded in
predictions.npz (`test_index`; runs written before it scored the whole test split in order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnistlab.report.compare import Group
from mnistlab.report.document import Block, Image, Para, Table, figure_png
from mnistlab.report.stats import summarize

__all__ = ["per_class_table", "misclassified_block", "most_confused"]


def per_class_table(g: Group) -> Table | None:
    """Precision, recall and F1 of each class (mean ± sd over the seeds), hardest class first."""
    names = g.representative.metrics["class_names"]
    rows = []
    for c, name in enumerate(names):
        per = [r.metrics["per_class"][c] for r in g.runs if len(r.metrics.get("per_class", [])) > c]
        if not per:
            continue
        cells = [summarize([p[k] for p in per], bounds=(0, 1)).text(3)
                 for k in ("precision", "recall", "f1")]
        rows.append((name, *cells, str(per[0]["support"])))
    if not rows:
        return None
    rows.sort(key=lambda r: float(r[3].split()[0]))
    return Table(("class", "precision", "recall", "F1", "test images"), tuple(rows),
                 f"{g.label}: per-class scores on the test set, hardest class first")


def _load_predictions(g: Group) -> dict[str, np.ndarray] | None:
    try:
        with np.load(g.representative.path / "predictions.npz") as data:
            out = {k: data[k] for k in ("y_true", "y_pred", "probabilities")}
            out["test_index"] = (data["test_index"] if "test_index" in data.files
                                 else np.arange(len(out["y_true"])))
            return out
    except (OSError, ValueError, KeyError):
        return None


def most_confused(y_true: np.ndarray, y_pred: np.ndarray, top: int = 3) -> list[tuple[int, int]]:
    """The (true, predicted) pairs with the most mistakes, most first (ties: smaller pair)."""
    wrong = y_true != y_pred
    pairs, counts = np.unique(np.stack([y_true[wrong], y_pred[wrong]], 1), axis=0,
                              return_counts=True)
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], tuple(pairs[i])))
    return [(int(pairs[i][0]), int(pairs[i][1])) for i in order[:top]]


def misclassified_block(g: Group, filename: str, pairs: int = 3, per_pair: int = 5,
                        data_dir=None) -> Block:
    """A figure of the most confused pairs' test images with the predicted class's probability
    (the most confident mistakes first); a sentence saying why when it cannot be drawn."""
    from mnistlab.data.load import load_dataset
    from mnistlab.errors import MnistlabError
    from mnistlab.plots import misclassified_figure

    rep = g.representative
    pred = _load_predictions(g)
    if pred is None:
        return Para(f"Misclassified examples of {g.label}: {rep.name}/predictions.npz is "
                    "missing or unreadable.")
    top = most_confused(pred["y_true"], pred["y_pred"], pairs)
    if not top:
        return Para(f"{g.label} ({rep.name}) misclassified no test image.")
    dataset = rep.metrics.get("dataset", "mnist")
    try:
        ds = load_dataset(dataset, data_dir, download=False)
    except MnistlabError as exc:
        return Para(f"Misclassified examples of {g.label}: the {dataset} test images are not "
                    f"available here ({str(exc).splitlines()[0]}).")
    images, index = ds.test_images, pred["test_index"]
    if index.max(initial=-1) >= len(images) or not np.array_equal(
            ds.test_labels[index], pred["y_true"]):
        return Para(f"Misclassified examples of {g.label}: the {dataset} test set found here is "
                    f"not the one {rep.name} was scored on (its labels differ).")
    names: Sequence[str] = rep.metrics["class_names"]
    rows = []
    for t, p in top:
        where = np.flatnonzero((pred["y_true"] == t) & (pred["y_pred"] == p))
        conf = pred["probabilities"][where, p]
        chosen = where[np.argsort(-conf, kind="stable")[:per_pair]]
        cells = [(images[int(pred["test_index"][i])],
                  f"test #{int(pred['test_index'][i])}\nP({names[p]}) = "
                  f"{pred['probabilities'][i, p]:.2f}") for i in chosen]
        rows.append((f"{names[t]} → {names[p]}\n({len(where)} images)", cells))
    fig = misclassified_figure(rows, f"{g.label} ({rep.name}): most confused pairs, true → "
                                     "predicted, most confident mistakes first")
    return Image(filename, figure_png(fig),
                 f"{g.label}: misclassified test images of the most confused pairs, with the "
                 "probability the model gave the wrong class")
