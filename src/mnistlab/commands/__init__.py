"""The `mnistlab` command line: a thin shell over the library, one module per area.

    main.py      the explicit command table, the parser, exit codes
    core.py      run, resume, presets, data, runs, summary
    tracking.py  runs tensorboard, runs export --mlflow
    hog.py       hog show
    predict.py   predict
    report.py    suite, compare, report
    serve.py     serve (the web app)
    sweep.py     sweep
    progress.py  the rich progress display for training

This module holds the argument helpers the commands share.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_experiment_args", "experiment_from_args", "add_io_args", "add_fast_arg",
           "add_tensorboard_arg", "console"]

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
    add_fast_arg(p)


def add_fast_arg(p: argparse.ArgumentParser) -> None:
    """`--no-fast`, for every command that trains (see `mnistlab.fast`)."""
    p.add_argument("--no-fast", action="store_true",
                   help="train with stock PyTorch modules only (same results within float "
                        "rounding, slower); as MNISTLAB_FAST=0 or training.fast = false")


def add_tensorboard_arg(p: argparse.ArgumentParser) -> None:
    """`--tensorboard`, for the commands that train runs (see `mnistlab.rundir.tensorboard`)."""
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into each run's tensorboard/ "
                        "(as output.tensorboard = true; needs mnistlab[tensorboard])")


def experiment_from_args(args: argparse.Namespace):
    """The validated experiment named on the command line, shortcuts applied after --set."""
    from mnistlab.config.load import load_experiment

    overrides = list(args.overrides)
    for flag, key in (("epochs", "training.epochs"), ("seed", "training.seed"),
                      ("batch_size", "training.batch_size"), ("device", "training.device")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}" if flag != "device" else f'{key}="{value}"')
    if getattr(args, "name", None):
        overrides.append(f"output.name={_toml_string(args.name)}")
    if getattr(args, "tensorboard", False):
        overrides.append("output.tensorboard=true")
    return load_experiment(args.experiment, overrides)


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string, non-ASCII kept as it is (JSON's `\\ud83d\\ude42` surrogate
    pairs are not valid TOML escapes); only quotes, backslashes and control characters escaped.
    A lone surrogate (an undecodable argument) stays escaped, so TOML refuses it by name."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]  # escapes ", \\ and U+0000..U+001F
    return '"' + "".join(f"\\u{ord(c):04x}" if c == "\x7f" or "\ud800" <= c <= "\udfff" else c
                         for c in body) + '"'


def add_io_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTLAB_RUNS or ./runs)")
    if data:
        p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/")
