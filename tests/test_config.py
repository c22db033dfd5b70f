"""Config loading and validation; invalid-value tests are generated from the rule table."""

import os
import time
from pathlib import Path

import pytest

from mnistlab.config.identity import config_digest, to_toml
from mnistlab.config.load import (
    MAX_TOML_BYTES,
    experiment_from_dict,
    load_experiment,
    parse_override,
)
from mnistlab.config.memory import estimate_training_memory, machine_memory_bytes
from mnistlab.config.rules import RULES
from mnistlab.config.sections import Experiment
from mnistlab.data.registry import get_dataset
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


# --- non-finite values -------------------------------------------------------------------------

NON_FINITE_CASES = [
    ({"data": {"validation": float("nan")}}, "data.validation"),
    ({"data": {"validation": float("inf")}}, "data.validation"),
    ({"optimizer": {"learning_rate": float("nan")}}, "optimizer.learning_rate"),
    ({"optimizer": {"clipnorm": float("inf")}}, "optimizer.clipnorm"),
    ({"model": {"dropout": float("-inf")}}, "model.dropout"),
    ({"model": {"hidden": [300, float("nan")]}}, "model.hidden[1]"),
    ({"training": {"epochs": float("inf")}}, "training.epochs"),
    ({"model": {"kind": "cnn", "layers": [{"type": "dropout", "rate": float("nan")},
                                          {"type": "flatten"}]}}, "model.layers[0].rate"),
]


@pytest.mark.parametrize("raw, path", NON_FINITE_CASES, ids=[p for _, p in NON_FINITE_CASES])
def test_non_finite_values_are_refused_wherever_they_are(raw, path):
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(raw, "x.toml")
    assert str(info.value).startswith(f"x.toml: {path} must be ")
    assert "(not a finite number)" in str(info.value)


def test_validation_nan_from_a_file_and_from_set(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text("[data]\nvalidation = nan\n")
    with pytest.raises(ConfigError, match=r"data\.validation must be .*; got nan"):
        load_experiment(path)
    with pytest.raises(ConfigError, match=r"data\.validation must be .*; got inf"):
        load_experiment("raw/template", ["data.validation=inf"])


# --- `base` and experiment files: regular files of bounded size --------------------------------

@pytest.mark.timeout(20)  # the old reader waited for a FIFO's writer forever
def test_base_must_be_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    (tmp_path / "folder.toml").mkdir()
    cases = {"pipe.toml": "a FIFO (named pipe), not a regular file",
             "/dev/zero": "a character device, not a regular file",
             "/dev/null": "a character device, not a regular file",
             "folder.toml": "is a folder"}
    for base, message in cases.items():
        child = tmp_path / "child.toml"
        child.write_text(f"base = {base!r}\n")
        start = time.perf_counter()
        with pytest.raises(ConfigError) as info:
            load_experiment(child)
        assert message in str(info.value)
        assert time.perf_counter() - start < 2
    with pytest.raises(ConfigError, match="pipe.toml: is a FIFO"):
        load_experiment(fifo)  # named directly, not through `base`


def test_base_must_be_of_bounded_size(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_TOML_BYTES // 10 + 1) + "[training]\nepochs = 3\n")
    child = tmp_path / "child.toml"
    child.write_text('base = "big.toml"\n')
    with pytest.raises(ConfigError, match=f"big.toml: is larger than {MAX_TOML_BYTES:,} bytes"):
        load_experiment(child)
    big.write_text("# padding\n" * (MAX_TOML_BYTES // 20) + "[training]\nepochs = 3\n")
    assert load_experiment(child).training.epochs == 3  # under the limit it still reads


# --- memory needed by the model ----------------------------------------------------------------

MEMORY_MODELS = [
    {"model": {"hidden": [300]}},
    {"model": {"hidden": [64, 32], "dropout": 0.2}, "optimizer": {"centered": True}},
    {"features": {"kind": "hog", "pixels_per_cell": 7}, "model": {"hidden": [100]},
     "optimizer": {"momentum": 0.9}},
    {"model": {"kind": "cnn", "layers": [
        {"type": "conv2d", "filters": 9, "kernel_size": 3, "padding": "same"},
        {"type": "maxpool2d"}, {"type": "dropout", "rate": 0.25}, {"type": "flatten"},
        {"type": "dense", "units": 25}]}, "data": {"dataset": "fashion-mnist"}},
]


@pytest.mark.parametrize("raw", MEMORY_MODELS)
def test_memory_estimate_counts_what_torch_allocates(raw):
    """Parameters and optimiser slots against a built model and a stepped RMSprop; activations
    against the tensors autograd saves for backward (counted with saved-tensor hooks)."""
    import torch

    from mnistlab.config.geometry import IMAGE_SHAPE, feature_shape
    from mnistlab.nn.build import build_model
    from mnistlab.nn.optim import make_optimizer

    exp = experiment_from_dict({**raw, "training": {"batch_size": 8}})
    est = estimate_training_memory(exp)
    n_classes = len(get_dataset(exp.data.dataset).class_names)
    shape = IMAGE_SHAPE if exp.model.kind == "cnn" else feature_shape(exp.features)
    model = build_model(exp.model, shape, n_classes)
    params = list(model.parameters())
    assert est.parameters == sum(p.numel() for p in params)
    opt = make_optimizer(params, exp.optimizer)
    x = torch.rand(est.rows, *shape)
    weights = {q.untyped_storage().data_ptr() for q in params}
    saved: dict[int, int] = {}  # storage -> bytes: a tensor saved by two layers counts once

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:  # Linear and Conv2d save their weights: counted as parameters
            saved[ptr] = max(saved.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).sum()
    loss.backward()
    opt.step()
    slots = sum(t.numel() for state in opt.state.values() for t in state.values()
                if isinstance(t, torch.Tensor))
    assert est.parameter_bytes == 4 * (2 * est.parameters + slots)
    assert 0 < sum(saved.values()) <= est.rows * est.activation_values * 4


def test_memory_estimate_uses_a_chunk_and_never_more_rows_than_the_data():
    big = experiment_from_dict({"training": {"batch_size": 4096}})
    assert estimate_training_memory(big).rows == 4096
    chunked = experiment_from_dict({"training": {"batch_size": 4096, "chunk_size": 256}})
    assert estimate_training_memory(chunked).rows == 256
    whole = experiment_from_dict({"training": {"batch_size": 10_000_000}})
    assert estimate_training_memory(whole).rows == get_dataset("mnist").n_items("train") == 60000
    few = experiment_from_dict({"training": {"batch_size": 4096}, "data": {"train_samples": 600}})
    assert estimate_training_memory(few).rows == 600


def test_a_model_too_big_for_the_machine_is_refused_at_load(monkeypatch, tmp_path, capsys):
    from mnistlab.commands.main import main
    from mnistlab.config import memory

    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 8 * 1024**3)
    with pytest.raises(ConfigError) as info:
        load_experiment("raw/template", ["model.hidden=[65536, 65536]"])
    msg = str(info.value)
    assert msg.startswith("preset raw/template (with --set): training this model needs about")
    # 4,347,133,962 x 3 x 4 bytes = 48.6 GiB; 128 x (784 + 2 x 65536 x 2 + 2 x 10) x 4 x 2 bytes
    # = 0.25 GiB of activations.
    assert "needs about 48.8 GiB" in msg and "this machine's 8.0 GiB" in msg
    assert "4,347,133,962 parameters x 3 float32 copies (weights, gradients, optimiser slots) = " \
           "48.6 GiB, plus activations of 128 samples forward and backward = 0.3 GiB" in msg
    assert "Make model.hidden smaller" in msg
    # The same model in a file, through the CLI: one line, exit 2, no run directory.
    path = tmp_path / "huge.toml"
    path.write_text("[model]\nhidden = [65536, 65536]\n")
    assert main(["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs about 48.8 GiB" in err
    assert not (tmp_path / "runs").exists()
    # A batch too large for its activations is refused too, naming the batch size.
    with pytest.raises(ConfigError, match="activations of 60,000 samples.*training.batch_size"):
        load_experiment("raw/template", ["model.hidden=[16384, 16384]",
                                         "training.batch_size=60000"])
    # Reading the config of a run trained on a larger machine skips only this check.
    exp = experiment_from_dict({"model": {"hidden": [65536, 65536]}}, check_memory=False)
    assert exp.model.hidden == (65536, 65536)


def test_machine_memory_is_the_physical_total():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert machine_memory_bytes() == total
    meminfo = Path("/proc/meminfo").read_text()
    line = next(line for line in meminfo.splitlines() if line.startswith("MemTotal:"))
    kib = int(line.split()[1])
    assert abs(total - kib * 1024) < 0.05 * total


def test_every_preset_fits_in_a_16_gib_machine(monkeypatch):
    """The lab's presets stay usable on a 16 GB laptop (the largest, fashion/run3-conv64 with
    whole batches of 8192 images of 64 channels, needs about 8.5 GiB)."""
    from mnistlab.config import memory

    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 16 * 1024**3)
    sizes = {name: estimate_training_memory(load_experiment(name)).total_bytes
             for name in preset_names()}
    assert max(sizes, key=sizes.get) == "fashion/run3-conv64"
