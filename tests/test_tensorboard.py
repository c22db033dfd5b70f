"""TensorBoard event files: read back with tbparse (TensorBoard's own reader underneath) and
checked against history.csv, metrics.json and config.toml; resume continues the log without
repeating or losing an epoch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CtrlCAt
from PIL import Image

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.errors import ConfigError, RunInterrupted
from mnistlab.rundir.directory import read_history
from mnistlab.rundir.execute import resume_run, run_experiment
from mnistlab.rundir.tensorboard import SCALAR_TAGS, TB_DIR, EventLog, written_events

pytest.importorskip("tensorboardX")
tbparse = pytest.importorskip("tbparse")

EPOCHS = 3


def _tiny(*extra: str) -> list[str]:
    return ["model.hidden=[16]", "data.validation=0.1", f"training.epochs={EPOCHS}",
            "training.batch_size=8", "training.seed=3", "training.threads=1",
            "optimizer.learning_rate=0.002", *extra]


def _scalars(log_dir: Path):
    return tbparse.SummaryReader(str(log_dir), pivot=False).scalars


def _images(log_dir: Path) -> dict[str, tuple[int, Image.Image]]:
    """tag -> (step, image), through TensorBoard's reader (tbparse needs TensorFlow for it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    out = {}
    for tag in acc.Tags()["images"]:
        (event,) = acc.Images(tag)
        out[tag] = (event.step, Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    return out


def _check_scalars_match_history(run_dir: Path) -> None:
    """Every history column is a tag with one value per epoch (steps 1..N), equal to
    history.csv as float32 (TensorBoard's scalar type); the learning rate is the config's."""
    history = read_history(run_dir / "history.csv")
    frame = _scalars(run_dir / TB_DIR)
    n = len(history["loss"])
    for column, values in history.items():
        rows = frame[frame.tag == SCALAR_TAGS.get(column, column)].sort_values("step")
        assert rows.step.tolist() == list(range(1, n + 1)), column
        np.testing.assert_array_equal(rows.value.to_numpy(np.float32),
                                      np.asarray(values, np.float32))
    lr = frame[frame.tag == "learning_rate"].sort_values("step")
    assert lr.step.tolist() == list(range(1, n + 1))
    assert np.allclose(lr.value, 0.002, rtol=1e-7)


def test_run_writes_scalars_images_and_hparams(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny("output.tensorboard=true"))
    run_dir = run_experiment(exp, tmp_path / "runs").run_dir
    _check_scalars_match_history(run_dir)
    images = _images(run_dir / TB_DIR)
    assert set(images) == {"plots/loss", "plots/accuracy", "plots/confusion_matrix"}
    assert {step for step, _ in images.values()} == {EPOCHS}
    loss_png = Image.open(run_dir / "loss.png").convert("RGB")
    assert np.array_equal(np.asarray(images["plots/loss"][1]), np.asarray(loss_png))
    reader = tbparse.SummaryReader(str(run_dir / TB_DIR), pivot=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = reader.scalars
    for tag, key in (("test/loss", "test_loss"), ("test/accuracy", "test_accuracy"),
                     ("test/f1_macro", "f1_macro")):
        assert np.float32(frame[frame.tag == tag].value.item()) == np.float32(metrics[key])
    hparams = dict(zip(reader.hparams.tag, reader.hparams.value, strict=True))
    assert hparams["optimizer.learning_rate"] == pytest.approx(0.002)
    assert hparams["model.hidden"] == "[16]"
    assert hparams["training.batch_size"] == 8
    assert not any(k.startswith("output.") for k in hparams)
    assert "tensorboard = true" in (run_dir / "config.toml").read_text()


def test_off_by_default_and_config_digest_unchanged(tiny_dataset, tmp_path):
    from mnistlab.config.identity import config_digest, to_toml

    off = load_experiment("raw/template", _tiny())
    on = load_experiment("raw/template", _tiny("output.tensorboard=true"))
    assert "tensorboard" not in to_toml(off)  # earlier runs' config.toml stay as they were
    assert config_digest(off) == config_digest(on)  # a record of the run, not its result
    assert off.description == on.description
    from mnistlab.report.compare import _group_key  # `compare` puts them in one group

    assert _group_key(off.to_dict()) == _group_key(on.to_dict())




@pytest.mark.parametrize("first_with_tensorboard", [True, False])
def test_resume_continues_the_log_without_repeating_epochs(tiny_dataset, tmp_path,
                                                           first_with_tensorboard):
    """Interrupted in epoch 2 (7 batches per epoch), then resumed: each epoch once. Started
    without TensorBoard and resumed with it, the epochs before come from the history."""
    extra = ["output.tensorboard=true"] if first_with_tensorboard else []
    exp = load_experiment("raw/template", _tiny(*extra))
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "runs", reporter=CtrlCAt(10))
    run_dir = info.value.run_dir
    assert (run_dir / TB_DIR).is_dir() == first_with_tensorboard
    resume_run(run_dir, tensorboard=True)
    _check_scalars_match_history(run_dir)
    steps, tags = written_events(run_dir / TB_DIR)
    assert steps == set(range(1, EPOCHS + 1)) and "test/loss" in tags


def test_epochs_beyond_the_checkpoint_are_purged(tmp_path):
    """A log that ran ahead of the restored history: TensorBoard drops the steps after it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = {"optimizer": {"learning_rate": 0.1}}
    rows = {"loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 1.5]}
    EventLog(tmp_path, config, rows).close()
    (first,) = (tmp_path / TB_DIR).glob("events.out.tfevents.*")
    with open(first, "ab") as fh:  # a record cut short by a crash, then one of garbage
        fh.write(b"\x40\0\0\0\0\0\0\0" + b"\0" * 12)
    broken = first.with_name(first.name + ".x")
    broken.write_bytes(b"\x04\0\0\0\0\0\0\0" + b"\0" * 4 + b"\xff\xff\xff\xff" + b"\0" * 4)
    assert written_events(tmp_path / TB_DIR)[0] == {1, 2, 3}
    broken.unlink()
    log = EventLog(tmp_path, config, {k: v[:1] for k, v in rows.items()})  # back at epoch 1
    log.epoch(2, {"loss": 9.0, "val_loss": 9.5})
    log.close()
    assert written_events(tmp_path / TB_DIR)[0] == {1, 2}
    acc = EventAccumulator(str(tmp_path / TB_DIR))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss/train")] == [(1, 3.0), (2, 9.0)]


def test_runs_tensorboard_writes_a_finished_run_once(tiny_dataset, tmp_path, capsys):
    exp = load_experiment("raw/template", _tiny("output.plots=false"))
    run_dir = run_experiment(exp, tmp_path / "runs").run_dir
    assert main(["runs", "tensorboard", str(run_dir)]) == 0
    _check_scalars_match_history(run_dir)
    assert len(_images(run_dir / TB_DIR)) == 3  # drawn now: the run has no PNGs
    capsys.readouterr()
    assert main(["runs", "tensorboard", str(run_dir)]) == 0  # already there: not written again
    assert "skipped" in capsys.readouterr().out
    assert len(written_events(run_dir / TB_DIR)[1]) > 0
    assert len(list((run_dir / TB_DIR).glob("events.out.tfevents.*"))) == 1


def test_missing_tensorboardx_names_the_extra(tiny_dataset, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    exp = load_experiment("raw/template", _tiny("output.tensorboard=true"))
    with pytest.raises(ConfigError, match=r"pip install 'mnistlab\[tensorboard\]'"):
        run_experiment(exp, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # refused before any run directory


def test_tensorboard_flag_on_run_resume_and_suite_run():
    from mnistlab.commands import experiment_from_args
    from mnistlab.commands.main import build_parser

    parser = build_parser()
    assert experiment_from_args(parser.parse_args(["run", "raw/template", "--tensorboard"])
                                ).output.tensorboard
    assert not experiment_from_args(parser.parse_args(["run", "raw/template"])).output.tensorboard
    assert parser.parse_args(["resume", "some-run", "--tensorboard"]).tensorboard
    assert parser.parse_args(["suite", "run", "lab-main", "--tensorboard"]).tensorboard
