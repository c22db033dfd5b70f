"""Loading an experiment: preset or TOML file -> `base` inheritance -> `--set` overrides ->
validation against the rule tables -> a frozen `Experiment`.

Config flows one way, and every check runs here, before any data is read: single values
(`config.rules`), layer tables (`config.layers`), rules across fields (a CNN's layer stack
must be buildable, HOG arguments must give features, chunking needs layers that keep samples
apart), and whether training fits in this machine's memory (`config.memory`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import tomllib

from mnistlab import presets
from mnistlab.config import memory
from mnistlab.config.geometry import IMAGE_SHAPE, check_feature_args, check_shapes
from mnistlab.config.layers import check_layers, layer_specs, mixing_layers
from mnistlab.config.optimizers import resolve_optimizer
from mnistlab.config.origin import (
    LAB_SPLIT,
    NOT_RESULT,
    ValidationNotice,
    described_overrides,
    lab_validation_notice,
    own_settings,
)
from mnistlab.config.rules import RULES, check_value, shown_key
from mnistlab.config.schedules import resolve_schedule
from mnistlab.config.sections import (
    MLP_ONLY,
    SECTIONS,
    TOP_LEVEL_KEYS,
    Experiment,
    ModelConfig,
)
from mnistlab.data.registry import get_dataset
from mnistlab.errors import ConfigError, did_you_mean

__all__ = ["ValidationNotice", "LAB_SPLIT", "lab_validation_notice", "inherits_lab_validation",
           "described_overrides",
           "experiment_from_dict", "apply_overrides", "parse_override", "read_toml",
           "resolve_raw", "default_run_name", "load_experiment"]


def inherits_lab_validation(base: str, own: dict[str, Any]) -> bool:
    """True when `base` is a preset that validates on the test set and `own` (the file's or
    sweep's own settings, as {"data": {...}}) does not choose its validation itself."""
    if not presets.is_preset(base) or "validation" in (own.get("data") or {}):
        return False
    parent, _ = resolve_raw(base)
    return parent.get("data", {}).get("validation") == "test"


def experiment_from_dict(raw: dict[str, Any], source: str = "<config>", *,
                         check_memory: bool = True) -> Experiment:
    """Validate a nested dict against `RULES` and freeze it into an `Experiment`.

    `check_memory=False` skips only the check that training fits in this machine's memory
    (`config.memory`), for reading the config of a run that was trained elsewhere.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a table of sections; got {type(raw).__name__}")
    sections: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS and key not in TOP_LEVEL_KEYS:
            valid = [*SECTIONS, *TOP_LEVEL_KEYS]
            raise ConfigError(
                f"{source}: unknown section {key!r}; allowed: {', '.join(valid)}"
                + did_you_mean(key, valid, cutoff=0.5)
            )
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: [{name}] must be a table; got {given!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key, value in given.items():
            if key not in names:
                raise ConfigError(
                    f"{source}: unknown key {name}.{shown_key(key)}; allowed: {', '.join(names)}"
                    + did_you_mean(key, names, cutoff=0.5)
                )
            path = f"{name}.{key}"
            values[key] = (check_layers(source, path, value) if RULES[path].kind == "layers"
                           else check_value(source, path, RULES[path], value))
        if name == "optimizer":
            fields = {f.name: f.default for f in dataclasses.fields(cls)}
            values = resolve_optimizer(source, values, fields)
        elif name == "schedule":
            values = resolve_schedule(source, values)
        elif name == "early_stopping" and name in raw:  # the section given turns it on
            values.setdefault("enabled", True)
        sections[name] = cls(**values)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string; got {description!r}")
    if sections["model"].kind == "cnn":  # fields only an MLP uses: the same for every CNN,
        defaults = ModelConfig()  # so its digest matches its config.toml, which leaves them out
        sections["model"] = dataclasses.replace(
            sections["model"], **{k: getattr(defaults, k) for k in MLP_ONLY})
    exp = Experiment(**sections, description=description)
    _check_across_fields(exp, source)
    if check_memory:
        memory.check_memory(exp, source)
    return exp


def _check_across_fields(exp: Experiment, source: str) -> None:
    """Rules that involve more than one field."""
    opt = exp.optimizer
    clips = {k: getattr(opt, k) for k in ("clipvalue", "clipnorm", "global_clipnorm")}
    chosen = {k: v for k, v in clips.items() if v is not None}
    if len(chosen) > 1:
        given = ", ".join(f"optimizer.{k}={v!r}" for k, v in chosen.items())
        raise ConfigError(
            f"{source}: at most one of optimizer.clipvalue, optimizer.clipnorm and "
            f"optimizer.global_clipnorm may be set (as in Keras 3); got {given}"
        )
    if exp.model.kind == "cnn" or exp.model.layers is not None:
        _check_model_layers(exp, source)
    check_feature_args(exp.features, source)
    _check_chunking(exp, source)
    _check_monitors(exp, source)
    if exp.augmentation.active and exp.features.kind != "raw":
        raise ConfigError(
            f"{source}: [augmentation] moves pixels, so it needs features.kind = \"raw\" "
            f"(images); got features.kind = {exp.features.kind!r}. Remove [augmentation] or "
            "train on raw pixels")


def _check_monitors(exp: Experiment, source: str) -> None:
    """A callback watching val_* when the validation set is the test set would choose on the
    test set and then report the test score of its own choice; held-out data is needed."""
    watched = {"schedule": exp.schedule.monitor if exp.schedule.name == "plateau" else None,
               "early_stopping": exp.early_stopping.monitor if exp.early_stopping.enabled
               else None}
    for section, monitor in watched.items():
        if monitor and monitor.startswith("val_") and exp.data.validation == "test":
            raise ConfigError(
                f"{source}: {section}.monitor = {monitor!r} needs held-out validation data, but "
                "data.validation = \"test\" would make it choose on the test set and then "
                "report the test score of its choice. Set data.validation = 0.1 or monitor "
                "'loss'")


def _check_chunking(exp: Experiment, source: str) -> None:
    """A batch split into chunks gives the whole batch's gradient only if no layer mixes
    samples; the layers that do are listed in `config.layers.SAMPLE_MIXING_LAYERS`."""
    mixing = mixing_layers(layer_specs(exp.model))
    if exp.training.chunk_size and mixing:
        raise ConfigError(
            f"{source}: training.chunk_size = {exp.training.chunk_size} splits each batch into "
            f"chunks whose gradients are added up, which is exact only when no layer mixes "
            f"samples; this model has {', '.join(sorted(set(mixing)))}. Set training.chunk_size "
            "= 0 (whole batches)")


def _check_model_layers(exp, source: str) -> None:
    """Cross-field rules of a CNN: layers only with kind 'cnn', raw images, a buildable stack."""
    model = exp.model
    if model.kind != "cnn":
        raise ConfigError(f"{source}: model.layers is used only when model.kind = 'cnn'; got "
                          f"model.kind = {model.kind!r} (an MLP takes model.hidden)")
    if model.layers is None:
        raise ConfigError(f"{source}: model.kind = 'cnn' needs model.layers, e.g. [{{type = "
                          "\"conv2d\", filters = 9, kernel_size = 3, padding = \"same\"}, "
                          "{type = \"maxpool2d\"}, {type = \"flatten\"}]")
    if exp.features.kind != "raw":
        raise ConfigError(f"{source}: model.kind = 'cnn' needs images, features.kind = 'raw'; "
                          f"got features.kind = {exp.features.kind!r}")
    check_shapes(model, IMAGE_SHAPE, source, len(get_dataset(exp.data.dataset).class_names))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); the value is read as TOML if it can be
    (numbers, booleans, lists) and as a plain string otherwise (`model.activation=tanh`)."""
    if "=" not in text:
        raise ConfigError(f"--set: expected section.key=value; got {text!r}")
    key, _, value_text = text.partition("=")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"--set: key must look like section.key (e.g. model.dropout); got {key!r}")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = value_text.strip()
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` strings to a raw config dict (validated later, with the rest)."""
    out = dict(raw)
    for text in overrides:
        (section, key), value = parse_override(text)
        out = _merge(out, {section: {key: value}})
    return out


MAX_TOML_BYTES = 1024**2  # the largest preset is a few hundred bytes; /dev/zero is endless


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most `MAX_TOML_BYTES`, refusing anything else.

    Opened without blocking and checked on the open descriptor: a FIFO would otherwise wait
    for a writer forever, and a device such as /dev/zero would be read until memory runs out.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: is {_file_kind(st.st_mode)}, not a regular file; "
                              "expected an experiment .toml file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_TOML_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TOML_BYTES:
        raise ConfigError(f"{path}: is larger than {MAX_TOML_BYTES:,} bytes; an experiment file "
                          "is a short .toml file")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((text for test, text in kinds if test(mode)), "a special file")


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file (a regular file of bounded size); syntax errors name the file, line and
    column."""
    try:
        return tomllib.loads(_read_bounded(path).decode("utf-8"))
    except ConfigError:
        raise  # already names the file (and is a ValueError, caught below otherwise)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected an experiment .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # e.g. a NUL character in a `base` path
        raise ConfigError(f"{path!r}: not a usable file name ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file we can read
        return False


def resolve_raw(source: str | Path, _seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Raw dict for a preset name or TOML path, with `base = "..."` inheritance resolved."""
    text = str(source)
    if text in _seen:
        raise ConfigError(f"{text}: 'base' chain loops: {' -> '.join([*_seen, text])}")
    if presets.is_preset(text):
        raw, label = presets.read_preset(text), f"preset {text}"
    elif text.endswith(".toml") or _exists(text):
        raw, label = read_toml(Path(text)), text
    else:
        raise presets.unknown_preset_error(text)
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{label}: base must be a preset name or a .toml path; got {base!r}")
        if not presets.is_preset(base) and not presets.is_preset(text):
            base = str(Path(text).parent / base)  # relative to the file that names it
        lab_base = not presets.is_preset(text) and inherits_lab_validation(base, raw)
        parent, _ = resolve_raw(base, (*_seen, text))
        if "description" not in raw and not presets.is_preset(text):
            raw["description"] = described_overrides(base, own_settings(raw))
        raw = _merge(parent, raw)
        if lab_base:  # held-out validation unless the file itself asks for the lab's test set
            raw = _merge(raw, {"data": {"validation": LAB_SPLIT}})
            warnings.warn(lab_validation_notice(label, base), ValidationNotice, stacklevel=2)
    return raw, label


def default_run_name(source: str | Path) -> str:
    text = str(source)
    if presets.is_preset(text):
        return text.replace("/", "-")
    return Path(text).stem


def load_experiment(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Preset name or TOML path (+ `--set` strings) -> validated, frozen `Experiment`."""
    with warnings.catch_warnings(record=True) as notices:
        warnings.simplefilter("always", ValidationNotice)
        raw, label = resolve_raw(source)
    raw = apply_overrides(raw, list(overrides))
    changes = [o for o in overrides if tuple(parse_override(o)[0]) not in NOT_RESULT]
    if changes:  # the preset's or file's description no longer says what this run is
        raw["description"] = described_overrides(label.removeprefix("preset "), changes)
    chosen = any(parse_override(o)[0] == ["data", "validation"] for o in overrides)
    for notice in notices:  # said once, and not when --set chooses the validation itself
        if not (chosen and issubclass(notice.category, ValidationNotice)):
            warnings.warn(notice.message, notice.category, stacklevel=2)
    if not raw.get("output", {}).get("name"):
        raw = _merge(raw, {"output": {"name": default_run_name(source)}})
    return experiment_from_dict(raw, label if not overrides else f"{label} (with --set)")


