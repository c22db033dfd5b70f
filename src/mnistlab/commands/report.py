"""Commands that work on many runs: suite run / suite list, compare, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnistlab.commands import add_fast_arg, add_io_args, add_tensorboard_arg, console


def suite_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="suite_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run every experiment of a suite (skipping complete runs)")
    run.add_argument("suite", help="suite name (see `mnistlab suite list`) or suite .toml")
    run.add_argument("--seeds", type=int, default=1, help="repetitions per preset (seed i = "
                     "preset seed + i); default 1")
    run.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                     help="multiply every preset's epochs by F (at least 1 epoch); default 1")
    run.add_argument("--jobs", type=int, default=1, help="trainings at once on this machine, "
                     "splitting the cores between them, longest first; default 1 (on 2 cores "
                     "the fastest: one training already uses both)")
    run.add_argument("--cluster", help="Dask scheduler address (default $MNISTLAB_DASK)")
    add_fast_arg(run)
    add_tensorboard_arg(run)
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="SECTION.KEY=V", help="override applied to every preset")
    run.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    add_io_args(run)
    sub.add_parser("list", help="list the shipped suites and their presets")


class _SuiteProgress:
    """One overall bar for the suite, and one line per finished experiment."""

    def __init__(self, experiments):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.names = [e.output.name for e in experiments]
        self.out = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]suite"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[running]}"), TimeElapsedColumn(),
                                 console=self.out)
        self.task = self.progress.add_task("suite", total=len(experiments), running="")
        self.running: list[str] = []

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, kind: str, index: int, payload: dict) -> None:
        name = self.names[index]
        if kind == "started":
            if name not in self.running:
                self.running.append(name)
        else:
            if name in self.running:
                self.running.remove(name)
            m = payload.get("metrics") or {}
            acc = f"acc {m['test_accuracy']:.4f}" if "test_accuracy" in m else ""
            detail = payload.get("error") or acc
            self.progress.console.print(f"{kind:>8}  {name}  {detail}", highlight=False)
            self.progress.advance(self.task)
        self.progress.update(self.task, running="running: " + ", ".join(self.running[:3]))


def cmd_suite(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mnistlab.experiments.executor import check_runs_target
    from mnistlab.experiments.suite import load_suite, run_suite, suite_experiments, suite_names

    if args.suite_command == "list":
        table = Table(title="suites")
        for col in ("suite", "description", "presets"):
            table.add_column(col)
        for name in suite_names():
            s = load_suite(name, strict=False)
            missing = f" (missing: {', '.join(s.missing)})" if s.missing else ""
            table.add_row(name, s.description, (", ".join(s.presets) or "(none yet)") + missing)
        console().print(table)
        return 0
    suite = load_suite(args.suite)
    if args.tensorboard:
        args.overrides = [*args.overrides, "output.tensorboard=true"]
    experiments = suite_experiments(suite, args.seeds, args.epochs_scale, args.overrides)
    if args.dry_run:
        for e in experiments:
            print(f"{e.output.name}  epochs {e.training.epochs}  seed {e.training.seed}")
        return 0
    check_runs_target(args.runs_dir, args.jobs)  # one line, before the progress display
    with _SuiteProgress(experiments) as progress:
        outcomes = run_suite(suite, args.seeds, args.epochs_scale, args.jobs, args.runs_dir,
                             args.data_dir, args.cluster, args.overrides, on_event=progress)
    counts = {k: sum(o.status == k for o in outcomes) for k in ("complete", "skipped", "failed")}
    print(f"suite {suite.name}: {counts['complete']} trained, {counts['skipped']} already "
          f"complete, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="RUN_OR_GROUP",
                   help="run directories, folders of runs, suite names or run-name patterns")
    p.add_argument("-o", "--plot", help="write the validation-curve overlay to this PNG")
    add_io_args(p, data=False)


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mnistlab.report.compare import compare
    from mnistlab.report.verdicts import CONFIGURATIONS, NETWORKS, QUESTIONS, experiment_tests

    comp = compare(args.targets, args.runs_dir)
    table = Table(title="configurations (mean ± sd [95% CI] over seeds)")
    for col in ("configuration", "differs in", "runs", "params", "test loss", "accuracy",
                "macro-F1", "lowest val loss at epoch", "train s"):
        table.add_column(col)
    for r in comp.rows():
        table.add_row(r["configuration"], r["differences"] or "-", str(r["runs"]),
                      f"{r['params']:,}", r["test_loss"].text(), r["test_accuracy"].text(),
                      r["f1_macro"].text(), ", ".join(map(str, r["best_epoch"])),
                      f"{r['train_seconds']:.1f}")
    console().print(table)
    verdicts = [v for metric in ("test_accuracy", "f1_macro")
                for v in experiment_tests(comp, metric)]
    for question in (CONFIGURATIONS, NETWORKS):
        chosen = [v for v in verdicts if v.question == question]
        if chosen:
            print(QUESTIONS[question])
        for v in chosen:
            pair = (f"{v.a.label} vs {v.b.label}" if question == CONFIGURATIONS else
                    f"{v.a_run} vs {v.b_run}")
            if v.result is None:
                print(f"  {v.metric}: {pair}: {v.reason}")
                continue
            print(f"  {v.metric}: {pair}: effect {v.effect} ({v.result.test}, "
                  f"p={v.result.p_value:.3g}, Holm p={v.p_adjusted:.3g}): {v.verdict}")
    for path, why in comp.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    from mnistlab.report.compare import groups_test_validation_warning

    if warning := groups_test_validation_warning(comp.groups):
        print(f"mnistlab compare: {warning}", file=sys.stderr)
    if args.plot:
        from mnistlab.plots import save_figure

        save_figure(comp.overlay_figure(), Path(args.plot))
        print(args.plot)
    return 0


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="RUNS_OR_SUITE",
                   help="run directories, folders of runs, suite names or run-name patterns")
    p.add_argument("-o", "--output", default="report", help="report folder (default ./report)")
    p.add_argument("--title", default="mnistlab lab report")
    add_io_args(p, data=False)


def cmd_report(args: argparse.Namespace) -> int:
    from mnistlab.report.write import write_report

    result = write_report(args.targets, args.output, args.runs_dir, args.title)
    for path, why in result.skipped:
        print(f"left out {path}: {why}", file=sys.stderr)
    print(f"{result.runs} runs in {result.configurations} configurations")
    print(result.html)
    print(result.markdown)
    return 0
