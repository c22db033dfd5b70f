"""Claims the data supports: held-out validation unless the lab's test set is chosen, warnings
when the test set was used for validation, and metadata that matches the run (descriptions,
CNN configs, per-layer differences and activations, plot labels)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import tomllib

from mnistlab.commands.main import main
from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import ValidationNotice, experiment_from_dict, load_experiment
from mnistlab.presets import read_preset
from mnistlab.report.compare import Group, config_differences
from mnistlab.report.compare import test_validation_warning as warning_text

TINY = ["--set", "data.train_samples=60", "--set", "data.test_samples=20", "--epochs", "2",
        "--batch-size", "16", "--set", "model.hidden=[8]", "--set", "output.plots=false"]


def _file(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_file_on_a_lab_preset_validates_on_the_held_out_split(tmp_path):
    plain = _file(tmp_path, 'base = "raw/template"\n[model]\nhidden = [100]\n')
    with pytest.warns(ValidationNotice, match=r"validates on 10% of train held out.*raw/template"):
        assert load_experiment(plain).data.validation == 0.1
    own = _file(tmp_path, 'base = "raw/template"\n[data]\nvalidation = "test"\n', "own.toml")
    on_own = _file(tmp_path, 'base = "own.toml"\n[model]\nhidden = [100]\n', "on-own.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice: the lab's choice is made by the file itself
        assert load_experiment(own).data.validation == "test"
        assert load_experiment(on_own).data.validation == "test"  # inherited from a file
        assert load_experiment("raw/final").data.validation == "test"  # the preset itself
        assert load_experiment("raw/final", ["model.hidden=[10]"]).data.validation == "test"
        exp = load_experiment(plain, ["data.validation=test"])  # --set chooses it: no notice
        assert exp.data.validation == "test"


def test_overridden_runs_do_not_claim_the_presets_description(tmp_path):
    preset_text = read_preset("raw/final")["description"]
    assert load_experiment("raw/final").description == preset_text
    same = load_experiment("raw/final", ["output.name=x", "training.threads=1",
                                         'training.device="cpu"'])  # the same network and result
    assert same.description == preset_text
    exp = load_experiment("raw/final", ["model.hidden=[100]", "training.epochs=3"])
    assert preset_text not in exp.description
    assert exp.description == "raw/final, changed: model.hidden=[100]; training.epochs=3"
    path = _file(tmp_path, 'base = "raw/final"\n[data]\nvalidation = "test"\n'
                 '[model]\nactivation = "relu"\n')
    described = load_experiment(path).description
    assert preset_text not in described
    assert described == "raw/final, changed: data.validation='test'; model.activation='relu'"
    own = _file(tmp_path, 'base = "raw/final"\ndescription = "mine"\n[data]\n'
                'validation = "test"\n', "own.toml")
    assert load_experiment(own).description == "mine"


def test_a_cnn_config_toml_has_no_mlp_only_fields():
    exp = load_experiment("cnn/final")
    model = tomllib.loads(to_toml(exp))["model"]
    assert "hidden" not in model and "dropout" not in model
    assert model["kind"] == "cnn" and model["layers"]
    again = experiment_from_dict(tomllib.loads(to_toml(exp)))
    assert again == exp and config_digest(again) == config_digest(exp)
    told = load_experiment("cnn/final", ["model.hidden=[50]", "model.dropout=0.5"])
    back = experiment_from_dict(tomllib.loads(to_toml(told)))
    assert config_digest(back) == config_digest(told) == config_digest(exp)  # resume matches
    mlp = tomllib.loads(to_toml(load_experiment("raw/final")))["model"]
    assert mlp["hidden"] == [250] and mlp["dropout"] == 0.5  # an MLP keeps them


def test_differences_name_the_layer_that_changed():
    configs = {name: tomllib.loads(to_toml(load_experiment(name)))
               for name in ("cnn/l4-relu-25", "cnn/l4-sigmoid-25")}
    # an older run recorded the MLP-only fields too; they are not a difference of a CNN
    configs["cnn/l4-sigmoid-25"]["model"].update(hidden=[300], dropout=0.0)
    configs["cnn/l4-relu-25"]["model"].update(hidden=[100], dropout=0.5)
    groups = [Group(name, name, cfg) for name, cfg in configs.items()]
    diffs = config_differences(groups)
    assert diffs == {"cnn/l4-relu-25": {"model.layers[7].activation": "relu"},
                     "cnn/l4-sigmoid-25": {"model.layers[7].activation": "sigmoid"}}


def test_presets_and_summary_show_each_layers_activation(capsys):
    assert main(["presets", "cnn/l4-sigmoid-25"]) == 0
    out = capsys.readouterr().out
    assert "dense25 sigmoid" in out and "conv9 relu" in out
    assert main(["summary", "cnn/l4-sigmoid-25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    dense = [line for line in lines if line.startswith("dense (Dense)")]
    assert dense and dense[0].endswith("sigmoid")
    assert any(line.startswith("conv2d (Conv2D)") and line.endswith("relu") for line in lines)


def test_curves_label_the_test_set_and_use_integer_epochs():
    from mnistlab.plots import curves_figure

    history = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.85]}
    fig = curves_figure(history, "loss", validation_is_test=True)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training loss", "test (used as validation) loss"]
    assert list(ax.get_xticks()) == [1, 2, 3]
    held = curves_figure(history, "loss").axes[0]
    assert [t.get_text() for t in held.get_legend().get_texts()][1] == "validation loss"
    long = curves_figure({"loss": [1.0] * 150, "val_loss": [1.0] * 150}).axes[0]
    ticks = long.get_xticks()
    assert len(ticks) < 20 and all(float(t).is_integer() for t in ticks)


def test_the_test_set_warning_names_the_runs():
    assert warning_text({"a": {"validation": 0.1}, "b": None}) == ""
    text = warning_text({"a": {"validation": "test"}, "b": {"validation": 0.1},
                                    "c": {"validation": "test"}})
    assert text.startswith("warning: 2 run(s) validated on the test set (a, c)")
    assert "\n" not in text


def test_run_and_compare_warn_about_the_test_set_and_note_the_split(tiny_dataset, tmp_path,
                                                                     capsys):
    runs = tmp_path / "runs"
    assert main(["run", "raw/template", *TINY, "--name", "lab", "--quiet",
                 "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err
    assert "mnistlab run: warning: 1 run(s) validated on the test set" in err
    assert "note:" not in err
    mine = _file(tmp_path, 'base = "raw/template"\n')
    assert main(["run", str(mine), *TINY, "--name", "held", "--quiet",
                 "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if "note:" in line]
    assert len(notes) == 1 and notes[0].startswith("mnistlab run: note: ")
    assert not any("validated on the test set" in line for line in err)
    held = next(p for p in runs.iterdir() if p.name.endswith("held"))
    assert json.loads((held / "metrics.json").read_text())["validation"] == 0.1
    assert main(["compare", str(runs)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "validated on the test set" in line]
    assert len(lines) == 1 and "-lab)" in lines[0] and "-held" not in lines[0], err
    assert main(["report", str(runs), "-o", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    said = [line for line in md.splitlines() if "validated on the test set" in line]
    assert len(said) == 1 and "-lab)" in said[0] and "-held" not in said[0], said


def test_run_plots_label_the_test_set_when_it_validated(tiny_dataset, tmp_path, monkeypatch):
    import mnistlab.plots as plots

    seen: list[bool] = []
    real = plots.curves_figure

    def recording(*args, validation_is_test=False, **kwargs):
        seen.append(validation_is_test)
        return real(*args, validation_is_test=validation_is_test, **kwargs)

    monkeypatch.setattr(plots, "curves_figure", recording)
    assert TINY[-2:] == ["--set", "output.plots=false"]
    mine = _file(tmp_path, 'base = "raw/template"\n')
    for source, expected in (("raw/template", True), (str(mine), False)):
        seen.clear()
        runs = str(tmp_path / "runs")
        assert main(["run", source, *TINY[:-2], "--quiet", "--runs-dir", runs]) == 0
        assert seen == [expected, expected]  # loss.png and accuracy.png
