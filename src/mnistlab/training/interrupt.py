"""Stopping training cleanly: the first Ctrl-C asks the loop to stop at the next batch boundary,
where the exact position inside the epoch is saved so that `resume` continues bit for bit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["EpochPosition", "StopTraining", "StopFlag", "stop_on_interrupt"]


@dataclass(frozen=True)
class EpochPosition:
    """Where a stopped epoch stands: its next batch and the exact running sums so far."""

    epoch: int  # 0-based epoch that was under way
    batch: int  # batches already done in it (the next one to run)
    loss_sum: float  # float64 sum of batch loss * batch size so far (exact as saved)
    correct: int  # correctly classified training samples so far
    seconds: float  # time already spent in this epoch


class StopTraining(KeyboardInterrupt):
    """Raised at a batch boundary after Ctrl-C; `position` is None at an epoch boundary."""

    def __init__(self, position: EpochPosition | None):
        super().__init__("training stopped at a batch boundary")
        self.position = position


class StopFlag:
    """Set by the first Ctrl-C; the training loop polls it between batches."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[StopFlag]:
    """First SIGINT asks the loop to stop at the next batch boundary; a second one aborts.

    Outside the main thread (Dask workers, notebooks' executor threads) signals cannot be
    caught, so the flag simply never rises there and Ctrl-C keeps its default behaviour.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    if previous is None:  # installed outside Python: restore Python's default on exit
        previous = signal.default_int_handler
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
