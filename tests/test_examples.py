"""The files the README points a new user to: the example sweep and the lab text in docs/."""

import re
from pathlib import Path

from mnistlab.commands.main import main
from mnistlab.experiments.sweep import load_sweep, sweep_points

ROOT = Path(__file__).resolve().parents[1]


def test_example_sweep_validates_with_dry_run(capsys):
    assert main(["sweep", "run", str(ROOT / "examples" / "sweep.toml"), "--dry-run"]) == 0
    assert "12 runs (4 points x 3 seeds)" in capsys.readouterr().out
    points = sweep_points(load_sweep(ROOT / "examples" / "sweep.toml"))
    assert {str(p.experiment.data.validation) for p in points} == {"0.1"}
    assert "examples/sweep.toml" in (ROOT / "README.md").read_text()


def test_readme_links_only_files_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../shared/spec" not in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).is_file(), target
    lab = (ROOT / "docs" / "lab.md").read_text()
    for needed in ("RMSprop", "784-250-10", "pixels_per_cell", "7,465", "177,600", "Q5"):
        assert needed in lab, needed
    assert "suite list" in readme


def test_schedule_example_summarises(capsys):
    """examples/cnn-adam-cosine.toml: Adam, cosine warmup, label smoothing, early stopping."""
    assert main(["summary", str(ROOT / "examples" / "cnn-adam-cosine.toml")]) == 0
    out = capsys.readouterr().out
    for line in ("Optimizer: adam (learning_rate=0.0001,",
                 "Schedule: cosine per optimiser step from learning_rate 0.0001 (decay_steps=0 "
                 "(rest of training), alpha=0.0, warmup_target=0.003, warmup_steps=422)",
                 "Label smoothing: 0.1", "Early stopping: val_accuracy (max), patience 5"):
        assert line in out, line
    assert "examples/cnn-adam-cosine.toml" in (ROOT / "README.md").read_text()
