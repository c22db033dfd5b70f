"""Sweep commands: `sweep run` (every point, here or on a Dask cluster) and `sweep show`."""

from __future__ import annotations

import argparse

from mnistlab.commands import add_fast_arg, add_io_args, console
from mnistlab.errors import EXIT_RUNTIME, ConfigError

MAX_POINTS = 1000  # as mnistlab.experiments.sweep.MAX_POINTS (not imported: keeps `--help` light)


def sweep_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="run every point not yet complete",
                       description="Run every (point, seed) of a sweep file; points already "
                       "complete (same config and seed) are skipped, failures are recorded.")
    r.add_argument("sweep", help="sweep .toml file")
    r.add_argument("--jobs", type=int, help="trainings at once on this machine, each with "
                   "cores // jobs threads, longest first (default: cores // 2, at least 1)")
    r.add_argument("--cluster", metavar="ADDRESS", help="submit to this Dask scheduler, e.g. "
                   "tcp://host:8786 (default: $MNISTLAB_DASK; unset = this machine)")
    r.add_argument("--dry-run", action="store_true", help="validate and list the points only")
    r.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                   help=f"refuse sweeps of more than N runs, points x seeds (default {MAX_POINTS})")
    add_fast_arg(r)
    r.add_argument("--quiet", action="store_true", help="no live progress")
    add_io_args(r)
    s = sub.add_parser("show", help="results table and accuracy-vs-axis plots",
                       description="Print one row per point (mean +/- std over seeds) and write "
                       "results.csv and accuracy-vs-<axis>.png.")
    s.add_argument("sweep", help="sweep .toml file, or the name of a sweep already run")
    s.add_argument("--out", help="folder for results.csv and plots "
                   "(default: <runs folder>/.sweeps/<name>/)")
    add_io_args(s, data=False)


def cmd_sweep(args: argparse.Namespace) -> int:
    return _run(args) if args.sweep_command == "run" else _show(args)


class SweepProgress:
    """Live counts (done / running / failed / skipped) and the best accuracy so far."""

    def __init__(self, points, quiet: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.points, self.quiet = points, quiet
        self.counts = {"complete": 0, "skipped": 0, "failed": 0}
        self.running: set[int] = set()
        self.best: tuple[float, str] | None = None
        self.console = console()
        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), console=self.console,
                                 disable=quiet)
        self.task = self.progress.add_task(self._text(), total=len(points))

    def _text(self) -> str:
        c = self.counts
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else "best -"
        return (f"done {c['complete'] + c['skipped']} (skipped {c['skipped']}), "
                f"running {len(self.running)}, failed {c['failed']}, {best}")

    def __call__(self, kind: str, index: int, payload: dict) -> None:
        name = self.points[index].experiment.output.name
        if kind == "started":
            self.running.add(index)
        elif kind == "interrupted":  # Ctrl-C: the run keeps its checkpoint
            self.running.discard(index)
            run = payload.get("run_dir")
            if not self.quiet:
                self.console.print(f"{name}: interrupted"
                                   + (f"; continue with: mnistlab resume {run}" if run else ""),
                                   highlight=False, markup=False, soft_wrap=True)
        else:
            self.running.discard(index)
            self.counts[kind] += 1
            metrics = payload.get("metrics") or {}
            acc = metrics.get("test_accuracy")
            if acc is not None and (self.best is None or acc > self.best[0]):
                self.best = (acc, name)
            if not self.quiet and kind == "complete":
                self.console.print(f"{name}: test accuracy {acc:.4f} "
                                   f"({metrics.get('train_seconds', 0):.1f} s)", highlight=False)
            elif not self.quiet and kind == "failed":
                self.console.print(f"{name}: [red]failed[/red]: {payload.get('error')}",
                                   highlight=False)
        self.progress.update(self.task, description=self._text(),
                             completed=sum(self.counts.values()))

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _run(args: argparse.Namespace) -> int:
    from mnistlab.experiments.executor import check_runs_target, cluster_address
    from mnistlab.experiments.sweep import load_sweep, run_sweep, sweep_points
    from mnistlab.training.device import usable_cores

    if args.max_points < 1:
        raise ConfigError(f"--max-points must be an int >= 1; got {args.max_points}")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be an int >= 1; got {args.jobs}")
    from mnistlab.commands.core import notices

    with notices("sweep"):
        sweep = load_sweep(args.sweep)
    # every bad axis value, and a sweep larger than --max-points, fails here, before anything runs
    points = sweep_points(sweep, args.max_points)
    if args.dry_run:
        for pt in points:
            print(pt.experiment.output.name, " ".join(f"{k}={v!r}" for k, v in pt.values.items()))
        print(f"{len(points)} runs ({len(points) // len(sweep.seeds)} points x "
              f"{len(sweep.seeds)} seeds)")
        return 0
    jobs = args.jobs if args.jobs is not None else max(1, usable_cores() // 2)
    check_runs_target(args.runs_dir, jobs)  # a runs folder that is a file: one line, no manifest
    where = cluster_address(args.cluster)
    if not args.quiet:
        console().print(f"sweep {sweep.name}: {len(points)} runs on "
                        f"{where or f'this machine ({jobs} at a time)'}", highlight=False)
    with SweepProgress(points, args.quiet) as progress:
        outcomes = run_sweep(sweep, args.runs_dir, args.data_dir, jobs, args.cluster, progress,
                             args.max_points)
    failed = sum(o.status == "failed" for o in outcomes)
    _print_table(args.sweep, args.runs_dir, None)
    return EXIT_RUNTIME if failed else 0


def _print_table(source: str, runs_dir, out) -> None:
    import warnings
    from pathlib import Path

    from rich.table import Table

    from mnistlab.config.load import ValidationNotice
    from mnistlab.experiments.sweep import sweep_dir
    from mnistlab.experiments.sweep_results import sweep_results
    from mnistlab.experiments.sweep_table import TABLE_COLUMNS, table_rows, write_sweep_outputs

    with warnings.catch_warnings():  # said by `sweep run` when the points were built
        warnings.simplefilter("ignore", ValidationNotice)
        name, axes, rows = sweep_results(source, runs_dir)
    table = Table(title=f"sweep {name}")
    for col in ("point", *axes, *TABLE_COLUMNS):
        table.add_column(col, overflow="fold")
    for cells in table_rows(axes, rows):
        table.add_row(*cells)
    console().print(table)
    _warn_test_validation(source, runs_dir)
    folder = Path(out) if out else sweep_dir(name, runs_dir)
    for path in write_sweep_outputs(name, axes, rows, folder):
        print(path)


def _warn_test_validation(source: str, runs_dir) -> None:
    """One line on stderr naming the sweep's runs that validated on the test set."""
    import sys
    import warnings

    from mnistlab.config.load import ValidationNotice
    from mnistlab.errors import MnistlabError
    from mnistlab.report.compare import collect_runs, test_validation_warning

    try:
        with warnings.catch_warnings():  # said by `sweep run` when the points were built
            warnings.simplefilter("ignore", ValidationNotice)
            infos, _ = collect_runs([source], runs_dir)
    except MnistlabError:  # no complete run yet: nothing was validated on anything
        return
    warning = test_validation_warning({i.name: i.metrics for i in infos})
    if warning:
        print(f"mnistlab sweep: {warning}", file=sys.stderr)


def _show(args: argparse.Namespace) -> int:
    _print_table(args.sweep, args.runs_dir, args.out)
    return 0
