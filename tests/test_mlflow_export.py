"""`mnistlab runs export --mlflow`: runs logged into a local SQLite-backed MLflow store and read
back through MLflow's own client; exporting twice does not duplicate a run; a damaged run is
reported and the others still go."""

from __future__ import annotations

import json
import shutil

import pytest
import tomllib

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.rundir.directory import read_history
from mnistlab.rundir.execute import run_experiment
from mnistlab.rundir.mlflow_export import RUN_ID_TAG, export_runs
from mnistlab.rundir.tracking import flat_params

TINY = ["model.hidden=[16]", "data.validation=0.1", "training.epochs=2", "training.batch_size=8",
        "training.seed=5", "training.threads=1"]


@pytest.mark.slow  # MLflow creates its database schema (~5 s) and imports slowly
def test_export_reads_back_and_is_not_duplicated(tiny_dataset, tmp_path, capsys):
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient  # imported here: mlflow takes seconds to import

    run_dir = run_experiment(load_experiment("raw/template", TINY), tmp_path / "runs").run_dir
    damaged = tmp_path / "runs" / (run_dir.name + "-copy")
    shutil.copytree(run_dir, damaged)
    (damaged / "model.pt").write_bytes((damaged / "model.pt").read_bytes()[:100])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["runs", "export", "--mlflow", uri, "--runs-dir", str(tmp_path / "runs"),
            "--artifact-location", str(tmp_path / "artifacts")]

    assert main(args) == 1  # every finished run; the damaged one fails, the other is exported
    out, err = capsys.readouterr()
    assert f"created  {run_dir.name}" in out
    assert f"failed  {damaged.name}" in err and "model.pt" in err

    client = client(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mnistlab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags[RUN_ID_TAG] == run_dir.name and run.info.status == "FINISHED"
    config = tomllib.loads((run_dir / "config.toml").read_text())
    assert run.data.params == {k: v if isinstance(v, str) else json.dumps(v)
                               for k, v in flat_params(config).items() if k != "description"}
    assert run.data.params["model.hidden"] == "[16]"
    history = read_history(run_dir / "history.csv")
    for key, values in history.items():
        logged = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in logged] == list(enumerate(values, start=1))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert run.data.metrics["test_loss"] == metrics["test_loss"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.toml", "summary.txt", "history.csv", "metrics.json", "predictions.npz",
            "model", "plots"} <= top
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == \
        {"plots/loss.png", "plots/accuracy.png", "plots/confusion.png"}
    model = client.download_artifacts(run.info.run_id, "model/model.pt", str(tmp_path / "dl"))
    assert open(model, "rb").read() == (run_dir / "model.pt").read_bytes()

    # again: skipped, not a second MLflow run
    (again,) = export_runs([run_dir], uri)
    assert again.action == "skipped" and run.info.run_id in again.detail
    assert len(client.search_runs([experiment.experiment_id])) == 1

    # an export that broke off (left FAILED) is replaced by a whole one
    client.set_terminated(run.info.run_id, "FAILED")
    (redo,) = export_runs([run_dir], uri)
    assert redo.action == "replaced"
    (new,) = client.search_runs([experiment.experiment_id])
    assert new.info.run_id != run.info.run_id and new.info.status == "FINISHED"


def test_missing_mlflow_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["runs", "export", "--mlflow", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "pip install 'mnistlab[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()
