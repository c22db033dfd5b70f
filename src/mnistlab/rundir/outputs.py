"""What a finished run writes: metrics.json (scores, size, timing, versions), history.csv,
predictions.npz, model.pt and the plots. Every file goes through the atomic writer, so a Ctrl-C
while they are written leaves each one old or new, and `resume` writes what is missing.
"""

from __future__ import annotations

import io
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mnistlab import __version__
from mnistlab.atomic import atomic_write_bytes
from mnistlab.config.identity import config_digest
from mnistlab.config.sections import Experiment
from mnistlab.data.load import Splits
from mnistlab.data.registry import DatasetSpec
from mnistlab.nn.summary import count_parameters
from mnistlab.rundir.directory import write_history, write_json
from mnistlab.rundir.metrics import classification_scores
from mnistlab.training.loop import EvalResult, History

__all__ = ["run_metrics", "write_outputs", "versions"]


def versions() -> dict[str, str]:
    import sklearn

    return {"mnistlab": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "platform": platform.platform()}


def run_metrics(exp: Experiment, spec: DatasetSpec, splits: Splits, result: EvalResult,
                history: History, in_shape: tuple[int, ...], device: torch.device, threads: int,
                fast_applied: tuple[str, ...] = ()) -> dict:
    """metrics.json: test scores (scikit-learn), the run's size, length, timing and settings.
    `threads` is the count at the start (trainers sharing the machine may take fewer for a
    while); `fast` lists what mnistlab.fast changed (empty when it was off)."""
    scores = classification_scores(splits.y_test, result.predictions, spec.class_names)
    val_loss = history.val_loss
    return {
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        **{k: v for k, v in scores.items() if k != "accuracy"},
        "params": count_parameters(exp.model, in_shape, len(spec.class_names)),
        "input_shape": list(in_shape),
        "epochs": len(history),
        "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss else None,
        "validation": "test" if splits.validation_is_test else exp.data.validation,
        "train_seconds": float(sum(history.seconds)),
        "seconds_per_epoch": float(np.median(history.seconds)) if history.seconds else None,
        "seed": exp.training.seed,
        "config_digest": config_digest(exp),
        "dataset": spec.name,
        "class_names": list(spec.class_names),
        "device": str(device),
        "threads": threads,
        "versions": versions(),
        "fast": list(fast_applied),
        "precision": exp.training.precision,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_outputs(run_dir: Path, exp: Experiment, spec: DatasetSpec, splits: Splits,
                  result: EvalResult, history: History, model: torch.nn.Module,
                  metrics: dict) -> None:
    """history.csv, predictions.npz, model.pt, metrics.json and the plots, each atomically."""
    write_history(run_dir / "history.csv", history.as_dict())
    buf = io.BytesIO()
    # test_index: each row's position in the dataset's test split (the report shows the
    # misclassified images from it); runs written before it have the whole split in order.
    np.savez_compressed(buf, y_true=splits.y_test, y_pred=result.predictions,
                        probabilities=result.probabilities.astype(np.float32),
                        test_index=np.arange(len(splits.y_test), dtype=np.int64))
    atomic_write_bytes(run_dir / "predictions.npz", buf.getvalue())
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(run_dir / "model.pt", buf.getvalue())
    write_json(run_dir / "metrics.json", metrics)
    if exp.output.plots:
        from mnistlab.plots import confusion_figure, curves_figure, save_figure

        name = exp.output.name
        h = history.as_dict()
        on_test = metrics.get("validation") == "test"
        save_figure(curves_figure(h, "loss", f"{name}: loss per epoch", validation_is_test=on_test),
                    run_dir / "loss.png")
        save_figure(curves_figure(h, "accuracy", f"{name}: accuracy per epoch",
                                  validation_is_test=on_test), run_dir / "accuracy.png")
        save_figure(confusion_figure(metrics["confusion"], spec.class_names,
                                     f"{name}: test confusion matrix "
                                     f"(acc {metrics['test_accuracy']:.4f})"),
                    run_dir / "confusion.png")
