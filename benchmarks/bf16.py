"""bf16 against fp32: seconds per epoch and test accuracy over seeds, same presets, same run.

    MNISTLAB_DATA=../shared/data .venv/bin/python benchmarks/bf16.py \\
        [--presets raw/final cnn/final fashion/final] [--epochs 5] [--seeds 3]

For each preset and seed it trains the fp32 run (with mnistlab's fast path, the default) and
the `training.precision = "bf16"` run (stock modules under autocast), alternating which goes
first, each as its own `mnistlab run` process, and prints the median seconds per epoch of each,
their ratio (fp32 / bf16: above 1 means bf16 is faster) and the test accuracy mean +- std over
seeds. The reference is fp32 measured in the same invocation. Time on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MNISTLAB = [sys.executable, "-m", "mnistlab"]


def train(preset: str, precision: str, epochs: int, seed: int, runs: Path) -> dict:
    name = f"{preset.replace('/', '-')}-{precision}-s{seed}"
    subprocess.run([*MNISTLAB, "run", preset, "--runs-dir", str(runs), "--quiet",
                    "--set", f"training.precision={precision}",
                    "--set", f"training.epochs={epochs}",
                    "--set", f"training.seed={seed}", "--set", f"output.name={name}"],
                   check=True, capture_output=True, text=True)
    run_dir = max(runs.glob(f"*-{name}"))
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["raw/final", "cnn/final", "fashion/final"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for preset in args.presets:
            got: dict[str, list[dict]] = {"fp32": [], "bf16": []}
            for seed in range(args.seeds):
                order = ["fp32", "bf16"] if seed % 2 == 0 else ["bf16", "fp32"]
                for precision in order:
                    got[precision].append(train(preset, precision, args.epochs, seed, runs))
            sec = {k: statistics.median(m["seconds_per_epoch"] for m in v) for k, v in got.items()}
            acc = {k: [m["test_accuracy"] * 100 for m in v] for k, v in got.items()}
            spread = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in acc.items()}
            print(f"{preset}: {args.epochs} epochs x {args.seeds} seeds | s/epoch fp32 "
                  f"{sec['fp32']:.2f}, bf16 {sec['bf16']:.2f}, fp32/bf16 "
                  f"{sec['fp32'] / sec['bf16']:.2f}x | test accuracy fp32 "
                  f"{statistics.mean(acc['fp32']):.2f} +- {spread['fp32']:.2f}%, bf16 "
                  f"{statistics.mean(acc['bf16']):.2f} +- {spread['bf16']:.2f}%", flush=True)


if __name__ == "__main__":
    main()
