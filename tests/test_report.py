"""The report and compare, built from real short runs and checked against their run files."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from mnistlab.commands.main import main
from mnistlab.experiments.suite import load_suite, run_suite
from mnistlab.report.compare import compare
from mnistlab.report.findings import diagnose, diagnostic_sentences
from mnistlab.report.verdicts import CONFIGURATIONS, NETWORKS, experiment_tests
from mnistlab.report.write import build_report, write_report
from mnistlab.rundir.directory import RunInfo, list_runs

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
    with pytest.MonkeyPatch.context() as mp:  # the misclassified figures read the test images
        mp.setenv("MNISTLAB_DATA", str(SHARED_DATA))
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
    config, nets = experiment_tests(raw_only)  # two seeds: configurations are not testable
    assert config.question == CONFIGURATIONS and config.result is None
    assert config.reason == "not testable: 2 seed(s); run with --seeds 3"
    assert nets.question == NETWORKS and nets.result.test.startswith("McNemar")
    singles = [next(p for p in lab_runs.iterdir() if f"raw-{k}-s0" in p.name)
               for k in ("template", "final")]
    _, mc = experiment_tests(compare(singles))
    assert mc.result.test.startswith("McNemar")
    plot = tmp_path / "overlay.png"
    assert main(["compare", str(lab_runs), "-o", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "tiny-raw-final" in out and "not testable: 2 seed(s); run with --seeds 3" in out
    assert "differ on this test set" in out and "McNemar" in out
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


TINY = ["data.train_samples=60", "data.test_samples=20", "data.validation=0.2",
        "training.epochs=2", "training.batch_size=16", "output.plots=false"]
EFFECT = re.compile(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]")  # effect [95% CI]


def _tiny_runs(root: Path, seeds: int) -> Path:
    suite = root / f"t{seeds}.toml"
    suite.write_text('experiments = ["raw/template", "raw/final"]\n')
    outcomes = run_suite(load_suite(suite), seeds=seeds, runs_dir=root / f"runs{seeds}",
                         overrides=TINY)
    assert {o.status for o in outcomes} == {"complete"}, [o.error for o in outcomes]
    return root / f"runs{seeds}"


def _config_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| configurations (over seeds)")]


def test_configuration_verdicts_only_from_three_seeds_each_with_its_effect(tiny_dataset, tmp_path,
                                                                          capsys):
    from scipy import stats as sps

    one = write_report([_tiny_runs(tmp_path, 1)], tmp_path / "r1").markdown.read_text()
    rows = _config_rows(one)
    assert len(rows) == 2  # accuracy and macro-F1
    for row in rows:
        assert row.rstrip(" |").endswith("not testable: 1 seed(s); run with --seeds 3")
        assert "significant" not in row and "within noise" not in row
    assert "| significant |" not in one and "significantly better" not in one
    assert "networks on this test set" in one and "McNemar" in one

    runs3 = _tiny_runs(tmp_path, 3)
    _, comp = build_report([runs3])
    config = [v for v in experiment_tests(comp) if v.question == CONFIGURATIONS]
    (v,) = config
    t = v.result
    assert t.test == "paired t-test" and t.n == 3
    a, b = (np.array([g.by_seed("test_accuracy")[s] for s in range(3)]) for g in (v.a, v.b))
    if len(set(a - b)) > 1:  # scipy's interval is undefined without spread in the differences
        ci = sps.ttest_rel(a, b).confidence_interval(0.95)
        assert (t.low, t.high) == pytest.approx((ci.low, ci.high))
    assert t.difference == pytest.approx(float(np.mean(a - b)))
    three = write_report([runs3], tmp_path / "r3").markdown.read_text()
    rows = _config_rows(three)
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert EFFECT.fullmatch(cells[4]), cells  # the effect and its interval ...
        float(cells[6]), float(cells[7])  # ... next to the p-values
        assert cells[8] in ("significant", "within noise (not shown different)")
    assert "not testable" not in three
    assert main(["compare", str(runs3)]) == 0
    out = capsys.readouterr().out
    assert "Does configuration A beat configuration B?" in out and EFFECT.search(out)


def test_overfitting_is_claimed_only_from_a_sustained_rise():
    # one noisy bump after the minimum: the last 2 epochs average 0.035 above it, the
    # epoch-to-epoch noise is 0.05, so neither overfitting nor a best epoch is claimed
    noisy = diagnose(_info([1.0, 0.8, 0.6, 0.5, 0.4], [0.5, 0.4, 0.45, 0.41, 0.46], 0.0))
    assert noisy.noise == pytest.approx(0.05) and not noisy.overfits
    text = " ".join(diagnostic_sentences(noisy))
    assert "overfits" not in text and "no sustained rise" in text
    assert "at least 2 epochs before the end" in text  # the rule is said
    # the minimum one epoch before the end is too late to call a trend
    late = diagnose(_info([1.0, 0.5, 0.2, 0.1], [0.9, 0.6, 0.5, 0.7], 0.0))
    assert not late.overfits
    # a steady rise, validated on the test set: said to be on the test set
    steady = diagnose(_info([1.0, 0.6, 0.4, 0.3, 0.2, 0.1], [0.8, 0.5, 0.4, 0.45, 0.5, 0.55],
                            0.0, "test"))
    text = " ".join(diagnostic_sentences(steady))
    assert steady.overfits and "overfits on the test set after epoch 3" in text
    assert "Validation loss (on the test set) is lowest at epoch 3 of 6" in text


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
