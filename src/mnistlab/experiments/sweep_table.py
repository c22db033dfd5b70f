"""A sweep's results as a table (CSV / rows of text) and as accuracy-against-axis figures.

The table ranks points by validation accuracy (the last epoch's, mean over seeds); test accuracy
is a separate column and plays no part in the ranking.

The numbers come from `sweep.sweep_results`; this module only formats and draws them.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from mnistlab.atomic import atomic_write_text
from mnistlab.experiments.sweep_results import PointResult, value_label
from mnistlab.rundir.directory import safe_name

__all__ = ["ranked", "table_rows", "results_csv", "axis_figure", "write_sweep_outputs",
           "TABLE_COLUMNS"]

TABLE_COLUMNS = ("rank", "runs", "val accuracy (last epoch, mean +/- std)",
                 "test accuracy (mean +/- std)", "macro F1", "train s/run", "errors")
MAX_SERIES = 8  # more combinations of the other axes than this: draw their mean instead


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _spread(values: list[float]) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return f"{m:.4f}"
    return f"{m:.4f} +/- {(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5:.4f}"


def ranked(rows: list[PointResult]) -> list[PointResult]:
    """Points by mean last-epoch validation accuracy, best first (test accuracy plays no part);
    points without a complete run last, in point order."""
    return sorted(rows, key=lambda r: (r.val_mean is None, -(r.val_mean or 0.0), r.point))


def table_rows(axes: list[str], rows: list[PointResult]) -> list[list[str]]:
    """One list of cells per point, best validation accuracy first: point, axis values, then
    `TABLE_COLUMNS`. A validation accuracy measured on the test set says so."""
    out = []
    for rank, r in enumerate(ranked(rows), start=1):
        f1, sec = _mean(r.f1_macro), _mean(r.seconds)
        val = _spread(r.val_accuracies) + (" (test set)" if r.validated_on_test else "")
        out.append([f"p{r.point:03d}", *(value_label(r.values[a]) for a in axes),
                    "-" if r.val_mean is None else str(rank), f"{len(r.accuracies)}/{r.seeds}",
                    val, _spread(r.accuracies), "-" if f1 is None else f"{f1:.4f}",
                    "-" if sec is None else f"{sec:.2f}", r.errors[0] if r.errors else ""])
    return out


def results_csv(axes: list[str], rows: list[PointResult]) -> str:
    """Machine-readable table: one line per point, numbers unrounded."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["point", *axes, "runs", "seeds", "accuracy_mean", "accuracy_std", "accuracies",
                "f1_macro_mean", "train_seconds_mean", "failed", "val_accuracy_mean",
                "val_accuracies", "validation"])
    for r in rows:
        w.writerow([r.point, *(value_label(r.values[a]) for a in axes), len(r.accuracies),
                    r.seeds, "" if r.mean is None else repr(r.mean),
                    "" if r.std is None else repr(r.std),
                    " ".join(repr(a) for a in r.accuracies),
                    "" if not r.f1_macro else repr(_mean(r.f1_macro)),
                    "" if not r.seconds else repr(_mean(r.seconds)), len(r.errors),
                    "" if r.val_mean is None else repr(r.val_mean),
                    " ".join(repr(v) for v in r.val_accuracies),
                    " ".join(sorted(set(r.validation)))])
    return buf.getvalue()


def _categories(rows: list[PointResult], axis: str) -> list[str]:
    seen: list[str] = []
    for r in rows:
        label = value_label(r.values[axis])
        if label not in seen:
            seen.append(label)
    return seen


def axis_figure(name: str, axes: list[str], rows: list[PointResult], axis: str, ax: Any = None):
    """Test accuracy against one axis: a line per setting of the other axes (mean +/- std over
    seeds), or, when those settings are too many, the mean over them with their spread."""
    from mnistlab.plots import _pyplot

    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    cats = _categories(rows, axis)
    others = [a for a in axes if a != axis]
    groups: dict[str, dict[str, PointResult]] = {}
    for r in rows:
        key = ", ".join(f"{a.split('.')[-1]}={value_label(r.values[a])}" for a in others)
        groups.setdefault(key, {})[value_label(r.values[axis])] = r
    if len(groups) <= MAX_SERIES:
        for key, by_cat in groups.items():
            xs = [i for i, c in enumerate(cats) if c in by_cat and by_cat[c].mean is not None]
            ys = [by_cat[cats[i]].mean for i in xs]
            errs = [by_cat[cats[i]].std or 0.0 for i in xs]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=key or "mean over seeds")
    else:
        means = [[g[c].mean for g in groups.values() if c in g and g[c].mean is not None]
                 for c in cats]
        for i, ms in enumerate(means):
            ax.scatter([i] * len(ms), ms, color="0.6", s=12)
        xs = [i for i, ms in enumerate(means) if ms]
        ys = [sum(means[i]) / len(means[i]) for i in xs]
        ax.plot(xs, ys, marker="o", label=f"mean over {len(groups)} settings of the other axes")
    ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(axis)
    ax.set_ylabel("test accuracy")
    n_seeds = max((r.seeds for r in rows), default=0)
    ax.set_title(f"{name}: test accuracy vs {axis}\n(mean +/- std over {n_seeds} "
                 f"seed{'s' * (n_seeds != 1)})", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure


def write_sweep_outputs(name: str, axes: list[str], rows: list[PointResult], folder: Path
                        ) -> list[Path]:
    """results.csv and one accuracy-vs-<axis>.png per axis into `folder`; returns the paths."""
    from mnistlab.plots import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "results.csv"]
    atomic_write_text(paths[0], results_csv(axes, rows))
    if not any(r.mean is not None and math.isfinite(r.mean) for r in rows):
        return paths  # nothing complete yet: no plot to draw
    for axis in axes:
        path = folder / f"accuracy-vs-{safe_name(axis)}.png"
        save_figure(axis_figure(name, axes, rows, axis), path)
        paths.append(path)
    return paths
