"""Stopping training cleanly: the first Ctrl-C or SIGTERM asks the loop to stop at the next
batch boundary, where the exact position inside the epoch is saved so that `resume` continues
bit for bit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from mnistlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

__all__ = ["EpochPosition", "StopTraining", "StopFlag", "interruption", "stop_on_interrupt"]


@dataclass(frozen=True)
class EpochPosition:
    """Where a stopped epoch stands: its next batch and the exact running sums so far."""

    epoch: int  # 0-based epoch that was under way
    batch: int  # batches already done in it (the next one to run)
    loss_sum: float  # float64 sum of batch loss * batch size so far (exact as saved)
    correct: int  # correctly classified training samples so far
    seconds: float  # time already spent in this epoch


class StopTraining(KeyboardInterrupt):
    """Raised at a batch boundary after Ctrl-C or SIGTERM; `position` is None at an epoch
    boundary."""

    def __init__(self, position: EpochPosition | None):
        super().__init__("training stopped at a batch boundary")
        self.position = position


class StopFlag:
    """Set by the first Ctrl-C or SIGTERM; the training loop polls it between batches."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal that asked to stop
        self.immediate = False  # outside the batch loop: a first signal aborts at once too

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __call__(self) -> bool:
        return self.requested

    @property
    def exit_code(self) -> int:
        """What a shell reports for the signal: 143 for SIGTERM, 130 for Ctrl-C."""
        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def cause(self) -> str:
        return "terminated (SIGTERM)" if self.signum == signal.SIGTERM else "interrupted"


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception a signal raises where it aborts at once: Terminated for SIGTERM (exit
    143), KeyboardInterrupt for Ctrl-C (exit 130); both run every Ctrl-C cleanup."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[StopFlag]:
    """First SIGINT or SIGTERM asks the loop to stop at the next batch boundary; a second one
    (or a first one once `flag.immediate` is set) aborts with `interruption(signum)`.

    SIGTERM is what `kill`, systemd and batch schedulers send before SIGKILL, so it gets the
    same clean stop as Ctrl-C. Outside the main thread (Dask workers, notebooks' executor
    threads) signals cannot be caught, so the flag simply never rises there and both signals
    keep their default behaviour.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def handler(signum, frame):
        if flag.requested or flag.immediate:
            restore()
            raise interruption(signum)
        flag.signum = signum

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        before = signal.signal(signum, handler)
        if before is None:  # installed outside Python: restore Python's default on exit
            before = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        previous[signum] = before
    try:
        yield flag
    finally:
        restore()
