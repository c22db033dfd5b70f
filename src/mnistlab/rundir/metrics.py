"""Scores of a trained model on the test set, from scikit-learn rather than hand-written formulas.

Note on F1: the lab reported f1 with average="micro", which for single-label classification always
equals accuracy. We report micro (for comparison with the lab), macro and per-class F1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

__all__ = ["classification_scores", "confused_pairs"]


def confused_pairs(confusion: np.ndarray, class_names: Sequence[str], top: int = 5) -> list[dict]:
    """The most frequent (true, predicted) mistakes, largest first (ties by class order)."""
    off = np.array(confusion, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    flat = [(int(off[t, p]), t, p) for t in range(off.shape[0]) for p in range(off.shape[1])
            if off[t, p] > 0]
    flat.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [{"true": t, "predicted": p, "count": c, "true_name": class_names[t],
             "predicted_name": class_names[p]} for c, t, p in flat[:top]]


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray,
                          class_names: Sequence[str]) -> dict:
    """Accuracy, micro/macro F1, per-class precision/recall/F1/support, confusion counts.

    The confusion matrix has true labels as rows and predictions as columns (as the lab printed).
    """
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_micro": float(f1_score(y_true, y_pred, labels=labels, average="micro",
                                   zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "per_class": [
            {"class": i, "name": class_names[i], "precision": float(precision[i]),
             "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i in labels
        ],
        "confusion": cm.astype(int).tolist(),
        "confused_pairs": confused_pairs(cm, class_names),
    }
