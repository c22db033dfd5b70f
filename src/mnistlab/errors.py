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
    "RunInterrupted",
    "EXIT_USAGE",
    "EXIT_RUNTIME",
    "EXIT_INTERRUPTED",
    "close_matches",
    "did_you_mean",
]

EXIT_USAGE = 2  # bad config, bad data, bad arguments: nothing was started
EXIT_RUNTIME = 1  # something failed while working
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


class MnistlabError(Exception):
    """Base of every error mnistlab raises on purpose; `exit_code` is what the CLI returns."""

    exit_code = EXIT_USAGE


class ConfigError(MnistlabError, ValueError):
    """An experiment file, preset, override or argument is invalid (caught before any work)."""


class DataError(MnistlabError):
    """A dataset is missing, corrupt, or cannot be fetched."""


class RunError(MnistlabError):
    """A run directory cannot be created, read or written."""


class TrainingError(MnistlabError):
    """Training failed at run time (e.g. the loss became NaN)."""

    exit_code = EXIT_RUNTIME


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after the run's checkpoint was written; `resume` continues it.

    A KeyboardInterrupt, so code that does not know it still stops as on any Ctrl-C.
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir


def close_matches(name: object, valid: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The valid names closest to a mistyped one (difflib's ratio), best first."""
    return difflib.get_close_matches(str(name), list(valid), n=n, cutoff=cutoff)


def did_you_mean(name: object, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when none is close: the one hint
    every "unknown name" message in mnistlab ends with."""
    close = close_matches(name, valid, 1, cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""
