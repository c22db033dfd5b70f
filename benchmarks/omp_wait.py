"""Epoch time under OpenMP wait settings: what `fast.openmp`'s spin count is worth.

Each setting runs `mnistlab run PRESET` in a fresh process (libgomp reads these variables once,
when torch loads it) and reports the median epoch after the first. `chosen` is what the CLI
sets by itself (GOMP_SPINCOUNT=fast.openmp.SPIN_COUNT); `unset` is libgomp's default
(OMP_WAIT_POLICY given empty, so the CLI leaves it alone).

    MNISTLAB_DATA=../shared/data .venv/bin/python benchmarks/omp_wait.py hog/final raw/final \\
        [--epochs 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "chosen": {},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "unset": {"OMP_WAIT_POLICY": ""},
}


def epoch_seconds(preset: str, epochs: int, extra: dict[str, str]) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mnistlab", "run", preset, "--epochs", str(epochs),
               "--quiet", "--runs-dir", tmp, "--set", "output.plots=false"]
        proc = subprocess.run(cmd, env={**env, **extra}, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        history = next(Path(tmp).glob("*/history.csv")).read_text().splitlines()
    header = history[0].split(",")
    return [float(row.split(",")[header.index("seconds")]) for row in history[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for preset in args.presets:
        medians: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for r in range(args.rounds):
            for name, extra in SETTINGS.items():
                seconds = epoch_seconds(preset, args.epochs, extra)
                medians[name].append(statistics.median(seconds[1:]))
                print(f"{preset} round {r + 1} {name:8s} epochs "
                      + ", ".join(f"{s:.3f}" for s in seconds), flush=True)
        print(json.dumps({preset: {k: round(statistics.median(v), 3)
                                   for k, v in medians.items()}}), flush=True)


if __name__ == "__main__":
    main()
