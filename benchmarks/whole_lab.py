"""The whole lab, end to end: `mnistlab suite run lab` (every configuration, 1 seed) and
`mnistlab report lab`, timed as a user would time them, with where the time goes.

    python benchmarks/whole_lab.py [--suite lab] [--runs-dir DIR] [--jobs N] [--keep]

Prints the wall-clock total (target: <= 15 minutes on the 2-core machine) and, per run, its
wall time (directory creation to final status), its training seconds (the fit loop, from
metrics.json) and the rest (data, features, evaluation, writing outputs), so the overheads
between epochs are visible next to the epochs themselves. The reference is the sum of the
per-run training seconds: everything above it is not training. Writes `whole_lab.json` next to
the runs; `--table DIR` prints an earlier folder's table again. Each run's GFLOP (its layers'
products, from `mnistlab summary`'s arithmetic) and the rate it sustained show which runs are
far from the machine's matrix-product speed (benchmarks/bench_gemm.py).
Time on a quiet machine: anything else running beside it distorts it several-fold.
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
                     "other_s": wall - train,
                     "gflop": arithmetic(run_dir, int(status.get("epochs_done") or 0))
                     if metrics else float("nan")})
    return rows


def arithmetic(run_dir: Path, epochs: int) -> float:
    """GFLOP the run's epochs did: training 3 x 2 x multiply-adds per image (forward, and the
    backward's two products), validation 2 x multiply-adds per image, from the same layer
    arithmetic `mnistlab summary` prints. Pooling, activations, loss and optimiser are left out:
    a lower bound on the work."""
    from mnistlab.config.load import load_experiment
    from mnistlab.experiments.cost import work_per_epoch

    return epochs * 2 * work_per_epoch(load_experiment(run_dir / "config.toml")) / 1e9


def print_table(runs_dir: Path) -> int:
    """The per-run table and the totals of a finished whole-lab folder (its whole_lab.json)."""
    totals = json.loads((runs_dir / "whole_lab.json").read_text())
    t_total, t_suite = totals["total_s"], totals["suite_s"]
    rows = per_run(runs_dir)
    train_sum = sum(r["train_s"] for r in rows)
    flop_sum = sum(r["gflop"] for r in rows)
    print(f"{'run':44} {'status':9} {'epochs':>6} {'wall s':>8} {'train s':>8} "
          f"{'s/epoch':>8} {'other s':>8} {'GFLOP':>7} {'GFLOP/s':>8}")
    for r in sorted(rows, key=lambda r: -r["wall_s"]):
        print(f"{r['run'][:44]:44} {r['status']:9} {r['epochs']!s:>6} {r['wall_s']:8.1f} "
              f"{r['train_s']:8.1f} {r['s_per_epoch'] or float('nan'):8.3f} "
              f"{r['other_s']:8.1f} {r['gflop']:7.0f} {r['gflop'] / r['train_s']:8.1f}")
    print(f"\nsuite run {totals['suite']} (--jobs {totals['jobs']}): {t_suite / 60:.2f} min; "
          f"report: {(t_total - t_suite):.1f} s; total {t_total / 60:.2f} min "
          f"(target <= 15 min on 2 cores)")
    if totals["jobs"] == 1:
        print(f"training loops: {train_sum / 60:.2f} min = {train_sum / t_total:.0%} of the "
              f"total; everything else (start-up, data, features, evaluation, outputs, report): "
              f"{(t_total - train_sum) / 60:.2f} min")
        print(f"arithmetic: {flop_sum / 1000:.1f} TFLOP of layer products (a lower bound), "
              f"{flop_sum / train_sum:.0f} GFLOP/s sustained over the training loops")
    else:  # runs overlapped: their seconds add up to more than the wall-clock
        print(f"training loops: {train_sum / 60:.2f} min summed over the runs, which ran "
              f"{totals['jobs']} at a time (the sum exceeds the wall-clock); "
              f"{train_sum / totals['jobs'] / 60:.2f} min per worker if evenly shared")
        print(f"arithmetic: {flop_sum / 1000:.1f} TFLOP of layer products (a lower bound), "
              f"{flop_sum / t_suite:.0f} GFLOP/s over the suite's wall-clock, "
              f"{flop_sum / train_sum:.0f} GFLOP/s per run")
    (runs_dir / "whole_lab.json").write_text(json.dumps(
        {**totals, "train_sum_s": train_sum, "gflop_sum": flop_sum, "runs": rows}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="lab")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="where the runs go (default: a fresh temporary folder)")
    ap.add_argument("--jobs", type=int, default=1, help="passed to `suite run --jobs`")
    ap.add_argument("--keep", action="store_true", help="keep the runs and the report")
    ap.add_argument("--table", type=Path, default=None,
                    help="only print the table of an earlier run's folder (no training)")
    args = ap.parse_args()
    if args.table is not None:
        return print_table(args.table)
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

    (runs_dir / "whole_lab.json").write_text(json.dumps(
        {"suite": args.suite, "jobs": args.jobs, "total_s": t_total, "suite_s": t_suite,
         "cores": os.cpu_count()}, indent=1))
    print_table(runs_dir)
    if not args.keep and args.runs_dir is None:
        shutil.rmtree(runs_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
