"""One experiment end to end: data -> features -> model -> training -> a complete run directory.

Everything that can be checked is checked before the run directory exists (config, data,
features), so bad input never leaves a half-written run behind. After each epoch a checkpoint is
written; `resume_run` continues from it with the same result as an uninterrupted run. The process
writing a run directory holds its lock (`directory.lock_run_dir`), so a second `resume` of it
stops with RunInUse, and however the process ends its status.json says how.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mnistlab.atomic import atomic_write_text
from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import Experiment
from mnistlab.data.load import Splits, cache_dir, load_dataset, make_splits
from mnistlab.data.registry import DatasetSpec
from mnistlab.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    MnistlabError,
    RunError,
    RunInterrupted,
    Terminated,
    TrainingError,
)
from mnistlab.fast.precision import check_precision
from mnistlab.fast.switch import fast_enabled, plan_for
from mnistlab.features.extract import extract_features
from mnistlab.nn.build import build_model
from mnistlab.nn.optim import make_optimizer
from mnistlab.rundir.directory import (
    create_run_dir,
    lock_run_dir,
    read_status,
    runs_root,
    write_history,
    write_status,
)
from mnistlab.rundir.outputs import run_metrics, write_outputs
from mnistlab.rundir.summary_file import summary_file_text, weights_outcome
from mnistlab.rundir.tensorboard import EventLog, require_tensorboard
from mnistlab.training.augment import augmented_plan, make_augmenter
from mnistlab.training.checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from mnistlab.training.device import resolve_device, set_threads
from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.interrupt import StopFlag, StopTraining, stop_on_interrupt
from mnistlab.training.loop import History, evaluate, fit
from mnistlab.training.schedules import LearningRateSchedule
from mnistlab.training.steps import TrainingPlan

__all__ = ["Reporter", "RunResult", "prepare_data", "run_experiment", "resume_run"]


class Reporter(Protocol):
    """What a progress display receives (the CLI passes a rich one; the library none)."""

    def start(self, name: str, epochs: int, first_epoch: int) -> None: ...
    def batch(self, done: int, total: int) -> None: ...
    def epoch(self, epoch: int, logs: dict[str, float]) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]


def prepare_data(exp: Experiment, data_dir: str | Path | None = None
                 ) -> tuple[Splits, DatasetSpec]:
    """Load the dataset, extract features (cached for HOG) and hold out validation data."""
    ds = load_dataset(exp.data.dataset, data_dir)
    n_train, n_test = exp.data.train_samples or None, exp.data.test_samples or None
    sha = ds.spec.sha256
    x_train = extract_features(exp.features, ds.train_images[:n_train],
                               f"{sha['train-images']}[:{n_train}]", cache_dir())
    x_test = extract_features(exp.features, ds.test_images[:n_test],
                              f"{sha['test-images']}[:{n_test}]", cache_dir())
    splits = make_splits(x_train, ds.train_labels[:n_train], x_test, ds.test_labels[:n_test],
                         exp.data.validation, exp.training.seed)
    return splits, ds.spec


def _tensors(splits: Splits, device: torch.device):
    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return ((t(splits.x_train), t(splits.y_train)), (t(splits.x_val), t(splits.y_val)),
            (t(splits.x_test), t(splits.y_test)))


def run_experiment(exp: Experiment, runs_dir: str | Path | None = None,
                   data_dir: str | Path | None = None, reporter: Reporter | None = None
                   ) -> RunResult:
    """Train `exp` into a new run directory and return its metrics.

    The run's config.toml records `training.fast` as it applies (false when `MNISTLAB_FAST=0`
    switched the speed-ups off), and metrics.json lists what they changed. With
    `output.tensorboard` the run also writes TensorBoard event files (`rundir.tensorboard`).
    """
    if exp.output.tensorboard:
        require_tensorboard()
    exp = dataclasses.replace(exp, training=dataclasses.replace(
        exp.training, fast=fast_enabled(exp.training)))
    splits, spec = prepare_data(exp, data_dir)  # DataError here: no run directory yet
    device = resolve_device(exp.training.device)
    check_precision(exp.training, device)
    run_dir = create_run_dir(runs_root(runs_dir), exp.output.name or "run")
    in_shape = tuple(splits.x_train.shape[1:])
    n_classes = len(spec.class_names)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(lock_run_dir(run_dir))
            write_status(run_dir, "running")
            atomic_write_text(run_dir / "config.toml", to_toml(exp))
            atomic_write_text(run_dir / "summary.txt", summary_file_text(exp, in_shape, n_classes))
        except BaseException:  # disk full, folder gone, Ctrl-C: leave no half-made run behind
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return _train_into(run_dir, exp, splits, spec, device, None, reporter,
                           tensorboard=exp.output.tensorboard)


def resume_run(run_dir: str | Path, data_dir: str | Path | None = None,
               reporter: Reporter | None = None, tensorboard: bool = False) -> RunResult:
    """Continue an interrupted (or failed-by-crash) run from its last checkpoint.

    TensorBoard events are written when the run's config asks for them or `tensorboard` is
    true; the run's event log goes on where it stopped.

    Raises RunInUse, before anything else, while another process trains or resumes the run.
    """
    import tomllib

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a run directory; cannot resume")
    with lock_run_dir(run_dir):
        status = read_status(run_dir)["status"]
        if status == "complete":
            raise RunError(f"{run_dir}: run is already complete; nothing to resume")
        try:
            raw = tomllib.loads((run_dir / "config.toml").read_text())
        except (OSError, ValueError) as exc:
            raise RunError(f"{run_dir}/config.toml: unreadable ({exc}); cannot resume") from None
        exp = experiment_from_dict(raw, str(run_dir / "config.toml"))
        tensorboard = tensorboard or exp.output.tensorboard
        if tensorboard:
            require_tensorboard()
        checkpoint = None
        if (run_dir / "checkpoint.pt").exists():
            checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
            if checkpoint.get("config_digest") != config_digest(exp):
                raise RunError(f"{run_dir}: checkpoint does not belong to this config.toml")
        splits, spec = prepare_data(exp, data_dir)
        device = resolve_device(exp.training.device)
        check_precision(exp.training, device)
        return _train_into(run_dir, exp, splits, spec, device, checkpoint, reporter,
                           resumed=True, tensorboard=tensorboard)


@dataclass
class _Trained:
    """What training hands to writing the outputs."""

    model: torch.nn.Module
    plan: TrainingPlan
    test: tuple[torch.Tensor, torch.Tensor]
    threads: int
    events: EventLog | None = None
    stopper: EarlyStopping | None = None


def _train_into(run_dir: Path, exp: Experiment, splits: Splits, spec: DatasetSpec,
                device: torch.device, checkpoint: dict | None, reporter: Reporter | None,
                resumed: bool = False, tensorboard: bool = False) -> RunResult:
    """Train, then write the outputs; status.json never stays "running" on the way out: it
    ends "complete", "interrupted" (Ctrl-C or SIGTERM, anywhere) or "failed" with the reason.

    The signal handlers stay armed throughout: inside the batch loop a first signal stops at
    the next batch boundary; before and after it (building the model, writing the outputs) it
    stops at once, and the last epoch checkpoint lets `resume` redo what is missing.
    """
    history = History()
    with stop_on_interrupt() as stop, contextlib.ExitStack() as held:
        stop.immediate = True
        try:
            trained = _fit_run(run_dir, exp, splits, spec, device, checkpoint, reporter,
                               history, stop, resumed, held if tensorboard else None)
        except (RunInterrupted, CheckpointMismatch):  # a checkpoint that does not fit: the
            raise  # status stays as it was (it was not set to "running")
        except KeyboardInterrupt as exc:  # a second signal, or one before training started
            _record(run_dir, "interrupted", epochs_done=len(history), signal=_signal_of(exc))
            raise
        except Exception as exc:  # NaN loss, disk full, out of memory building the model...
            if isinstance(exc, TrainingError):
                with contextlib.suppress(RunError):
                    write_history(run_dir / "history.csv", history.as_dict())
            _record(run_dir, "failed", error=_reason(exc), epochs_done=len(history))
            raise
        try:
            return _finish_run(run_dir, exp, spec, splits, history, trained, device)
        except KeyboardInterrupt as exc:
            _record(run_dir, "interrupted", epochs_done=len(history), signal=_signal_of(exc),
                    stage="outputs")
            terminated = isinstance(exc, Terminated)
            raise RunInterrupted(
                f"{'terminated (SIGTERM)' if terminated else 'interrupted'} while writing the "
                f"final outputs (all {len(history)} epochs are trained). Write them with: "
                f"mnistlab resume {run_dir}", run_dir,
                EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
        except Exception as exc:  # the last checkpoint is intact: `resume` writes these again
            _record(run_dir, "failed", error=_reason(exc), epochs_done=len(history))
            raise


def _fit_run(run_dir: Path, exp: Experiment, splits: Splits, spec: DatasetSpec,
             device: torch.device, checkpoint: dict | None, reporter: Reporter | None,
             history: History, stop: StopFlag, resumed: bool = False,
             events_held: contextlib.ExitStack | None = None) -> _Trained:
    """Build, restore and train; with `events_held` the TensorBoard log opens once the
    history is restored, and closes when that stack does."""
    threads = set_threads(exp.training.threads)
    in_shape = tuple(splits.x_train.shape[1:])
    digest = config_digest(exp)
    stock = build_model(exp.model, in_shape, len(spec.class_names),
                        seed=exp.training.seed).to(device)
    plan = plan_for(stock, exp.training, exp.model, device, getattr(reporter, "note", None))
    augment = make_augmenter(exp.augmentation, exp.training.seed)
    if augment is not None:
        plan = augmented_plan(plan)
    model = plan.model  # shares the stock model's parameters; state-dict names are the same
    optimizer = make_optimizer(model.parameters(), exp.optimizer)
    batches = -(-len(splits.y_train) // exp.training.batch_size)
    schedule = (LearningRateSchedule(exp.schedule, exp.optimizer.learning_rate, batches,
                                     exp.training.epochs) if exp.schedule.active else None)
    stopper = EarlyStopping(exp.early_stopping) if exp.early_stopping.enabled else None
    callbacks = {"schedule": schedule, "early_stopping": stopper}
    position = None
    if checkpoint is not None:
        position = restore_checkpoint(checkpoint, model, optimizer, history,
                                      run_dir / "checkpoint.pt")
        saved = checkpoint.get("callbacks") or {}
        for name, callback in callbacks.items():
            if callback is not None and saved.get(name) is not None:
                callback.load_state_dict(saved[name])
        missing = len(history.loss) - len(history.lr)  # checkpoints from before schedules
        history.lr.extend([exp.optimizer.learning_rate] * missing)  # had one constant rate
    if resumed:  # only now: a checkpoint that does not fit leaves the status as it was
        write_status(run_dir, "running", resumed=True)
    events = None
    if events_held is not None:
        events = events_held.enter_context(contextlib.closing(
            EventLog(run_dir, exp.to_dict(), history.as_dict())))
    train, val, test = _tensors(splits, device)

    def save(position=None) -> None:
        save_checkpoint(run_dir / "checkpoint.pt", model, optimizer, history, digest, position,
                        {k: c.state_dict() for k, c in callbacks.items() if c is not None})
        write_history(run_dir / "history.csv", history.as_dict())

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        save()
        if events is not None:  # after the checkpoint: a resume rewrites what this misses
            events.epoch(epoch + 1, logs)
        if reporter:
            reporter.epoch(epoch, logs)

    if reporter:
        reporter.start(exp.output.name, exp.training.epochs, len(history))
    try:
        stop.immediate = False  # from here a first signal waits for a batch boundary
        fit(model, optimizer, train, val, exp.training, history, on_epoch,
            reporter.batch if reporter else None, position, stop, plan, augment, schedule,
            stopper)
        stop.immediate = True
    except StopTraining as halt:
        stop.immediate = True
        # At a batch boundary: save the exact mid-epoch state (the per-epoch checkpoint
        # already holds an epoch boundary).
        pos = halt.position
        if pos is not None:
            save(pos)
        where = f"epoch {len(history)}" + (f" + {pos.batch} batches" if pos else "")
        write_status(run_dir, "interrupted", epochs_done=len(history),
                     batches_done=pos.batch if pos else 0, signal=stop.signal_name)
        raise RunInterrupted(f"{stop.cause} after {where}; checkpoint saved. Continue with: "
                             f"mnistlab resume {run_dir}", run_dir, stop.exit_code) from None
    finally:
        if reporter:
            reporter.stop()
    return _Trained(model, plan, test, threads, events, stopper)


def _finish_run(run_dir: Path, exp: Experiment, spec: DatasetSpec, splits: Splits,
                history: History, trained: _Trained, device: torch.device) -> RunResult:
    """Test-set evaluation and every output file, then status "complete"."""
    in_shape = tuple(splits.x_train.shape[1:])
    result = evaluate(trained.model, *trained.test, batch_size=trained.plan.eval_batch_size,
                      label_smoothing=exp.training.label_smoothing)
    metrics = run_metrics(exp, spec, splits, result, history, in_shape, device,
                          trained.threads, trained.plan.applied)
    if trained.stopper is not None:
        record = trained.stopper.record(len(history), exp.training.epochs)
        metrics["early_stopping"] = record
        outcome = weights_outcome(record, len(history), exp.training.epochs)
        atomic_write_text(run_dir / "summary.txt", summary_file_text(
            exp, in_shape, len(spec.class_names), outcome))
    write_outputs(run_dir, exp, spec, splits, result, history, trained.model, metrics)
    if trained.events is not None:
        trained.events.finish(run_dir, history.as_dict(), metrics)
    write_status(run_dir, "complete", epochs_done=len(history))
    return RunResult(run_dir, metrics, history.as_dict())


def _reason(exc: BaseException) -> str:
    """One line for status.json: mnistlab's own message, else the exception's type and text."""
    text = str(exc) if isinstance(exc, MnistlabError) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _signal_of(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def _record(run_dir: Path, status: str, **extra: Any) -> None:
    """Record how the run ended if the disk still lets us (it may be the full one)."""
    with contextlib.suppress(RunError):
        write_status(run_dir, status, **extra)
