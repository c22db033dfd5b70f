"""The `mnistlab` command: a thin shell over the library (each command is one library call).

Expected failures (bad config, missing data, unwritable folders) print one line and exit 2;
failures while working exit 1; Ctrl-C exits 130. `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .commands import COMMANDS
from .errors import EXIT_INTERRUPTED, EXIT_RUNTIME, MnistlabError

__all__ = ["main", "build_parser"]


def _load_commands() -> None:
    for info in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{info.name}")


def _tune_cpu() -> bool:
    """Flush-to-zero before torch starts its worker threads, so that they inherit it (training
    turns it on for its own thread too), and the allocator setting (see mnistlab.cpu).
    Returns the previous flush mode, which `main` restores for in-process callers."""
    import torch

    from .cpu import flushing_denormals, keep_freed_memory

    before = flushing_denormals()
    torch.set_flush_denormal(True)
    keep_freed_memory()
    return before


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _load_commands()
    parser = argparse.ArgumentParser(prog="mnistlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, _, help_text) in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = COMMANDS[args.command][1]
    denormals_before = _tune_cpu()
    try:
        return run(args)
    except MnistlabError as exc:
        if args.debug:
            raise
        print(f"mnistlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mnistlab {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(f"mnistlab {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        import torch

        torch.set_flush_denormal(denormals_before)

