"""`export_run`: a complete run's network as an ONNX or TorchScript file, checked before it is
kept.

The file is written to a temporary name beside the target, loaded back with the runtime a user
would use (onnxruntime, `torch.jit.load`), its contract read from its own metadata, and run on
real test images of the run's dataset prepared from that metadata alone. Only when it predicts
the same classes as mnistlab's model, with probabilities within `TOLERANCE`, is it renamed into
place; otherwise it is deleted and the reason raised. An existing file is replaced only with
`force`, and then only by a verified one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab.atomic import write_atomically
from mnistlab.data.load import load_dataset
from mnistlab.errors import ConfigError, MnistlabError, RunError, TrainingError, did_you_mean
from mnistlab.export.source import RunModel, load_run_model
from mnistlab.features.extract import extract_features

__all__ = ["FORMATS", "TOLERANCE", "CHECK_IMAGES", "Exported", "export_run", "default_output"]

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # format -> default suffix
TOLERANCE = 1e-5  # largest allowed probability difference against mnistlab's own model
CHECK_IMAGES = 256  # real test images the written file must classify like the run's model
_TRACE_BATCH = 3  # example batch for export; verification uses CHECK_IMAGES, another size


@dataclass(frozen=True)
class Exported:
    """Where the file went and how it compared with mnistlab's model."""

    path: Path
    format: str
    run_dir: Path
    images_checked: int
    max_difference: float  # largest |probability difference| over the checked images


def default_output(run_dir: Path, fmt: str) -> Path:
    """`<run name><suffix>` in the current folder (the run directory itself is never added to)."""
    return Path(run_dir.name + FORMATS[fmt])


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}"
                          f"{did_you_mean(fmt, FORMATS)}")


def _check_output(out: Path, force: bool) -> None:
    """Refuse, before any work, an output that exists (without force) or cannot be written."""
    if out.is_dir():
        raise RunError(f"{out}: is a folder; give a file name with -o")
    if out.exists() and not out.is_file():
        raise RunError(f"{out}: is a device, FIFO or socket; only a regular file is replaced")
    if out.exists() and not force:
        raise RunError(f"{out}: already exists; pass --force to replace it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise RunError(f"{out}: {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunError(f"{out}: folder {folder} is not writable")


def _reference(run_model: RunModel, images: np.ndarray) -> np.ndarray:
    """mnistlab's own probabilities: training's feature code, the stock model."""
    feats = extract_features(run_model.experiment.features, images)
    with torch.no_grad():
        return run_model.model(torch.from_numpy(np.ascontiguousarray(feats))).numpy()


def _verify(path: Path, fmt: str, run_model: RunModel, images: np.ndarray,
            expected: np.ndarray) -> float:
    """Load the written file as a user would and compare it; raise TrainingError if it differs."""
    if fmt == "onnx":
        from mnistlab.export.onnx_format import load_onnx as load
    else:
        from mnistlab.export.torchscript_format import load_torchscript as load
    contract, probabilities = load(path)
    if contract != run_model.contract:
        raise TrainingError(f"{fmt} export of {run_model.run_dir}: metadata read back differs "
                            "from the run's; nothing written")
    got = np.asarray(probabilities(contract.prepare(images)))
    if got.shape != expected.shape:
        raise TrainingError(f"{fmt} export of {run_model.run_dir}: output shape {got.shape}, "
                            f"expected {expected.shape}; nothing written")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if len(got) else 0.0
    changed = int(np.sum(got.argmax(1) != expected.argmax(1)))
    if changed or not diff <= TOLERANCE:
        raise TrainingError(f"{fmt} export of {run_model.run_dir} does not match mnistlab's "
                            f"model on {len(images)} test images ({changed} classes differ, "
                            f"probabilities by up to {diff:.2g} > {TOLERANCE:g}); nothing written")
    return diff


def export_run(run: str | Path, fmt: str = "onnx", out: str | Path | None = None,
               force: bool = False, runs_dir: str | Path | None = None,
               data_dir: str | Path | None = None) -> Exported:
    """Export a complete run's stock network (softmax output, eval mode) and verify the file.

    Raises:
        ConfigError: unknown format, or the format's optional packages are missing.
        RunError: the run is incomplete or damaged, or the output cannot be written (or exists
            and `force` is off).
        DataError: the run's dataset (for the check on real images) cannot be found.
        TrainingError: the written file does not reproduce the model; it is deleted.
    """
    fmt = fmt.lower()
    _check_format(fmt)
    if out is not None:  # checked first: refusing a bad path costs nothing
        _check_output(Path(out).expanduser(), force)
    run_model = load_run_model(run, runs_dir)
    target = Path(out).expanduser() if out is not None else default_output(run_model.run_dir,
                                                                            fmt)
    _check_output(target, force)
    if fmt == "onnx":
        from mnistlab.export.onnx_format import onnx_bytes as to_bytes
        from mnistlab.export.onnx_format import require_onnx

        require_onnx()
    else:
        from mnistlab.export.torchscript_format import torchscript_bytes as to_bytes
    images = load_dataset(run_model.contract.dataset, data_dir).test_images[:CHECK_IMAGES]
    expected = _reference(run_model, images)
    example = torch.from_numpy(run_model.contract.prepare(images[:_TRACE_BATCH]))
    try:
        data = to_bytes(run_model, example)
    except MnistlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter's failure, whatever its type
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise TrainingError(f"{fmt} export of {run_model.run_dir} failed ({type(exc).__name__}: "
                            f"{first}); nothing written") from None
    checked: list[float] = []

    def verify(tmp: Path) -> None:
        checked.append(_verify(tmp, fmt, run_model, images, expected))

    try:
        write_atomically(target, lambda fh: fh.write(data), verify=verify)
    except OSError as exc:
        raise RunError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return Exported(target, fmt, run_model.run_dir, len(images), checked[0])
