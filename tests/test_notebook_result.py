"""The Python face of a run (`mnistlab.run_experiment`, `load_run`): the trained model, history,
metrics, `predict` on arrays against `mnistlab predict` on the same pixels as files, the HTML
Jupyter shows, and the progress bar shown only inside a kernel."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import sys
import types

import numpy as np
import pytest
import torch
from conftest import CtrlCAt
from PIL import Image
from rich.console import Console

import mnistlab
from mnistlab.commands.main import main
from mnistlab.data.load import load_dataset
from mnistlab.errors import ConfigError, RunError
from mnistlab.notebook import progress
from mnistlab.notebook.result import HistoryTable, Metrics, Run
from mnistlab.rundir.directory import read_history, write_status


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_cache):
    """One small finished run on real MNIST (600 images, 2 epochs), with its plots."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    root = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_CACHE", str(session_cache))
        exp = mnistlab.load_experiment("raw/template", [
            "data.train_samples=600", "data.test_samples=200", "data.validation=0.1",
            "model.hidden=[32]", "training.epochs=2", 'output.name="nb"'])
        run = mnistlab.run_experiment(exp, runs_dir=root / "runs", data_dir=SHARED_DATA)
    return run


def test_run_experiment_returns_the_run_as_recorded(trained):
    assert isinstance(trained, Run) and trained.status == "complete" and not trained.problems
    recorded = json.loads((trained.run_dir / "metrics.json").read_text())
    assert trained.metrics == recorded and isinstance(trained.metrics, Metrics)
    assert trained.history == read_history(trained.run_dir / "history.csv")
    assert isinstance(trained.history, HistoryTable) and trained.history.epochs == 2
    assert [r["epoch"] for r in trained.history.rows()] == [1, 2]
    assert trained.history.rows()[1]["val_loss"] == trained.history["val_loss"][1]
    assert trained.name == trained.run_dir.name and trained.path == trained.run_dir
    assert trained.experiment.model.hidden == (32,) and trained.experiment.training.epochs == 2


def test_the_model_is_the_trained_stock_network_in_eval_mode_on_the_cpu(trained):
    model = trained.model
    assert not model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(type(m).__module__.startswith("torch.nn.") for m in model.modules())
    saved = torch.load(trained.run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    # the model gives the test predictions the run recorded (raw features: pixels / 255)
    test = load_dataset("mnist").test_images[:200]
    with torch.no_grad():
        logits = model(torch.from_numpy(test.reshape(200, -1).astype(np.float32) / 255.0))
    recorded = np.load(trained.run_dir / "predictions.npz")["y_pred"]
    assert np.array_equal(logits.argmax(1).numpy(), recorded)


def test_load_run_gives_the_same_run_by_path_or_by_name(trained):
    for again in (mnistlab.load_run(trained.run_dir),
                  mnistlab.load_run(trained.name, runs_dir=trained.run_dir.parent)):
        assert (again.run_dir, again.status, again.metrics, again.history, again.config) == (
            trained.run_dir, trained.status, trained.metrics, trained.history, trained.config)
    with pytest.raises(RunError, match="no such run directory"):
        mnistlab.load_run("no-such-run", runs_dir=trained.run_dir.parent)


def test_predict_on_arrays_equals_mnistlab_predict_on_the_same_pixels(trained, tmp_path):
    images = load_dataset("mnist").test_images[:12]
    files = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i:02d}.png")
        files.append(str(tmp_path / f"{i:02d}.png"))
    out = tmp_path / "cli.csv"
    assert main(["predict", str(trained.run_dir), *files, "--top", "10", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    cli_classes = np.array([int(r["prediction"]) for r in rows])
    cli_probs = np.zeros((12, 10))
    for i, r in enumerate(rows):
        for k in range(1, 11):
            cli_probs[i, int(r[f"class_{k}"])] = float(r[f"probability_{k}"])
    for given in (images, images.astype(np.float64) / 255.0, list(images)):
        got = trained.predict(given)
        assert np.array_equal(got.classes, cli_classes)
        assert np.allclose(got.probabilities, cli_probs, atol=1e-6)  # the CSV has 6 decimals
        assert got.names == [trained.metrics["class_names"][c] for c in cli_classes]
    one = trained.predict(images[3])  # a single (H, W) image is a batch of one
    assert len(one) == 1 and one.classes[0] == cli_classes[3]


def test_predict_says_no_digit_for_blank_images_and_refuses_non_images(trained):
    got = trained.predict(np.stack([np.zeros((28, 28), np.uint8),
                                    load_dataset("mnist").test_images[0]]))
    assert got.classes[0] == -1 and "no digit found" in got.errors[0]
    assert np.isnan(got.probabilities[0]).all() and got.errors[1] is None
    assert got.probabilities[1].sum() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"images: must be one \(H, W\) image"):
        trained.predict(np.zeros((2, 2, 28, 28)))
    with pytest.raises(ConfigError, match=r"images\[0\]: values must be in \[0, 1\]"):
        trained.predict(np.full((28, 28), 3.0))
    with pytest.raises(ConfigError, match=r"images\[1\]: integer pixels must be in \[0, 255\]"):
        trained.predict([np.zeros((28, 28), np.int64), np.full((28, 28), 300)])


def _embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_the_html_shows_scores_curves_confusion_and_summary_with_nothing_fetched(trained):
    html = trained._repr_html_()
    pngs = _embedded_pngs(html)
    assert pngs == [(trained.run_dir / n).read_bytes()
                    for n in ("loss.png", "accuracy.png", "confusion.png")]
    acc = trained.metrics["test_accuracy"]
    assert f"<td>test accuracy</td><td>{acc:.4f}</td>" in html
    assert f"<td>parameters</td><td>{trained.metrics['params']:,}</td>" in html
    summary_line = trained.summary.splitlines()[2]
    assert summary_line and summary_line in html  # summary.txt, in a <pre>
    assert "http" not in html and "<script" not in html
    table = trained.history._repr_html_()
    assert table.count("<tr>") == 1 + 2  # header + one row per epoch
    assert f"{trained.history['val_loss'][1]:.4f}" in table
    assert f"<td>{acc:.4f}</td>" in trained.metrics._repr_html_()
    shown = trained.predict(load_dataset("mnist").test_images[:3])._repr_html_()
    assert len(_embedded_pngs(shown)) == 3


def test_a_run_that_did_not_finish_loads_but_has_no_model(trained, tmp_path):
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(trained.run_dir, cut)
    (cut / "model.pt").unlink()
    write_status(cut, "interrupted", epochs_done=1)
    run = mnistlab.load_run(cut)
    assert run.status == "interrupted" and run.metrics is None and run.history.epochs == 2
    with pytest.raises(RunError, match="only a complete run has a trained model.*resume"):
        run.predict(np.zeros((28, 28)))
    assert run.experiment == trained.experiment  # its configuration is still there
    html = run._repr_html_()
    assert "interrupted" in html and len(_embedded_pngs(html)) == 2  # the curves, no confusion


def _fake_ipython(monkeypatch, kernel: bool) -> None:
    shell = types.SimpleNamespace(kernel=object()) if kernel else types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_a_progress_bar_only_inside_a_jupyter_kernel(monkeypatch):
    assert not progress.in_notebook() and progress.default_reporter(None) is None
    assert isinstance(progress.default_reporter(True), progress.ProgressReporter)
    _fake_ipython(monkeypatch, kernel=False)  # IPython in a terminal: not a kernel
    assert not progress.in_notebook()
    _fake_ipython(monkeypatch, kernel=True)
    assert progress.in_notebook()
    assert isinstance(progress.default_reporter(None), progress.ProgressReporter)
    assert progress.default_reporter(False) is None


def test_the_progress_reporter_keeps_a_line_per_epoch():
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    rep = progress.ProgressReporter(console)
    rep.start("nb", 2, 0)
    for epoch in range(2):
        for done in (1, 2):
            rep.batch(done, 2)
        rep.epoch(epoch, {"loss": 0.5 - epoch / 10, "accuracy": 0.8, "val_loss": 0.4,
                          "val_accuracy": 0.9, "seconds": 1.25})
    rep.stop()
    text = console.file.getvalue()
    assert "epoch    1/2  loss 0.5000 acc 0.8000 val_loss 0.4000 val_acc 0.9000 1.25s" in text
    assert "epoch    2/2  loss 0.4000" in text and "nb epochs" in text


def test_run_experiment_shows_progress_in_a_kernel_and_nothing_in_a_script(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    exp = mnistlab.load_experiment("raw/template", ["training.epochs=1", "model.hidden=[8]",
                                                    "data.validation=0.2", "output.plots=false"])
    mnistlab.run_experiment(exp, runs_dir=tmp_path / "script")
    assert capsys.readouterr().out == ""
    _fake_ipython(monkeypatch, kernel=True)
    run = mnistlab.run_experiment(exp, runs_dir=tmp_path / "kernel")
    assert "epoch    1/1  loss" in capsys.readouterr().out and run.status == "complete"


def test_without_ipywidgets_a_notebook_gets_one_line_per_epoch(monkeypatch):
    assert progress.has_widgets()  # installed here; the test takes it away
    monkeypatch.setattr(progress, "has_widgets", lambda: False)
    console = Console(file=io.StringIO(), width=120)
    monkeypatch.setattr(console, "is_jupyter", True)
    monkeypatch.setattr(console, "print", lambda text, **kw: console.file.write(text + "\n"))
    rep = progress.ProgressReporter(console)
    rep.start("nb", 1, 0)
    rep.batch(1, 1)
    rep.epoch(0, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.9,
                  "seconds": 1.0})
    rep.stop()
    text = console.file.getvalue()
    assert 'pip install "mnistlab[notebook]"' in text and "epoch    1/1  loss 0.5000" in text


def test_drawing_figures_leaves_the_notebooks_plotting_backend_alone(tmp_path):
    """A kernel sets MPLBACKEND to its inline backend; making a run's figures must not switch it
    (pyplot's `use("Agg")` would, and the user's own plots would stop showing)."""
    import os
    import subprocess

    code = ("import sys, matplotlib\n"
            "from mnistlab.plots import curves_figure, save_figure\n"
            "h = {'loss': [1.0, 0.5], 'val_loss': [1.1, 0.6]}\n"
            "save_figure(curves_figure(h, 'loss'), sys.argv[1])\n"
            "print(matplotlib.rcParams['backend'], 'matplotlib.pyplot' in sys.modules)")
    inline = "module://matplotlib_inline.backend_inline"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "loss.png")],
                         capture_output=True,
                         text=True, check=True, env={**os.environ, "MPLBACKEND": inline})
    assert out.stdout.split() == [inline, "False"]


def test_an_interrupted_run_loads_without_a_model_and_resumes_into_a_run(tiny_dataset, tmp_path):
    from mnistlab.errors import RunInterrupted

    exp = mnistlab.load_experiment("raw/template", [
        "training.epochs=2", "training.batch_size=8", "model.hidden=[8]", "data.validation=0.2",
        "output.plots=false"])
    with pytest.raises(RunInterrupted) as stopped:
        mnistlab.run_experiment(exp, runs_dir=tmp_path, reporter=CtrlCAt(8))  # in epoch 2
    cut = mnistlab.load_run(stopped.value.run_dir)
    assert cut.status == "interrupted" and cut.history.epochs == 1 and cut.metrics is None
    with pytest.raises(RunError, match="run is interrupted"):
        cut.model  # noqa: B018 - the property is what is tested
    done = mnistlab.resume_run(cut.run_dir)
    assert isinstance(done, Run) and done.status == "complete" and done.history.epochs == 2
    assert not done.model.training and done.predict(np.eye(28)).classes.shape == (1,)
