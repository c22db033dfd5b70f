"""Core commands: run, resume, presets, data, runs, summary."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from mnistlab.commands import (
    add_experiment_args,
    add_fast_arg,
    add_io_args,
    add_tensorboard_arg,
    console,
    experiment_from_args,
)
from mnistlab.errors import RunInterrupted


@contextlib.contextmanager
def notices(command: str):
    """Print each `ValidationNotice` raised inside as one `note:` line on stderr."""
    from mnistlab.config.load import ValidationNotice

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ValidationNotice)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, ValidationNotice):
                    print(f"mnistlab {command}: note: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _stop_note(record: dict | None) -> str:
    """' (stopped early; weights from epoch 5)' for a run with early stopping."""
    if not record:
        return ""
    parts = ["stopped early" if record.get("stopped_early") else "",
             f"weights from epoch {record['weights_epoch']}"
             if record.get("restored_best_weights") else ""]
    text = "; ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _print_result(result) -> None:
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"{result.run_dir.name}", show_header=False)
    for label, value in (
        ("test loss", f"{m['test_loss']:.4f}"),
        ("test accuracy", f"{m['test_accuracy']:.4f}"),
        ("macro F1", f"{m['f1_macro']:.4f}"),
        ("micro F1 (= accuracy)", f"{m['f1_micro']:.4f}"),
        ("parameters", f"{m['params']:,}"),
        ("epochs", str(m["epochs"]) + _stop_note(m.get("early_stopping"))),
        ("lowest " + ("test (used as validation)" if m.get("validation") == "test" else "val")
         + " loss at epoch", str(m["best_epoch"])),
        ("train time", f"{m['train_seconds']:.1f} s ({m['seconds_per_epoch']:.2f} s/epoch)"),
        ("most confused", ", ".join(f"{p['true_name']}->{p['predicted_name']} ({p['count']})"
                                    for p in m["confused_pairs"][:3])),
    ):
        table.add_row(label, value)
    console().print(table)
    print(result.run_dir)


def run_args(p: argparse.ArgumentParser) -> None:
    add_experiment_args(p)
    add_io_args(p)
    add_tensorboard_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")


def cmd_run(args: argparse.Namespace) -> int:
    from mnistlab.commands.progress import RichReporter
    from mnistlab.report.compare import test_validation_warning
    from mnistlab.rundir.execute import run_experiment

    with notices("run"):
        exp = experiment_from_args(args)
    reporter = None if args.quiet else RichReporter()
    try:
        result = run_experiment(exp, args.runs_dir, args.data_dir, reporter)
    except RunInterrupted as exc:
        return _interrupted("run", exc)
    _print_result(result)
    warning = test_validation_warning({result.run_dir.name: result.metrics})
    if warning:
        print(f"mnistlab run: {warning}", file=sys.stderr)
    return 0


def _interrupted(name: str, exc: RunInterrupted) -> int:
    """Ctrl-C or SIGTERM during a run: the checkpoint is written; say how to continue, exit 130
    (Ctrl-C) or 143 (SIGTERM)."""
    print(f"mnistlab {name}: {exc}", file=sys.stderr)
    return exc.exit_code


def resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, or a run's name inside the runs folder")
    add_io_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_fast_arg(p)
    add_tensorboard_arg(p)


def cmd_resume(args: argparse.Namespace) -> int:
    from mnistlab.commands.progress import RichReporter
    from mnistlab.rundir.directory import resolve_run_dir
    from mnistlab.rundir.execute import resume_run

    run_dir = resolve_run_dir(args.run, args.runs_dir)
    try:
        result = resume_run(run_dir, args.data_dir, None if args.quiet else RichReporter(),
                            tensorboard=args.tensorboard)
    except RunInterrupted as exc:
        return _interrupted("resume", exc)
    _print_result(result)
    return 0


def presets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'raw/*'")


def cmd_presets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mnistlab.config.load import load_experiment
    from mnistlab.presets import preset_names

    table = Table(title="presets")
    for col in ("name", "features", "model", "optimizer", "batch", "epochs", "validation"):
        table.add_column(col, no_wrap=True)
    for name in preset_names(args.pattern):
        exp = load_experiment(name)
        f, m, t = exp.features, exp.model, exp.training
        feats = "raw" if f.kind == "raw" else f"hog p={f.pixels_per_cell} o={f.orientations}"
        model = f"{m.kind} {'-'.join(map(str, m.hidden))} {m.activation} drop {m.dropout:g}"
        if m.kind == "cnn":
            from mnistlab.nn.summary import activations_text, describe_layers

            params = sum(i.params for i in describe_layers(m, (28, 28)))
            model = f"cnn {activations_text(m, (28, 28))}; {params:,} params"
        opt = f"{exp.optimizer.name} lr {exp.optimizer.learning_rate:g}"
        table.add_row(name, feats, model, opt, str(t.batch_size), str(t.epochs),
                      str(exp.data.validation))
    console().print(table)
    return 0


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/")
    p.add_argument("--no-verify", action="store_true", help="only locate, do not checksum")


def cmd_data(args: argparse.Namespace) -> int:
    """The datasets table; exit 2 when a dataset found does not verify, or none is found."""
    from rich.table import Table

    from mnistlab.data.load import dataset_status
    from mnistlab.errors import EXIT_USAGE

    table = Table(title="datasets")
    for col in ("dataset", "location", "verified", "detail"):
        table.add_column(col)
    rows = dataset_status(args.data_dir, verify=not args.no_verify)
    for r in rows:
        verified = "yes" if r["verified"] else ("not checked" if args.no_verify else "no")
        table.add_row(r["dataset"], r["location"] or "-", verified, r["detail"])
    console().print(table)
    broken = [r["dataset"] for r in rows
              if r["location"] and not r["verified"] and not args.no_verify]
    if broken:
        print(f"mnistlab data: error: {', '.join(broken)} found but not verified (see detail); "
              "delete the damaged files and fetch them again", file=sys.stderr)
        return EXIT_USAGE
    if not any(r["location"] for r in rows):
        where = f"in {args.data_dir}" if args.data_dir else "in any place looked"
        print(f"mnistlab data: error: no dataset found {where}; put the IDX files in "
              "DIR/mnist/ and pass --data-dir DIR or set MNISTLAB_DATA=DIR", file=sys.stderr)
        return EXIT_USAGE
    return 0


def runs_args(p: argparse.ArgumentParser) -> None:
    from mnistlab.commands.tracking import runs_actions_args

    add_io_args(p, data=False)
    runs_actions_args(p)


def cmd_runs(args: argparse.Namespace) -> int:
    """The runs table; a damaged run is a row saying so. A `--runs-dir` that does not exist, or
    is not a folder, is an error (exit 2), not an empty table. `runs tensorboard` and
    `runs export` are in `commands.tracking`."""
    from mnistlab.commands import tracking

    if args.runs_action == "tensorboard":
        return tracking.cmd_runs_tensorboard(args)
    if args.runs_action == "export":
        return tracking.cmd_runs_export(args)
    from rich.markup import escape
    from rich.table import Table

    from mnistlab.errors import RunError
    from mnistlab.rundir.directory import list_runs, runs_root

    root = runs_root(args.runs_dir)
    infos = list_runs(root)  # RunError when root is a file or cannot be listed
    if args.runs_dir is not None and not root.is_dir():
        raise RunError(f"{root}: no such runs folder (--runs-dir); pass an existing folder")
    table = Table(title=escape(str(root)))
    for col in ("run", "status", "dataset", "features", "model", "batch", "epochs", "seed",
                "validation", "test acc", "problems"):
        table.add_column(col)
    for info in infos:
        cfg = info.config or {}  # load_run gives a config that validates, or None
        model = cfg.get("model", {})
        desc = f"{model.get('kind', '?')} {model.get('hidden', '')} {model.get('activation', '')}"
        if model.get("kind") == "cnn":
            desc = f"cnn {len(model.get('layers', []))} layers {model.get('activation', '')}"
        acc = f"{info.metrics['test_accuracy']:.4f}" if info.metrics else "-"
        epochs = str(len(info.history["loss"])) if info.history and "loss" in info.history else "-"
        feats = cfg.get("features", {})
        features = feats.get("kind", "?")
        if features == "hog":
            features = f"hog p={feats.get('pixels_per_cell')} o={feats.get('orientations')}"
        training = cfg.get("training", {})
        cells = (info.name, info.status, cfg.get("data", {}).get("dataset", "?"), features, desc,
                 training.get("batch_size", "?"), epochs, training.get("seed", "?"),
                 cfg.get("data", {}).get("validation", "?"), acc, "; ".join(info.problems))
        table.add_row(*(escape(str(c)) for c in cells))  # names and configs may hold [brackets]
    console().print(table)
    return 0


def summary_args(p: argparse.ArgumentParser) -> None:
    add_experiment_args(p)
    p.add_argument("--compare", metavar="OTHER",
                   help="a second preset or .toml: weights, biases, multiply-adds side by side")


def cmd_summary(args: argparse.Namespace) -> int:
    from mnistlab.config.geometry import feature_shape
    from mnistlab.config.load import load_experiment
    from mnistlab.config.optimizers import optimizer_text
    from mnistlab.config.schedules import schedule_text
    from mnistlab.data.registry import get_dataset
    from mnistlab.nn.summary import compare_text, summary_text

    exp = experiment_from_args(args)
    n_classes = len(get_dataset(exp.data.dataset).class_names)
    print(summary_text(exp.model, feature_shape(exp.features), n_classes, exp.output.name), end="")
    print(f"Optimizer: {optimizer_text(exp.optimizer)}")
    if exp.schedule.active:
        print(schedule_text(exp.schedule, exp.optimizer.learning_rate))
    if exp.training.label_smoothing:
        print(f"Label smoothing: {exp.training.label_smoothing:g} (targets y * (1 - ls) + ls / "
              f"{n_classes}, in every reported loss)")
    if exp.early_stopping.enabled:
        print(exp.early_stopping.describe())
    if exp.augmentation.active:
        print(exp.augmentation.describe())
    if args.compare:
        other = load_experiment(args.compare)
        print()
        print(compare_text([
            (e.output.name, e.model, feature_shape(e.features),
             len(get_dataset(e.data.dataset).class_names)) for e in (exp, other)]), end="")
    return 0
