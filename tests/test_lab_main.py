"""The main job's suite (`make run`): >= 3 configurations per experiment, at the lab's epochs."""

from pathlib import Path

from mnistlab.config.load import load_experiment
from mnistlab.experiments.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_lab_main_holds_the_chosen_model_and_two_more_per_experiment():
    suite = load_suite("lab-main")
    assert not suite.missing
    for exp in ("raw", "hog", "cnn", "fashion"):
        mine = [p for p in suite.presets if p.startswith(exp + "/")]
        assert f"{exp}/final" in mine
        assert len(mine) >= 3, mine
        assert not any(p.endswith("/template") for p in mine)  # the lab's runs, not the template
    digests = {str(load_experiment(p).model) + str(load_experiment(p).features)
               + str(load_experiment(p).training.batch_size) for p in suite.presets}
    assert len(digests) == len(suite.presets)  # every configuration is a different one


def test_lab_main_makes_the_labs_points():
    """Each point is made by two runs of the suite that differ in that setting."""
    exps = {p: load_experiment(p) for p in load_suite("lab-main").presets}

    def varies(prefix, getter):
        return len({repr(getter(e)) for p, e in exps.items() if p.startswith(prefix)}) > 1

    assert varies("raw/", lambda e: e.model.activation)
    assert varies("raw/", lambda e: e.model.hidden)
    assert varies("raw/", lambda e: e.model.dropout)
    assert varies("hog/", lambda e: e.features.pixels_per_cell)
    assert varies("hog/", lambda e: e.features.orientations)
    assert varies("hog/", lambda e: e.model.activation)
    assert varies("cnn/", lambda e: e.model.layers)
    assert varies("fashion/", lambda e: e.model.layers)
    assert varies("fashion/", lambda e: e.training.batch_size)


def test_make_run_trains_and_reports_the_main_suite():
    text = (ROOT / "Makefile").read_text()
    run = text.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "suite run lab-main" in run and "report lab-main" in run
    readme = (ROOT / "README.md").read_text()
    assert "mnistlab suite run lab && .venv/bin/mnistlab report lab " in readme  # the whole lab
    assert "runs the suite `lab-main`" in readme
