"""What an exported model takes as input, written into the file and read back from it.

An exported network is a run's stock model followed by a softmax, so it takes exactly what
training fed the model, not image files: raw pixels as (batch, 28, 28) float32 in [0, 1] (no
channel axis, not flattened: an MLP flattens and a CNN adds its channel inside the graph), or,
for a HOG run, HOG features (batch, F). HOG is not part of the graph: mnistlab's HOG reproduces
scikit-image bit for bit (orientation bins decided in float64 arctan2), which ONNX's operators
cannot promise, so the file says how to compute the features instead of pretending to.

The contract is stored as string key/value pairs: ONNX `metadata_props`, and for TorchScript
the same pairs as JSON in the extra file `mnistlab.json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mnistlab.config.geometry import feature_shape, hog_kwargs
from mnistlab.config.sections import FeaturesConfig
from mnistlab.errors import RunError
from mnistlab.features.extract import extract_features

__all__ = ["InputContract", "contract_from_metadata", "EXTRA_FILE", "OUTPUT_NAME", "PREFIX"]

PREFIX = "mnistlab."  # every metadata key mnistlab writes starts with this
FORMAT_VERSION = "1"
EXTRA_FILE = "mnistlab.json"  # TorchScript: the metadata as one JSON object
OUTPUT_NAME = "probabilities"
IMAGE_SIDE = 28


@dataclass(frozen=True)
class InputContract:
    """How to turn 8-bit 28x28 images into the exported model's input, and what comes out."""

    run_id: str  # the run directory's name
    dataset: str  # registry name: mnist | fashion-mnist
    class_names: tuple[str, ...]
    features: FeaturesConfig

    @property
    def input_name(self) -> str:
        return "pixels" if self.features.kind == "raw" else "hog_features"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's input shape: (28, 28) raw, (F,) HOG."""
        return tuple(feature_shape(self.features))

    def preprocessing(self) -> str:
        """The input's preparation in words, for people reading the file's metadata."""
        images = (f"{IMAGE_SIDE}x{IMAGE_SIDE} 8-bit grayscale images framed like {self.dataset}'s "
                  "(light object on a dark background)")
        if self.features.kind == "raw":
            return (f"{images}; pixels / 255 as float32 in [0, 1]; shape (batch, 28, 28): no "
                    "channel axis, not flattened (the graph flattens or adds a channel itself)")
        kw = hog_kwargs(self.features)
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        return (f"{images}; pixels / 255 as float32, then per image "
                f"skimage.feature.hog(image, {args}) as float32; shape (batch, "
                f"{self.sample_shape[0]}). The graph takes these HOG features, not pixels: HOG "
                "is computed outside it (mnistlab predict does it for you)")

    def metadata(self) -> dict[str, str]:
        """The string pairs stored in the exported file."""
        features = {"kind": self.features.kind}
        if self.features.kind == "hog":
            features |= {f.name: getattr(self.features, f.name)
                         for f in dataclasses.fields(self.features) if f.name != "kind"}
        pairs = {
            "format_version": FORMAT_VERSION,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "class_names": json.dumps(list(self.class_names)),
            "input_name": self.input_name,
            "input_shape": json.dumps(["batch", *self.sample_shape]),
            "input_dtype": "float32",
            "input_range": "[0, 1]" if self.features.kind == "raw" else "HOG features",
            "features": json.dumps(features, sort_keys=True),
            "preprocessing": self.preprocessing(),
            "output_name": OUTPUT_NAME,
            "output_shape": json.dumps(["batch", len(self.class_names)]),
            "output": "softmax probabilities, one column per class in class_names order",
        }
        return {PREFIX + k: v for k, v in pairs.items()}

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 frames -> the model's float32 input, as training computed it."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(f"frames must be (N, 28, 28) uint8; got {frames.shape} "
                             f"{frames.dtype}")
        return np.ascontiguousarray(extract_features(self.features, frames), dtype=np.float32)


def contract_from_metadata(props: Mapping[str, str], source: str) -> InputContract:
    """Read back what `InputContract.metadata` wrote.

    Raises:
        RunError: the file carries no (or damaged) mnistlab metadata.
    """
    def get(key: str) -> str:
        value = props.get(PREFIX + key)
        if not isinstance(value, str):
            raise RunError(f"{source}: metadata {PREFIX + key} is missing; not a model exported "
                           "by `mnistlab export`")
        return value

    version = get("format_version")
    if version != FORMAT_VERSION:
        raise RunError(f"{source}: metadata format {version!r} is not {FORMAT_VERSION!r}; "
                       "export it again with this mnistlab")
    try:
        names = json.loads(get("class_names"))
        features = json.loads(get("features"))
        cfg = FeaturesConfig(**features)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise TypeError("class_names")
        contract = InputContract(get("run_id"), get("dataset"), tuple(names), cfg)
        shape = json.loads(get("input_shape"))
        if shape != ["batch", *contract.sample_shape]:
            raise ValueError("input_shape")
    except (ValueError, TypeError) as exc:
        raise RunError(f"{source}: damaged mnistlab metadata ({type(exc).__name__}: {exc})"
                       ) from None
    return contract
