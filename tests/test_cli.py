"""One smoke test per command, plus the CLI's error contract (one line, exit code 2)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.commands.main import main

TINY = ["--set", "data.train_samples=600", "--set", "data.test_samples=300", "--epochs", "2",
        "--quiet"]


@pytest.mark.slow
def test_run_writes_a_complete_run_directory(shared_data, tmp_path, capsys):
    assert main(["run", "raw/final", *TINY, "--runs-dir", str(tmp_path / "r")]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "r" and run_dir.name.endswith("raw-final")
    for name in ("config.toml", "history.csv", "metrics.json", "predictions.npz", "model.pt",
                 "summary.txt", "loss.png", "accuracy.png", "confusion.png", "status.json",
                 "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert "198,760" in (run_dir / "summary.txt").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"] == 198_760 and metrics["epochs"] == 2
    assert sum(map(sum, metrics["confusion"])) == 300
    assert len(list((tmp_path / "r").iterdir())) == 1
    assert main(["runs", "--runs-dir", str(tmp_path / "r")]) == 0
    assert "complete" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["run", "raw/nope"], "not a preset"),
    (["run", "raw/final", "--set", "model.dropout=1.5"], "model.dropout must be"),
    (["run", "raw/final", "--set", "training.batch_size=0"], "training.batch_size must be"),
    (["run", "raw/final", "--set", "model.activation=swish"], "model.activation must be one of"),
    (["run", "raw/final", "--set", "model.hidden=[-3]"], "model.hidden[0] must be"),
    (["run", "raw/final", "--epochs", "-1"], "training.epochs must be"),
])
def test_bad_input_is_one_line_and_exit_2_with_no_run_left(args, message, tmp_path, capsys):
    assert main([*args, "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()


def test_malformed_toml_and_missing_data(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\n")
    assert main(["run", str(bad)]) == 2
    assert "bad.toml: not valid TOML" in capsys.readouterr().err
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    assert main(["run", "raw/template", "--runs-dir", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unwritable_runs_folder(shared_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "raw/template", *TINY, "--runs-dir", str(blocker / "runs")]) == 2
    assert "runs folder" in capsys.readouterr().err


def test_presets_summary_data(shared_data, capsys):
    assert main(["presets", "raw/*"]) == 0
    assert "raw/final" in capsys.readouterr().out
    assert main(["summary", "raw/template"]) == 0
    assert "238,510" in capsys.readouterr().out
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "yes" in out


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "presets", "raw/final"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "raw/final" in proc.stdout


def test_cli_restores_the_flush_to_zero_mode_for_in_process_callers():
    from mnistlab.fast.cpu import flushing_denormals

    assert not flushing_denormals()
    assert main(["presets"]) == 0
    assert not flushing_denormals()  # Python floats keep their subnormals after the command


def test_packaging_points_at_files_that_exist():
    """The console script and the package data named in pyproject.toml exist in the package
    (a moved module would otherwise break `mnistlab` only for installed users)."""
    import importlib
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    module, _, name = project["project"]["scripts"]["mnistlab"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    package = root / "src" / "mnistlab"
    for pattern in project["tool"]["setuptools"]["package-data"]["mnistlab"]:
        assert list(package.glob(pattern)), pattern
