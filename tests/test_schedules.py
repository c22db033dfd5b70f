"""Learning-rate schedules: formulas against their Keras 3 / PyTorch definitions, plateau's
rules step by step, config errors, the `lr` column, exact resume and the fast path."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import same_run_result
from test_resume import _CtrlC, _tiny

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import ScheduleConfig
from mnistlab.errors import ConfigError, RunInterrupted
from mnistlab.rundir.execute import resume_run, run_experiment
from mnistlab.training.schedules import LearningRateSchedule, onecycle_lr


def _schedule(batches=10, epochs=5, lr=0.1, **kw) -> LearningRateSchedule:
    exp = experiment_from_dict({"schedule": kw}, "x.toml")
    return LearningRateSchedule(exp.schedule, lr, batches, epochs)


def _keras_cosine(step, lr0, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    """keras/src/optimizers/schedules/learning_rate_schedule.py, CosineDecay.__call__."""
    if warmup_target is None:
        step = min(step, decay_steps)
        return lr0 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - lr0) * (step / warmup_steps) + lr0
    done = (step - warmup_steps) / decay_steps
    return warmup_target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * done)) + alpha)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_is_keras_exponential_decay(staircase):
    s = _schedule(name="exponential", decay_steps=7, decay_rate=0.5, staircase=staircase)
    for epoch in range(5):
        for batch in range(10):
            step = epoch * 10 + batch  # Keras: the step count before the update
            p = step // 7 if staircase else step / 7
            assert s.lr(epoch, batch) == pytest.approx(0.1 * 0.5**p, rel=1e-12)


@pytest.mark.parametrize("kw", [
    {"decay_steps": 30, "alpha": 0.1},
    {"decay_steps": 20, "alpha": 0.0, "warmup_target": 0.5, "warmup_steps": 15},
])
def test_cosine_is_keras_cosine_decay(kw):
    s = _schedule(name="cosine", **kw)
    for step in range(50):
        assert s.lr(step // 10, step % 10) == pytest.approx(_keras_cosine(step, 0.1, **kw),
                                                            rel=1e-12, abs=1e-15)
    assert s.lr(0, 0) == pytest.approx(0.1)  # starts from optimizer.learning_rate


def test_cosine_decay_steps_zero_decays_over_the_rest_of_training():
    s = _schedule(name="cosine", warmup_target=0.2, warmup_steps=10)  # 50 steps, 40 to decay
    assert s.lr(1, 0) == pytest.approx(0.2)
    assert s.lr(3, 0) == pytest.approx(0.1)  # half way through the decay: cos(pi/2)
    assert s.lr(4, 9) == pytest.approx(_keras_cosine(49, 0.1, 40, 0.0, 0.2, 10))


def test_step_decay_every_n_epochs():
    s = _schedule(name="step", step_epochs=2, factor=0.5)
    assert [s.lr(e, 3) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


@pytest.mark.parametrize("kw", [{}, {"anneal_strategy": "linear", "pct_start": 0.25},
                                {"three_phase": True, "div_factor": 10.0,
                                 "final_div_factor": 100.0}])
def test_onecycle_is_pytorch_onecycle_lr(kw):
    """Against torch.optim.lr_scheduler.OneCycleLR itself (rate only: cycle_momentum=False)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=50,
                                              cycle_momentum=False, **kw)
    s = _schedule(name="onecycle", **kw)
    for step in range(50):
        assert s.lr(step // 10, step % 10) == pytest.approx(opt.param_groups[0]["lr"],
                                                            rel=1e-12, abs=1e-18)
        opt.step()
        ref.step()
    assert onecycle_lr(0, 50, 0.1) == pytest.approx(0.1 / 25)


def test_plateau_follows_keras_reduce_lr_on_plateau():
    """patience 2, cooldown 1, factor 0.5, min_lr 0.02, min_delta 1e-4, on val_loss (min)."""
    s = _schedule(name="plateau", patience=2, cooldown=1, factor=0.5, min_lr=0.02)
    losses = [1.0, 0.9, 0.9, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    rates = []
    for loss in losses:
        rates.append(s.lr(0, 0))
        s.on_epoch_end({"val_loss": loss})
    # Epochs 3, 4 do not improve on 0.9 -> halve after epoch 4. Epoch 5 is the cooldown epoch
    # (its counter drops to 0 first) and improves. 6, 7 wait -> halve after 7. In epoch 8 the
    # cooldown counter drops to 0 before the check, so 8 already counts: 8, 9 wait -> 0.0125,
    # raised to min_lr 0.02, after 9. 10 is cooldown and counts; after 11 the rate is at
    # min_lr and stays (Keras compares float32 values), the wait goes on counting.
    assert rates == pytest.approx([0.1] * 4 + [0.05] * 3 + [0.025] * 2 + [0.02] * 3)
    assert s.state_dict() == {"current": 0.02, "best": 0.8, "wait": 3, "cooldown_counter": 0}


def test_plateau_on_accuracy_goes_up():
    s = _schedule(name="plateau", monitor="val_accuracy", patience=1)
    for acc in (0.5, 0.6, 0.6):
        s.on_epoch_end({"val_accuracy": acc})
    assert s.lr(3, 0) == pytest.approx(0.01)


def test_constant_leaves_configs_and_digests_as_they_were():
    exp = load_experiment("raw/final")
    explicit = load_experiment("raw/final", ["schedule.name=constant"])
    assert "[schedule]" not in to_toml(explicit)
    assert config_digest(explicit) == config_digest(exp)
    assert explicit.schedule == ScheduleConfig()
    cosine = load_experiment("raw/final", ["schedule.name=cosine"])
    assert config_digest(cosine) != config_digest(exp)
    assert experiment_from_dict(__import__("tomllib").loads(to_toml(cosine))) == cosine


@pytest.mark.parametrize("schedule, message", [
    ({"name": "cosin"}, "x.toml: schedule.name must be one of 'constant', 'step', 'exponential', "
                        "'cosine', 'onecycle', 'plateau'; got 'cosin' (did you mean 'cosine'?)"),
    ({"name": "exponential", "decay_steps": 10, "decay_rate": -0.5},
     "x.toml: schedule.decay_rate must be a number in (0, 1] (or left out); got -0.5"),
    ({"name": "exponential", "decay_rate": 0.5},
     "x.toml: the exponential schedule needs schedule.decay_steps (it has no default); takes: "
     "decay_steps, decay_rate, staircase"),
    ({"name": "step", "alpha": 0.1}, "x.toml: schedule.alpha = 0.1 is not an argument of the "
                                     "step schedule; it is taken by: cosine"),
    ({"name": "plateau", "factor": 1.5},
     "x.toml: schedule.factor must be a number in (0, 1) (or left out); got 1.5"),
    ({"name": "cosine", "warmup_steps": 5},
     "x.toml: schedule.warmup_steps = 5 needs schedule.warmup_target (the rate the warmup "
     "climbs to); without it Keras's CosineDecay skips the warmup"),
])
def test_config_errors(schedule, message):
    with pytest.raises(ConfigError) as err:
        experiment_from_dict({"schedule": schedule}, "x.toml")
    assert str(err.value) == message


def test_plateau_on_val_needs_held_out_validation():
    with pytest.raises(ConfigError, match="schedule.monitor = 'val_loss' needs held-out"):
        experiment_from_dict({"schedule": {"name": "plateau"}, "data": {"validation": "test"}},
                             "x.toml")


def test_summary_shows_the_schedule(capsys):
    assert main(["summary", "raw/template", "--set", "schedule.name=exponential", "--set",
                 "schedule.decay_steps=100", "--set", "schedule.decay_rate=0.9"]) == 0
    assert ("Schedule: exponential per optimiser step from learning_rate 0.001 "
            "(decay_steps=100, decay_rate=0.9, staircase=false)\n") in capsys.readouterr().out


_PLATEAU = ["schedule.name=plateau", "schedule.patience=1", "schedule.factor=0.5",
            "schedule.monitor=loss", "schedule.min_delta=1.0"]  # only epoch 1 counts


def test_lr_column_and_exact_resume_with_plateau(tiny_dataset, tmp_path):
    """The rate, best value and counters travel in the checkpoint: cut + resume = straight."""
    exp = load_experiment("raw/template", [*_tiny(epochs=4), *_PLATEAU])
    reference = run_experiment(exp, tmp_path / "ref")
    lrs = reference.history["lr"]
    assert lrs[0] == 0.001 and min(lrs) < 0.001  # the rate was reduced at least once
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(34))  # mid-epoch 3
    same_run_result(reference.run_dir, resume_run(info.value.run_dir).run_dir)


def test_exact_resume_with_a_per_step_schedule(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", [*_tiny(epochs=2), "schedule.name=onecycle"])
    reference = run_experiment(exp, tmp_path / "ref")
    assert reference.history["lr"] == pytest.approx([0.001 / 25, onecycle_lr(14, 28, 0.001)])
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(20))
    same_run_result(reference.run_dir, resume_run(info.value.run_dir).run_dir)


def test_the_schedule_reaches_the_fast_path(tiny_dataset, tmp_path):
    """The fast plan's hand-written MLP step and the stock one see the same rates: same
    weights (within float rounding), and clearly not those of the constant rate."""
    args = [*_tiny(epochs=2), "model.dropout=0.0", "optimizer.name=sgd",
            "optimizer.learning_rate=0.5", "schedule.name=onecycle"]
    runs = {name: run_experiment(load_experiment("raw/template", [*args, *extra]),
                                 tmp_path / name)
            for name, extra in (("on", []), ("off", ["training.fast=false"]),
                                ("constant", ["schedule.name=constant"]))}
    assert runs["on"].metrics["fast"] and not runs["off"].metrics["fast"]
    assert runs["on"].history["lr"] == runs["off"].history["lr"]
    weights = {k: torch.load(r.run_dir / "model.pt") for k, r in runs.items()}
    for key, w in weights["on"].items():
        torch.testing.assert_close(w, weights["off"][key], rtol=1e-4, atol=1e-6)
    gap = max(float((w - weights["constant"][k]).abs().max()) for k, w in weights["on"].items())
    assert gap > 1e-2


def test_report_optimiser_section_shows_schedule_stopping_and_smoothing():
    from types import SimpleNamespace

    from mnistlab.report.document import Bullets, Math, Para, Table
    from mnistlab.report.sections import optimizer_section

    lab = SimpleNamespace(label="lab", config=load_experiment("raw/final").to_dict())
    assert not any("schedule" in getattr(b, "text", "") for b in optimizer_section([lab]))
    new = load_experiment("raw/final", ["schedule.name=cosine", "schedule.warmup_target=0.01",
                                        "schedule.warmup_steps=100", "early_stopping.patience=2",
                                        "data.validation=0.1", "training.label_smoothing=0.1"])
    run = SimpleNamespace(metrics={"early_stopping": {"stopped_early": True, "stopped_epoch": 7,
                                                      "weights_epoch": 5}})
    group = SimpleNamespace(label="new", config=new.to_dict(), representative=run)
    blocks = optimizer_section([lab, group])
    rows = [b for b in blocks if isinstance(b, Table)][-1].rows
    assert rows[0] == ("lab", "constant (learning_rate 0.001)")
    assert rows[1][1].startswith("cosine per optimiser step from learning_rate 0.001")
    bullets = next(b for b in blocks if isinstance(b, Bullets)).items
    assert bullets == ("new: Early stopping: val_loss (min), patience 2, min_delta 0; the "
                       "representative run stopped early after epoch 7, weights from epoch 5.",)
    assert any("ε_ls = 0.1" in b.text for b in blocks if isinstance(b, Para))
    maths = [b.latex for b in blocks if isinstance(b, Math)]
    assert any(r"\cos" in m for m in maths) and any("epsilon_{ls}" in m for m in maths)


def test_report_equations_render_with_mathtext():
    import io

    from matplotlib import mathtext

    from mnistlab.report import training_section

    for eq in (*training_section.SCHEDULE_EQUATIONS.values(),
               training_section.SMOOTHING_EQUATION):
        mathtext.math_to_image(f"${eq}$", io.BytesIO(), format="png")
