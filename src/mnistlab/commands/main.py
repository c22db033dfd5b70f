"""The `mnistlab` command: a thin shell over the library (each command is one library call).

Expected failures (bad config, missing data, unwritable folders) print one line and exit 2;
failures while working exit 1; Ctrl-C exits 130 and SIGTERM 143, both after the run's status and
checkpoint are saved. `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple

from mnistlab.commands import core, export, hog, predict, report, serve, sweep
from mnistlab.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_TERMINATED,
    MnistlabError,
    Terminated,
)
from mnistlab.fast.openmp import FAST_ENV, choose_wait_policy, off_by_environment

__all__ = ["main", "build_parser", "COMMANDS", "Command"]


class Command(NamedTuple):
    add_args: Callable[[argparse.ArgumentParser], None]  # defines the command's arguments
    run: Callable[[argparse.Namespace], int]  # does the work, returns the exit code
    help: str
    trains: bool = False  # trains networks: gets the process settings of mnistlab.fast


COMMANDS: dict[str, Command] = {
    "run": Command(core.run_args, core.cmd_run, "train an experiment into a new run directory",
                   trains=True),
    "resume": Command(core.resume_args, core.cmd_resume,
                      "continue an interrupted run from its last checkpoint", trains=True),
    "presets": Command(core.presets_args, core.cmd_presets, "list the shipped presets"),
    "data": Command(core.data_args, core.cmd_data,
                    "show which datasets are available, where, and whether they verify"),
    "runs": Command(core.runs_args, core.cmd_runs,
                    "list run directories with status, key config and accuracy; `runs "
                    "tensorboard` / `runs export --mlflow URI` put finished runs in trackers"),
    "summary": Command(core.summary_args, core.cmd_summary,
                       "print a model's layers and how its parameter count is obtained"),
    "hog": Command(hog.hog_args, hog.cmd_hog,
                   "HOG features: `hog show` draws an image beside its HOG view"),
    "export": Command(export.export_args, export.cmd_export,
                      "write a run's network as a verified ONNX or TorchScript file"),
    "predict": Command(predict.predict_args, predict.cmd_predict,
                       "classify image files with a trained run (exit 0 only if all succeed)"),
    "suite": Command(report.suite_args, report.cmd_suite,
                     "run a suite of experiments with repeated seeds, or list suites", trains=True),
    "compare": Command(report.compare_args, report.cmd_compare,
                       "compare runs: config differences, scores over seeds, significance"),
    "report": Command(report.report_args, report.cmd_report,
                      "write the lab report (HTML + Markdown) from recorded runs"),
    "serve": Command(serve.serve_args, serve.cmd_serve,
                     "browse runs in a local web app: live curves, mistakes, draw a digit"),
    "sweep": Command(sweep.sweep_args, sweep.cmd_sweep,
                     "grids and random searches over any config field, locally or on Dask",
                     trains=True),
}


def _prepare_process(args: argparse.Namespace) -> bool | None:
    """Process-wide settings for a command that trains, before anything loads torch:
    `--no-fast` as MNISTLAB_FAST=0 (so Dask workers and resumed runs inherit it), then, with the
    speed-ups on, OpenMP's spinning (`fast.openmp`) and flush-to-zero before torch starts its
    worker threads, which inherit it (training turns it on for its own thread too). Returns the
    previous flush mode to restore for in-process callers, or None when nothing was changed."""
    if getattr(args, "no_fast", False):
        os.environ[FAST_ENV] = "0"
    if off_by_environment() or not COMMANDS[args.command].trains:
        return None
    choose_wait_policy()
    from mnistlab.fast.cpu import prepare_process

    return prepare_process()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises Terminated (a KeyboardInterrupt) while a command runs, so it takes Ctrl-C's
    clean way out (statuses written, exit 143) instead of killing the process silently; training
    catches it at a batch boundary itself (`training.interrupt`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def build_parser() -> argparse.ArgumentParser:
    from mnistlab import __version__

    parser = argparse.ArgumentParser(prog="mnistlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = COMMANDS[args.command].run
    denormals_before = _prepare_process(args)
    try:
        with _sigterm_as_interrupt():
            return run(args)
    except MnistlabError as exc:
        if args.debug:
            raise
        print(f"mnistlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Terminated (SIGTERM) and RunInterrupted included
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        what = "terminated (SIGTERM)" if code == EXIT_TERMINATED else "interrupted"
        print(f"mnistlab {args.command}: {what}", file=sys.stderr)
        return code
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]  # torch's messages can run on
        print(f"mnistlab {args.command}: unexpected error: {type(exc).__name__}: {first} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if denormals_before is not None:
            import torch

            torch.set_flush_denormal(denormals_before)

