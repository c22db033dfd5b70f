"""Where a run comes from, said truthfully: a file or sweep built on a lab preset validates on a
held-out split unless it chooses the lab's test set itself (with a notice saying so), and a run
whose settings differ from its preset's is described by its origin and changes, not by the
preset's own description.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["LAB_SPLIT", "ValidationNotice", "lab_validation_notice", "NOT_RESULT",
           "own_settings", "described_overrides"]

LAB_SPLIT = 0.1  # the held-out fraction a file built on a lab preset validates on


class ValidationNotice(UserWarning):
    """An experiment built on a lab preset validates on a held-out split instead of the test set
    the preset uses. Silent by default: the commands that train (`run`, `sweep run`) turn it on
    and print it as one `note:` line (`commands.core.notices`); commands that only read a sweep
    file again (`compare`, `report`, `sweep show`) stay quiet."""


warnings.filterwarnings("ignore", category=ValidationNotice)


def lab_validation_notice(label: str, base: str) -> str:
    """The one line said when a file or sweep on lab preset `base` gets the held-out split."""
    return (f"{label}: validates on {LAB_SPLIT:.0%} of train held out (its base preset {base} "
            "validates on the test set, as the lab did); write data.validation = \"test\" in "
            "it to reproduce the lab")


# settings that change neither the network nor its result: naming, plotting, speed, device
NOT_RESULT = {("output", "name"), ("output", "plots"), ("output", "tensorboard"),
              ("training", "device"), ("training", "threads"), ("training", "fast"),
              ("training", "chunk_size")}


def own_settings(raw: dict[str, Any]) -> list[str]:
    """A file's own settings that change the run, as `section.key=value` strings."""
    return [f"{section}.{key}={value!r}" for section, table in raw.items()
            if isinstance(table, dict) for key, value in table.items()
            if (section, key) not in NOT_RESULT]


def described_overrides(origin: str, settings: list[str]) -> str:
    """The description of a run whose settings differ from its preset or file: where it comes
    from and what was changed, so the origin's own description is not claimed for it."""
    return f"{origin}, changed: {'; '.join(settings)}" if settings else origin
