"""Nothing silently wrong: damaged run configs, unreadable data folders, checkpoints that do not
fit, names in any script, and `runs` / `data` exit codes that say when they could not answer."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import unicodedata
from pathlib import Path

import pytest
import tomli_w
from conftest import CtrlCAt

from mnistlab.commands.main import main
from mnistlab.config.load import load_experiment
from mnistlab.errors import DataError, RunError, RunInterrupted
from mnistlab.rundir.directory import list_runs, load_run, safe_name, write_json, write_status

TINY = ["model.hidden=[8]", "output.plots=false", "data.validation=0.1", "training.epochs=3",
        "training.batch_size=4", "training.seed=7", "training.threads=1"]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for s in overrides for arg in ("--set", s)]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- `mnistlab runs` ---------------------------------------------------------------------------

def _fake_run(runs: Path, name: str, config: dict, status: str = "interrupted") -> Path:
    run = runs / name
    run.mkdir(parents=True)
    write_status(run, status, epochs_done=1)
    (run / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    return run


def test_runs_lists_a_run_with_a_malformed_config_as_damaged_and_shows_the_others(tmp_path,
                                                                                  capsys):
    runs = tmp_path / "runs"
    good = load_experiment("cnn/template").to_dict()
    bad = json.loads(json.dumps(good))
    bad["model"]["layers"] = 5
    _fake_run(runs, "20260101-000000-good", good)
    _fake_run(runs, "20260101-000001-layers-5", bad)
    _fake_run(runs, "20260101-000002-later", good)
    infos = {i.name: i for i in list_runs(runs)}
    broken = infos["20260101-000001-layers-5"]
    assert broken.status == "corrupt" and broken.config is None
    assert any("model.layers" in p for p in broken.problems)
    assert infos["20260101-000000-good"].status == "interrupted"
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "20260101-000000-good" in out and "20260101-000002-later" in out
    assert "layers-5" in out and "corrupt" in out and "model.layers" in out
    assert out.count("interrupted") == 2  # the two good runs keep their status


def test_a_run_folder_that_cannot_be_read_is_listed_as_damaged(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    locked = _fake_run(runs, "20260101-000000-locked", load_experiment("raw/template").to_dict())
    real_exists = pathlib.Path.exists

    def exists(self, *args, **kwargs):
        if self.parent == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    info = load_run(locked)
    assert info.status == "corrupt" and info.problems == ["unreadable (Permission denied)"]


def test_runs_exits_2_when_the_runs_folder_is_missing_or_a_file(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "nope")]) == 2
    assert "no such runs folder" in _one_line(capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["runs", "--runs-dir", str(blocker)]) == 2
    assert "is a file, not a runs folder" in _one_line(capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert main(["runs", "--runs-dir", str(tmp_path / "empty")]) == 0  # empty, but shown


# --- unreadable and unverifiable datasets -------------------------------------------------------

def _deny(monkeypatch, folder: Path) -> None:
    """Make looking inside `folder` fail as a chmod 000 folder does for a non-root user (tests
    may run as root, where chmod denies nothing)."""
    real_is_file = pathlib.Path.is_file

    def is_file(self):
        if folder == self.parent or folder in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)


def test_an_unreadable_dataset_folder_is_the_one_line_data_error(tiny_dataset, tmp_path,
                                                                 monkeypatch, capsys):
    from mnistlab.data.load import find_dataset_files

    data = tmp_path / "locked-data"
    shutil.copytree(tiny_dataset, data)
    _deny(monkeypatch, data)
    with pytest.raises(DataError, match=r"locked-data: cannot read the dataset folder "
                       r"\(Permission denied\)"):
        find_dataset_files("mnist", data)
    for args in (["data", "--data-dir", str(data)],
                 ["run", "raw/template", "--data-dir", str(data), "--quiet",
                  "--runs-dir", str(tmp_path / "runs"), *_sets(TINY)]):
        assert main(args) == 2
        line = _one_line(capsys.readouterr().err)
        assert "cannot read the dataset folder (Permission denied)" in line
        assert "unexpected" not in line
    assert not (tmp_path / "runs").exists()


def test_a_real_chmod_000_dataset_folder(tiny_dataset, tmp_path, capsys):
    data = tmp_path / "locked"
    shutil.copytree(tiny_dataset, data)
    os.chmod(data, 0)
    try:
        if os.access(data / "mnist", os.F_OK):
            pytest.skip("running as root: chmod 000 does not stop this user from reading")
        assert main(["data", "--data-dir", str(data)]) == 2
        assert "cannot read the dataset folder" in _one_line(capsys.readouterr().err)
    finally:
        os.chmod(data, 0o755)


def test_data_exits_2_when_a_dataset_found_does_not_verify(tiny_dataset, tmp_path, capsys):
    data = tmp_path / "damaged"
    shutil.copytree(tiny_dataset, data)
    labels = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-9])
    assert main(["data", "--data-dir", str(data)]) == 2
    captured = capsys.readouterr()
    assert "mnist found but not verified" in _one_line(captured.err)
    assert "mnist" in captured.out  # the table is still shown
    assert main(["data", "--data-dir", str(data), "--no-verify"]) == 0  # only asked to locate


def test_data_exits_2_when_no_dataset_is_found(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.keras copy
    from mnistlab.data.load import find_dataset_files

    if any(find_dataset_files(name, tmp_path)[0] for name in ("mnist", "fashion-mnist")):
        pytest.skip("a system-wide copy of the datasets is installed on this machine")
    assert main(["data", "--data-dir", str(tmp_path)]) == 2
    assert "no dataset found in" in _one_line(capsys.readouterr().err)


# --- checkpoints whose tensors do not fit --------------------------------------------------------



def test_a_checkpoint_with_wrong_tensor_shapes_is_refused_without_touching_status(
        tiny_dataset, tmp_path, capsys):
    import torch

    from mnistlab.rundir.execute import resume_run, run_experiment

    exp = load_experiment("raw/template", TINY)
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "runs", reporter=CtrlCAt(20))
    run_dir = info.value.run_dir
    ckpt_path = run_dir / "checkpoint.pt"
    good_bytes = ckpt_path.read_bytes()
    status = (run_dir / "status.json").read_bytes()
    checkpoint = torch.load(ckpt_path, weights_only=True)
    key = next(k for k, v in checkpoint["model"].items() if v.dim() == 2)

    def damaged(edit) -> None:
        state = torch.load(ckpt_path.with_name("good.pt"), weights_only=True)
        edit(state)
        torch.save(state, ckpt_path)

    ckpt_path.with_name("good.pt").write_bytes(good_bytes)
    cases = [
        (lambda s: s["model"].__setitem__(key, torch.zeros(3, 3)),
         rf"model {key} has shape \(3, 3\); the model needs \({checkpoint['model'][key].shape[0]}"),
        (lambda s: s["model"].pop(key), rf"model weights {key} do not match"),
        (lambda s: s["optimizer"]["state"][0].__setitem__("velocity", torch.zeros(2)),
         r"optimizer velocity of parameter 0 has shape \(2,\)"),
        (lambda s: s.__setitem__("torch_rng", torch.zeros(4, dtype=torch.uint8)),
         r"torch_rng has shape \(4,\)"),
    ]
    for edit, match in cases:
        damaged(edit)
        with pytest.raises(RunError, match=rf"checkpoint.pt: does not fit this run \({match}"):
            resume_run(run_dir)
        assert (run_dir / "status.json").read_bytes() == status  # still "interrupted"
    assert main(["resume", str(run_dir), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "does not fit this run" in line and "unexpected" not in line
    assert (run_dir / "status.json").read_bytes() == status
    ckpt_path.write_bytes(good_bytes)  # the intact checkpoint still resumes
    assert resume_run(run_dir).metrics["epochs"] == 3
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"


# --- names in any script -----------------------------------------------------------------------

def test_a_unicode_run_name_is_kept_as_text(tiny_dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", "raw/template", "--name", "数字🙂", "--quiet", "--runs-dir", str(runs),
                 *_sets(TINY)]) == 0
    (run_dir,) = runs.iterdir()
    assert run_dir.name.endswith("-数字")  # the folder: a safe slug of the name
    config = (run_dir / "config.toml").read_text(encoding="utf-8")
    assert 'name = "数字🙂"' in config  # the name itself, as given
    assert load_run(run_dir).config["output"]["name"] == "数字🙂"
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    assert "数字" in capsys.readouterr().out


def test_json_files_hold_text_not_escapes(tmp_path):
    write_json(tmp_path / "a.json", {"name": "数字🙂", "error": "naïve"})
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert "数字🙂" in text and "naïve" in text and "\\u" not in text
    assert json.loads(text) == {"name": "数字🙂", "error": "naïve"}
    write_json(tmp_path / "b.json", {"name": "bad\udcff"})  # a lone surrogate cannot be UTF-8
    assert json.loads((tmp_path / "b.json").read_text()) == {"name": "bad\udcff"}


@pytest.mark.parametrize("name, slug", [
    ("数字🙂", "数字"), ("a b/c", "a-b-c"), ("🙂", "run"), ("../..", "run"),
    ("raw-final", "raw-final"),
    (unicodedata.normalize("NFD", "café"), "café"), ("x_y.z", "x_y.z"), ("\\..\\x", "x"),
])
def test_safe_name_keeps_letters_of_any_script(name, slug):
    assert safe_name(name) == slug


def test_safe_name_fits_a_path_component():
    slug = safe_name("数" * 300)
    assert len(slug) <= 80 and len(slug.encode("utf-8")) <= 160
    assert len(safe_name("a" * 300)) == 80


def test_runs_trained_on_a_bigger_machine_are_listed_and_reported_not_refused(
        tiny_dataset, tmp_path, monkeypatch):
    """The memory check guards new training only: a finished run whose model would not fit this
    machine is still listed as complete, and its config still reads for reports and predict."""
    import mnistlab
    from mnistlab.config import memory
    from mnistlab.rundir.directory import load_run

    exp = mnistlab.load_experiment("raw/template", ["training.epochs=1", "output.plots=false"])
    result = mnistlab.run_experiment(exp, runs_dir=tmp_path / "r", data_dir=tiny_dataset)
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 1024)  # a tiny machine
    with pytest.raises(mnistlab.ConfigError, match="memory"):
        mnistlab.load_experiment("raw/template")
    assert load_run(result.run_dir).status == "complete"
