"""Benchmark: how well MNIST-trained networks read digits that are not in MNIST's framing.

Trains (or reuses) a raw-pixel MLP and the lab's CNN, then runs `mnistlab.predict.predict_files`
on image FILES of four kinds and prints each accuracy and its ratio to the reference measured in
the same run: the same model's accuracy on the MNIST test set in MNIST's own framing.

  fonts    typeset digits (DejaVu sans/serif/mono/bold/oblique), random size, position,
           stroke, colours, polarity and alpha, canvases 20x20 to 300x200
           (tests/synthetic_digits.render_font_digits)
  pasted   MNIST *test* digits rescaled x0.5-x4 into larger canvases, plain / inverted /
           tinted / noisy (tests/synthetic_digits.paste_mnist_digits)
  sklearn  scikit-learn's `load_digits` (1,797 8x8 images, 0-16) upscaled x8 bilinear to 64x64,
           with a 16 px black margin, saved as PNG
  mnist    reference: the MNIST test set itself, straight into the network (no imageprep)

    PYTHONPATH=src python benchmarks/bench_predict.py                       # train both
    PYTHONPATH=src python benchmarks/bench_predict.py --mlp-run R1 --cnn-run R2  # reuse runs
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab import load_experiment
from mnistlab.data.load import load_dataset
from mnistlab.predict.predictor import load_predictor, predict_files
from mnistlab.rundir.execute import run_experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_digits import paste_mnist_digits, render_font_digits  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def save_all(items, folder: Path) -> tuple[list[Path], np.ndarray]:
    """(PIL image, label) pairs -> PNG files; returns paths and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (img, _) in enumerate(items):
        paths.append(folder / f"{i:05d}.png")
        img.save(paths[-1])
    return paths, np.array([label for _, label in items])


def sklearn_digits(folder: Path) -> tuple[list[Path], np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    items = []
    for image, label in zip(digits.images, digits.target, strict=True):
        big = Image.fromarray((image / 16.0).astype(np.float32)).resize((64, 64),
                                                                        Image.Resampling.BILINEAR)
        canvas = np.zeros((96, 96), np.float32)
        canvas[16:80, 16:80] = np.clip(np.asarray(big), 0, 1)
        items.append((Image.fromarray(np.round(canvas * 255).astype(np.uint8)), int(label)))
    return save_all(items, folder)


def train(preset: str, epochs: int, train_samples: int, runs_dir: Path) -> Path:
    exp = load_experiment(preset, [f"training.epochs={epochs}", "data.validation=0.1",
                                   f"data.train_samples={train_samples}", "output.plots=false",
                                   "training.seed=0"])
    start = time.perf_counter()
    run = run_experiment(exp, runs_dir, DATA).run_dir
    print(f"trained {preset} ({epochs} epochs, {train_samples or 60000} samples, 10% held "
          f"out for validation) in "
          f"{time.perf_counter() - start:.1f} s -> {run}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-run", type=Path, help="reuse this finished raw-MLP run")
    parser.add_argument("--cnn-run", type=Path, help="reuse this finished CNN run")
    parser.add_argument("--mlp-preset", default="raw/template")
    parser.add_argument("--cnn-preset", default="cnn/template")
    parser.add_argument("--epochs", type=int, default=10, help="when training (lab: 10)")
    parser.add_argument("--train-samples", type=int, default=0, help="0 = all 60,000")
    parser.add_argument("--fonts", type=int, default=1000, help="font-rendered digits")
    parser.add_argument("--pasted", type=int, default=2000, help="pasted MNIST test digits")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    os.environ.setdefault("MNISTLAB_CACHE", str(work / "cache"))
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, work folder {work}")
    runs = {
        "mlp": args.mlp_run or train(args.mlp_preset, args.epochs, args.train_samples,
                                     work / "runs"),
        "cnn": args.cnn_run or train(args.cnn_preset, args.epochs, args.train_samples,
                                     work / "runs"),
    }
    ds = load_dataset("mnist", DATA)
    # Pasted digits come from the test set's second half; the MLP/CNN never trained on them.
    sets = {
        "fonts": save_all(render_font_digits(args.fonts, seed=0), work / "fonts"),
        "pasted": save_all(paste_mnist_digits(ds.test_images[5000:], ds.test_labels[5000:],
                                              args.pasted, seed=0), work / "pasted"),
        "sklearn": sklearn_digits(work / "sklearn"),
    }
    print(f"\n{'set':<9}{'images':>8}" + "".join(f"{name + ' acc':>11}{'ratio':>8}"
                                                   for name in runs))
    predictors = {name: load_predictor(run) for name, run in runs.items()}
    reference = {name: float(np.mean(p.probabilities(ds.test_images).argmax(1)
                                     == ds.test_labels)) for name, p in predictors.items()}
    print(f"{'mnist':<9}{len(ds.test_images):>8}"
          + "".join(f"{reference[n]:>11.4f}{1:>8.3f}" for n in runs) + "   (reference)")
    for set_name, (paths, labels) in sets.items():
        row = f"{set_name:<9}{len(paths):>8}"
        for name, predictor in predictors.items():
            start = time.perf_counter()
            results = predict_files(predictor, paths)
            seconds = time.perf_counter() - start
            failed = [r for r in results if not r.ok and not r.error.startswith("no digit")]
            assert not failed, failed[:3]
            blank = sum(not r.ok for r in results)  # "no digit found" counts as a miss
            acc = float(np.mean([r.prediction == y for r, y in zip(results, labels,
                                                                   strict=True)]))
            row += f"{acc:>11.4f}{acc / reference[name]:>8.3f}"
        print(row + f"   ({len(paths) / seconds:,.0f} images/s, last model; {blank} with no "
              "digit found)")
    for name, run in runs.items():
        print(f"{name}: {run}")


if __name__ == "__main__":
    main()
