"""The whole lab, end to end: `mnistlab suite run lab` (every configuration, 1 seed) and
`mnistlab report lab`, timed as a user would time them, with where the time goes.

    python benchmarks/whole_lab.py [--suite lab] [--runs-dir DIR] [--jobs N] [--keep]

Prints the wall-clock total (target: <= 15 minutes on the 2-core machine) and, per run, its
wall time (directory creation to final status), its training seconds (the fit loop, from
metrics.json) and the rest (data, features, evaluation, writing outputs), so the overheads
between epochs are visible next to the epochs themselves. The reference is the sum of the
per-run training seconds: everything above it is not training. Writes `whole_lab.json` next to
the runs. Time on a quiet machine: anything else running beside it distorts it several-fold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MNISTLAB = [sys.executable, "-m", "mnistlab"]


def _started(run_dir: Path) -> dt.datetime:
    """Run folders are named YYYYMMDD-HHMMSS-<name>: the time the run began."""
    stamp = "-".join(run_dir.name.split("-")[:2])
    return dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S")


def per_run(runs_dir: Path) -> list[dict]:
    rows = []
    for run_dir in sorted(p for p in runs_dir.iterdir() if (p / "status.json").exists()):
        status = json.loads((run_dir / "status.json").read_text())
        metrics_path = run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        wall = (dt.datetime.fromisoformat(status["updated"]) - _started(run_dir)).total_seconds()
        train = float(metrics.get("train_seconds", float("nan")))
        rows.append({"run": run_dir.name.split("-", 2)[2], "status": status["status"],
                     "epochs": status.get("epochs_done"), "wall_s": wall, "train_s": train,
                     "s_per_epoch": metrics.get("seconds_per_epoch"),
                     "other_s": wall - train})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="lab")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="where the runs go (default: a fresh temporary folder)")
    ap.add_argument("--jobs", type=int, default=1, help="passed to `suite run --jobs`")
    ap.add_argument("--keep", action="store_true", help="keep the runs and the report")
    args = ap.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="whole-lab-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    report_dir = runs_dir / "_report"
    env = dict(os.environ, COLUMNS="200")

    t0 = time.perf_counter()
    suite = subprocess.run([*MNISTLAB, "suite", "run", args.suite, "--jobs", str(args.jobs),
                            "--runs-dir", str(runs_dir)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if suite.returncode != 0:  # e.g. no data found: say why instead of a bare traceback
        sys.exit(f"suite run {args.suite} failed (exit {suite.returncode}):\n"
                 f"{suite.stderr[-2000:]}")
    t_suite = time.perf_counter() - t0
    subprocess.run([*MNISTLAB, "report", args.suite, "--runs-dir", str(runs_dir),
                    "-o", str(report_dir)], check=True, env=env, stdout=subprocess.DEVNULL)
    t_total = time.perf_counter() - t0

    rows = per_run(runs_dir)
    train_sum = sum(r["train_s"] for r in rows)
    print(f"{'run':44} {'status':9} {'epochs':>6} {'wall s':>8} {'train s':>8} "
          f"{'s/epoch':>8} {'other s':>8}")
    for r in sorted(rows, key=lambda r: -r["wall_s"]):
        print(f"{r['run'][:44]:44} {r['status']:9} {r['epochs']!s:>6} {r['wall_s']:8.1f} "
              f"{r['train_s']:8.1f} {r['s_per_epoch'] or float('nan'):8.3f} "
              f"{r['other_s']:8.1f}")
    print(f"\nsuite run {args.suite} (--jobs {args.jobs}): {t_suite / 60:.2f} min; "
          f"report: {(t_total - t_suite):.1f} s; total {t_total / 60:.2f} min "
          f"(target <= 15 min on 2 cores)")
    print(f"training loops: {train_sum / 60:.2f} min = {train_sum / t_total:.0%} of the total; "
          f"everything else (start-up, data, features, evaluation, outputs, report): "
          f"{(t_total - train_sum) / 60:.2f} min")
    (runs_dir / "whole_lab.json").write_text(json.dumps(
        {"suite": args.suite, "jobs": args.jobs, "total_s": t_total, "suite_s": t_suite,
         "train_sum_s": train_sum, "runs": rows, "cores": os.cpu_count()}, indent=1))
    if not args.keep and args.runs_dir is None:
        shutil.rmtree(runs_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
