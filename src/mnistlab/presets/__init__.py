"""The preset registry: the lab's experiments as TOML files shipped inside the package.

A preset is named `<experiment>/<slug>` after its file `presets/<experiment>/<slug>.toml`.
Suites (named lists of presets) live in `presets/suites/<name>.toml`.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from importlib import resources
from typing import Any

import tomllib

from mnistlab.errors import ConfigError, close_matches

__all__ = ["preset_names", "is_preset", "read_preset", "unknown_preset_error", "list_presets"]

_NOT_EXPERIMENTS = {"suites"}


@cache
def _registry() -> dict[str, str]:
    """name -> TOML text, read once from the package data."""
    root = resources.files(__package__)
    found: dict[str, str] = {}
    for group in sorted(root.iterdir(), key=lambda p: p.name):
        if not group.is_dir() or group.name in _NOT_EXPERIMENTS or group.name.startswith("_"):
            continue
        for item in sorted(group.iterdir(), key=lambda p: p.name):
            if item.name.endswith(".toml"):
                found[f"{group.name}/{item.name[:-5]}"] = item.read_text(encoding="utf-8")
    return found


def preset_names(pattern: str = "*") -> list[str]:
    """Preset names matching a shell-style pattern (`raw/*`, `*final`)."""
    return [n for n in _registry() if fnmatch.fnmatch(n, pattern)]


def is_preset(name: str) -> bool:
    return name in _registry()


def read_preset(name: str) -> dict[str, Any]:
    """A fresh raw dict for a preset (callers may change it)."""
    if not is_preset(name):
        raise unknown_preset_error(name)
    return tomllib.loads(_registry()[name])


def unknown_preset_error(name: str) -> ConfigError:
    names = preset_names()
    close = close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Closest presets: {', '.join(close)}." if close else ""
    return ConfigError(
        f"{name}: not a preset and not an existing .toml file; give a preset name "
        f"(list them with `mnistlab presets`) or a path to an experiment file.{hint}"
    )


def list_presets(pattern: str = "*") -> list[tuple[str, str]]:
    """(name, description) pairs, for `mnistlab presets`."""
    return [(n, read_preset(n).get("description", "")) for n in preset_names(pattern)]
