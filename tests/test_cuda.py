"""Everything mnistlab does, with `--device cuda`: training (mnistlab.fast off, and saying so),
the test-set evaluation against the same weights on the CPU, predict, export, and resume after
Ctrl-C. The GPU tests skip without a CUDA GPU; on a GPU machine run them with one command:

    MNISTLAB_DATA=/path/to/data pytest tests/test_cuda.py   # data holds mnist/ (IDX files)

The first test needs no GPU: off the CPU, `fast.accelerate` hands back the stock plan and says so.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.config.geometry import feature_shape
from mnistlab.data.load import load_dataset
from mnistlab.errors import RunInterrupted
from mnistlab.fast.switch import accelerate
from mnistlab.nn.build import build_model
from mnistlab.predict.predictor import load_predictor, predict_files
from mnistlab.rundir.directory import read_history
from mnistlab.rundir.execute import resume_run, run_experiment

# Read at import, before conftest's per-test isolation: the data the caller pointed at.
DATA = Path(os.environ.get("MNISTLAB_DATA") or SHARED_DATA)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (torch.cuda.is_available() is False); on a GPU machine run "
           "`MNISTLAB_DATA=DIR pytest tests/test_cuda.py`")
N_TEST = 500  # test images each run evaluates (the first 500)
RUNS = {  # name -> (preset, overrides): dropout exercises the GPU's own dropout masks
    "mlp": ("raw/template", ["model.hidden=[64]", "model.dropout=0.2", "training.epochs=2",
                             "data.train_samples=2000"]),
    "cnn": ("cnn/template", ["training.epochs=3", "data.train_samples=3000"]),
}


def _overrides(name: str, device: str = "cuda") -> list[str]:
    preset, extra = RUNS[name]
    return [*extra, f'training.device="{device}"', f"data.test_samples={N_TEST}",
            "data.validation=0.1", "training.batch_size=64", "output.plots=false",
            f'output.name="{name}"']


def test_fast_path_stays_off_off_the_cpu_and_says_so():
    exp = load_experiment("cnn/template", [])
    model = build_model(exp.model, feature_shape(exp.features), 10, seed=0)
    notes: list[str] = []
    plan = accelerate(model, exp.training, exp.model, "cuda", notes.append)
    assert plan.model is model and plan.applied == ()  # stock modules, nothing rewritten
    assert notes == ["mnistlab.fast speeds up the CPU only: training on cuda uses stock "
                     "PyTorch modules"]


@pytest.fixture(scope="module")
def cuda_runs(tmp_path_factory) -> dict[str, Path]:
    """An MLP and the lab CNN trained on the GPU (seconds each)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not (DATA / "mnist").is_dir():
        pytest.skip(f"no MNIST under {DATA}: set MNISTLAB_DATA to a folder holding mnist/")
    root = tmp_path_factory.mktemp("cuda")
    return {name: run_experiment(load_experiment(RUNS[name][0], _overrides(name)),
                                 root / "runs", DATA).run_dir for name in RUNS}


@needs_cuda
def test_cli_run_on_cuda_turns_fast_off_and_says_so(tmp_path, capsys):
    if not (DATA / "mnist").is_dir():
        pytest.skip(f"no MNIST under {DATA}")
    runs = tmp_path / "runs-cli"
    argv = ["run", "raw/template", "--device", "cuda", "--runs-dir", str(runs),
            "--data-dir", str(DATA)]
    for override in _overrides("mlp")[:-1]:
        argv += ["--set", override]
    assert main(argv) == 0
    assert "mnistlab.fast speeds up the CPU only" in capsys.readouterr().err
    (run_dir,) = runs.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and metrics["fast"] == []


@needs_cuda
@pytest.mark.parametrize("name, least", [("mlp", 0.6), ("cnn", 0.2)])
def test_cuda_runs_learn_and_their_evaluation_matches_the_cpu(cuda_runs, name, least):
    """The GPU's test-set predictions against the saved weights run on the CPU: the same
    classes (TF32 and kernel order allow ~1e-3 in probabilities, so a rare near-tie may flip)."""
    run_dir = cuda_runs[name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and metrics["test_accuracy"] > least
    saved = np.load(run_dir / "predictions.npz")
    images = load_dataset("mnist", DATA).test_images[:N_TEST]
    cpu = load_predictor(run_dir).probabilities(images)
    assert np.mean(cpu.argmax(1) == saved["y_pred"]) >= 0.99
    np.testing.assert_allclose(cpu, saved["probabilities"], atol=1e-2)
    assert abs(np.mean(cpu.argmax(1) == saved["y_true"]) - metrics["test_accuracy"]) <= 0.01


@needs_cuda
def test_predict_with_a_cuda_trained_run(cuda_runs, tmp_path, capsys):
    images = load_dataset("mnist", DATA).test_images[:4]
    files = []
    for i, img in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(255 - img).save(files[-1])
    results = predict_files(cuda_runs["cnn"], files)
    assert all(r.ok for r in results)
    assert main(["predict", str(cuda_runs["mlp"]), *map(str, files)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(files)


@needs_cuda
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_a_cuda_trained_run(cuda_runs, tmp_path, fmt):
    from mnistlab.export import export_run

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    done = export_run(cuda_runs["cnn"], fmt, tmp_path / f"m.{fmt}", data_dir=DATA)
    assert done.path.is_file() and done.max_difference <= 1e-5


class _CtrlC:
    """A reporter that presses Ctrl-C (a real SIGINT) a few batches into the second epoch."""

    def __init__(self, into_epoch_2: int):
        self.into, self.seen = into_epoch_2, 0

    def start(self, name, epochs, first_epoch): ...
    def epoch(self, epoch, logs): ...
    def stop(self): ...
    def note(self, text): ...

    def batch(self, done, total):
        self.seen += 1
        if self.seen == total + self.into:
            signal.raise_signal(signal.SIGINT)


@needs_cuda
def test_resume_on_cuda_after_ctrl_c_mid_epoch(cuda_runs, tmp_path):
    """Stopped mid-epoch 2 and resumed: the history matches the uninterrupted run's (same GPU,
    same seed, the GPU's RNG restored from the checkpoint) within float rounding."""
    exp = load_experiment(RUNS["mlp"][0], _overrides("mlp"))
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", DATA, reporter=_CtrlC(5))
    run_dir = info.value.run_dir
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["epochs_done"]) == ("interrupted", 1)
    resumed = resume_run(run_dir, DATA)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    got, want = read_history(resumed.run_dir / "history.csv"), \
        read_history(cuda_runs["mlp"] / "history.csv")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-4)
