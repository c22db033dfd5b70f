"""Predicting with an exported `.onnx` file instead of a run: the file's own metadata says how
its input is made (`export.contract`), so no run directory or config is needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.errors import RunError
from mnistlab.export.contract import InputContract
from mnistlab.export.onnx_format import load_onnx

__all__ = ["ExportedPredictor", "load_exported_predictor", "EXPORTED_SUFFIXES"]

EXPORTED_SUFFIXES = (".onnx",)  # a predict source with this suffix is a file, not a run


@dataclass(frozen=True)
class ExportedPredictor:
    """An exported model, ready to classify 8-bit 28x28 frames like `predictor.Predictor`."""

    path: Path
    contract: InputContract
    run: Callable[[np.ndarray], np.ndarray]  # the model's input -> probabilities
    digit_style: bool  # imageprep framing: digits (MNIST) or objects (Fashion-MNIST)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 frames -> (N, classes) probabilities (float64)."""
        if len(frames) == 0:
            return np.zeros((0, len(self.class_names)))
        return np.asarray(self.run(self.contract.prepare(frames)), dtype=np.float64)


def load_exported_predictor(path: str | Path, digit_style: dict[str, bool]
                            ) -> ExportedPredictor:
    """Open an exported `.onnx` file; `digit_style` maps dataset names to imageprep's framing.

    Raises:
        RunError: the file is missing, unreadable, or was not exported by mnistlab.
        ConfigError: onnx / onnxruntime are not installed (names the pip command).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise RunError(f"{path}: no such exported model file (export one with "
                       "`mnistlab export RUN -o FILE.onnx`)")
    contract, run = load_onnx(path)
    return ExportedPredictor(path, contract, run, digit_style.get(contract.dataset, False))
