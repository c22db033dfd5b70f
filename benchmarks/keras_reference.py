"""Keras 3 / TensorFlow CPU reference epoch times for benchmarks/epoch_vs_keras.py.

Why: mnistlab claims its PyTorch epochs are faster than Keras on TensorFlow CPU for the same model,
batch size and data on the same machine. This script is the Keras side, written the way the lab
code ran it (Sequential model, glorot_uniform defaults, RMSprop() defaults, categorical
crossentropy on one-hot labels, model.fit with shuffle and validation_data), so the comparison is
against Keras as people use it. It runs in its own virtualenv (benchmarks/keras_env.sh), never in
mnistlab's, so TensorFlow and PyTorch do not share a process.

    benchmarks/.venv-keras/bin/python benchmarks/keras_reference.py spec.json   # or spec on stdin

Spec (JSON):
    inputs      .npz with x_train (float32, N x ...), y_train (int labels), x_val, y_val
    model       {"kind": "mlp", "hidden": [250], "activation": "tanh", "dropout": 0.5}
                or {"kind": "cnn", "layers": [{"type": "conv2d", "filters": 9, "kernel_size": 5,
                "padding": "same", "activation": "relu"}, {"type": "maxpool2d", "pool_size": 2},
                {"type": "flatten"}, {"type": "dense", "units": 25}, {"type": "dropout",
                "rate": 0.5}, ...]} on (N, 28, 28, 1) inputs. Dense(n_classes, softmax) is appended.
    batch_size, epochs (>= 2)
    threads     TF intra- and inter-op threads (default os.cpu_count())
    jit_compile optional true/false; default "auto" (Keras resolves it to false on CPU)
    seed        optional, default 0;  n_classes optional, default 10

Prints one JSON line: framework, keras_version, tf_version, jit_compile (as resolved),
epoch_seconds (every epoch, wall clock from on_epoch_begin to on_epoch_end, i.e. training plus
Keras's validation pass), steady_epoch_seconds (median of epochs 2..n; epoch 1 traces the graph
and is warm-up), epoch_cpu_seconds (this process's CPU time per epoch: if it is far below
threads x wall time, other processes took the cores and the wall times are not a fair figure) and
history (loss, accuracy, val_loss, val_accuracy).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def read_spec(argv: list[str]) -> dict:
    if len(argv) > 1 and argv[1] != "-":
        with open(argv[1]) as f:
            return json.load(f)
    return json.load(sys.stdin)


def build_model(keras, spec: dict, input_shape: tuple[int, ...], n_classes: int):
    layers = keras.layers
    out = [keras.Input(shape=input_shape)]
    if spec["kind"] == "mlp":
        out.append(layers.Flatten())
        for width in spec["hidden"]:
            out.append(layers.Dense(width, activation=spec.get("activation", "relu")))
            if spec.get("dropout", 0) > 0:
                out.append(layers.Dropout(spec["dropout"]))
    elif spec["kind"] == "cnn":
        for layer in spec["layers"]:
            kind = layer["type"]
            init = layer.get("kernel_initializer", "glorot_uniform")
            if kind == "conv2d":
                out.append(layers.Conv2D(layer["filters"], layer["kernel_size"],
                                         strides=layer.get("strides", 1),
                                         padding=layer.get("padding", "valid"),
                                         activation=layer.get("activation", "relu"),
                                         kernel_initializer=init))
            elif kind == "maxpool2d":
                out.append(layers.MaxPooling2D(layer.get("pool_size", 2),
                                               strides=layer.get("strides"),
                                               padding=layer.get("padding", "valid")))
            elif kind == "flatten":
                out.append(layers.Flatten())
            elif kind == "dense":
                out.append(layers.Dense(layer["units"], activation=layer.get("activation", "relu"),
                                        kernel_initializer=init))
            elif kind == "dropout":
                out.append(layers.Dropout(layer["rate"]))
            else:
                raise SystemExit(f"keras_reference.py: unknown layer type {kind!r}")
    else:
        raise SystemExit(f"keras_reference.py: unknown model kind {spec['kind']!r}")
    out.append(layers.Dense(n_classes, activation="softmax"))
    return keras.Sequential(out)


def main() -> None:
    spec = read_spec(sys.argv)
    epochs = int(spec["epochs"])
    if epochs < 2:
        raise SystemExit("keras_reference.py: epochs must be >= 2 (epoch 1 is warm-up)")
    threads = int(spec.get("threads") or os.cpu_count() or 1)

    import numpy as np
    import tensorflow as tf

    # Must happen before TensorFlow starts its runtime (i.e. before any op runs).
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    keras.utils.set_random_seed(int(spec.get("seed", 0)))
    n_classes = int(spec.get("n_classes", 10))
    with np.load(spec["inputs"]) as d:
        x_train = d["x_train"].astype("float32", copy=False)
        x_val = d["x_val"].astype("float32", copy=False)
        y_train = keras.utils.to_categorical(d["y_train"], n_classes)
        y_val = keras.utils.to_categorical(d["y_val"], n_classes)

    model = build_model(keras, spec["model"], tuple(x_train.shape[1:]), n_classes)
    model.compile(optimizer=keras.optimizers.RMSprop(), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=spec.get("jit_compile", "auto"))

    times: list[float] = []
    cpu: list[float] = []  # this process's CPU seconds per epoch: a check on a busy machine

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):  # called after the validation pass
            times.append(time.perf_counter() - self.start)
            cpu.append(time.process_time() - self.cpu)

    hist = model.fit(x_train, y_train, batch_size=int(spec["batch_size"]), epochs=epochs,
                     shuffle=True, validation_data=(x_val, y_val), verbose=0,
                     callbacks=[EpochTimer()])
    print(json.dumps({
        "framework": "keras",
        "keras_version": keras.__version__,
        "tf_version": tf.__version__,
        "jit_compile": bool(model.jit_compile),
        "threads": threads,
        "batch_size": int(spec["batch_size"]),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "epoch_seconds": times,
        "steady_epoch_seconds": statistics.median(times[1:]),
        "epoch_cpu_seconds": cpu,
        "history": {k: [float(v) for v in hist.history.get(k, [])]
                    for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
    }))


if __name__ == "__main__":
    main()
