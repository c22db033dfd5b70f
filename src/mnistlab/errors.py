"""One error family, so the CLI can turn any expected failure into one line and an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "MnistlabError",
    "ConfigError",
    "DataError",
    "RunError",
    "TrainingError",
    "RunInUse",
    "RunInterrupted",
    "Terminated",
    "EXIT_USAGE",
    "EXIT_RUNTIME",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "close_matches",
    "did_you_mean",
]

EXIT_USAGE = 2  # bad config, bad data, bad arguments: nothing was started
EXIT_RUNTIME = 1  # something failed while working
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it: 128 + 2
EXIT_TERMINATED = 143  # SIGTERM (`kill`, a batch scheduler's time limit), as shells report it


class MnistlabError(Exception):
    """Base of every error mnistlab raises on purpose; `exit_code` is what the CLI returns."""

    exit_code = EXIT_USAGE


class ConfigError(MnistlabError, ValueError):
    """An experiment file, preset, override or argument is invalid (caught before any work)."""


class DataError(MnistlabError):
    """A dataset is missing, corrupt, or cannot be fetched."""


class RunError(MnistlabError):
    """A run directory cannot be created, read or written."""


class RunInUse(RunError):
    """Another live process holds the run directory's lock (it is training or resuming it)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class TrainingError(MnistlabError):
    """Training failed at run time (e.g. the loss became NaN)."""

    exit_code = EXIT_RUNTIME


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so every cleanup written for Ctrl-C
    (status, checkpoint, moving a run into place) runs for it too; the CLI exits 143."""

    exit_code = EXIT_TERMINATED

    def __init__(self, message: str = "terminated (SIGTERM)"):
        super().__init__(message)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training after the run's checkpoint was written; `resume`
    continues it. `exit_code` is 130 for Ctrl-C, 143 for SIGTERM.

    A KeyboardInterrupt, so code that does not know it still stops as on any Ctrl-C.
    """

    def __init__(self, message: str, run_dir=None, exit_code: int = EXIT_INTERRUPTED):
        super().__init__(message)
        self.run_dir = run_dir
        self.exit_code = exit_code


def close_matches(name: object, valid: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The valid names closest to a mistyped one (difflib's ratio), best first."""
    return difflib.get_close_matches(str(name), list(valid), n=n, cutoff=cutoff)


def did_you_mean(name: object, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when none is close: the one hint
    every "unknown name" message in mnistlab ends with."""
    close = close_matches(name, valid, 1, cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""
