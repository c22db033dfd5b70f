"""HTML for Jupyter: a run as the report shows one (summary, curves, confusion matrix, test
scores), its history as a table, its metrics as a table.

Built from the report's blocks and rendered as a fragment, with a style sheet scoped to the
run's own element, so the notebook's styles are left alone. Figures are the run's own PNGs,
embedded as data URIs (nothing is fetched); a run written without plots gets them drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnistlab.report.document import Block, Bullets, Code, Heading, Image, Panel, Para, Table
from mnistlab.report.figures import accuracy_png, confusion_png, loss_png
from mnistlab.report.html import render_fragment
from mnistlab.rundir.directory import RunInfo

__all__ = ["run_html", "history_html", "metrics_html", "metrics_rows"]

SCOPE = "mnistlab-run"
CSS = (f".{SCOPE} .panel{{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}}"
       f".{SCOPE} figure{{margin:.3em;flex:1 1 300px;max-width:440px}}"
       f".{SCOPE} figure img{{max-width:100%}}"
       f".{SCOPE} figcaption{{font-size:.85em;color:#666}}"
       f".{SCOPE} pre{{font-size:.8em;overflow-x:auto}}")

# metrics.json scalars worth a row, in reading order, with how to write them
_ROWS = (("test_accuracy", "test accuracy", "{:.4f}"), ("test_loss", "test loss", "{:.4f}"),
         ("f1_macro", "macro-F1", "{:.4f}"), ("f1_micro", "micro-F1 (= accuracy)", "{:.4f}"),
         ("params", "parameters", "{:,}"), ("epochs", "epochs", "{}"),
         ("best_epoch", "lowest val loss at epoch", "{}"), ("validation", "validation", "{}"),
         ("train_seconds", "train time (s)", "{:.1f}"),
         ("seconds_per_epoch", "s/epoch (median)", "{:.2f}"), ("device", "device", "{}"),
         ("dataset", "dataset", "{}"), ("seed", "seed", "{}"))


def metrics_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for the scalar scores and facts of a metrics.json, in reading order."""
    rows = []
    for key, label, fmt in _ROWS:
        value = metrics.get(key)
        if value is not None:
            try:
                rows.append((label, fmt.format(value)))
            except (ValueError, TypeError):  # a hand-edited file: show it as it is
                rows.append((label, str(value)))
    return rows


def _metrics_table(metrics: Mapping[str, Any]) -> Table:
    return Table(("score", "value"), tuple(metrics_rows(metrics)))


def _history_table(history: Mapping[str, Sequence[float]]) -> Table:
    keys = list(history)
    n = len(history[keys[0]]) if keys else 0
    formats = {"seconds": ".2f", "lr": ".4g"}  # a scheduled rate can be 4e-05
    rows = tuple((str(i + 1), *(f"{history[k][i]:{formats.get(k, '.4f')}}" for k in keys))
                 for i in range(n))
    return Table(("epoch", *keys), rows)


def _wrap(blocks: list[Block]) -> str:
    return f'<div class="{SCOPE}"><style>{CSS}</style>{render_fragment(blocks)}</div>'


def metrics_html(metrics: Mapping[str, Any]) -> str:
    return _wrap([_metrics_table(metrics)])


def history_html(history: Mapping[str, Sequence[float]]) -> str:
    return _wrap([_history_table(history)])


def run_html(info: RunInfo, summary: str = "") -> str:
    """One run: its status, test scores, curves and confusion matrix, then its summary."""
    cfg = info.config or {}
    said = [info.status, str(Path(info.path))]
    if isinstance(cfg.get("description"), str) and cfg["description"]:
        said.insert(1, cfg["description"])
    blocks: list[Block] = [Heading(3, f"run {info.name}"), Para(" · ".join(said))]
    images: list[Image] = []
    if info.history and info.history.get("loss"):
        images += [Image("loss.png", loss_png(info), "training vs validation loss"),
                   Image("accuracy.png", accuracy_png(info), "training vs validation accuracy")]
    if info.metrics and info.metrics.get("confusion") and info.metrics.get("class_names"):
        images.append(Image("confusion.png", confusion_png(info), "test confusion matrix"))
    if info.metrics:
        blocks.append(_metrics_table(info.metrics))
    if images:
        blocks.append(Panel(tuple(images)))
    if info.problems:
        blocks.append(Bullets(tuple(info.problems)))
    if summary:
        blocks.append(Code(summary.rstrip("\n"), "Model summary (summary.txt)"))
    return _wrap(blocks)

