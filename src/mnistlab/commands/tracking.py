"""`runs tensorboard` and `runs export --mlflow`: finished runs into experiment trackers.

Each run is handled on its own: one that cannot be (unfinished, damaged) gets a one-line reason
and the others still go; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["runs_actions_args", "cmd_runs_tensorboard", "cmd_runs_export"]


def _targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run directories or names (default: every finished run in the folder)")
    # SUPPRESS: a value given before the action (`runs --runs-dir D export`) is kept
    p.add_argument("--runs-dir", default=argparse.SUPPRESS,
                   help="runs folder (default: $MNISTLAB_RUNS or ./runs)")


def runs_actions_args(p: argparse.ArgumentParser) -> None:
    """The actions under `mnistlab runs` (without one, `runs` lists the runs)."""
    sub = p.add_subparsers(dest="runs_action", metavar="ACTION")
    tb = sub.add_parser("tensorboard", help="write TensorBoard event files for finished runs "
                        "from their history, plots and metrics")
    _targets(tb)
    ex = sub.add_parser("export", help="log finished runs to an MLflow tracking server: "
                        "params, metrics per epoch, test scores, plots, predictions, model")
    _targets(ex)
    ex.add_argument("--mlflow", required=True, metavar="URI",
                    help="MLflow tracking URI: sqlite:///mlflow.db, http://host:5000, a folder")
    ex.add_argument("--experiment", default="mnistlab",
                    help="MLflow experiment name (created when missing); default mnistlab")
    ex.add_argument("--artifact-location", metavar="URI",
                    help="where a newly created experiment stores artifacts (MLflow's default: "
                         "./mlruns for a database URI)")


def _selected(args: argparse.Namespace) -> tuple[list[Path], int]:
    """The runs named, or every finished (complete or damaged) run in the runs folder, and how
    many unfinished ones that left out."""
    from mnistlab.errors import RunError
    from mnistlab.rundir.directory import list_runs, resolve_run_dir, runs_root

    runs_dir = getattr(args, "runs_dir", None)
    if args.runs:
        return [resolve_run_dir(r, runs_dir) for r in args.runs], 0
    root = runs_root(runs_dir)
    if runs_dir is not None and not root.is_dir():
        raise RunError(f"{root}: no such runs folder (--runs-dir); pass an existing folder")
    infos = list_runs(root)
    finished = [i.path for i in infos if i.status in ("complete", "corrupt")]
    return finished, len(infos) - len(finished)


def _left_out(command: str, count: int) -> None:
    if count:
        print(f"mnistlab runs {command}: {count} unfinished run(s) left out (running, "
              "interrupted or failed); name them to see why", file=sys.stderr)


def cmd_runs_tensorboard(args: argparse.Namespace) -> int:
    from mnistlab.errors import MnistlabError
    from mnistlab.rundir.tensorboard import TB_DIR, require_tensorboard, write_run_events

    require_tensorboard()
    runs, left_out = _selected(args)
    failed = 0
    for run_dir in runs:
        try:
            written = write_run_events(run_dir)
        except MnistlabError as exc:
            failed += 1
            print(f"mnistlab runs tensorboard: failed: {exc}", file=sys.stderr)
            continue
        print(f"{'written' if written else 'skipped (already has event files)'}  "
              f"{run_dir / TB_DIR}")
    _left_out("tensorboard", left_out)
    print(f"{len(runs) - failed} of {len(runs)} runs have event files; view them with: "
          "tensorboard --logdir <runs folder or run>")
    return 1 if failed else 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    from mnistlab.rundir.mlflow_export import export_runs, require_mlflow

    require_mlflow()
    runs, left_out = _selected(args)

    def show(outcome) -> None:
        line = f"{outcome.action:>8}  {outcome.run_dir.name}  {outcome.detail}"
        print(line, file=sys.stderr if outcome.action == "failed" else sys.stdout)

    outcomes = export_runs(runs, args.mlflow, args.experiment, args.artifact_location,
                           on_outcome=show)
    _left_out("export", left_out)
    counts = {k: sum(o.action == k for o in outcomes)
              for k in ("created", "replaced", "skipped", "failed")}
    replaced = (f", {counts['replaced']} replaced (an earlier export had broken off)"
                if counts["replaced"] else "")
    print(f"MLflow {args.mlflow}, experiment {args.experiment!r}: {counts['created']} created"
          f"{replaced}, {counts['skipped']} already there, {counts['failed']} failed")
    return 1 if counts["failed"] else 0
