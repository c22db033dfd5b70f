"""The executor: skipping identical runs, recording failures, atomic writes, local Dask."""

from __future__ import annotations

import json

import pytest

from mnistlab.config.identity import config_digest
from mnistlab.config.load import load_experiment
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiments.executor import (
    complete_runs_by_digest,
    find_complete_run,
    run_jobs,
    run_remote,
    write_run_files,
)

TINY = ["data.train_samples=60", "data.test_samples=20", "data.validation=0.2",
        "training.epochs=2", "training.batch_size=16", "model.hidden=[8]", "output.plots=false"]


def tiny(seed: int = 0, *extra: str):
    return load_experiment("raw/template", [*TINY, f"training.seed={seed}",
                                            f'output.name="job-s{seed}"', *extra])


def test_runs_in_process_then_skips_identical(tiny_dataset, tmp_path):
    events = []
    exps = [tiny(0), tiny(1)]
    first = run_jobs(exps, on_event=lambda k, i, p: events.append((k, i)))
    assert [o.status for o in first] == ["complete", "complete"]
    assert events == [("started", 0), ("complete", 0), ("started", 1), ("complete", 1)]
    for exp, outcome in zip(exps, first, strict=True):
        assert outcome.run_dir.parent == tmp_path / "runs"
        assert outcome.metrics["config_digest"] == config_digest(exp)
        assert json.loads((outcome.run_dir / "metrics.json").read_text()) == outcome.metrics
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]

    again = run_jobs([tiny(1), tiny(0), tiny(2)])
    assert [o.status for o in again] == ["skipped", "skipped", "complete"]
    assert again[0].run_dir == first[1].run_dir and again[1].metrics == first[0].metrics
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_name_and_threads_do_not_change_identity(tiny_dataset, tmp_path):
    run_jobs([tiny(0)])
    renamed = tiny(0, 'output.name="other"', "training.threads=1")
    assert find_complete_run(tmp_path / "runs", renamed) is not None
    assert find_complete_run(tmp_path / "runs", tiny(0, "model.hidden=[9]")) is None


def test_repeated_experiment_runs_once(tiny_dataset, tmp_path):
    outcomes = run_jobs([tiny(3), tiny(3)])
    assert [o.status for o in outcomes] == ["complete", "skipped"]
    assert outcomes[0].run_dir == outcomes[1].run_dir
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_failure_is_recorded_and_others_continue(tiny_dataset, tmp_path):
    bad = tiny(0, 'data.dataset="fashion-mnist"')  # not in the tiny data folder; offline
    events = []
    outcomes = run_jobs([bad, tiny(0)], on_event=lambda k, i, p: events.append((k, i)))
    assert [o.status for o in outcomes] == ["failed", "complete"]
    assert "fashion-mnist" in outcomes[0].error and outcomes[0].run_dir is None
    assert ("failed", 0) in events and ("complete", 1) in events


def test_failed_run_is_not_complete(tiny_dataset, tmp_path):
    outcome = run_jobs([tiny(5)])[0]
    status = outcome.run_dir / "status.json"
    status.write_text(json.dumps({"status": "failed"}))
    assert find_complete_run(tmp_path / "runs", tiny(5)) is None
    assert run_jobs([tiny(5)])[0].status == "complete"  # reruns instead of trusting it
    assert len(complete_runs_by_digest(tmp_path / "runs")) == 1


def test_remote_task_returns_whole_run_and_cleans_up(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "worker-tmp"))
    (tmp_path / "worker-tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    payload = run_remote(tiny(0, "output.plots=true"), None, 7)
    assert payload["ok"] and payload["error"] is None
    assert {"config.toml", "metrics.json", "history.csv", "model.pt", "predictions.npz",
            "status.json", "loss.png", "confusion.png"} <= set(payload["files"])
    assert list((tmp_path / "worker-tmp").iterdir()) == []
    run_dir = write_run_files(tmp_path / "runs", payload["name"], payload["files"])
    assert run_dir.name == payload["name"]
    assert find_complete_run(tmp_path / "runs", tiny(0, "output.plots=true")) == run_dir
    second = write_run_files(tmp_path / "runs", payload["name"], payload["files"])
    assert second.name == payload["name"] + "-2"  # never overwrites an existing run


def test_remote_task_reports_failures(tiny_dataset):
    payload = run_remote(tiny(0, 'data.dataset="fashion-mnist"'))
    assert not payload["ok"] and "fashion-mnist" in payload["error"] and payload["name"] is None


def test_write_run_files_refuses_escaping_paths(tmp_path):
    with pytest.raises(RunError, match="outside its run directory"):
        write_run_files(tmp_path / "runs", "x", {"../evil": b"1"})
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []


def test_jobs_must_be_positive():
    with pytest.raises(ConfigError, match="--jobs"):
        run_jobs([], jobs=0)


@pytest.mark.slow
def test_local_dask_cluster_runs_every_job(shared_data, tmp_path):
    """Two worker processes on real MNIST; each training gets cores // 2 torch threads."""
    from mnistlab.training.device import usable_cores

    small = ["data.train_samples=300", "data.test_samples=200", "training.epochs=2",
             "model.hidden=[16]", "output.plots=false"]
    exps = [load_experiment("raw/template", [*small, f"training.seed={s}"]) for s in range(3)]
    events = []
    outcomes = run_jobs(exps, jobs=2, on_event=lambda k, i, p: events.append((k, i)))
    assert [o.status for o in outcomes] == ["complete"] * 3
    assert sorted(i for k, i in events if k == "complete") == [0, 1, 2]
    assert {i for k, i in events if k == "started"} <= {0, 1, 2}
    for exp, o in zip(exps, outcomes, strict=True):
        assert o.metrics["seed"] == exp.training.seed
        assert o.metrics["threads"] == max(1, usable_cores() // 2)
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_estimated_work_follows_the_layer_arithmetic():
    """The lab's slowest runs (Fashion CNNs, 50-100 epochs) rank above its quick MLPs, and the
    figure is the summary's multiply-adds x (3 x training + validation images) x epochs."""
    from mnistlab.config.geometry import feature_shape
    from mnistlab.experiments.cost import estimated_work
    from mnistlab.nn.summary import describe_layers

    exp = load_experiment("raw/template")
    macs = sum(i.mult_adds for i in describe_layers(exp.model, feature_shape(exp.features)))
    assert exp.data.validation == "test"
    assert estimated_work(exp) == exp.training.epochs * macs * (3 * 60_000 + 10_000)
    held = load_experiment("raw/template", ["data.validation=0.1", "data.train_samples=1000"])
    assert estimated_work(held) == exp.training.epochs * macs * (3 * 900 + 100)
    ranked = sorted(["raw/template", "hog/final", "fashion/run3-conv64", "cnn/final"],
                    key=lambda n: -estimated_work(load_experiment(n)))
    assert ranked[0] == "fashion/run3-conv64" and ranked[-1] != "cnn/final"


def test_dask_runs_are_submitted_longest_first(monkeypatch):
    """LPT: the largest run is submitted first with the highest Dask priority, so with N workers
    the last minutes are short runs side by side, not one long run beside idle cores."""
    from mnistlab.experiments import cluster

    class Done:
        def __init__(self, i):
            self.i = i

        def done(self):
            return True

        def result(self):
            return {"index": self.i}

    submitted = []

    class FakeClient:
        def subscribe_topic(self, topic, handler):
            pass

        def submit(self, fn, exp, data_arg, i, key, retries, pure, priority):
            submitted.append((i, priority))
            return Done(i)

        def close(self):
            pass

    monkeypatch.setattr(cluster, "_connect", lambda address, jobs: (FakeClient(), None, 1))
    exps = [load_experiment(n) for n in ["raw/template", "fashion/run3-conv64", "hog/final",
                                         "cnn/final"]]
    results = {}
    cluster.run_on_dask(exps, [0, 1, 2, 3], None, 2, None, lambda i, w: None,
                        lambda i, r: results.__setitem__(i, r), lambda idx: None)
    order = [i for i, _ in submitted]
    assert order[0] == 1 and sorted(order) == [0, 1, 2, 3]
    assert [p for _, p in submitted] == [4, 3, 2, 1]
    from mnistlab.experiments.cost import estimated_work
    work = [estimated_work(exps[i]) for i in order]
    assert work == sorted(work, reverse=True)
    assert results == {i: {"index": i} for i in range(4)}
