"""A run seen from Python: what `mnistlab.run_experiment`, `resume_run` and `load_run` return.

One object for a run just trained and for one read back from disk, built from the run directory
(the contract): history and metrics as recorded, and the trained network rebuilt from model.pt
the way `mnistlab predict` rebuilds it (stock torch.nn modules, on the CPU, in eval mode, however
the fast path trained it), so `run.predict(images)` gives what `mnistlab predict` gives. In
Jupyter it shows as HTML (summary, curves, confusion matrix, test scores); training there shows
a progress bar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import Experiment
from mnistlab.errors import RunError
from mnistlab.notebook.display import history_html, metrics_html, run_html
from mnistlab.notebook.images import Predictions, predict_images
from mnistlab.notebook.progress import default_reporter
from mnistlab.predict.predictor import Predictor, load_predictor
from mnistlab.rundir import directory, execute

__all__ = ["Run", "HistoryTable", "Metrics", "run_experiment", "resume_run", "load_run"]


class HistoryTable(dict):
    """Per-epoch values by name (`history["val_loss"]`, as Keras' `History.history`); `rows()`
    gives one dict per epoch, and Jupyter shows it as a table."""

    @property
    def epochs(self) -> int:
        return len(next(iter(self.values()), []))

    def rows(self) -> list[dict[str, float]]:
        return [{"epoch": i + 1, **{k: v[i] for k, v in self.items()}}
                for i in range(self.epochs)]

    def _repr_html_(self) -> str:
        return history_html(self)


class Metrics(dict):
    """metrics.json as a dict (`metrics["test_accuracy"]`); Jupyter shows its scores as a table."""

    def _repr_html_(self) -> str:
        return metrics_html(self)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Run:
    """A run directory: status, config, history and metrics as recorded; the trained `model`
    and `predict` once the run is complete. Damaged content is listed in `problems`."""

    run_dir: Path
    status: str  # complete, running, interrupted, failed or corrupt
    config: dict[str, Any] | None  # config.toml as read (None when it does not validate)
    metrics: Metrics | None  # metrics.json (complete runs only)
    history: HistoryTable | None  # history.csv: per-epoch loss, accuracy, val_*, seconds
    problems: list[str]

    @classmethod
    def from_info(cls, info: directory.RunInfo) -> Run:
        return cls(info.path, info.status, info.config,
                   Metrics(info.metrics) if info.metrics is not None else None,
                   HistoryTable(info.history) if info.history is not None else None,
                   list(info.problems))

    @property
    def path(self) -> Path:
        return self.run_dir

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def info(self) -> directory.RunInfo:
        """The listing's view of this run (what `mnistlab runs` and the report read)."""
        return directory.RunInfo(self.run_dir, self.status, self.config, self.metrics,
                                 self.history, self.problems)

    @cached_property
    def predictor(self) -> Predictor:
        """The run's network and features, loaded on first use (what `mnistlab predict` uses).

        Raises:
            RunError: the run is not complete, or its weights cannot be read.
        """
        if self.status != "complete":
            why = "; ".join(self.problems) or "no trained model"
            raise RunError(f"{self.run_dir}: run is {self.status} ({why}); only a complete run "
                           f"has a trained model (an interrupted one: mnistlab resume "
                           f"{self.run_dir})")
        return load_predictor(self.run_dir)

    @property
    def model(self):
        """The trained network: stock `torch.nn.Sequential`, on the CPU, in eval mode."""
        return self.predictor.model

    @cached_property
    def experiment(self) -> Experiment:
        """The validated configuration the run was trained with (its config.toml).

        Raises:
            RunError: config.toml is missing or does not validate (see `problems`).
        """
        if self.config is None:
            why = "; ".join(self.problems) or "missing"
            raise RunError(f"{self.run_dir / 'config.toml'}: no usable configuration ({why})")
        return experiment_from_dict(self.config, str(self.run_dir / "config.toml"),
                                    check_memory=False)

    @property
    def summary(self) -> str:
        """summary.txt: the layers, output shapes and parameter arithmetic ("" if missing)."""
        try:
            return (self.run_dir / "summary.txt").read_text(encoding="utf-8")
        except OSError:
            return ""

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> Predictions:
        """Classes and probabilities for images given as arrays, after `mnistlab predict`'s own
        preparation (polarity, crop, the dataset's framing).

        Args:
            images: one (H, W) image, an (N, H, W) batch or a list of (H, W) images; uint8
                0-255 or floats in [0, 1], light ink on dark or dark ink on light.

        Raises:
            ConfigError: arrays that are not grayscale images.
            RunError: the run has no usable trained model.
        """
        return predict_images(self.predictor, images)

    def _repr_html_(self) -> str:
        return run_html(self.info, self.summary)

    def __repr__(self) -> str:
        acc = (self.metrics or {}).get("test_accuracy")
        score = f", test_accuracy={acc:.4f}" if isinstance(acc, int | float) else ""
        return f"Run({str(self.run_dir)!r}, status={self.status!r}{score})"


def load_run(run: str | Path, runs_dir: str | Path | None = None) -> Run:
    """A run directory (a path, or a run's name inside the runs folder) as a `Run`.

    Never raises on damaged content: such a run has status "corrupt" and says why in
    `problems`; its `model` and `predict` raise RunError.

    Raises:
        RunError: no such run directory.
    """
    return Run.from_info(directory.load_run(directory.resolve_run_dir(run, runs_dir)))


def run_experiment(exp: Experiment, runs_dir: str | Path | None = None,
                   data_dir: str | Path | None = None,
                   reporter: execute.Reporter | None = None, *,
                   progress: bool | None = None) -> Run:
    """Train `exp` into a new run directory and return the finished run.

    Args:
        progress: None (default) shows a progress bar inside Jupyter and nothing in a script;
            True always, False never. An explicit `reporter` takes its place.
    """
    reporter = reporter if reporter is not None else default_reporter(progress)
    return load_run(execute.run_experiment(exp, runs_dir, data_dir, reporter).run_dir)


def resume_run(run_dir: str | Path, data_dir: str | Path | None = None,
               reporter: execute.Reporter | None = None, *,
               progress: bool | None = None) -> Run:
    """Continue an interrupted run from its last checkpoint and return the finished run."""
    reporter = reporter if reporter is not None else default_reporter(progress)
    return load_run(execute.resume_run(run_dir, data_dir, reporter).run_dir)
