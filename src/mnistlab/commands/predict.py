"""`mnistlab predict`: classify real image files with a finished run or an exported model."""

from __future__ import annotations

import argparse


def predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a complete run directory, its name inside the runs folder, or "
                               "a model file from `mnistlab export` (.onnx)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="PNG/JPEG/BMP/GIF files, or folders of them (not recursive)")
    p.add_argument("--top", type=int, default=3, metavar="K", help="classes shown per image")
    p.add_argument("--csv", metavar="OUT", help="also write file,prediction,probability,... here")
    p.add_argument("--show", metavar="DIR",
                   help="write each 28x28 input the network saw as a PNG into DIR")
    p.add_argument("--explain", nargs="?", const="", metavar="DIR",
                   help="draw how each file was prepared (original, detected ink, crop box, "
                        "28x28 input) as a PNG into DIR, or beside the --csv file")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse larger images (default 40,000,000)")
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTLAB_RUNS or ./runs)")


def cmd_predict(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from mnistlab.errors import EXIT_USAGE, ConfigError
    from mnistlab.predict.explain import save_explanations
    from mnistlab.predict.exported import EXPORTED_SUFFIXES
    from mnistlab.predict.imageprep import MAX_PIXELS
    from mnistlab.predict.predictor import predict_files, save_seen_frames, write_predictions_csv
    from mnistlab.rundir.directory import resolve_run_dir

    if args.top < 1:
        raise ConfigError(f"--top must be an int >= 1; got {args.top}")
    max_pixels = MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if max_pixels < 1:
        raise ConfigError(f"--max-pixels must be an int >= 1; got {max_pixels}")
    explain = args.explain  # None: not asked; "": beside the CSV; else a folder
    if explain == "" and not args.csv:
        raise ConfigError("--explain needs a place for its PNGs: give a folder (--explain DIR) "
                          "or --csv OUT to write them beside the CSV")
    source = args.run
    if Path(source).suffix.lower() not in EXPORTED_SUFFIXES:
        source = resolve_run_dir(source, args.runs_dir)
    results = predict_files(source, args.images, top=args.top, max_pixels=max_pixels,
                            explain=explain is not None)
    for r in results:
        if r.ok:
            best = "  ".join(f"{name} {prob:.4f}" for _, name, prob in r.top)
            print(f"{r.path}: {best}")
        else:
            print(f"mnistlab predict: {r.path}: {r.error}", file=sys.stderr)
    if args.csv:
        k = max((len(r.top) for r in results), default=0) or args.top  # top is capped
        write_predictions_csv(results, args.csv, k)
    if args.show:
        save_seen_frames(results, args.show)
    if explain:
        save_explanations(results, explain)
    elif explain == "":
        csv_path = Path(args.csv)
        save_explanations(results, csv_path.parent, prefix=f"{csv_path.stem}-")
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"mnistlab predict: {failed} of {len(results)} files could not be predicted",
              file=sys.stderr)
    return EXIT_USAGE if failed else 0
