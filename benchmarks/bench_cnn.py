"""CNN epoch time: mnistlab's optimised path and its plain path against Keras 3 / TensorFlow CPU.

Why: the lab's students found their CNN epochs slow on a laptop CPU (issue 4). Each preset is
trained on the same data (60,000 training images, the 10,000 test images as validation, as the
lab did), with the same model, batch size and thread count, on this machine, one side after the
other. An epoch is Keras's: training plus the validation pass. Epoch 1 of each side is warm-up
and dropped; the median of the rest is reported with the ratio keras / mnistlab.

    python benchmarks/bench_cnn.py [--presets cnn/final fashion/final] [--epochs 4] [--threads 2]

"plain" is the straightforward PyTorch model (NCHW, the whole batch in one forward pass);
"mnistlab" is what `mnistlab run` uses (`models.preferred_chunk_size`, `build_model` defaults).
Keras runs in benchmarks/.venv-keras (benchmarks/keras_env.sh) via epoch_vs_keras.keras().
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# OpenMP threads that sleep instead of spinning while they wait: on a shared 2-core machine
# spinning threads steal the cores the working ones need (measured 4.5x slower epochs under
# load). libgomp reads this when torch loads it, so it must be set before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from mnistlab import load_experiment  # noqa: E402
from mnistlab.models import build_model, preferred_chunk_size  # noqa: E402
from mnistlab.pipeline import _tensors, prepare_data  # noqa: E402
from mnistlab.train import (  # noqa: E402
    epoch_generator,
    evaluate,
    make_optimizer,
    set_threads,
    train_one_epoch,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch_vs_keras import keras as keras_epochs  # noqa: E402


def our_epochs(exp, splits, epochs: int, channels_last: bool, chunk: int | None) -> list[float]:
    """Seconds per epoch (train + validation) of our model with the given memory layout/chunks."""
    train, val, _ = _tensors(splits, torch.device("cpu"))
    model = build_model(exp.model, tuple(splits.x_train.shape[1:]), 10, seed=0,
                        channels_last=channels_last)
    opt = make_optimizer(model.parameters(), exp.optimizer)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(train[0]), generator=epoch_generator(0, epoch))
        train_one_epoch(model, opt, *train, exp.training.batch_size, order, chunk_size=chunk)
        evaluate(model, *val, batch_size=chunk or 8192)
        times.append(time.perf_counter() - start)
    return times


def _line(label: str, times: list[float]) -> str:
    return (f"  {label:<34} epochs " + ", ".join(f"{s:.2f}" for s in times)
            + f" s -> {statistics.median(times[1:]):.2f} s/epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cnn/final", "fashion/final"])
    parser.add_argument("--epochs", type=int, default=4, help="per side, first is warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain PyTorch path")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} threads, {args.epochs} epochs per side "
          "(first dropped)")
    for preset in args.presets:
        exp = load_experiment(preset)
        splits, _ = prepare_data(exp)
        chunk = preferred_chunk_size(exp.model)
        k = keras_epochs(exp, splits, args.epochs, threads)
        ours = our_epochs(exp, splits, args.epochs, True, chunk)
        plain = None if args.no_plain else our_epochs(exp, splits, args.epochs, False, None)
        keras_s, ours_s = k["steady_epoch_seconds"], statistics.median(ours[1:])
        print(f"{preset}: batch {exp.training.batch_size}, {len(splits.x_train)} train + "
              f"{len(splits.x_val)} validation images")
        print(_line(f"keras {k['keras_version']} / tf {k['tf_version']}", k["epoch_seconds"]))
        if plain is not None:
            print(_line("plain torch (NCHW, whole batch)", plain))
        print(_line(f"mnistlab (chunks of {chunk})", ours))
        print(f"  ratio keras/mnistlab = {keras_s / ours_s:.2f}x", end="")
        if plain is not None:
            print(f"; plain/mnistlab = {statistics.median(plain[1:]) / ours_s:.2f}x", end="")
        print()


if __name__ == "__main__":
    main()
