"""Hostile inputs: thousands of generated IDX and experiment files.

The only exceptions allowed out of the IDX reader are DataError, out of the experiment loader
ConfigError; memory stays bounded by the bytes actually present (a header declaring 10^12 items
allocates nothing), and the CLI turns every one of them into one line and exit code 2.
Hypothesis runs derandomized (same examples every run) with no deadline, sized for < 60 s.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnistlab.commands.main import main
from mnistlab.config.load import MAX_TOML_BYTES, load_experiment
from mnistlab.config.memory import estimate_training_memory, machine_memory_bytes
from mnistlab.config.sections import SECTIONS, Experiment
from mnistlab.data.idx import DTYPES, MAX_IDX_BYTES, parse_idx_bytes, read_idx
from mnistlab.errors import ConfigError, DataError

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=600,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder for the generated files (function-scoped tmp_path does not mix with @given),
    with the hostile `base` targets of BASE_TARGETS beside them."""
    folder = tmp_path_factory.mktemp("fuzz")
    os.mkfifo(folder / "fifo.toml")  # opened for reading, it waits for a writer forever
    (folder / "folder.toml").mkdir()
    (folder / "big.toml").write_bytes(b"# padding\n" * (MAX_TOML_BYTES // 10 + 1))
    (folder / "good.toml").write_text("[training]\nepochs = 2\n")
    return folder


# --- IDX files ---------------------------------------------------------------------------------

DIM = st.one_of(st.integers(0, 12), st.sampled_from([28, 60000, 10**6, 2**31, 2**32 - 1]))


@st.composite
def idx_files(draw) -> bytes:
    """Mostly-plausible IDX files with one or more things wrong (or nothing wrong)."""
    magic = draw(st.sampled_from([b"\x00\x00", b"\x00\x00", b"\x00\x00", b"\x1f\x8b", b"\x00\x01",
                                  b"PK"]))
    code = draw(st.one_of(st.sampled_from(sorted(DTYPES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 4), st.sampled_from([9, 64, 255])))
    dims = draw(st.lists(DIM, min_size=min(ndim, 6), max_size=min(ndim, 6)))
    head = magic + bytes([code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    itemsize = DTYPES[code].itemsize if code in DTYPES else 1
    declared = itemsize * int(np.prod(dims, dtype=object)) if dims else 0
    size = draw(st.one_of(
        st.just(min(declared, 4096)),
        st.integers(0, 64),
        st.just(max(0, min(declared, 4096) + draw(st.integers(-3, 3)))),
    ))
    body = draw(st.binary(min_size=size, max_size=size)) if size <= 64 else bytes(size)
    data = head + body
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


def _check_idx(path: Path, data: bytes) -> None:
    try:
        array, digest = read_idx(path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    assert array.shape == shape and array.dtype.itemsize == DTYPES[data[2]].itemsize
    assert len(data) == 4 + 4 * ndim + array.nbytes  # accepted only when sizes agree exactly


@pytest.mark.slow
@settings(FUZZ, max_examples=1500)
@given(data=idx_files(), compress=st.sampled_from(["plain", "gzip", "gzip-truncated"]))
@example(data=b"", compress="plain")
@example(data=b"\x00\x00\x08\x03" + struct.pack(">3I", 10**6, 10**6, 1), compress="gzip")
def test_idx_reader_raises_only_data_error(scratch, data, compress):
    path = scratch / "fuzz-idx"
    if compress == "plain":
        path.write_bytes(data)
    else:
        packed = gzip.compress(data, mtime=0)
        path.write_bytes(packed if compress == "gzip" else packed[:len(packed) * 2 // 3])
    if compress != "gzip-truncated":
        _check_idx(path, data)
        return
    try:
        read_idx(path)  # a cut gzip stream may still hold a complete file; then it reads
    except DataError:
        pass


@settings(FUZZ, max_examples=1000)
@given(data=st.binary(max_size=600))
def test_idx_bytes_parser_on_random_bytes(data):
    try:
        array = parse_idx_bytes(data, "blob")
    except DataError as exc:
        assert str(exc).startswith("blob: ")
    else:
        assert array.nbytes + 4 + 4 * data[3] == len(data)


@pytest.mark.parametrize("compress", [False, True])
def test_a_header_declaring_10_to_the_12_items_allocates_nothing(scratch, compress):
    head = b"\x00\x00\x08\x02" + struct.pack(">2I", 10**6, 10**6)  # 10^12 uint8 items
    path = scratch / f"huge-{compress}"
    path.write_bytes(gzip.compress(head + bytes(1000)) if compress else head + bytes(1000))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="refusing more than"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@settings(FUZZ, max_examples=40)
@given(shape=st.sampled_from([(60000, 28, 28), (2**15, 2**15), (MAX_IDX_BYTES,)]),
       present=st.integers(0, 200_000), compress=st.booleans())
def test_memory_follows_the_bytes_present_not_the_bytes_promised(scratch, shape, present,
                                                                 compress):
    head = b"\x00\x00\x08" + bytes([len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    path = scratch / "promise"
    path.write_bytes(gzip.compress(head + bytes(present)) if compress else head + bytes(present))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="size mismatch"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * present + 4 * 1024**2  # chunks of 1 MiB, never the promised gigabytes


@settings(FUZZ, max_examples=60)
@given(data=idx_files())
def test_cli_reports_a_bad_dataset_file_in_one_line_with_exit_2(scratch, data, capsys):
    from mnistlab.data.registry import DATASETS

    folder = scratch / "data" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name in DATASETS["mnist"].files.values():
        (folder / name).write_bytes(data)
    code = main(["run", "raw/template", "--data-dir", str(scratch / "data"),
                 "--runs-dir", str(scratch / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("mnistlab run:")
    assert not (scratch / "runs").exists()  # nothing was started


# --- experiment files --------------------------------------------------------------------------

FIELDS = [f"{s}.{f}" for s, cls in SECTIONS.items() for f in cls.__dataclass_fields__]
# `base` targets, relative to the generated file's folder (`scratch`) or absolute: devices that
# never end, a FIFO without a writer, a folder, a file over the size limit, and a good file.
BASE_TARGETS = ["fifo.toml", "folder.toml", "big.toml", "good.toml", "/dev/zero", "/dev/null",
                "/dev/urandom", "/proc/self/mem", "raw/template", "missing.toml"]
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 28, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), NON_FINITE, st.booleans(),
    st.text(max_size=12), st.sampled_from(["relu", "hog", "test", "mnist", "cnn", "raw/template",
                                           "../../etc/passwd", "a\x00b.toml", "x" * 300]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def experiment_dicts(draw) -> dict:
    """Real sections and keys (mostly) with values of every type, plus stray keys and `base`."""
    raw: dict = {}
    for path in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        section, key = path.split(".")
        raw.setdefault(section, {})[key] = draw(VALUES)
    extra = draw(st.dictionaries(st.sampled_from(["base", "description", "model", "zzz", "data"]),
                                 VALUES | st.sampled_from(BASE_TARGETS), max_size=2))
    for key, value in extra.items():
        raw.setdefault(key, value)
    return raw


def _numbers(value):
    """Every int and float inside a nested config value."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


def _check_accepted(exp: Experiment) -> None:
    """What validation lets through: finite numbers only, and a model that fits this machine."""
    assert isinstance(exp, Experiment)
    assert all(math.isfinite(x) for x in _numbers(exp.to_dict())), exp
    limit = machine_memory_bytes()
    assert limit is None or estimate_training_memory(exp).total_bytes <= limit


def _check_config(path: Path) -> None:
    try:
        exp = load_experiment(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    _check_accepted(exp)


@pytest.mark.slow
@FUZZ
@given(raw=experiment_dicts(), cut=st.one_of(st.none(), st.integers(0, 400)))
@example(raw={"data": {"validation": math.nan}}, cut=None)
@example(raw={"base": "fifo.toml"}, cut=None)
@example(raw={"base": "/dev/zero"}, cut=None)
@example(raw={"model": {"hidden": [65536, 65536]}}, cut=None)
def test_experiment_loader_raises_only_config_error(scratch, raw, cut):
    path = scratch / "fuzz.toml"
    text = tomli_w.dumps(raw)
    path.write_text(text if cut is None else text[:cut], encoding="utf-8")
    _check_config(path)


@settings(FUZZ, max_examples=300)
@given(data=st.binary(max_size=300))
@example(data=b"a = " + b"[" * 5000)
@example(data=b"base = 'a\\u0000b.toml'")
@example(data=b"base = '" + b"x" * 5000 + b"'")
def test_experiment_loader_on_random_bytes(scratch, data):
    path = scratch / "bytes.toml"
    path.write_bytes(data)
    _check_config(path)


@settings(FUZZ, max_examples=300)
@given(overrides=st.lists(st.text(max_size=20) | st.sampled_from(
    ["model.hidden=[0]", "training.epochs=1e400", "model.hidden=[[[[1]]]]", "a.b.c=1",
     "training.seed=-1", "model=3", "data.validation=nan", "output.name=[1]"]), max_size=3))
def test_set_overrides_raise_only_config_error(overrides):
    try:
        exp = load_experiment("raw/template", overrides)
    except ConfigError:
        return
    _check_accepted(exp)


@pytest.mark.timeout(60)  # a FIFO used to hang the loader; /dev/zero to fill the memory
@settings(FUZZ, max_examples=80)
@given(target=st.sampled_from(BASE_TARGETS), named=st.sampled_from(["base", "directly"]),
       value=st.one_of(NON_FINITE, st.floats(0, 1)),
       field=st.sampled_from(["data.validation", "model.dropout", "optimizer.learning_rate",
                              "optimizer.clipnorm", "training.epochs", "model.hidden"]))
def test_base_targets_and_non_finite_values(scratch, target, named, value, field):
    """Hostile `base` targets (or the same paths given as the experiment) and non-finite
    numbers: a ConfigError within a second, or a valid experiment with finite numbers only."""
    section, key = field.split(".")
    path = scratch / "targets.toml"
    path.write_text(f"base = {target!r}\n" + tomli_w.dumps(
        {section: {key: [value] if key == "hidden" else value}}))
    source = path if named == "base" else Path(target) if target.startswith("/") else (
        "raw/template" if target == "raw/template" else scratch / target)
    hostile = target not in ("good.toml", "raw/template")
    start = time.perf_counter()
    try:
        exp = load_experiment(source)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        if named == "base" and not hostile and not math.isfinite(value):
            assert message.startswith(f"{path}: {field}") and "not a finite number" in message
    else:
        assert not hostile and (named == "directly" or math.isfinite(value))
        _check_accepted(exp)
    assert time.perf_counter() - start < 1


@settings(FUZZ, max_examples=60)
@given(raw=experiment_dicts())
def test_cli_reports_a_bad_experiment_in_one_line_with_exit_2(scratch, raw, capsys):
    path = scratch / "cli.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    code = main(["summary", str(path)])
    captured = capsys.readouterr()
    assert code in (0, 2), captured.err
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert lines[0].startswith("mnistlab summary: error: ")
        assert len(lines) == 1


# --- sweep files -------------------------------------------------------------------------------

SWEEP_BASES = st.sampled_from(["raw/nope", "missing.toml", ".", "a\x00b.toml", "x" * 300,
                               "../../etc/passwd", "sweep.toml", "cnn/template", 3])
PLAUSIBLE = {  # field -> values, mostly valid, some not: sweeps that get as far as their points
    "model.hidden": [[8], [16, 8], [4], [32], [], [0], 8],
    "model.dropout": [0.0, 0.2, 0.5, 0.7, 1.5, "x"],
    "model.activation": ["relu", "tanh", "sigmoid", "swish"],
    "training.epochs": [1, 2, 3, 5, 0, 10**6],
    "training.batch_size": [4, 16, 0, 2.5],
    "optimizer.learning_rate": [0.1, 0.001, -1.0, float("nan")],
    "features.kind": ["raw", "hog", "pixels"],
    "features.pixels_per_cell": [4, 7, 29],
    "data.validation": ["test", 0.1, 1.0],
    "optimizer.clipnorm": [1.0, 0.0],
    "optimizer.global_clipnorm": [2.0],
    "training.chunk_size": [0, 4, 8],
}


@st.composite
def sweep_dicts(draw) -> dict:
    """Sweep files, mostly plausible (so many get as far as building their points), with values of
    every type, stray keys, sizes around the run limit and bases that are not experiments."""
    raw: dict = {"base": draw(st.one_of(st.just("raw/template"), st.just("raw/template"),
                                        st.just("raw/template"), SWEEP_BASES))}
    choices = {
        "seeds": st.one_of(st.integers(1, 3), st.sampled_from([400, 1000]), VALUES,
                           st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)),
        "mode": st.one_of(st.sampled_from(["grid", "random"]), VALUES),
        "trials": st.one_of(st.integers(1, 50), st.just(10**6), VALUES),
        "sample_seed": st.one_of(st.integers(-5, 2**70), VALUES),
        "name": st.one_of(st.text(max_size=12), VALUES),
        "description": VALUES, "zzz": VALUES, "base": SWEEP_BASES,
    }
    for key in draw(st.lists(st.sampled_from(sorted(choices)), max_size=4, unique=True)):
        raw[key] = draw(choices[key])
    plausible = st.sampled_from(sorted(PLAUSIBLE)).flatmap(lambda f: st.tuples(
        st.just(f), st.lists(st.sampled_from(PLAUSIBLE[f]), min_size=1, max_size=3)))
    odd = st.tuples(st.one_of(st.sampled_from(FIELDS), st.sampled_from(
        ["hidden", "a.b.c", "model.", "training.seed", "output.name", "description.x"])),
        st.one_of(st.lists(VALUES, max_size=4), VALUES))
    wide = st.tuples(st.sampled_from(["training.epochs", "training.batch_size"]),
                     st.lists(st.integers(1, 64), min_size=30, max_size=40, unique=True))
    axes = dict(draw(st.lists(st.one_of(plausible, plausible, odd, wide), max_size=3)))
    fixed = dict(draw(st.lists(st.one_of(plausible.map(lambda kv: (kv[0], kv[1][0])),
                                         odd.map(lambda kv: (kv[0], kv[1]))), max_size=2)))
    if axes or draw(st.booleans()):
        raw["axes"] = axes
    if fixed or draw(st.booleans()):
        raw["set"] = fixed
    return raw


@pytest.mark.slow
@settings(FUZZ, max_examples=400)
@given(raw=sweep_dicts(), cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 300)))
@example(raw={"base": "raw/template", "mode": "random", "trials": 10**6, "sample_seed": -5,
              "axes": {"model.dropout": [0.1, 0.2]}}, cut=None)
@example(raw={"base": "raw/template", "seeds": 2, "axes": {
    "model.dropout": [i / 100 for i in range(40)], "training.epochs": list(range(1, 40))}},
    cut=None)
@example(raw={"base": ".", "axes": {"model.dropout": [0.1]}}, cut=None)
@example(raw={"base": "a\x00b.toml", "axes": {"model.dropout": [0.1]}}, cut=None)
def test_sweep_loader_raises_only_config_error(scratch, raw, cut):
    from hypothesis import event

    from mnistlab.experiments.sweep import load_sweep, sweep_points

    path = scratch / "sweep.toml"
    text = tomli_w.dumps(raw)
    path.write_text(text if cut is None else text[:cut], encoding="utf-8")
    try:
        points = sweep_points(load_sweep(path))
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        event("refused: " + ("size" if "--max-points" in str(exc) else "config"))
        return
    event("loaded")
    assert 1 <= len(points) <= 1000
    assert all(isinstance(pt.experiment, Experiment) for pt in points)
