"""The lab's template on real data, full size: it must reach the accuracy the lab printed."""

import json

import pytest

from mnistlab import load_experiment, run_experiment


@pytest.mark.slow
def test_raw_template_reaches_the_lab_accuracy(shared_data, tmp_path):
    exp = load_experiment("raw/template")  # 784-300-10 relu, batch 128, 10 epochs, seed 0
    result = run_experiment(exp, runs_dir=tmp_path / "runs")
    # The lab printed 0.9772 for one unseeded run. Keras 3 itself, run side by side on this
    # machine (seeds 0 and 1), gives 0.9810 and 0.9828; so "reaches" means at least 0.977 - 0.003,
    # and an upper bound guards against a broken evaluation.
    assert 0.9742 <= result.metrics["test_accuracy"] <= 0.9900
    assert len(result.history["val_loss"]) == 10
    on_disk = json.loads((result.run_dir / "metrics.json").read_text())
    assert on_disk["test_accuracy"] == result.metrics["test_accuracy"]
    assert on_disk["f1_micro"] == pytest.approx(on_disk["test_accuracy"])


@pytest.mark.slow
def test_hog_template_reaches_the_lab_accuracy(shared_data, tmp_path):
    exp = load_experiment("hog/template")  # HOG p=4 o=8 -> 200 relu, batch 128, 10 epochs
    result = run_experiment(exp, runs_dir=tmp_path / "runs")
    assert result.metrics["params"] == 80_610
    # The lab printed 0.9801 (one unseeded run); measured here with seed 0: 0.9805.
    assert result.metrics["test_accuracy"] == pytest.approx(0.9801, abs=0.003)
