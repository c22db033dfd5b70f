"""examples/lab-first-experiment.ipynb runs top to bottom in a real Jupyter kernel (nbclient),
on real MNIST (12,000 images, one epoch), and shows what it promises: the scores, the run as
HTML with its figures embedded, the history table, the predictions."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import mnistlab

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "lab-first-experiment.ipynb"
KERNEL = "mnistlab-test-python"


def _kernel_spec(folder: Path) -> Path:
    """A kernel spec for this interpreter, so the notebook runs with the Python under test
    (whatever `python3` kernels the machine has)."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mnistlab test", "language": "python"}))
    return folder


def _outputs(cell: dict, kind: str) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"] if kind == "text/plain" else "")
        else:
            out.append(o.get("data", {}).get(kind, ""))
    return "".join(t if isinstance(t, str) else "".join(t) for t in out)


@pytest.mark.slow
def test_the_example_notebook_runs_the_lab_experiment(shared_data, session_cache, tmp_path,
                                                      monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    src = str(Path(mnistlab.__file__).resolve().parents[1])  # the mnistlab under test
    monkeypatch.setenv("PYTHONPATH", src)
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MNISTLAB_EXAMPLE_SET", "training.epochs=1 data.train_samples=12000")
    monkeypatch.setenv("MNISTLAB_DATA", str(shared_data))
    monkeypatch.setenv("MNISTLAB_RUNS", str(tmp_path / "runs"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    text = [_outputs(c, "text/plain") for c in cells]
    html = [_outputs(c, "text/html") for c in cells]

    runs = mnistlab.list_runs(tmp_path / "runs")
    assert [r.status for r in runs] == ["complete"]  # one run, in the folder the env named
    metrics = runs[0].metrics
    assert metrics["epochs"] == 1 and runs[0].config["data"]["train_samples"] == 12000
    scores = next(t for t in text if "Test accuracy" in t)
    assert f"Test score: {metrics['test_loss']:.4f}" in scores
    assert f"Test accuracy: {metrics['test_accuracy']:.4f}" in scores
    assert metrics["test_accuracy"] > 0.8  # far above chance (0.1): it trained

    shown = next(h for h in html if 'class="mnistlab-run"' in h)
    assert len(re.findall(r'<img src="data:image/png;base64,', shown)) == 3  # curves, confusion
    assert f"<td>test accuracy</td><td>{metrics['test_accuracy']:.4f}</td>" in shown
    assert "238,510" in shown  # the summary's parameter count, as the lab computed it
    assert any("<th>val_loss</th>" in h for h in html)  # run.history as a table
    guesses = next(t for t in text if "predicted:" in t)
    correct = int(re.search(r"correct:\s+(\d+) of 8", guesses).group(1))
    assert correct >= 6
    assert "Sequential" in next(t for t in text if "Linear(in_features=784" in t)
    assert any("network input" in h for h in html)  # the predictions' table of inputs
    progress = [o for c in cells for o in c.get("outputs", [])
                if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
                or "epoch    1/1" in str(o.get("text", ""))]
    assert progress, "training in the kernel showed no progress"
