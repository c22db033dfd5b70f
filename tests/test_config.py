"""Config loading and validation; invalid-value tests are generated from the rule table."""

import pytest

from mnistlab.config.load import (
    config_digest,
    experiment_from_dict,
    load_experiment,
    parse_override,
    to_toml,
)
from mnistlab.config.rules import RULES
from mnistlab.config.sections import Experiment
from mnistlab.errors import ConfigError
from mnistlab.presets import preset_names


def _invalid_values(rule):
    """Values each rule must reject (outside ranges, wrong types)."""
    bad = [object.__name__]  # a string where most fields want something else
    if rule.kind in ("int", "float", "int_list", "validation"):
        if rule.low is not None:
            bad.append(rule.low - 1 if rule.kind != "int_list" else [int(rule.low) - 1])
        if rule.high is not None:
            bad.append(rule.high + 1 if rule.kind != "int_list" else [int(rule.high) + 1])
        bad.append(True)
    if rule.kind == "int":
        bad.append(1.5)
    if rule.kind == "choice":
        bad = ["definitely-not-valid", 3]
    if rule.kind == "bool":
        bad = ["yes", 1]
    if rule.kind == "str":
        bad = [3, ["a"]]
    if rule.kind == "int_list":
        bad += [[], "300"]
    if rule.low_open and rule.low is not None:
        bad.append(rule.low if rule.kind != "int_list" else [rule.low])
    if rule.high_open and rule.high is not None:
        bad.append(rule.high)
    return bad


CASES = [(path, value) for path, rule in RULES.items() for value in _invalid_values(rule)
         if not (rule.kind == "str" and isinstance(value, str))]


@pytest.mark.parametrize("path, value", CASES, ids=[f"{p}={v!r}" for p, v in CASES])
def test_every_rule_rejects_bad_values_with_one_message_shape(path, value):
    section, key = path.split(".")
    with pytest.raises(ConfigError) as info:
        experiment_from_dict({section: {key: value}}, "experiments/x.toml")
    msg = str(info.value)
    assert msg.startswith(f"experiments/x.toml: {path}")
    assert "must be" in msg
    item_rule = RULES[path].kind == "int_list" and isinstance(value, list) and len(value) == 1
    shown = value[0] if item_rule else value  # a bad list item is named by its index
    assert msg.endswith(f"got {shown!r}") or f"got {shown!r} (did you mean" in msg


def test_list_items_are_indexed():
    with pytest.raises(ConfigError, match=r"model\.hidden\[1\] must be an int in \[1, 65536\]; "
                                          r"got 0"):
        experiment_from_dict({"model": {"hidden": [300, 0]}}, "experiments/x.toml")


def test_unknown_key_and_section_name_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        experiment_from_dict({"training": {"batchsize": 5}}, "x.toml")
    with pytest.raises(ConfigError, match="did you mean 'optimizer'"):
        experiment_from_dict({"optimiser": {}}, "x.toml")


def test_defaults_are_valid_and_frozen():
    exp = experiment_from_dict({})
    assert exp == Experiment()
    with pytest.raises(AttributeError):
        exp.training.epochs = 3  # type: ignore[misc]


def test_every_preset_loads():
    names = preset_names()
    assert {"raw/template", "raw/final"} <= set(names)
    for name in names:
        load_experiment(name)


def test_raw_presets_match_the_lab():
    final = load_experiment("raw/final")
    assert (final.model.hidden, final.model.activation, final.model.dropout) == ((250,), "tanh",
                                                                                 0.5)
    assert (final.training.batch_size, final.training.epochs) == (4096, 150)
    assert final.data.validation == "test"
    t = load_experiment("raw/template")
    assert (t.model.hidden, t.model.activation, t.training.batch_size, t.training.epochs) == (
        (300,), "relu", 128, 10)
    assert len(preset_names("raw/*")) == 11  # template + nine 150-epoch runs + the 50-epoch run


def test_set_overrides_and_file_inheritance(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "raw/final"\n[training]\nepochs = 3\n')
    exp = load_experiment(path, ["model.activation=relu", "model.hidden=[64, 32]",
                                 "data.validation=0.2"])
    assert exp.training.epochs == 3 and exp.training.batch_size == 4096
    assert exp.model.activation == "relu" and exp.model.hidden == (64, 32)
    assert exp.data.validation == 0.2 and exp.output.name == "mine"


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nhidden = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not a preset"):
        load_experiment("raw/finall")


def test_parse_override():
    assert parse_override("model.dropout=0.5") == (["model", "dropout"], 0.5)
    assert parse_override("model.activation=tanh") == (["model", "activation"], "tanh")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("nonsense")


def test_round_trip_through_toml_and_digest():
    import tomllib

    exp = load_experiment("raw/final", ["optimizer.clipnorm=1.0"])
    again = experiment_from_dict(tomllib.loads(to_toml(exp)))
    assert again == exp
    assert config_digest(again) == config_digest(exp)
    assert config_digest(load_experiment("raw/final", ["training.seed=1"])) != config_digest(exp)


def test_clipnorm_and_global_clipnorm_conflict():
    with pytest.raises(ConfigError, match="at most one of"):
        experiment_from_dict({"optimizer": {"clipnorm": 1.0, "global_clipnorm": 1.0}})
    with pytest.raises(ConfigError, match="optimizer.clipvalue=0.5, optimizer.clipnorm=1.0"):
        experiment_from_dict({"optimizer": {"clipvalue": 0.5, "clipnorm": 1.0}})
