"""The report and compare, built from real short runs and checked against their run files."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from PIL import Image

from mnistlab.commands.main import main
from mnistlab.experiments.suite import load_suite, run_suite
from mnistlab.report.compare import compare
from mnistlab.report.findings import diagnose, diagnostic_sentences
from mnistlab.report.write import write_report
from mnistlab.runs.directory import RunInfo, list_runs

QUICK = ["data.train_samples=500", "data.test_samples=300", "training.epochs=2"]


@pytest.fixture(scope="module")
def lab_runs(tmp_path_factory):
    """raw/template and raw/final with 2 seeds, fashion/final with 1: short real runs."""
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "fashion-mnist").is_dir():
        pytest.skip("../shared/data is not present")
    root = tmp_path_factory.mktemp("report-runs")
    suite_file = root / "tiny.toml"
    suite_file.write_text('experiments = ["raw/template", "raw/final"]\n')
    fashion_file = root / "tinyf.toml"
    fashion_file.write_text('experiments = ["fashion/final"]\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_CACHE", str(root / "cache"))
        for path, seeds in ((suite_file, 2), (fashion_file, 1)):
            outcomes = run_suite(load_suite(path), seeds=seeds, runs_dir=root / "runs",
                                 data_dir=SHARED_DATA, overrides=QUICK)
            assert {o.status for o in outcomes} == {"complete"}, [o.error for o in outcomes]
    return root / "runs"


@pytest.fixture(scope="module")
def report(lab_runs, tmp_path_factory):
    runs = tmp_path_factory.mktemp("with-damage") / "runs"
    shutil.copytree(lab_runs, runs)
    damaged = runs / "zz-damaged"
    shutil.copytree(next(p for p in runs.iterdir() if "raw-final-s0" in p.name), damaged)
    (damaged / "metrics.json").write_text("{not json")
    out = tmp_path_factory.mktemp("report") / "out"
    result = write_report([runs], out)
    return result, runs


def _metrics(runs: Path) -> dict[str, dict]:
    return {r.name: r.metrics for r in list_runs(runs) if r.status == "complete"}


@pytest.mark.slow
def test_report_has_every_section(report):
    result, _ = report
    md, html = result.markdown.read_text(), result.html.read_text()
    for heading in ("1. Optimiser and loss", "2. Model complexity",
                    "Do deeper networks have more capacity (weights)?", "3.1 MLP on raw pixels",
                    "CNN on Fashion-MNIST", "4. Fashion-MNIST", "5. Appendix: runs",
                    "Runs left out"):
        assert heading in md and heading in html
    assert result.runs == 5 and result.configurations == 3
    assert [p.name for p, _ in result.skipped] == ["zz-damaged"]
    assert "learning_rate | 0.001" in md and "epsilon | 1e-07" in md and "RMSprop" in md
    assert "$$" in md and "Ankle boot" in md
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_report_numbers_equal_metrics_json(report):
    result, runs = report
    md = result.markdown.read_text()
    metrics = _metrics(runs)
    assert len(metrics) == 5
    for m in metrics.values():
        assert f"{m['test_accuracy']:.4f}" in md
        assert f"{m['f1_macro']:.4f}" in md
        assert f"{m['params']:,}" in md
        assert str(m["config_digest"]) in md
        top = m["confused_pairs"][0]
        assert f"{top['true_name']} → {top['predicted_name']} ({top['count']})" in md
    fashion = next(m for m in metrics.values() if m["dataset"] == "fashion-mnist")
    assert f"test loss | {fashion['test_loss']:.4f} (1 run)" in md
    raw = [m for n, m in metrics.items() if "raw-template" in n]
    mean = sum(m["test_accuracy"] for m in raw) / 2
    assert f"test accuracy | {mean:.4f} ± " in md


def test_html_images_decode_and_markdown_links_exist(report):
    result, _ = report
    html = result.html.read_text()
    blobs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(blobs) >= 2 * 3 + 2 + 6  # loss+confusion per config, overlays, equations
    for blob in blobs:
        Image.open(io.BytesIO(base64.b64decode(blob))).verify()
    md = result.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 8
    for link in links:
        path = result.markdown.parent / link
        assert path.is_file(), link
        Image.open(path).verify()


def test_compare_table_tests_and_overlay(lab_runs, tmp_path, capsys):
    comp = compare([lab_runs])
    rows = {r["configuration"]: r for r in comp.rows()}
    assert set(rows) == {"tiny-raw-template", "tiny-raw-final", "tinyf-fashion-final"}
    assert "model.hidden=[250]" in rows["tiny-raw-final"]["differences"]
    assert rows["tiny-raw-final"]["runs"] == 2 and rows["tiny-raw-final"]["params"] == 198_760
    raw_only = compare([p for p in lab_runs.iterdir() if "-raw-" in p.name])
    (best, other, test), = raw_only.tests()
    assert test.test == "paired t-test" and test.n == 2
    singles = [next(p for p in lab_runs.iterdir() if f"raw-{k}-s0" in p.name)
               for k in ("template", "final")]
    (_, _, mc), = compare(singles).tests()
    assert mc.test.startswith("McNemar")
    plot = tmp_path / "overlay.png"
    assert main(["compare", str(lab_runs), "-o", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "tiny-raw-final" in out and "paired t-test" in out
    Image.open(plot).verify()


def test_cli_report_on_a_suite_name(lab_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_RUNS", str(lab_runs))
    assert main(["report", str(lab_runs.parent / "tinyf.toml"), "-o", str(tmp_path / "r")]) == 0
    assert "1 runs in 1 configurations" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").is_file()
    assert main(["report", "no-such-*", "-o", str(tmp_path / "x")]) == 2


def _info(loss, val_loss, dropout: float, validation="0.1") -> RunInfo:
    metrics = {"validation": validation, "confused_pairs": [
        {"true": 4, "predicted": 9, "count": 7, "true_name": "4", "predicted_name": "9"}]}
    return RunInfo(Path("run"), "complete", {"model": {"dropout": dropout}}, metrics,
                   {"loss": loss, "val_loss": val_loss}, [])


def test_diagnostics_in_plain_words():
    overfit = diagnose(_info([1.0, 0.5, 0.2, 0.1], [0.9, 0.6, 0.7, 0.8], 0.0))
    assert overfit.best_epoch == 2 and overfit.gap == pytest.approx(0.7)
    text = " ".join(diagnostic_sentences(overfit))
    assert "overfits after epoch 2" in text and "4 → 9 (7)" in text
    dropout = " ".join(diagnostic_sentences(diagnose(_info([1.0, 0.8], [0.7, 0.5], 0.5, "test"))))
    assert "still falling" in dropout and "expected with dropout" in dropout
    assert "Validation used the test set" in dropout


def test_report_without_usable_runs_is_an_error(tmp_path, capsys):
    broken = tmp_path / "runs" / "r1"
    broken.mkdir(parents=True)
    (broken / "status.json").write_text(json.dumps({"status": "running"}))
    assert main(["report", str(tmp_path / "runs"), "-o", str(tmp_path / "out")]) == 2
    assert "no complete run to report on (r1: status running" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_experiment_section_has_per_class_scores_and_misclassified_images(report):
    """Q4 for each experiment: per-class P/R/F1 of the chosen model and its mistakes as images."""
    result, _ = report
    md = result.markdown.read_text()
    sections = re.split(r"^## ", md, flags=re.M)
    experiments = [s for s in sections if re.match(r"3\.\d ", s)]
    assert len(experiments) == 2  # raw (template, final) and Fashion-MNIST
    for text in experiments:
        assert "| class | precision | recall | F1 | test images |" in text
        figure = re.search(r"!\[[^\]]*misclassified[^\]]*\]\(([^)]+)\)", text)
        assert figure, text[:200]
        png = result.markdown.parent / figure.group(1)
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 150
    fashion = next(s for s in experiments if "Fashion" in s.splitlines()[0])
    assert "| Ankle boot |" in fashion or "| Shirt |" in fashion
    q5 = next(s for s in sections if s.startswith("4. Fashion-MNIST"))
    assert "| class | precision" not in q5 and "![" not in q5  # points to 3.x, repeats nothing
    assert re.search(r"section 3\.\d", q5)


def test_capacity_compares_models_on_one_dataset_at_a_time(report):
    """Q3: the MNIST table has no Fashion-MNIST row; the runs' lengths are shown."""
    result, _ = report
    md = result.markdown.read_text()
    q3 = md.split("Do deeper networks have more capacity (weights)?", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"(?:^\|.*\n)+", q3, flags=re.M)
    mnist = next(t for t in tables if "raw" in t)
    assert "fashion" not in mnist.lower() and "| epochs |" in mnist
    assert any("fashion" in t.lower() for t in tables if t is not mnist)


def test_misclassified_examples_read_runs_without_test_index(lab_runs, tmp_path):
    """Runs written before predictions.npz had test_index scored the first N test images."""
    import numpy as np

    from mnistlab.report.compare import compare
    from mnistlab.report.document import Image as ImageBlock
    from mnistlab.report.examples import misclassified_block, most_confused

    runs = tmp_path / "runs"
    shutil.copytree(lab_runs, runs)
    run = next(p for p in runs.iterdir() if "raw-template-s0" in p.name)
    with np.load(run / "predictions.npz") as data:
        saved = {k: data[k] for k in data.files}
    assert np.array_equal(saved["test_index"], np.arange(300))
    np.savez(run / "predictions.npz", **{k: v for k, v in saved.items() if k != "test_index"})
    group = next(g for g in compare([run]).groups)
    block = misclassified_block(group, "x.png", data_dir=SHARED_DATA)
    assert isinstance(block, ImageBlock) and block.png.startswith(b"\x89PNG")
    y_true, y_pred = np.array([1, 1, 1, 2, 2, 3]), np.array([7, 7, 1, 5, 3, 3])
    assert most_confused(y_true, y_pred) == [(1, 7), (2, 3), (2, 5)]


def test_capacity_says_when_runs_differ_in_length():
    """Q3 draws no conclusion from runs of different lengths without saying so."""
    from types import SimpleNamespace as NS

    from mnistlab.report.document import Para
    from mnistlab.report.sections import _capacity_one

    def group(label, epochs, acc, params):
        summary = NS(mean=acc, text=lambda: f"{acc:.4f} (1 run)")
        return (NS(label=label, summary=lambda _m: summary,
                   representative=NS(history={"val_loss": [1.0] * epochs})),
                [NS(params=p, formula=f"{p} weights") for p in params])

    shallow = group("mlp", 150, 0.98, [196_250, 2_510])
    deep = group("cnn", 50, 0.99, [234, 2_034, 1_312, 3_625, 260])
    text = " ".join(b.text for b in _capacity_one("mnist", [shallow, deep]) if isinstance(b, Para))
    assert "FEWER weights" in text and "150 vs 50 epochs" in text
    assert "more accurate" not in text  # no verdict on accuracy from unequal lengths
    same = group("cnn", 150, 0.99, [234, 2_034, 1_312, 3_625, 260])
    text = " ".join(b.text for b in _capacity_one("mnist", [shallow, same]) if isinstance(b, Para))
    assert "epochs" not in text and "fewer weights is the more accurate" in text
