"""A complete run's stock network, rebuilt from `config.toml` and `model.pt`, ready to export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnistlab.config.geometry import feature_shape
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import Experiment, FeaturesConfig
from mnistlab.data.registry import get_dataset
from mnistlab.errors import RunError
from mnistlab.export.contract import InputContract
from mnistlab.nn.build import build_model
from mnistlab.rundir.directory import load_run, resolve_run_dir

__all__ = ["RunModel", "load_run_model", "ProbabilityModel"]


class ProbabilityModel(nn.Module):
    """The stock network with a softmax on its logits: what an exported file computes."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(x), dim=1)


@dataclass(frozen=True)
class RunModel:
    """A run's network in eval mode on the CPU, with what its input must be."""

    run_dir: Path
    experiment: Experiment
    model: ProbabilityModel
    contract: InputContract


def load_run_model(run: str | Path, runs_dir: str | Path | None = None) -> RunModel:
    """The stock model of a complete run (by directory or name), softmax on top, in eval mode.

    Not the `mnistlab.fast` rewrite: the stock modules are the reference and export cleanly.

    Raises:
        RunError: no such run, or it is not complete, or its files are damaged.
    """
    run_dir = resolve_run_dir(run, runs_dir)
    info = load_run(run_dir)
    if info.status != "complete" or info.config is None:
        why = "; ".join(info.problems) or f"status is {info.status}"
        hint = (f" (finish it with `mnistlab resume {run_dir}`)"
                if info.status in ("interrupted", "failed") else "")
        raise RunError(f"{run_dir}: only a complete run can be exported; {why}{hint}")
    exp = experiment_from_dict(info.config, str(run_dir / "config.toml"), check_memory=False)
    spec = get_dataset(exp.data.dataset)
    network = build_model(exp.model, feature_shape(exp.features), len(spec.class_names))
    model_path = run_dir / "model.pt"
    try:
        network.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, whatever the failure
        raise RunError(f"{model_path}: unreadable or not this run's weights "
                       f"({type(exc).__name__}); cannot export this run") from None
    model = ProbabilityModel(network).eval()
    # A raw run's features are only its kind: leftover HOG fields play no part in its input.
    features = exp.features if exp.features.kind == "hog" else FeaturesConfig(kind="raw")
    contract = InputContract(run_dir.name, spec.name, tuple(spec.class_names), features)
    return RunModel(run_dir, exp, model, contract)
