"""Two trainings at once against the same two one after the other, on this machine.

What `suite --jobs`, `sweep --jobs`, local Dask workers and a user with two terminals do: two
`mnistlab run` processes, each asking for every core. Concurrent must not be slower than
sequential; it was up to 6x slower when mnistlab set OMP_WAIT_POLICY=ACTIVE at import (idle
OpenMP threads spinning on the cores the other process needed).

    MNISTLAB_DATA=../shared/data .venv/bin/python benchmarks/concurrent_runs.py \\
        [--preset cnn/template] [--epochs 2] [--rounds 2] [--env OMP_WAIT_POLICY=ACTIVE]

Each round runs the pair sequentially and concurrently (the order alternates between rounds) and
prints wall-clock seconds for both, plus each run's median epoch seconds from its metrics.json.
`--env` adds variables to both processes, e.g. the old ACTIVE policy for comparison. A short
warm-up run first builds the compiled kernels and the dataset cache, so neither side pays them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MNISTLAB = [sys.executable, "-m", "mnistlab"]


def _command(preset: str, epochs: int, runs_dir: Path, extra: list[str] = ()) -> list[str]:
    return [*MNISTLAB, "run", preset, "--epochs", str(epochs), "--quiet", "--runs-dir",
            str(runs_dir), "--set", "output.plots=false", *extra]


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"a run failed ({proc.returncode}):\n{err[-2000:]}")


def _epoch_seconds(runs_dir: Path) -> list[float]:
    return [json.loads(m.read_text())["seconds_per_epoch"]
            for m in sorted(runs_dir.glob("*/metrics.json"))]


def _pair(preset: str, epochs: int, env: dict[str, str], concurrent: bool) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        start = time.perf_counter()
        if concurrent:
            procs = [_start(_command(preset, epochs, runs / str(i)), env) for i in range(2)]
            for proc in procs:
                _finish(proc)
        else:
            for i in range(2):
                _finish(_start(_command(preset, epochs, runs / str(i)), env))
        wall = time.perf_counter() - start
        return wall, [s for i in range(2) for s in _epoch_seconds(runs / str(i))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cnn/template")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    env = {**os.environ, **dict(e.split("=", 1) for e in args.env)}
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: kernels, dataset cache
        _finish(_start(_command(args.preset, 1, Path(tmp), ["--set", "data.train_samples=512"]),
                       env))
    print(f"{args.preset}, {args.epochs} epochs per run, {os.cpu_count()} cores, "
          f"extra env: {args.env or 'none'}", flush=True)
    walls: dict[str, list[float]] = {"sequential": [], "concurrent": []}
    for r in range(args.rounds):
        order = ["sequential", "concurrent"] if r % 2 == 0 else ["concurrent", "sequential"]
        for mode in order:
            wall, epochs = _pair(args.preset, args.epochs, env, mode == "concurrent")
            walls[mode].append(wall)
            print(f"  round {r + 1} {mode}: {wall:.1f} s wall for both runs; median epoch of "
                  f"each run: {', '.join(f'{s:.2f}' for s in epochs)} s", flush=True)
    seq, conc = statistics.median(walls["sequential"]), statistics.median(walls["concurrent"])
    print(f"  median: sequential {seq:.1f} s, concurrent {conc:.1f} s; concurrent / sequential "
          f"= {conc / seq:.2f} ({'not slower' if conc <= seq else 'SLOWER'})", flush=True)


if __name__ == "__main__":
    main()
