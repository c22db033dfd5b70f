"""Suites: registry, expansion into seeded experiments, running, skipping and resuming."""

import pytest

from mnistlab.commands.main import main
from mnistlab.config.identity import config_digest
from mnistlab.config.load import load_experiment
from mnistlab.errors import ConfigError
from mnistlab.experiments.suite import (
    load_suite,
    matches_suite,
    run_suite,
    suite_experiments,
    suite_names,
)
from mnistlab.presets import preset_names
from mnistlab.rundir.directory import list_runs, write_status


def test_shipped_suites_resolve_patterns_to_presets():
    assert {"lab", "lab-final"} <= set(suite_names())
    lab = load_suite("lab")
    expected = [n for pat in ("raw/*", "hog/*", "cnn/*", "fashion/*") for n in preset_names(pat)]
    assert list(lab.presets) == expected
    assert "raw/final" in lab.presets
    final = load_suite("lab-final", strict=False)
    assert set(final.presets) | set(final.missing) == {"raw/final", "hog/final", "cnn/final",
                                                       "fashion/final"}


def _suite_file(tmp_path, body: str):
    path = tmp_path / "mine.toml"
    path.write_text(body)
    return path


def test_suite_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a suite; shipped suites: .*lab"):
        load_suite("no-such-suite")
    with pytest.raises(ConfigError, match="raw/nope.*not a preset"):
        load_suite(_suite_file(tmp_path, 'experiments = ["raw/nope"]'))
    assert load_suite(_suite_file(tmp_path, 'experiments = ["raw/nope", "raw/final"]'),
                      strict=False).missing == ("raw/nope",)
    with pytest.raises(ConfigError, match="experiments must be a non-empty list"):
        load_suite(_suite_file(tmp_path, 'experiments = "raw/final"'))
    with pytest.raises(ConfigError, match="unknown key 'experiment'"):
        load_suite(_suite_file(tmp_path, 'experiment = ["raw/final"]'))


def test_suite_experiments_seeds_names_and_scaled_epochs(tmp_path):
    suite = load_suite(_suite_file(tmp_path, 'experiments = ["raw/template", "raw/final"]'))
    exps = suite_experiments(suite, seeds=3, epochs_scale=0.1)
    assert [e.output.name for e in exps[:3]] == ["mine-raw-template-s0", "mine-raw-template-s1",
                                                 "mine-raw-template-s2"]
    assert [e.training.seed for e in exps] == [0, 1, 2, 0, 1, 2]
    assert [e.training.epochs for e in exps] == [1, 1, 1, 15, 15, 15]  # 10*0.1, 150*0.1
    full = load_experiment("raw/final")
    assert config_digest(exps[3]) != config_digest(full)  # a quick run never passes for a full one
    assert all(matches_suite(e.output.name, suite) for e in exps)
    with pytest.raises(ConfigError, match="--seeds"):
        suite_experiments(suite, seeds=0)
    with pytest.raises(ConfigError, match="--epochs-scale"):
        suite_experiments(suite, epochs_scale=0)


def test_suite_names_do_not_capture_other_suites():
    lab = load_suite("lab")
    assert matches_suite("lab-raw-final-s0", lab)
    assert not matches_suite("lab-final-raw-final-s0", lab)
    assert not matches_suite("lab-raw-final", lab)


@pytest.mark.slow
def test_run_suite_skips_complete_runs_and_resumes_after_interruption(tiny_dataset, tmp_path):
    suite = load_suite(_suite_file(tmp_path, 'experiments = ["raw/template", "raw/final"]'))
    runs = tmp_path / "runs"
    quick = ["training.epochs=1", "model.hidden=[8]"]

    def stop_after_first(kind, index, payload):
        if kind == "complete":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, seeds=2, runs_dir=runs, overrides=quick, on_event=stop_after_first)
    (first,) = list_runs(runs)
    assert first.status == "complete"
    # as a Ctrl-C inside training leaves it: status interrupted, checkpoint kept, no metrics
    write_status(first.path, "interrupted", epochs_done=1)
    (first.path / "metrics.json").unlink()

    events = []
    outcomes = run_suite(suite, seeds=2, runs_dir=runs, overrides=quick,
                         on_event=lambda kind, i, p: events.append((kind, i)))
    assert [o.status for o in outcomes] == ["skipped", "complete", "complete", "complete"]
    assert outcomes[0].run_dir == first.path  # resumed in place, not trained again
    assert ("started", 0) in events and ("skipped", 0) in events and ("started", 1) in events
    assert len([r for r in list_runs(runs) if r.status == "complete"]) == 4

    again = run_suite(suite, seeds=2, runs_dir=runs, overrides=quick)
    assert {o.status for o in again} == {"skipped"}
    assert len(list_runs(runs)) == 4


def test_cli_suite_list_and_dry_run(capsys):
    assert main(["suite", "list"]) == 0
    assert "lab-final" in capsys.readouterr().out
    assert main(["suite", "run", "lab", "--seeds", "2", "--epochs-scale", "0.1",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lab-raw-final-s1  epochs 15  seed 1" in out
    assert main(["suite", "run", "nope"]) == 2


def test_suite_run_refuses_jobs_0_and_a_file_runs_folder_before_anything(tmp_path, capsys,
                                                                          monkeypatch):
    from mnistlab.config.identity import to_toml
    from mnistlab.rundir import execute

    path = _suite_file(tmp_path, 'experiments = ["raw/template"]')
    quick = ["--set", "training.epochs=1", "--set", "data.train_samples=60"]
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    assert main(["suite", "run", str(path), "--runs-dir", str(blocker), *quick]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err and "unexpected" not in err
    assert blocker.read_text() == "keep me"
    # an interrupted run of the suite waits in the runs folder: --jobs 0 must not resume it
    (exp,) = suite_experiments(load_suite(path), overrides=quick[1::2])
    run = tmp_path / "runs" / "20260101-000000-mine-raw-template-s0"
    run.mkdir(parents=True)
    write_status(run, "interrupted", epochs_done=0)
    (run / "config.toml").write_text(to_toml(exp))
    resumed = []
    monkeypatch.setattr(execute, "resume_run", lambda *a, **k: resumed.append(a))
    assert main(["suite", "run", str(path), "--jobs", "0", *quick]) == 2
    assert "--jobs must be an int >= 1; got 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--jobs"):
        run_suite(load_suite(path), jobs=0, overrides=quick[1::2])
    assert resumed == []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
