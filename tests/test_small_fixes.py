"""Small things a new user met: the runs table's settings, HOG summaries and views, hog help."""

import argparse
import re

import numpy as np

from mnistlab.commands.hog import hog_args
from mnistlab.commands.main import main
from mnistlab.config.load import load_experiment
from mnistlab.nn.summary import summary_text

TINY = ["--set", "data.train_samples=500", "--set", "data.test_samples=300", "--epochs", "1"]


def test_runs_table_shows_seed_and_key_settings(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    runs = str(tmp_path / "r")
    assert main(["run", "hog/final", *TINY, "--seed", "7", "--runs-dir", runs]) == 0
    capsys.readouterr()
    assert main(["runs", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "status" in line)
    assert "seed" in header and "validation" in header
    row = next(line for line in out.splitlines() if "hog-final" in line)
    cells = [c.strip() for c in re.split(r"[│|]", row) if c.strip()]
    assert "7" in cells and "hog p=4 o=8" in cells and "test" in cells


def test_hog_summary_counts_a_vector_input_once():
    exp = load_experiment("hog/final")
    text = summary_text(exp.model, (392,), 10, "hog-final")
    assert "Inputs: 392 values;" in text and "392 = 392" not in text
    assert "Flatten" not in text and "80,610" in text
    raw = summary_text(load_experiment("raw/final").model, (28, 28), 10)
    assert "Inputs: 28x28 = 784 values;" in raw and "Flatten" in raw


def test_hog_view_is_upscaled_to_be_readable():
    from mnistlab.plots import hog_figure

    image = np.random.default_rng(0).random((28, 28))
    fig = hog_figure(image, image * 0.5, "t")
    shapes = [ax.get_images()[0].get_array().shape for ax in fig.axes]
    assert shapes == [(280, 280), (280, 280)]
    assert fig.get_size_inches()[0] >= 10


def test_hog_show_help_names_the_file_it_writes(shared_data, tmp_path, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    hog_args(parser)
    help_text = " ".join(parser.format_help().split())
    assert "hog-<dataset>-<split>-<index>.png" in help_text
    monkeypatch.chdir(tmp_path)
    assert main(["hog", "show", "--split", "test", "--index", "3",
                 "--data-dir", str(shared_data)]) == 0
    assert (tmp_path / "hog-mnist-test-3.png").is_file()


def test_hog_view_draws_each_cells_histogram_as_lines():
    """Given the features, every cell and orientation is a line, as bright as its value."""
    from matplotlib.collections import LineCollection

    from mnistlab.features.hog import hog, hog_image
    from mnistlab.plots import hog_figure

    image = np.zeros((28, 28))
    image[:, 14:] = 1.0  # one vertical edge
    cells = hog(image[None], 8, (4, 4), (1, 1))[0].reshape(7, 7, 8)
    fig = hog_figure(image, hog_image(image, 8, (4, 4)), cells=cells)
    lines = [c for c in fig.axes[1].collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == 7 * 7 * 8
    alpha = lines[0].get_colors()[:, 3].reshape(7, 7, 8)
    assert np.allclose(alpha, cells / cells.max())
    brightest = lines[0].get_segments()[int(np.argmax(alpha))]
    dx, dy = np.subtract(brightest[1], brightest[0])
    assert abs(dx) < abs(dy) / 4  # a vertical edge: near-vertical lines (bin middles)


def test_a_piped_log_ends_on_the_last_epoch_not_a_stale_bar():
    import io

    from rich.console import Console

    from mnistlab.commands.progress import RichReporter

    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=False, width=200))
    reporter.start("raw-final", 3, 0)
    for epoch in range(3):
        for done in range(1, 5):
            reporter.batch(done, 4)
        reporter.epoch(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5, "val_loss": 0.9,
                               "val_accuracy": 0.6, "seconds": 0.1})
    reporter.stop()
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert [line.split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                     ["epoch", "3/3"]]
    assert "loss 0.3333" in lines[-1]
