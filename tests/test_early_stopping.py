"""Early stopping: Keras 3 `EarlyStopping`'s rules step by step, the restored epoch's weights
and metrics, exact resume, config errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import same_run_result
from test_resume import _CtrlC, _tiny
from torch import nn

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import EarlyStoppingConfig
from mnistlab.errors import ConfigError, RunInterrupted
from mnistlab.rundir.execute import resume_run, run_experiment
from mnistlab.training.early_stopping import EarlyStopping


def _replay(values, **kw) -> tuple[EarlyStopping, int, list[float]]:
    """Feed a scripted monitor sequence; -> (state, epochs run, weight value restored)."""
    stopper = EarlyStopping(EarlyStoppingConfig(enabled=True, **kw))
    model = nn.Linear(1, 1, bias=False)
    monitor = kw.get("monitor", "val_loss")
    epochs = 0
    for epoch, value in enumerate(values):
        model.weight.data.fill_(epoch)  # the weights "after epoch" = its index
        epochs += 1
        if stopper.on_epoch_end(epoch, {monitor: value}, model):
            break
    stopper.on_train_end(model)
    return stopper, epochs, float(model.weight.detach())


def test_keras_docstring_example_patience_3_on_loss():
    """Keras's own example: a loss that stops improving after epoch 1 -> 4 epochs are run."""
    stopper, epochs, _ = _replay([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], monitor="loss", patience=3)
    assert epochs == 4 and stopper.stopped_epoch == 3
    assert stopper.record(4, 6)["stopped_early"] and stopper.record(4, 6)["stopped_epoch"] == 4
    assert not stopper.record(4, 4)["stopped_early"]  # the rule fired in the last epoch


def test_patience_0_stops_at_the_first_epoch_without_improvement():
    stopper, epochs, last = _replay([0.5, 0.4, 0.45, 0.3])
    assert epochs == 3 and last == 2.0  # no restore: the last weights stay


@pytest.mark.parametrize("values, kw, epochs, restored", [
    ([0.5, 0.4, 0.45, 0.42, 0.41, 0.3], {"patience": 2}, 4, 1),  # best epoch index 1
    ([0.5, 0.4, 0.399, 0.398, 0.397], {"patience": 1, "min_delta": 0.01}, 3, 1),
    ([0.5, 0.6, 0.7, 0.8], {"patience": 1, "monitor": "val_accuracy"}, 4, 3),  # max mode
    ([0.5, 0.4, 0.3, 0.2], {"patience": 5}, 4, 3),  # never stops: Keras 3 still restores
])
def test_restore_best_weights(values, kw, epochs, restored):
    stopper, ran, weight = _replay(values, restore_best_weights=True, **kw)
    assert ran == epochs and weight == restored and stopper.restored_epoch == restored


def test_baseline_keeps_the_wait_counting_until_it_is_beaten():
    """Improvements that do not beat the baseline do not reset the wait (Keras 3), though the
    stop is only checked in epochs without improvement."""
    values = [0.9, 0.8, 0.8, 0.7]
    _, epochs, weight = _replay(values, patience=2, baseline=0.5, restore_best_weights=True)
    assert epochs == 3 and weight == 1.0  # wait 3 after epoch 3; best (0.8) is epoch 2
    _, epochs, _ = _replay(values, patience=2, restore_best_weights=True)
    assert epochs == 4  # without the baseline epoch 3 is the first miss: wait 1


def test_start_from_epoch_ignores_the_first_epochs():
    _, epochs, _ = _replay([0.5, 0.6, 0.7, 0.8, 0.9], start_from_epoch=3)
    assert epochs == 5  # epoch index 3 is the first watched; 4 does not improve -> stop


_STOP = ["early_stopping.monitor=val_loss", "early_stopping.patience=1",
         "early_stopping.min_delta=0.3", "early_stopping.restore_best_weights=true"]


def test_restored_run_equals_the_run_of_that_many_epochs(tiny_dataset, tmp_path):
    """model.pt, test metrics and predictions come from the restored epoch: bit-identical to
    a run that trained exactly that many epochs (constant rate, same seed)."""
    stopped = run_experiment(load_experiment("raw/template", [*_tiny(epochs=8), *_STOP]),
                             tmp_path / "stopped")
    record = stopped.metrics["early_stopping"]
    best = record["weights_epoch"]
    assert record["stopped_early"] and record["restored_best_weights"]
    assert best < record["stopped_epoch"] == len(stopped.history["loss"]) < 8
    short = run_experiment(load_experiment("raw/template", _tiny(epochs=best)),
                           tmp_path / "short")
    a = torch.load(stopped.run_dir / "model.pt")
    b = torch.load(short.run_dir / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("test_loss", "test_accuracy", "confusion", "f1_macro"):
        assert stopped.metrics[key] == short.metrics[key], key
    pa, pb = (dict(__import__("numpy").load(r.run_dir / "predictions.npz"))
              for r in (stopped, short))
    assert (pa["probabilities"] == pb["probabilities"]).all()
    summary = (stopped.run_dir / "summary.txt").read_text()
    assert (f"Weights: from epoch {best} of {record['stopped_epoch']} (best val_loss "
            in summary)
    assert f"early stopping ended training after epoch {record['stopped_epoch']} of 8" in summary


@pytest.mark.parametrize("press_at", [28, 60])  # end of epoch 2; mid-epoch 5, the last
def test_resume_is_exact(tiny_dataset, tmp_path, press_at):
    """Best weights, best value and the wait counter travel in the checkpoint."""
    exp = load_experiment("raw/template", [*_tiny(epochs=8), *_STOP])
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(press_at))
    resumed = resume_run(info.value.run_dir)
    same_run_result(reference.run_dir, resumed.run_dir)
    status = json.loads((resumed.run_dir / "status.json").read_text())
    assert status["status"] == "complete"


def test_section_turns_it_on_and_off_leaves_configs_alone():
    exp = load_experiment("raw/final")
    assert not exp.early_stopping.enabled and "early_stopping" not in to_toml(exp)
    on = experiment_from_dict({"early_stopping": {"patience": 3}}, "x.toml")
    assert on.early_stopping == EarlyStoppingConfig(enabled=True, patience=3)
    off = experiment_from_dict({"early_stopping": {"patience": 3, "enabled": False}}, "x.toml")
    assert config_digest(off) == config_digest(experiment_from_dict({}, "x.toml"))
    again = experiment_from_dict(__import__("tomllib").loads(to_toml(on)), "config.toml")
    assert again == on


@pytest.mark.parametrize("raw, message", [
    ({"early_stopping": {"monitor": "val_los"}},
     "x.toml: early_stopping.monitor must be one of 'val_loss', 'val_accuracy', 'loss', "
     "'accuracy'; got 'val_los' (did you mean 'val_loss'?)"),
    ({"early_stopping": {"patience": -1}},
     "x.toml: early_stopping.patience must be an int in [0, 100000]; got -1"),
    ({"early_stopping": {"restore_best_weights": True}, "data": {"validation": "test"}},
     "x.toml: early_stopping.monitor = 'val_loss' needs held-out validation data, but "
     "data.validation = \"test\" would make it choose on the test set and then report the test "
     "score of its choice. Set data.validation = 0.1 or monitor 'loss'"),
])
def test_config_errors(raw, message):
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(raw, "x.toml")
    assert str(err.value) == message


def test_summary_shows_early_stopping(capsys):
    assert main(["summary", "raw/template", "--set", "data.validation=0.1", "--set",
                 "early_stopping.patience=3", "--set",
                 "early_stopping.restore_best_weights=true"]) == 0
    assert ("Early stopping: val_loss (min), patience 3, min_delta 0, restores the best "
            "epoch's weights\n") in capsys.readouterr().out


def test_killed_while_writing_outputs_resume_trains_no_further(tiny_dataset, tmp_path):
    """The stop decision is in the last checkpoint: resume goes straight to the outputs."""
    import shutil

    from mnistlab.rundir.directory import write_status

    done = run_experiment(load_experiment("raw/template", [*_tiny(epochs=8), *_STOP]),
                          tmp_path / "runs")
    copy = tmp_path / "copy"
    shutil.copytree(done.run_dir, copy)
    for name in ("model.pt", "metrics.json", "predictions.npz"):
        (copy / name).unlink()
    write_status(copy, "interrupted", epochs_done=len(done.history["loss"]), stage="outputs")
    same_run_result(done.run_dir, resume_run(copy).run_dir)
