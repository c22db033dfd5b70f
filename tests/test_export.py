"""`mnistlab export`: ONNX and TorchScript files that reproduce a run's predictions, read back
with the runtimes a user would use (onnxruntime, torch.jit.load) and inputs prepared from the
file's metadata alone; `mnistlab predict` on an .onnx file; refusals that leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.data.load import load_dataset
from mnistlab.data.registry import get_dataset
from mnistlab.errors import ConfigError, RunError, TrainingError
from mnistlab.export import export_run
from mnistlab.export import write as export_write
from mnistlab.predict.predictor import load_predictor, predict_files
from mnistlab.rundir.directory import write_status
from mnistlab.rundir.execute import run_experiment

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

# The MLPs train with mnistlab.fast on (its model.pt must load into the stock model); the CNNs
# with it off, which spares compiling its CPU kernels and exports the same stock network.
RUNS = {  # name -> (preset, overrides): the four kinds of network, trained for seconds
    "mlp": ("raw/template", ["model.hidden=[32]"]),
    "hog": ("hog/template", ["features.pixels_per_cell=7", "model.hidden=[32]"]),
    "cnn": ("cnn/template", ["training.fast=false"]),  # the lab CNN
    "fashion": ("fashion/final", ["training.fast=false"]),  # the Fashion CNN
}
SLOW = {"hog", "cnn", "fashion"}  # the MLP round trips stay in the quick suite
N_CHECK = 64  # real test images per comparison


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Complete runs on real data: 200 images, one epoch each (trained on first use)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    root = tmp_path_factory.mktemp("export")
    made: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            preset, overrides = RUNS[name]
            exp = load_experiment(preset, [*overrides, "data.train_samples=200",
                                           "data.test_samples=100", "data.validation=0.1",
                                           "training.epochs=1", "training.batch_size=50",
                                           "output.plots=false", f'output.name="{name}"'])
            made[name] = run_experiment(exp, root / "runs", SHARED_DATA).run_dir
            return made[name]

    return Lazy()


def _params(*extra):
    return [pytest.param(name, *extra, marks=[pytest.mark.slow] if name in SLOW else [])
            for name in RUNS]


def _test_images(run_dir: Path) -> tuple[np.ndarray, str]:
    dataset = load_predictor(run_dir).experiment.data.dataset
    return load_dataset(dataset).test_images[-N_CHECK:], dataset  # not the ones export checked


def _inputs_from_metadata(meta: dict[str, str], images: np.ndarray) -> np.ndarray:
    """The model's input from the metadata alone, with scikit-image for HOG (the reference)."""
    pixels = images.astype(np.float32) / np.float32(255)
    features = json.loads(meta["mnistlab.features"])
    if features.pop("kind") == "raw":
        return pixels
    from skimage.feature import hog

    kw = {"orientations": features["orientations"],
          "pixels_per_cell": (features["pixels_per_cell"],) * 2,
          "cells_per_block": (features["cells_per_block"],) * 2,
          "block_norm": features["block_norm"], "transform_sqrt": features["transform_sqrt"]}
    return np.stack([hog(p, **kw) for p in pixels]).astype(np.float32)


def _same_as_mnistlab(run_dir: Path, images: np.ndarray, probs: np.ndarray) -> None:
    expected = load_predictor(run_dir).probabilities(images)
    assert probs.shape == expected.shape
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", _params())
def test_onnx_round_trip_with_onnxruntime(runs, name, tmp_path):
    run_dir = runs[name]
    done = export_run(run_dir, "onnx", tmp_path / "m.onnx")
    assert done.path == tmp_path / "m.onnx" and done.max_difference <= 1e-5
    model = onnx.load(str(done.path))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in model.metadata_props}
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert meta["mnistlab.input_name"] == inp.name
    assert json.loads(meta["mnistlab.input_shape"]) == dims and dims[0] == "batch"
    assert out.name == "probabilities" and meta["mnistlab.run_id"] == run_dir.name
    images, dataset = _test_images(run_dir)
    assert json.loads(meta["mnistlab.class_names"]) == list(get_dataset(dataset).class_names)
    assert ("hog(" in meta["mnistlab.preprocessing"]) == (name == "hog")
    session = onnxruntime.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    for batch in (images, images[:1]):  # the batch dimension is free
        probs = session.run(None, {inp.name: _inputs_from_metadata(meta, batch)})[0]
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        _same_as_mnistlab(run_dir, batch, probs)


@pytest.mark.parametrize("name", _params())
def test_torchscript_round_trip_with_jit_load(runs, name, tmp_path):
    run_dir = runs[name]
    done = export_run(run_dir, "torchscript", tmp_path / "m.pt")
    extra = {"mnistlab.json": ""}
    module = torch.jit.load(str(done.path), _extra_files=extra)
    meta = json.loads(extra["mnistlab.json"])
    assert meta["mnistlab.run_id"] == run_dir.name
    images, _ = _test_images(run_dir)
    for batch in (images, images[:5]):  # traced with another batch size: still free
        with torch.no_grad():
            probs = module(torch.from_numpy(_inputs_from_metadata(meta, batch))).numpy()
        _same_as_mnistlab(run_dir, batch, probs)


def _image_files(images: np.ndarray, folder: Path) -> list[Path]:
    """Test images as dark-on-light PNGs, as a user would photograph or draw them."""
    folder.mkdir()
    paths = [folder / f"{i}.png" for i in range(len(images))]
    for path, img in zip(paths, images, strict=True):
        Image.fromarray(255 - img).resize((56, 56)).save(path)
    return paths


@pytest.mark.parametrize("name", ["mlp", pytest.param("hog", marks=pytest.mark.slow)])
def test_predict_accepts_an_onnx_file(runs, name, tmp_path):
    """Same output as predicting with the run, HOG computed from the file's metadata."""
    run_dir = runs[name]
    path = export_run(run_dir, "onnx", tmp_path / "m.onnx").path
    files = _image_files(_test_images(run_dir)[0][:8], tmp_path / "images")
    by_file, by_run = predict_files(path, files, top=10), predict_files(run_dir, files, top=10)
    for a, b in zip(by_file, by_run, strict=True):
        assert a.ok and [c for c, _, _ in a.top] == [c for c, _, _ in b.top]
        np.testing.assert_allclose([p for *_, p in a.top], [p for *_, p in b.top], atol=1e-5)


def test_cli_export_then_predict(runs, tmp_path, capsys):
    run_dir = runs["mlp"]
    out = tmp_path / "digits.onnx"
    assert main(["export", str(run_dir), "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    files = _image_files(_test_images(run_dir)[0][:2], tmp_path / "images")
    assert main(["predict", str(out), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(f) for f in files]
    before = out.read_bytes()
    assert main(["export", str(run_dir), "-o", str(out)]) == 2  # exists, no --force
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", str(run_dir), "--format", "torchscript", "-o", str(out),
                 "--force"]) == 0


def _refused(argv: list[str], capsys, *words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert all(w in err for w in words), err


def test_bad_format_names_the_closest_one(runs, tmp_path, capsys):
    _refused(["export", str(runs["mlp"]), "--format", "onx", "-o", str(tmp_path / "x")],
             capsys, "did you mean 'onnx'?")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_or_damaged_runs_are_refused(runs, tmp_path, capsys):
    interrupted = shutil.copytree(runs["mlp"], tmp_path / "interrupted")
    write_status(interrupted, "interrupted", epochs_done=0)
    damaged = shutil.copytree(runs["mlp"], tmp_path / "damaged")
    model = damaged / "model.pt"
    model.write_bytes(model.read_bytes()[:100])
    out = tmp_path / "out"
    out.mkdir()
    _refused(["export", str(interrupted), "-o", str(out / "a.onnx")], capsys,
             "only a complete run", "mnistlab resume")
    _refused(["export", str(damaged), "-o", str(out / "b.onnx")], capsys, "model.pt")
    _refused(["export", str(tmp_path / "nothing"), "-o", str(out / "c.onnx")], capsys,
             "no such run")
    assert list(out.iterdir()) == []


def test_unwritable_outputs_are_refused_before_any_work(runs, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    _refused(["export", str(runs["mlp"]), "-o", str(tmp_path / "a-file" / "m.onnx")], capsys,
             "is not a folder")
    _refused(["export", str(runs["mlp"]), "-o", str(tmp_path / "missing" / "m.onnx")], capsys,
             "does not exist")
    _refused(["export", str(runs["mlp"]), "-o", str(tmp_path)], capsys, "is a folder")
    if Path("/dev/null").exists():
        _refused(["export", str(runs["mlp"]), "-o", "/dev/null", "--force"], capsys,
                 "only a regular file is replaced")
        assert Path("/dev/null").is_char_device()
    if os.geteuid() != 0:  # root writes into any folder: nothing to refuse then
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        _refused(["export", str(runs["mlp"]), "-o", str(locked / "m.onnx")], capsys,
                 "not writable")
        assert list(locked.iterdir()) == []
    assert not any(p.suffix == ".onnx" for p in tmp_path.rglob("*"))


def test_missing_onnx_packages_name_the_pip_command(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"onnxruntime.*pip install 'mnistlab\[export\]'"):
        export_run(runs["mlp"], "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_file_that_fails_verification_is_not_kept(runs, tmp_path, monkeypatch):
    """The check runs on the temporary file: a failure leaves no file, and an existing one
    (with --force) untouched."""
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous")
    monkeypatch.setattr(export_write, "TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(TrainingError, match="does not match mnistlab's model"):
        export_run(runs["mlp"], "torchscript", out, force=True)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_an_exporter_failure_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch,
                                                            capsys):
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator\nwith a long trace")

    monkeypatch.setattr(torch.jit, "trace", fail)
    assert main(["export", str(runs["mlp"]), "--format", "TorchScript", "-o",
                 str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("failed (RuntimeError: unsupported operator); nothing written"), err
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_onnx_files_mnistlab_did_not_export(tmp_path, capsys):
    foreign = tmp_path / "foreign.onnx"
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    foreign.write_bytes(model.SerializeToString())
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 40)
    img = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(img)
    _refused(["predict", str(foreign), str(img)], capsys, "not a model exported")
    _refused(["predict", str(garbage), str(img)], capsys, "not a readable ONNX file")
    _refused(["predict", str(tmp_path / "absent.onnx"), str(img)], capsys, "no such")
    with pytest.raises(RunError):
        predict_files(foreign, [img])
