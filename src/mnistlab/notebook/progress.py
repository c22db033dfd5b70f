"""Training progress for Python callers: a rich bar that draws in Jupyter (as a widget) and in a
terminal, shown by default only inside a Jupyter kernel, so plain scripts stay silent.

The CLI keeps its own display (`commands/progress.py`); this one keeps every finished epoch's
line above the bar, because a notebook cell is read after the fact, not watched.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

__all__ = ["ProgressReporter", "in_notebook", "has_widgets", "default_reporter"]


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's kernel shell, Colab's included).

    IPython is never imported here: if no one imported it, this is not a kernel.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a broken or stub IPython means: no kernel to draw in
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def has_widgets() -> bool:
    """Whether ipywidgets is installed: rich draws its live bar in Jupyter as a widget."""
    return importlib.util.find_spec("ipywidgets") is not None


class _EpochProgress(Progress):
    """A Progress whose display is the finished epochs' lines, then the bars."""

    def __init__(self, *columns, **kwargs):
        self.lines: list[str] = []  # before Progress's init, which renders once
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from (Text(line) for line in self.lines)
        yield self.make_tasks_table(self.tasks)


class ProgressReporter:
    """Two bars (epochs, batches of the current epoch) and one line per finished epoch."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress: _EpochProgress | None = None
        self.epochs_task = self.batches_task = None
        self.epochs = 0
        self.lines_only = False  # Jupyter without ipywidgets: rich cannot draw a live bar there

    def start(self, name: str, epochs: int, first_epoch: int) -> None:
        self.epochs = epochs
        if self.console.is_jupyter and not has_widgets():
            self.lines_only = True
            self.note('no progress bar without ipywidgets (pip install "mnistlab[notebook]"); '
                      "one line per epoch instead")
            return
        self.progress = _EpochProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=self.console, transient=False,
            refresh_per_second=4,  # each redraw in Jupyter is a widget message: few are plenty
        )
        self.epochs_task = self.progress.add_task(f"{name or 'run'} epochs", total=epochs,
                                                  completed=first_epoch)
        self.batches_task = self.progress.add_task(f"epoch {first_epoch + 1}", total=None)
        self.progress.start()

    def note(self, text: str) -> None:
        """A one-line message before training starts (e.g. a kernel being compiled)."""
        self.console.print(text, style="dim", highlight=False)

    def batch(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.batches_task, completed=done, total=total)

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        line = (f"epoch {epoch + 1:>4}/{self.epochs}  loss {logs['loss']:.4f} "
                f"acc {logs['accuracy']:.4f} val_loss {logs['val_loss']:.4f} "
                f"val_acc {logs['val_accuracy']:.4f} {logs['seconds']:.2f}s")
        if self.progress is None:
            if self.lines_only:
                self.console.print(line, highlight=False)
            return
        self.progress.lines.append(line)
        self.progress.update(self.epochs_task, completed=epoch + 1)
        if epoch + 1 < self.epochs:
            self.progress.reset(self.batches_task, description=f"epoch {epoch + 2}", total=None)
        else:
            self.progress.remove_task(self.batches_task)
        self.progress.refresh()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def default_reporter(progress: bool | None) -> ProgressReporter | None:
    """`progress=None` (the default): a bar inside Jupyter, nothing in a script; True: a bar
    anywhere; False: nothing."""
    show = in_notebook() if progress is None else progress
    return ProgressReporter() if show else None
