"""TensorBoard event files in a run directory, so `tensorboard --logdir runs` shows every run.

With `output.tensorboard = true` (or `--tensorboard`) training writes `<run>/tensorboard/`
through tensorboardX (a light writer; TensorBoard itself is needed only to look): after each
epoch the history row as scalars at step = epoch (1-based, as in history.csv), and at the end
the plots as images and the config as hyperparameters with the test scores as their metrics.
A resumed run continues the same log: epochs already written are not written again, ones the
interruption lost are written from the restored history, and any written beyond the checkpoint
are purged (TensorBoard drops them). `write_run_events` does the same for a finished run from
its files alone.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import RunError
from mnistlab.rundir.tracking import TEST_METRICS, flat_params, require_extra

__all__ = ["TB_DIR", "SCALAR_TAGS", "EventLog", "require_tensorboard", "written_events",
           "has_events", "write_run_events"]

TB_DIR = "tensorboard"  # the event files' folder inside a run directory
# history.csv column -> TensorBoard tag (a column not listed keeps its own name)
SCALAR_TAGS = {"loss": "loss/train", "val_loss": "loss/validation",
               "accuracy": "accuracy/train", "val_accuracy": "accuracy/validation",
               "lr": "learning_rate", "seconds": "seconds_per_epoch"}
IMAGE_TAGS = {"loss": "plots/loss", "accuracy": "plots/accuracy",
              "confusion": "plots/confusion_matrix"}  # <name>.png in the run -> image tag


def require_tensorboard() -> None:
    """ConfigError naming the pip command when tensorboardX is missing (checked before work)."""
    require_extra("tensorboardX", "tensorboard", "output.tensorboard = true (--tensorboard)")


def _records(path: Path) -> Iterator[bytes]:
    """TFRecord payloads (length, crc, data, crc); a record cut short by a crash ends it."""
    with open(path, "rb") as fh:
        while len(head := fh.read(12)) == 12:
            (length,) = struct.unpack("<Q", head[:8])
            data = fh.read(length)
            if len(data) < length or len(fh.read(4)) < 4:
                return
            yield data


def written_events(log_dir: Path) -> tuple[set[int], set[str]]:
    """The epoch steps and every tag a run's event files hold, with TensorBoard's purge rule
    applied (a session start at step s drops what was written at steps >= s before it)."""
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    epoch_tags = set(SCALAR_TAGS.values())
    steps: set[int] = set()
    tags: set[str] = set()
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for data in _records(path):
            try:
                event = Event.FromString(data)
            except DecodeError:  # a damaged record: TensorBoard stops reading the file there
                break
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                steps = {s for s in steps if s < event.step}
            for value in event.summary.value:
                tags.add(value.tag)
                if value.tag in epoch_tags:
                    steps.add(int(event.step))
    return steps, tags


class EventLog:
    """One run's event log, opened where its history stands; `epoch()` after each epoch,
    `finish()` once the outputs are written, `close()` always."""

    def __init__(self, run_dir: Path, config: dict[str, Any],
                 history: dict[str, list[float]]):
        require_tensorboard()
        from tensorboardX import SummaryWriter

        self.log_dir = Path(run_dir) / TB_DIR
        self.config = config
        self.learning_rate = float(config.get("optimizer", {}).get("learning_rate", "nan"))
        done = len(history.get("loss", []))
        steps, self.tags = (written_events(self.log_dir) if self.log_dir.is_dir()
                            else (set(), set()))
        beyond = any(s > done for s in steps)
        # tensorboardX names files by second and host: a resume within the same second would
        # overwrite the file before it without a suffix of its own
        part = len(list(self.log_dir.glob("events.out.tfevents.*"))) + 1
        self.writer = SummaryWriter(str(self.log_dir), purge_step=done + 1 if beyond else None,
                                    flush_secs=30, filename_suffix=f".{part:03d}")
        for i in range(done):  # epochs the log lacks (interrupted between checkpoint and log)
            if i + 1 not in steps:
                self.epoch(i + 1, {k: v[i] for k, v in history.items()})

    def epoch(self, step: int, logs: dict[str, float]) -> None:
        """One history row (plus the learning rate from the config when it has no `lr`)."""
        values = {SCALAR_TAGS.get(k, k): float(v) for k, v in logs.items()}
        values.setdefault("learning_rate", self.learning_rate)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def finish(self, run_dir: Path, history: dict[str, list[float]],
               metrics: dict[str, Any]) -> None:
        """The plots as images and the hyperparameters with the test scores, at the last
        epoch's step; skipped when an earlier attempt at the outputs already wrote them."""
        if "test/loss" in self.tags:
            return
        from tensorboardX.summary import hparams

        step = len(history.get("loss", []))
        for name, image in _plot_images(Path(run_dir), self.config, history, metrics).items():
            self.writer.add_image(IMAGE_TAGS[name], image, step, dataformats="HWC")
        scores = {f"test/{k.removeprefix('test_')}": float(metrics[k]) for k in TEST_METRICS
                  if isinstance(metrics.get(k), int | float)}
        params = {k: v for k, v in flat_params(self.config).items()
                  if k.split(".")[0] not in ("output", "description")}
        for summary in hparams(params, scores):
            self.writer.file_writer.add_summary(summary, step)
        for tag, value in scores.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _plot_images(run_dir: Path, config: dict[str, Any], history: dict[str, list[float]],
                 metrics: dict[str, Any]) -> dict[str, np.ndarray]:
    """(H, W, 3) uint8 images: the run's own PNGs, or drawn now when it has none
    (output.plots = false)."""
    from PIL import Image

    from mnistlab import plots

    name = config.get("output", {}).get("name", run_dir.name)
    on_test = metrics.get("validation") == "test"
    images = {}
    for key in IMAGE_TAGS:
        path = run_dir / f"{key}.png"
        if path.is_file():
            with Image.open(path) as img:
                images[key] = np.asarray(img.convert("RGB"))
            continue
        if key == "confusion":
            fig = plots.confusion_figure(metrics["confusion"], metrics["class_names"],
                                         f"{name}: test confusion matrix")
        else:
            fig = plots.curves_figure(history, key, f"{name}: {key} per epoch",
                                      validation_is_test=on_test)
        from matplotlib import pyplot  # after plots has chosen the Agg backend

        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        pyplot.close(fig)
        images[key] = np.asarray(Image.open(buf).convert("RGB"))
    return images


def has_events(run_dir: Path) -> bool:
    return any((Path(run_dir) / TB_DIR).glob("events.out.tfevents.*"))


def write_run_events(run_dir: str | Path) -> bool:
    """Event files for a finished run from its history.csv, metrics.json, config and plots;
    False (nothing written) when the run already has them.

    Raises RunError for a run that is not complete or is damaged.
    """
    from mnistlab.rundir.directory import load_run

    info = load_run(run_dir)
    if info.status != "complete" or not info.config or not info.history or not info.metrics:
        why = "; ".join(info.problems) or f"status {info.status}"
        raise RunError(f"{info.path}: not a complete run ({why}); nothing written")
    if has_events(info.path):
        return False
    log = EventLog(info.path, info.config, info.history)
    try:
        log.finish(info.path, info.history, info.metrics)
    finally:
        log.close()
    return True
