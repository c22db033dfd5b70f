"""`mnistlab hog show`: one dataset image beside its HOG visualisation."""

from __future__ import annotations

import argparse
from pathlib import Path


def hog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("show",), help="show: write a PNG of image + HOG view")
    p.add_argument("--dataset", default="mnist", help="mnist | fashion-mnist")
    p.add_argument("--split", default="train", choices=("train", "test"))
    p.add_argument("--index", type=int, default=0, help="which image of the split")
    p.add_argument("--pixels-per-cell", type=int, default=4)
    p.add_argument("--orientations", type=int, default=8)
    p.add_argument("-o", "--output", default=None,
                   help="PNG path (default hog-<dataset>-<split>-<index>.png)")
    p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/")


def cmd_hog(args: argparse.Namespace) -> int:
    from mnistlab.config.load import experiment_from_dict
    from mnistlab.data.load import load_dataset
    from mnistlab.errors import ConfigError
    from mnistlab.features.hog import hog, hog_feature_length, hog_image
    from mnistlab.plots import hog_figure, save_figure

    exp = experiment_from_dict({"data": {"dataset": args.dataset}, "features": {
        "kind": "hog", "pixels_per_cell": args.pixels_per_cell,
        "orientations": args.orientations}}, "mnistlab hog show")
    ds = load_dataset(exp.data.dataset, args.data_dir)
    images = ds.train_images if args.split == "train" else ds.test_images
    labels = ds.train_labels if args.split == "train" else ds.test_labels
    if not 0 <= args.index < len(images):
        raise ConfigError(f"--index must be in [0, {len(images) - 1}]; got {args.index}")
    image = images[args.index].astype("float32") / 255.0
    view = hog_image(image, args.orientations, args.pixels_per_cell)
    p, o = args.pixels_per_cell, args.orientations
    n = hog_feature_length(image.shape, o, p, 1)
    label = ds.spec.class_names[int(labels[args.index])]
    title = f"{ds.spec.name} {args.split}[{args.index}] ({label}): HOG p={p} o={o}, {n} features"
    out = Path(args.output or f"hog-{ds.spec.name}-{args.split}-{args.index}.png")
    side = (image.shape[0] // p, image.shape[1] // p)
    cells = hog(image[None], o, (p, p), (1, 1))[0].reshape(*side, o)  # what the MLP sees
    save_figure(hog_figure(image, view, title, cells=cells), out)
    print(out)
    return 0
