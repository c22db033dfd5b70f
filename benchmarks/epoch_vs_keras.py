"""Epoch time of mnistlab presets against Keras 3 / TensorFlow CPU on the same model and data.

Both sides train the same network (same layers, batch size, RMSprop defaults, 60,000 training
images, the 10,000 test images as validation, as the lab did) on this machine, with the same
number of threads. An "epoch" is Keras's: one pass of training plus the validation evaluation.
The first epoch of each side is warm-up (graph tracing, allocation) and is discarded; the median
of the rest is that side's figure.

Each side runs in a fresh process, one after the other, `--rounds` times (Keras, mnistlab,
Keras, mnistlab, ...): this VM's speed drifts by up to 30% between minutes, so the median of the
per-round ratios is reported with every round shown. Fresh processes also keep one side's
OpenMP threads from spinning on a core while the other side runs.

mnistlab trains exactly as `mnistlab run` does: the CLI's process set-up (OpenMP spin count,
flush-to-zero, allocator), then `fast.plan_for` (the fast plan, or the stock one when off).

    python benchmarks/epoch_vs_keras.py raw/final hog/final cnn/final fashion/final \\
        [--epochs 5] [--threads 2] [--rounds 3] [--variants default,dense-input] [--profile]

A preset may also be an experiment file: `benchmarks/models/cnn-18-18-32-d75.toml` is the lab
CNN with doubled filters, to check that the speed is not tied to the lab's exact layers (with
`fashion/run2-lab-cnn-tanh`, tanh everywhere, and `fashion/run3-conv64`, 64 filters and a
12,544 -> 100 Dense layer).

`--variants` measures mnistlab set up otherwise in the same rounds, to show what a choice is
worth: `stock` (`--no-fast`: stock torch.nn modules and autograd, no process settings),
`compile` (`torch.compile`, inductor, of the stock model, with the default's process settings
and CNN chunks), `dense-input` (an MLP's first layer without the dense-core + sparse-rest
split) or `chunk=N` (batches in chunks of N images). `--profile` prints the torch profiler's top
operations for the last mnistlab epoch of the first round.

Keras runs in its own virtualenv (benchmarks/.venv-keras, made by benchmarks/keras_env.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERAS_PY = HERE / ".venv-keras" / "bin" / "python"


def ours_worker(preset: str, epochs: int, threads: int, variant: str = "default",
                profile: bool = False) -> dict:
    """Runs in its own process: our epochs, set up as `mnistlab run` sets them up (or as
    `variant` says)."""
    if variant == "stock":
        os.environ["MNISTLAB_FAST"] = "0"  # as `mnistlab run --no-fast`
    from mnistlab.fast.openmp import choose_wait_policy

    choose_wait_policy()  # as the CLI does, before torch loads
    import dataclasses

    import torch

    import mnistlab
    from mnistlab.fast.cpu import prepare_process
    from mnistlab.fast.openmp import off_by_environment
    from mnistlab.fast.sparse_input import SplitMatrix
    from mnistlab.fast.switch import plan_for
    from mnistlab.nn.build import build_model
    from mnistlab.nn.optim import make_optimizer
    from mnistlab.rundir.execute import _tensors, prepare_data
    from mnistlab.training.device import set_threads
    from mnistlab.training.loop import epoch_generator, evaluate, train_one_epoch
    from mnistlab.training.steps import TrainingPlan, autograd_step, chunked_step

    if not off_by_environment():
        prepare_process()
    set_threads(threads)
    overrides = [f"training.chunk_size={variant.split('=', 1)[1]}"] if variant.startswith(
        "chunk=") else []
    exp = mnistlab.load_experiment(preset, overrides)
    splits, _ = prepare_data(exp)
    train, val, _ = _tensors(splits, torch.device("cpu"))
    stock = build_model(exp.model, tuple(splits.x_train.shape[1:]), 10, seed=0)
    plan = plan_for(stock, exp.training, exp.model)
    if variant == "dense-input":
        plan = dataclasses.replace(plan, train_input=lambda x: x)
    elif variant == "compile":  # inductor on the stock model; CNNs in the default's chunks
        compiled = torch.compile(stock)
        chunk = plan.eval_batch_size if exp.model.kind == "cnn" else None
        step = chunked_step(compiled, chunk) if chunk else autograd_step(compiled)
        plan = TrainingPlan(compiled, step, eval_batch_size=chunk or 8192,
                            settings=plan.settings, applied=("torch.compile",))
    opt = make_optimizer(plan.model.parameters(), exp.optimizer)
    x = plan.train_input(train[0])
    note = (f"input split {len(x.plan.core)} dense + {len(x.plan.rest)} sparse columns"
            if isinstance(x, SplitMatrix) else "dense input")
    note += "; " + (", ".join(plan.applied) or "stock torch.nn + autograd")
    times, table = [], ""
    with plan.settings():
        for epoch in range(epochs):
            profiler = (torch.profiler.profile() if profile and epoch == epochs - 1
                        else contextlib.nullcontext())
            with profiler:
                start = time.perf_counter()
                order = torch.randperm(len(train[0]), generator=epoch_generator(0, epoch))
                train_one_epoch(plan.model, opt, x, train[1], exp.training.batch_size, order,
                                step=plan.step)
                evaluate(plan.model, *val, batch_size=plan.eval_batch_size)
                times.append(time.perf_counter() - start)
            if profile and epoch == epochs - 1:
                table = profiler.key_averages().table(sort_by="self_cpu_time_total",
                                                      row_limit=12, max_name_column_width=40)
    return {"epoch_seconds": times, "note": note, "torch_version": torch.__version__,
            "profile": table}


def export_worker(preset: str, npz: str) -> dict:
    """Runs in its own process: the preset's inputs as arrays for keras_reference.py."""
    import numpy as np

    import mnistlab
    from mnistlab.config.layers import layer_specs
    from mnistlab.rundir.execute import prepare_data

    exp = mnistlab.load_experiment(preset)
    splits, _ = prepare_data(exp)
    x_train, x_val = splits.x_train, splits.x_val
    if exp.model.kind == "cnn":
        x_train, x_val = x_train[..., None], x_val[..., None]
    elif x_train.ndim == 3:
        x_train, x_val = x_train.reshape(len(x_train), -1), x_val.reshape(len(x_val), -1)
    np.savez(npz, x_train=x_train, y_train=splits.y_train, x_val=x_val, y_val=splits.y_val)
    if exp.model.kind == "mlp":
        model = {"kind": "mlp", "hidden": list(exp.model.hidden),
                 "activation": exp.model.activation, "dropout": exp.model.dropout}
    else:  # the layer list without the final softmax layer keras_reference.py appends
        model = {"kind": "cnn", "layers": list(layer_specs(exp.model, 10))[:-1]}
    return {"model": model, "batch_size": exp.training.batch_size,
            "n_train": len(x_train), "n_val": len(x_val)}


def _json_of(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> dict:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(*args: str) -> dict:
    return _json_of([sys.executable, __file__, "--worker", *args], dict(os.environ))


def keras_environment() -> dict[str, str]:
    """TensorFlow with its own defaults: no OpenMP setting of ours is passed on."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}


def compare(preset: str, epochs: int, threads: int, rounds: int,
            variants: tuple[str, ...] = ("default",), profile: bool = False) -> float:
    if not KERAS_PY.exists():
        sys.exit(f"{KERAS_PY} missing: run `bash benchmarks/keras_env.sh` first")
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "data.npz")
        info = _worker("export", preset, npz)
        spec = {"inputs": npz, "model": info["model"], "batch_size": info["batch_size"],
                "epochs": epochs, "threads": threads}
        print(f"{preset}: batch {info['batch_size']}, {info['n_train']} train + {info['n_val']} "
              f"validation images, {threads} threads, {rounds} rounds", flush=True)
        keras_all: list[float] = []
        ours_all: dict[str, list[float]] = {v: [] for v in variants}
        ratios: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(rounds):
            k = _json_of([str(KERAS_PY), str(HERE / "keras_reference.py")],
                         keras_environment(), json.dumps(spec))
            keras_s = k["steady_epoch_seconds"]
            keras_all.append(keras_s)
            print(f"  round {r + 1}: keras {k['keras_version']} / tf {k['tf_version']} epochs "
                  + ", ".join(f"{s:.3f}" for s in k["epoch_seconds"]) + f" -> {keras_s:.3f} s",
                  flush=True)
            for v in variants:
                o = _worker("ours", preset, str(epochs), str(threads), v,
                            str(int(profile and r == 0 and v == variants[0])))
                ours_s = statistics.median(o["epoch_seconds"][1:])
                ours_all[v].append(ours_s)
                ratios[v].append(keras_s / ours_s)
                print(f"    mnistlab {v} (torch {o['torch_version']}, {o['note']}) epochs "
                      + ", ".join(f"{s:.3f}" for s in o["epoch_seconds"])
                      + f" -> {ours_s:.3f} s; ratio {keras_s / ours_s:.2f}x", flush=True)
                if o["profile"]:
                    print(o["profile"], flush=True)
    for v in variants:
        print(f"  median {v}: keras {statistics.median(keras_all):.3f} s/epoch, mnistlab "
              f"{statistics.median(ours_all[v]):.3f} s/epoch, keras/mnistlab = "
              f"{statistics.median(ratios[v]):.2f}x (rounds: "
              + ", ".join(f"{x:.2f}" for x in ratios[v]) + ")", flush=True)
    return statistics.median(ratios[variants[0]])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, preset, *rest = sys.argv[2:]
        result = (ours_worker(preset, int(rest[0]), int(rest[1]), rest[2], rest[3] == "1")
                  if kind == "ours" else export_worker(preset, rest[0]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--epochs", type=int, default=5, help="per side, first is warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="default",
                        help="comma-separated: default, stock, compile, dense-input, chunk=N")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    for preset in args.presets:
        compare(preset, args.epochs, args.threads, args.rounds, variants, args.profile)


if __name__ == "__main__":
    main()
