"""Subcommand registry and the argument helpers the commands share.

Each module in this package registers its commands with `@command(name, help, add_args)`; the
CLI imports every module here, so an area of the product adds its commands without touching
`cli.py`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

__all__ = ["COMMANDS", "command", "add_experiment_args", "experiment_from_args", "add_io_args",
           "console"]

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable, str]] = {}


def command(name: str, help_text: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit code` as subcommand `name`, with its argument definer."""

    def register(run):
        COMMANDS[name] = (add_args, run, help_text)
        return run

    return register


def console():
    """A rich console; wide when output is not a terminal, so tables are not squeezed."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="preset name (see `mnistlab presets`) or experiment .toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=V",
                   help="override one config value, e.g. --set model.dropout=0.5 (repeatable)")
    p.add_argument("--epochs", type=int, help="shortcut for --set training.epochs=N")
    p.add_argument("--seed", type=int, help="shortcut for --set training.seed=N")
    p.add_argument("--batch-size", type=int, help="shortcut for --set training.batch_size=N")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training.device")
    p.add_argument("--name", help="run name (output.name)")


def experiment_from_args(args: argparse.Namespace):
    """The validated experiment named on the command line, shortcuts applied after --set."""
    from ..config import load_experiment

    overrides = list(args.overrides)
    for flag, key in (("epochs", "training.epochs"), ("seed", "training.seed"),
                      ("batch_size", "training.batch_size"), ("device", "training.device")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}" if flag != "device" else f'{key}="{value}"')
    if getattr(args, "name", None):
        overrides.append(f"output.name={_toml_string(args.name)}")
    return load_experiment(args.experiment, overrides)


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def add_io_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTLAB_RUNS or ./runs)")
    if data:
        p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/")
