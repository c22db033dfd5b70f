"""One run as the run page shows it: curves, status and ETA, summary, scores, confusion matrix.

Every number comes from the run directory as `runs.load_run` read it; the summary's per-layer
arithmetic is `nn.summary.describe_layers` on the run's own config (what `mnistlab summary`
prints), so the page and the command cannot disagree.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from mnistlab.rundir.directory import RunInfo, read_status
from mnistlab.serve.index import run_file, run_row

__all__ = ["run_detail", "progress", "layer_summary"]

METRIC_KEYS = ("test_loss", "test_accuracy", "f1_macro", "f1_micro", "params", "best_epoch",
               "validation", "train_seconds", "seconds_per_epoch", "seed", "dataset",
               "class_names", "per_class", "confusion", "confused_pairs", "device", "threads",
               "fast", "finished")


def progress(info: RunInfo, root: Path, history: dict[str, list[float]] | None = None
             ) -> dict[str, Any]:
    """Status, epochs done of planned, and the ETA of a running run (median epoch time x epochs
    left, less the time since the last epoch ended)."""
    history = info.history if history is None else history
    status = info.status
    raw = read_status(info.path) if run_file(info, "status.json", root) else {}
    if status == "running" and any("is gone" in p for p in info.problems):
        status = "stalled"  # its process is gone: load_run said so in `problems`
    done = len((history or {}).get("loss") or [])
    planned = ((info.config or {}).get("training") or {}).get("epochs")
    seconds = [s for s in (history or {}).get("seconds") or [] if s >= 0]
    eta = None
    if status == "running" and isinstance(planned, int) and seconds:
        per_epoch = statistics.median(seconds)
        since = 0.0
        if hist := run_file(info, "history.csv", root):
            since = max(0.0, time.time() - hist.stat().st_mtime)
        eta = max(0.0, (planned - done) * per_epoch - since)
    return {"status": status, "epochs_done": done, "epochs": planned, "eta_seconds": eta,
            "updated": raw.get("updated"), "error": raw.get("error")}


def layer_summary(config: dict | None) -> dict[str, Any] | None:
    """The model's layers with output shapes and how each parameter count is obtained."""
    if not config:
        return None
    from mnistlab.config.geometry import feature_shape
    from mnistlab.config.load import experiment_from_dict
    from mnistlab.config.optimizers import optimizer_text
    from mnistlab.data.registry import get_dataset
    from mnistlab.errors import MnistlabError
    from mnistlab.nn.summary import describe_layers

    try:
        exp = experiment_from_dict(config, "config.toml", check_memory=False)
        n_classes = len(get_dataset(exp.data.dataset).class_names)
        layers = describe_layers(exp.model, feature_shape(exp.features), n_classes)
    except (MnistlabError, ValueError, TypeError):
        return None
    rows = [{**dataclasses.asdict(layer), "params": layer.params} for layer in layers]
    return {"layers": rows, "params": sum(r["params"] for r in rows),
            "trainable": sum(layer.trainable for layer in layers),
            "optimizer": optimizer_text(exp.optimizer),
            "input_shape": list(feature_shape(exp.features))}


def run_detail(info: RunInfo, root: Path) -> dict[str, Any]:
    """Everything the run page draws, as JSON-ready data."""
    metrics = info.metrics or {}
    summary_text = None
    if path := run_file(info, "summary.txt", root):
        try:
            summary_text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            summary_text = None
    return {
        **run_row(info),
        "progress": progress(info, root),
        "history": info.history or {},
        "config": info.config,
        "metrics": {k: metrics[k] for k in METRIC_KEYS if k in metrics},
        "summary": layer_summary(info.config),
        "summary_text": summary_text,
        "has_predictions": run_file(info, "predictions.npz", root) is not None,
        "can_predict": info.status == "complete" and run_file(info, "model.pt", root) is not None,
    }
