"""Epoch time of an mnistlab preset against Keras 3 / TensorFlow CPU on the same model and data.

Both sides train the same network (same layers, batch size, RMSprop defaults, 60,000 training
images, the 10,000 test images as validation, as the lab did) on this machine, one after the
other, with the same number of threads. An "epoch" is Keras's: one pass of training plus the
validation evaluation. The first epoch of each side is warm-up (graph tracing, allocation) and is
discarded; the median of the rest is reported.

    python benchmarks/epoch_vs_keras.py raw/final [--epochs 5] [--threads 2]

Keras runs in its own virtualenv (benchmarks/.venv-keras, made by benchmarks/keras_env.sh).
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

import numpy as np
import torch

from mnistlab import load_experiment
from mnistlab.models import layer_specs
from mnistlab.pipeline import _tensors, prepare_data
from mnistlab.sparse_input import SplitMatrix, split_training_input
from mnistlab.train import (
    epoch_generator,
    evaluate,
    flush_denormals,
    make_optimizer,
    set_threads,
    train_one_epoch,
)

HERE = Path(__file__).resolve().parent
KERAS_PY = HERE / ".venv-keras" / "bin" / "python"


def ours(exp, splits, epochs: int) -> list[float]:
    from mnistlab.models import build_model

    train, val, _ = _tensors(splits, torch.device("cpu"))
    model = build_model(exp.model, tuple(splits.x_train.shape[1:]), 10, seed=0)
    opt = make_optimizer(model.parameters(), exp.optimizer)
    # what `train.fit` does for an MLP: a mostly-zero input becomes a dense core + sparse rest
    x = split_training_input(model, train[0], exp.training.batch_size)
    if isinstance(x, SplitMatrix):
        print(f"  mnistlab input split: {len(x.plan.core)} dense + {len(x.plan.rest)} sparse "
              f"columns (estimated cost {x.plan.estimated_cost:.2f} of dense)")
    times = []
    with flush_denormals():  # as train.fit does
        for epoch in range(epochs):
            start = time.perf_counter()
            order = torch.randperm(len(train[0]), generator=epoch_generator(0, epoch))
            train_one_epoch(model, opt, x, train[1], exp.training.batch_size, order)
            evaluate(model, *val)
            times.append(time.perf_counter() - start)
    return times


def keras_model_spec(exp) -> dict:
    """The same network for keras_reference.py (without the final softmax layer it appends)."""
    if exp.model.kind == "mlp":
        return {"kind": "mlp", "hidden": list(exp.model.hidden),
                "activation": exp.model.activation, "dropout": exp.model.dropout}
    layers = [s for s in layer_specs(exp.model, 10)][:-1]
    return {"kind": "cnn", "layers": layers}


def keras(exp, splits, epochs: int, threads: int) -> dict:
    if not KERAS_PY.exists():
        sys.exit(f"{KERAS_PY} missing: run `bash benchmarks/keras_env.sh` first")
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        x_train, x_val = splits.x_train, splits.x_val
        if exp.model.kind == "cnn":
            x_train, x_val = x_train[..., None], x_val[..., None]
        elif x_train.ndim == 3:
            x_train, x_val = x_train.reshape(len(x_train), -1), x_val.reshape(len(x_val), -1)
        np.savez(npz, x_train=x_train, y_train=splits.y_train, x_val=x_val, y_val=splits.y_val)
        spec = {"inputs": str(npz), "model": keras_model_spec(exp),
                "batch_size": exp.training.batch_size, "epochs": epochs, "threads": threads}
        proc = subprocess.run([str(KERAS_PY), str(HERE / "keras_reference.py")],
                              input=json.dumps(spec), capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        sys.exit(f"keras_reference.py failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    exp = load_experiment(args.preset)
    splits, _ = prepare_data(exp)
    k = keras(exp, splits, args.epochs, threads)
    o = ours(exp, splits, args.epochs)
    ours_s = statistics.median(o[1:])
    keras_s = k["steady_epoch_seconds"]
    print(f"preset {args.preset}: batch {exp.training.batch_size}, {len(splits.x_train)} train + "
          f"{len(splits.x_val)} validation images, {threads} threads")
    print(f"  keras {k.get('keras_version')} / tf {k.get('tf_version')}: epochs "
          + ", ".join(f"{s:.3f}" for s in k["epoch_seconds"]) + f" s -> {keras_s:.3f} s/epoch")
    print("  mnistlab: epochs " + ", ".join(f"{s:.3f}" for s in o) + f" s -> {ours_s:.3f} s/epoch")
    print(f"  ratio keras/mnistlab = {keras_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
