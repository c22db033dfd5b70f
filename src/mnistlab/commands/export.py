"""`mnistlab export`: a complete run's network as an ONNX or TorchScript file, verified."""

from __future__ import annotations

import argparse


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a complete run directory, or its name inside the runs folder")
    p.add_argument("--format", default="onnx", metavar="FORMAT",
                   help="onnx (default; needs pip install 'mnistlab[export]') or torchscript")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write (default: ./<run name>.onnx or .torchscript.pt)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTLAB_RUNS or ./runs)")
    p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (the test "
                                      "images the file is checked on)")


def cmd_export(args: argparse.Namespace) -> int:
    from mnistlab.export import export_run

    done = export_run(args.run, args.format, args.output, force=args.force,
                      runs_dir=args.runs_dir, data_dir=args.data_dir)
    print(f"{done.path}: {done.format} export of {done.run_dir}; same classes as the run's "
          f"model on {done.images_checked} test images, probabilities within "
          f"{done.max_difference:.1g}")
    return 0
