"""Real images -> MNIST-style input -> classes, with a trained run's own model and features.

Each file goes through `imageprep` (grayscale, light-on-dark polarity, crop to the ink, then the
dataset's framing), is quantised to 8 bits like the dataset's own images, and then goes through
the run's feature extraction (`features.extract_features`: raw pixels / 255, or HOG), so the
network sees exactly what a training image of the same pixels would give it.

Framing by dataset: MNIST runs get the digit framing (longest side 20 px keeping the aspect
ratio, centre of mass at the centre of the 28x28 frame). Fashion-MNIST runs get the same
grayscale, polarity, contrast and crop steps, then the longest side scaled to 28 px and the
box centred (no 20 px digit box, no centre-of-mass shift: Fashion-MNIST images fill the frame).

A file that cannot be used (not an image, empty, truncated, too many pixels, unreadable) gives
a per-file error; the other files are still predicted. So does a file in which preparation finds
no ink (blank, a single pixel, only noise, too faint): its error says "no digit found" rather than
letting the network guess a class for an empty frame.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomllib
import torch

from mnistlab.atomic import atomic_write_bytes, atomic_write_text
from mnistlab.config.geometry import feature_shape
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import Experiment
from mnistlab.data.registry import get_dataset
from mnistlab.errors import ConfigError, RunError
from mnistlab.features.extract import extract_features
from mnistlab.nn.build import build_model
from mnistlab.predict.exported import (
    EXPORTED_SUFFIXES,
    ExportedPredictor,
    load_exported_predictor,
)
from mnistlab.predict.imageprep import (
    MAX_PIXELS,
    ImageInputError,
    Preparation,
    load_image,
    prepare_frame,
)

__all__ = ["Prediction", "Predictor", "load_predictor", "open_predictor", "expand_paths",
           "predict_files", "write_predictions_csv", "save_seen_frames", "quantise_frame",
           "IMAGE_SUFFIXES",
           "DIGIT_STYLE", "NO_INK"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what a folder is searched for
DIGIT_STYLE = {"mnist": True, "fashion-mnist": False}  # dataset -> imageprep digit_style
NO_INK = ("no {thing} found: after preparation nothing stands out from the paper (blank, too "
          "small, only noise or too faint); `mnistlab predict --explain` shows the steps")


@dataclass(frozen=True)
class Prediction:
    """One file's result: the top classes, best first, or why the file could not be used."""

    path: Path
    top: tuple[tuple[int, str, float], ...] = ()  # (class index, class name, probability)
    error: str | None = None
    frame: np.ndarray | None = field(default=None, repr=False)  # (28, 28) uint8 the net saw
    # imageprep's steps, kept only when asked for (`explain=True`): they hold the whole image
    preparation: Preparation | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def prediction(self) -> int | None:
        return self.top[0][0] if self.top else None

    @property
    def probability(self) -> float | None:
        return self.top[0][2] if self.top else None


@dataclass(frozen=True)
class Predictor:
    """A finished run's model, ready to classify 8-bit 28x28 frames."""

    run_dir: Path
    experiment: Experiment
    model: torch.nn.Module
    class_names: tuple[str, ...]
    digit_style: bool

    @torch.no_grad()
    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 frames -> (N, classes) softmax probabilities (float64)."""
        if len(frames) == 0:
            return np.zeros((0, len(self.class_names)))
        feats = extract_features(self.experiment.features, frames)  # same code as training
        logits = self.model(torch.from_numpy(np.ascontiguousarray(feats)))
        return torch.softmax(logits.double(), dim=1).numpy()


def load_predictor(run_dir: str | Path) -> Predictor:
    """Rebuild a run's network from its `config.toml` and `model.pt`.

    Raises:
        RunError: the run has no usable config or weights (e.g. it never finished).
    """
    run_dir = Path(run_dir)
    config_path, model_path = run_dir / "config.toml", run_dir / "model.pt"
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        exp = experiment_from_dict(raw, str(config_path), check_memory=False)
    except (OSError, ValueError) as exc:
        reason = exc if isinstance(exc, ConfigError) else f"unreadable ({type(exc).__name__})"
        raise RunError(f"{config_path}: {reason}; cannot predict with this run") from None
    if not model_path.is_file():
        raise RunError(f"{model_path}: missing; only a complete run can predict (finish an "
                       f"interrupted one with `mnistlab resume {run_dir}`)")
    spec = get_dataset(exp.data.dataset)
    model = build_model(exp.model, feature_shape(exp.features), len(spec.class_names))
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, whatever the failure
        raise RunError(f"{model_path}: unreadable or not this run's weights "
                       f"({type(exc).__name__}); cannot predict with this run") from None
    model.eval()
    return Predictor(run_dir, exp, model, tuple(spec.class_names),
                     DIGIT_STYLE.get(spec.name, False))


def open_predictor(source: str | Path | Predictor | ExportedPredictor
                   ) -> Predictor | ExportedPredictor:
    """A run directory's predictor, or an exported `.onnx` file's (by its suffix)."""
    if isinstance(source, Predictor | ExportedPredictor):
        return source
    if Path(source).suffix.lower() in EXPORTED_SUFFIXES:
        return load_exported_predictor(source, DIGIT_STYLE)
    return load_predictor(source)


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder becomes its image files (by suffix, sorted, not recursive)."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            try:
                found = sorted(c for c in p.iterdir()
                               if c.suffix.lower() in IMAGE_SUFFIXES and c.is_file())
            except OSError:
                found = []
            out.extend(found or [p])  # an empty folder stays, to be reported per path
        else:
            out.append(p)
    return out


def _prepare(path: Path, digit_style: bool, max_pixels: int) -> Preparation:
    """Load and frame one file (a folder given as a file has no image to frame)."""
    if path.is_dir():
        raise ImageInputError(path, "folder holds no " + "/".join(IMAGE_SUFFIXES) + " files")
    return prepare_frame(load_image(path, max_pixels=max_pixels), digit_style=digit_style)


def quantise_frame(frame: np.ndarray) -> np.ndarray:
    """(28, 28) uint8: the framed image quantised to 8 bits, as the datasets store images."""
    return np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)


def predict_files(run_dir: str | Path | Predictor | ExportedPredictor,
                  paths: list[str | Path], top: int = 3, max_pixels: int = MAX_PIXELS,
                  explain: bool = False) -> list[Prediction]:
    """Classify image files (or folders of them) with a finished run, or an exported `.onnx`
    file; one result per file.

    Unusable files, and files with no ink after preparation ("no digit found"), come back with
    `error` set instead of raising, so one bad file never stops a batch. With `explain`, each
    prepared file keeps its `preparation` (for `save_explanations`). Raises RunError only when
    the run (or file) itself cannot be loaded.
    """
    predictor = open_predictor(run_dir)
    k = max(1, min(int(top), len(predictor.class_names)))
    no_ink = NO_INK.format(thing="digit" if predictor.digit_style else "object")
    files = expand_paths(paths)
    frames: list[np.ndarray] = []
    results: list[Prediction | None] = []  # None: predicted below from the next of `frames`
    kept: list[Preparation | None] = []  # each frame's steps, only with explain (whole images)
    for path in files:
        try:
            prep = _prepare(path, predictor.digit_style, max_pixels)
        except ImageInputError as exc:
            results.append(Prediction(path, error=exc.problem))
            continue
        except (OSError, MemoryError) as exc:  # e.g. an I/O error mid-read, an absurd image
            results.append(Prediction(path, error=f"cannot be read ({type(exc).__name__}: "
                                                  f"{exc})"))
            continue
        if prep.has_ink:
            frames.append(quantise_frame(prep.frame))
            kept.append(prep if explain else None)
            results.append(None)
        else:
            results.append(Prediction(path, error=no_ink,
                                      preparation=prep if explain else None))
    probs = predictor.probabilities(np.stack(frames) if frames else np.zeros((0, 28, 28),
                                                                             np.uint8))
    out, j = [], 0
    for path, res in zip(files, results, strict=True):
        if res is None:
            best = np.argsort(-probs[j], kind="stable")[:k]
            res = Prediction(path, tuple((int(c), predictor.class_names[c], float(probs[j, c]))
                                         for c in best), frame=frames[j], preparation=kept[j])
            j += 1
        out.append(res)
    return out


def write_predictions_csv(predictions: list[Prediction], out: str | Path, top: int) -> None:
    """CSV: file, prediction (class index), probability, then top-K (class, probability) pairs,
    then error (empty for predicted files). Written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    pairs = [f"{name}{i}" for i in range(1, top + 1)
             for name in ("class_", "probability_")]
    writer.writerow(["file", "prediction", "probability", *pairs, "error"])
    for p in predictions:
        cells = [c for cls, _, prob in p.top for c in (cls, f"{prob:.6f}")]
        cells += [""] * (2 * top - len(cells))
        writer.writerow([str(p.path), "" if p.prediction is None else p.prediction,
                         "" if p.probability is None else f"{p.probability:.6f}", *cells,
                         p.error or ""])
    atomic_write_text(Path(out), buf.getvalue())


def output_folder(folder: str | Path, option: str) -> Path:
    """`folder`, created if needed; RunError naming `option` when it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{folder}: cannot create the {option} folder ({exc.strerror})") from None
    return folder


def save_seen_frames(predictions: list[Prediction], folder: str | Path) -> list[Path]:
    """Write each predicted file's 28x28 8-bit input as `<n>-<stem>.png` (n keeps names unique)."""
    from PIL import Image

    folder = output_folder(folder, "--show")
    written = []
    for i, p in enumerate(predictions, 1):
        if p.frame is None:
            continue
        buf = io.BytesIO()
        Image.fromarray(p.frame).save(buf, format="PNG")  # (28, 28) uint8 -> mode L
        target = folder / f"{i:04d}-{p.path.stem}.png"
        atomic_write_bytes(target, buf.getvalue())
        written.append(target)
    return written
