"""A rich progress display for training: one bar per epoch with the metrics Keras would print."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["RichReporter"]


class RichReporter:
    """Shows batches within the current epoch, and one line per finished epoch."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None
        self.epochs = 0

    def start(self, name: str, epochs: int, first_epoch: int) -> None:
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[logs]}"), TimeRemainingColumn(),
            # Transient, and off when the console is not a terminal: the permanent record is the
            # one line per finished epoch, so a piped log never ends on a stale bar.
            console=self.console, transient=True, disable=not self.console.is_terminal,
        )
        self.progress.start()
        self.task = self.progress.add_task(f"{name} epoch {first_epoch + 1}/{epochs}",
                                           total=None, logs="")
        self._epoch = first_epoch

    def note(self, text: str) -> None:
        """A one-line message before training starts (e.g. a kernel being compiled)."""
        self.console.print(text, style="dim", highlight=False)

    def batch(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.progress is None:
            return
        text = (f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
                f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f} "
                f"{logs['seconds']:.2f}s")
        self.progress.console.print(f"epoch {epoch + 1:>4}/{self.epochs}  {text}",
                                    highlight=False)
        if epoch + 1 < self.epochs:
            self.progress.update(self.task, description=f"epoch {epoch + 2}/{self.epochs}",
                                 completed=0, logs=text)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
