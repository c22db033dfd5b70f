"""TorchScript: the probability model traced (`torch.jit.trace`) and saved with the input
contract as the extra file `mnistlab.json` (`torch.jit.load(path, _extra_files=...)` reads it).

Traced, not scripted: the stock modules' eval-mode paths are plain tensor code, while scripting
would have to compile the training-only Keras dropout (NumPy masks). Tracing freezes Python
control flow and any size read as a Python number; the verification after writing runs a batch
of another size than the traced one, so a frozen batch size cannot slip through.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mnistlab.errors import RunError
from mnistlab.export.contract import EXTRA_FILE, InputContract, contract_from_metadata
from mnistlab.export.source import RunModel

__all__ = ["torchscript_bytes", "load_torchscript"]


def torchscript_bytes(run_model: RunModel, example: torch.Tensor) -> bytes:
    """The run's probability model as a TorchScript archive (bytes), metadata included."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice, on every call
        traced = torch.jit.trace(run_model.model, (example,), check_trace=False)
        buf = io.BytesIO()
        extra = {EXTRA_FILE: json.dumps(run_model.contract.metadata(), indent=1)}
        torch.jit.save(traced, buf, _extra_files=extra)
    return buf.getvalue()


def load_torchscript(path: str | Path
                     ) -> tuple[InputContract, Callable[[np.ndarray], np.ndarray]]:
    """An exported archive's contract and a function from its input array to probabilities.

    Raises:
        RunError: not a TorchScript archive, or not one mnistlab exported.
    """
    path = Path(path)
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        props = json.loads(extra[EXTRA_FILE] or "{}")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, zip errors, ...
        raise RunError(f"{path}: not a readable TorchScript archive ({type(exc).__name__})"
                       ) from None
    if not isinstance(props, dict):
        props = {}
    contract = contract_from_metadata(props, str(path))
    module.eval()

    @torch.no_grad()
    def probabilities(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return contract, probabilities
