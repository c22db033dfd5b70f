"""A drawing or upload from the browser -> the classes a run gives it, exactly as `predict` would.

The image arrives as a `data:` URL. Its bytes go, unchanged, through `predict.predict_files`:
the same strict decoding (`imageload`: formats, pixel limit checked from the header, full
decode), the same framing (`imageprep`) and the same "no digit found" answer for a blank canvas.
They are written to a private temporary folder for that (never the runs folder) because
`predict_files` reads files; that costs a few microseconds next to the network.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.rundir.directory import RunInfo
from mnistlab.serve.examples import png_data_url
from mnistlab.serve.index import run_file

__all__ = ["DrawError", "decode_data_url", "PredictorCache", "predict_image", "MAX_BODY_BYTES",
           "MAX_IMAGE_PIXELS"]

MAX_BODY_BYTES = 4_000_000  # a 280x280 drawing is ~10 kB; a phone photo, resized, fits
MAX_IMAGE_PIXELS = 16_000_000  # checked from the image header before decoding
_DATA_URL = re.compile(r"data:image/(?:png|jpeg|gif|bmp);base64,", re.I)


class DrawError(MnistlabError):
    """The request cannot be predicted (not a data URL, not base64, run cannot predict)."""


def decode_data_url(text: object) -> bytes:
    """The bytes of a `data:image/<png|jpeg|gif|bmp>;base64,...` URL; DrawError otherwise."""
    if not isinstance(text, str):
        raise DrawError("image: must be a data:image/png;base64,... string")
    m = _DATA_URL.match(text)
    if not m:
        raise DrawError(f"image: must start with data:image/png;base64, (or jpeg, gif, bmp); "
                        f"got {text[:30]!r}")
    try:
        return base64.b64decode(text[m.end():], validate=True)
    except (binascii.Error, ValueError):
        raise DrawError("image: the data URL is not valid base64") from None


class PredictorCache:
    """The last few runs' networks, rebuilt when their model.pt changes."""

    def __init__(self, size: int = 4, threads: int | None = None) -> None:
        self.size, self.threads = size, threads
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, info: RunInfo, root: Path):
        from mnistlab.predict.predictor import load_predictor

        model = run_file(info, "model.pt", root)
        if info.status != "complete" or model is None:
            raise DrawError(f"{info.name}: only a complete run can predict (status "
                            f"{info.status})")
        st = model.stat()
        key = (str(info.path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            predictor = load_predictor(info.path)  # RunError when config or weights are bad
            self._cache[key] = predictor
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
            return predictor


def predict_image(predictor, data: bytes, top: int = 3) -> dict[str, Any]:
    """Top classes and the 28x28 frame the network saw, or `error` saying why there are none."""
    from mnistlab.predict.predictor import predict_files

    with tempfile.TemporaryDirectory(prefix="mnistlab-serve-") as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        (result,) = predict_files(predictor, [path], top=top, max_pixels=MAX_IMAGE_PIXELS)
    out: dict[str, Any] = {"digit_style": predictor.digit_style,
                           "class_names": list(predictor.class_names)}
    if not result.ok:
        return {**out, "error": result.error, "top": [], "frame": None}
    return {**out, "error": None,
            "top": [{"class": c, "name": n, "probability": p} for c, n, p in result.top],
            "frame": png_data_url(result.frame)}
