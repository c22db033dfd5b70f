"""Finished runs into MLflow, from their run directories alone (`mnistlab runs export --mlflow`).

Each run becomes one MLflow run: params from config.toml (flat `section.key`), the history.csv
columns as metrics with step = epoch, the test scores, the files as artifacts (config, summary,
history, metrics, predictions, model.pt, plots, TensorBoard events), and tags naming the run.
The tag `mnistlab_run_id` (the run directory's name) makes exporting twice harmless: a finished
MLflow run with it is skipped; one left unfinished by an export that broke off is deleted and
written again. mlflow is imported only here, when exporting (it takes seconds to import).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError, RunError
from mnistlab.rundir.tracking import TEST_METRICS, flat_params, require_extra

__all__ = ["ExportOutcome", "RUN_ID_TAG", "export_runs", "export_run", "require_mlflow"]

RUN_ID_TAG = "mnistlab_run_id"
# file in the run -> artifact folder in MLflow ("" = top level)
ARTIFACTS = {"config.toml": "", "summary.txt": "", "metrics.json": "", "history.csv": "",
             "predictions.npz": "", "model.pt": "model", "loss.png": "plots",
             "accuracy.png": "plots", "confusion.png": "plots"}
FINAL_METRICS = (*TEST_METRICS, "train_seconds", "seconds_per_epoch")
_BATCH = 100  # MLflow takes at most 100 params and 1000 metrics per log_batch call


@dataclass(frozen=True)
class ExportOutcome:
    run_dir: Path
    action: str  # created | replaced (an unfinished earlier export) | skipped | failed
    detail: str  # the MLflow run id, or why nothing was exported


def require_mlflow() -> None:
    """ConfigError naming `pip install 'mnistlab[mlflow]'` when mlflow is not installed."""
    require_extra("mlflow", "mlflow", "mnistlab runs export --mlflow")


def export_runs(run_dirs: Iterable[str | Path], tracking_uri: str, experiment: str = "mnistlab",
                artifact_location: str | None = None,
                on_outcome: Callable[[ExportOutcome], None] | None = None
                ) -> list[ExportOutcome]:
    """Export each run on its own: one that fails is an outcome, not an exception.

    Raises ConfigError without mlflow, RunError when the tracking store cannot be used.
    """
    require_mlflow()
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment, artifact_location)
    except MnistlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one line says which
        raise RunError(f"{tracking_uri}: cannot use this MLflow tracking URI ({_first(exc)})"
                       ) from None
    outcomes = []
    for run_dir in run_dirs:
        try:
            outcome = export_run(client, experiment_id, Path(run_dir))
        except MnistlabError as exc:
            outcome = ExportOutcome(Path(run_dir), "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - the store refused: say so, go on
            outcome = ExportOutcome(Path(run_dir), "failed", f"MLflow: {_first(exc)}")
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _first(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if found.lifecycle_stage != "active":
        raise RunError(f"MLflow experiment {name!r} is deleted; restore it or pass another "
                       "--experiment")
    return found.experiment_id


def export_run(client: Any, experiment_id: str, run_dir: Path) -> ExportOutcome:
    """One complete run into the experiment (see the module docstring for what is logged)."""
    from mnistlab.rundir.directory import load_run

    info = load_run(run_dir)
    if info.status != "complete" or not info.config or not info.metrics or not info.history:
        why = "; ".join(info.problems) or f"status is {info.status!r}, not complete"
        raise RunError(f"{run_dir}: not exported ({why})")
    name = info.name
    quote = '"' if "'" in name else "'"
    earlier = client.search_runs([experiment_id], f"tags.{RUN_ID_TAG} = {quote}{name}{quote}")
    done = [r for r in earlier if r.info.status == "FINISHED"]
    if done:
        return ExportOutcome(run_dir, "skipped", f"already exported as MLflow run "
                                                 f"{done[0].info.run_id}")
    for r in earlier:  # an export that broke off: written again from the start
        client.delete_run(r.info.run_id)
    end_ms = _finished_ms(info.metrics)
    start_ms = end_ms - int(1000 * float(info.metrics.get("train_seconds") or 0.0))
    run = client.create_run(experiment_id, start_time=start_ms, run_name=name,
                            tags=_tags(info.config, info.metrics, name))
    run_id = run.info.run_id
    try:
        _log_values(client, run_id, info.config, info.history, info.metrics, start_ms)
        for file, folder in ARTIFACTS.items():
            if (run_dir / file).is_file():
                client.log_artifact(run_id, str(run_dir / file), folder or None)
        if (run_dir / "tensorboard").is_dir():
            client.log_artifacts(run_id, str(run_dir / "tensorboard"), "tensorboard")
        client.set_terminated(run_id, "FINISHED", end_time=end_ms)
    except BaseException:
        with contextlib.suppress(Exception):  # left FAILED: the next export replaces it
            client.set_terminated(run_id, "FAILED")
        raise
    return ExportOutcome(run_dir, "replaced" if earlier else "created", f"MLflow run {run_id}")


def _finished_ms(metrics: dict[str, Any]) -> int:
    """metrics.json's `finished` (local time) in ms since the epoch; now when it is unreadable."""
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        return int(1000 * time.mktime(time.strptime(metrics["finished"], "%Y-%m-%dT%H:%M:%S")))
    return int(1000 * time.time())


def _tags(config: dict[str, Any], metrics: dict[str, Any], name: str) -> dict[str, str]:
    versions = metrics.get("versions") or {}
    tags = {RUN_ID_TAG: name, "mnistlab_config_digest": str(metrics.get("config_digest", "")),
            "mnistlab_version": str(versions.get("mnistlab", "")),
            "dataset": str(metrics.get("dataset", "")),
            "validation": str(metrics.get("validation", "")),
            "device": str(metrics.get("device", ""))}
    if config.get("description"):
        tags["mlflow.note.content"] = str(config["description"])
    return tags


def _log_values(client: Any, run_id: str, config: dict[str, Any],
                history: dict[str, list[float]], metrics: dict[str, Any], start_ms: int) -> None:
    """Params, per-epoch metrics (timestamps from the epochs' seconds) and the final scores."""
    from mlflow.entities import Metric, Param

    params = [Param(k, v if isinstance(v, str) else json.dumps(v))
              for k, v in flat_params(config).items() if k != "description"]
    seconds = history.get("seconds") or [0.0] * len(history.get("loss", []))
    stamps = [start_ms + int(1000 * s) for s in itertools.accumulate(seconds)]
    values = [Metric(key, float(v), stamps[i], i + 1)
              for key, column in history.items() for i, v in enumerate(column)]
    last = len(history.get("loss", []))
    values += [Metric(key, float(metrics[key]), stamps[-1] if stamps else start_ms, last)
               for key in FINAL_METRICS if isinstance(metrics.get(key), int | float)]
    for i in range(0, len(params), _BATCH):
        client.log_batch(run_id, params=params[i:i + _BATCH])
    for i in range(0, len(values), 10 * _BATCH):
        client.log_batch(run_id, metrics=values[i:i + 10 * _BATCH])
