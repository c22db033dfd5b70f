"""ONNX: PyTorch's current exporter (`torch.onnx.export(..., dynamo=True)`), opset 18, a free
batch dimension, and the input contract in the model's `metadata_props`.

`onnx`, `onnxruntime` and `onnxscript` are the optional extra `mnistlab[export]`; each is imported
only here, when asked for, so a missing one costs one clear message and nothing else.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from mnistlab.errors import ConfigError, RunError
from mnistlab.export.contract import OUTPUT_NAME, InputContract, contract_from_metadata
from mnistlab.export.source import RunModel

__all__ = ["OPSET", "require_onnx", "onnx_bytes", "load_onnx"]

OPSET = 18
INSTALL = "pip install 'mnistlab[export]'"


def require_onnx(*modules: str) -> None:
    """Raise one line naming the pip command when an ONNX package is missing."""
    missing = []
    for name in modules or ("onnx", "onnxruntime", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"ONNX needs {', '.join(missing)}, which is not installed; install "
                          f"it with: {INSTALL}")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional registrations (torchvision ops) and deprecations on every
    call; none of it concerns the user, and a real failure still raises."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_bytes(run_model: RunModel, example: torch.Tensor) -> bytes:
    """The run's probability model as an ONNX file (bytes), batch dimension named `batch`."""
    require_onnx()
    import onnx

    contract = run_model.contract
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            run_model.model, (example,), dynamo=True, opset_version=OPSET,
            input_names=[contract.input_name], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), optimize=True, verbose=False)
    proto = program.model_proto
    for value in (*proto.graph.input, *proto.graph.output):  # (s0, ...) -> (batch, ...)
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.helper.set_model_props(proto, contract.metadata())
    proto.doc_string = (f"mnistlab run {contract.run_id}: {contract.dataset} classifier. Input: "
                        f"{contract.preprocessing()}. Output: {OUTPUT_NAME}")
    return proto.SerializeToString()


def load_onnx(path: str | Path) -> tuple[InputContract, Callable[[np.ndarray], np.ndarray]]:
    """An exported file's contract and a function from its input array to probabilities.

    Raises:
        RunError: not an ONNX file, or not one mnistlab exported.
    """
    require_onnx("onnx", "onnxruntime")
    import onnx
    import onnxruntime

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common base
        raise RunError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    contract = contract_from_metadata(props, str(path))
    try:
        session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no public base
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {first})"
                       ) from None

    def probabilities(x: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {contract.input_name: x})[0]

    return contract, probabilities
