"""The lab report, written from recorded runs: `write_report(targets, out_dir)`.

Produces `out_dir/report.html` (one self-contained file) and `out_dir/report.md` with its PNGs
beside it. Every number is read from the run directories (config.toml, history.csv,
metrics.json, predictions.npz); damaged or unfinished runs are listed in the appendix, not used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mnistlab import __version__
from mnistlab.atomic import atomic_write_text
from mnistlab.errors import RunError
from mnistlab.report.compare import EXPERIMENTS, Comparison, Group, compare, config_differences
from mnistlab.report.document import (
    Block,
    Bullets,
    Code,
    Heading,
    Image,
    Panel,
    Para,
    Table,
    figure_png,
    slug,
)
from mnistlab.report.examples import misclassified_block, per_class_table
from mnistlab.report.figures import confusion_png, loss_png
from mnistlab.report.findings import (
    diagnose,
    diagnostic_sentences,
    experiment_paragraph,
    experiment_tests,
    pairs_text,
    pooled_confused_pairs,
)
from mnistlab.report.sections import chosen_group, complexity_section, optimizer_section
from mnistlab.report.verdicts import CONFIGURATIONS, NETWORKS, QUESTIONS

__all__ = ["ReportResult", "build_report", "write_report"]


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    runs: int  # runs used
    configurations: int
    skipped: list[tuple[Path, str]]  # runs left out, with the reason


def _seed_list(g: Group, metric: str, fmt: str = ".4f") -> str:
    return ", ".join(f"seed {s}: {v:{fmt}}" for s, v in zip(g.seeds, g.values(metric),
                                                              strict=True))


def _config_panel(g: Group) -> list[Block]:
    rep = g.representative
    t = g.config.get("training", {})
    micro = g.summary("f1_micro").text() if all("f1_micro" in r.metrics for r in g.runs) else "-"
    rows = [("runs (seeds)", f"{len(g.runs)} ({', '.join(map(str, g.seeds))})"),
            ("test loss", g.summary("test_loss").text()),
            ("test accuracy", g.summary("test_accuracy").text()),
            ("macro-F1", g.summary("f1_macro").text()),
            ("micro-F1 (= accuracy)", micro),
            ("parameters", f"{int(rep.metrics['params']):,}"),
            ("epochs, batch size", f"{len(rep.history['val_loss'])}, {t.get('batch_size', '-')}"),
            ("lowest val loss at epoch", ", ".join(map(str, g.best_epochs))),
            ("train time per run", ", ".join(f"{r.metrics.get('train_seconds', float('nan')):.1f} s"
                                             for r in g.runs))]
    if len(g.runs) > 1:
        rows += [("accuracy per seed", _seed_list(g, "test_accuracy")),
                 ("macro-F1 per seed", _seed_list(g, "f1_macro"))]
    table = Table(("score", "value (mean ± sd [95% CI] over seeds)"), tuple(rows))
    notes = [f"Figures and diagnostics: run {rep.name} (seed {rep.metrics['seed']})."]
    notes += diagnostic_sentences(diagnose(rep))
    base = slug(g.label)
    images = (Image(f"{base}-loss.png", loss_png(rep), f"{g.label}: training vs validation loss"),
              Image(f"{base}-confusion.png", confusion_png(rep), f"{g.label}: confusion matrix"))
    return [Heading(3, g.label), Panel(images, table, tuple(notes))]


def _tests_table(comp: Comparison) -> Table | None:
    """Both questions, kept apart: configurations over seeds, then the two trained networks."""
    rows = []
    for metric, name in (("test_accuracy", "accuracy"), ("f1_macro", "macro-F1")):
        for v in experiment_tests(comp, metric):
            question = ("configurations (over seeds)" if v.question == CONFIGURATIONS else
                        f"networks on this test set ({v.a_run} vs {v.b_run})")
            if v.result is None:
                rows.append((question, name, v.a.label, v.b.label, "-", "-", "-", "-", v.reason))
                continue
            t = v.result
            rows.append((question, name, v.a.label, v.b.label, v.effect, t.test,
                         f"{t.p_value:.3g}", f"{v.p_adjusted:.3g}", v.verdict))
    rows.sort(key=lambda r: r[0] != "configurations (over seeds)")
    if not rows:
        return None
    return Table(("question", "metric", "best", "other",
                  "effect: best minus other [95% CI if known]", "test", "p", "Holm p", "verdict"),
                 tuple(rows),
                 f"{QUESTIONS[CONFIGURATIONS]}. {QUESTIONS[NETWORKS]}. 5% level, Holm-adjusted "
                 "within each question and metric.")


def _experiment_section(number: str, exp_name: str, groups: list[Group]) -> list[Block]:
    comp = Comparison(groups, config_differences(groups), [])
    rows = []
    for r in comp.rows():
        rows.append((r["configuration"], r["differences"] or "-", str(r["runs"]),
                     f"{r['params']:,}", str(r["epochs"]), r["test_loss"].text(),
                     r["test_accuracy"].text(), r["f1_macro"].text(),
                     ", ".join(map(str, r["best_epoch"])), f"{r['train_seconds']:.1f}"))
    blocks: list[Block] = [
        Heading(2, f"{number} {EXPERIMENTS[exp_name]}"),
        Table(("configuration", "differs in", "runs", "params", "epochs", "test loss",
               "accuracy", "macro-F1", "lowest val loss at epoch", "train s"), tuple(rows),
              "Mean ± sd [95% t interval] over seeds; single runs show one value. 'Lowest val "
              "loss at epoch' only says where the curve is lowest; a best epoch is named in "
              "the notes below only when the sustained-trend rule holds."),
        Image(f"{exp_name}-validation-overlay.png", figure_png(comp.overlay_figure(
            f"{EXPERIMENTS[exp_name]}: validation loss (mean, min-max over seeds)")),
            "Validation loss of every configuration"),
    ]
    for g in groups:
        blocks += _config_panel(g)
    chosen = chosen_group(groups)
    blocks.append(Heading(3, f"Chosen configuration {chosen.label}: per class and its mistakes"))
    per_class = per_class_table(chosen)
    if per_class is not None:
        blocks.append(per_class)
    blocks.append(Para(f"Most confused pairs (true → predicted, summed over the "
                       f"{len(chosen.runs)} run(s) of {chosen.label}): "
                       f"{pairs_text(pooled_confused_pairs([chosen], 5))}. Over every "
                       f"configuration of this experiment: "
                       f"{pairs_text(pooled_confused_pairs(groups, 5))}."))
    blocks.append(misclassified_block(chosen, f"{exp_name}-misclassified.png"))
    blocks.append(Heading(3, f"Comparison: {EXPERIMENTS[exp_name]}"))
    tests = _tests_table(comp)
    if tests is not None:
        blocks.append(tests)
    blocks.append(Para(experiment_paragraph(comp)))
    from mnistlab.report.compare import groups_test_validation_warning as test_set_used
    blocks += [Para(w.removeprefix("warning: ").capitalize()) for w in [test_set_used(groups)] if w]
    return blocks


def _fashion_section(groups: list[Group], section: str | None) -> list[Block]:
    """Q5 in a few lines; the figures and tables are in the Fashion-MNIST experiment section."""
    blocks: list[Block] = [Heading(2, "4. Fashion-MNIST")]
    if not groups:
        return blocks + [Para("No Fashion-MNIST runs are in this report; run the suite "
                              "`lab-main` (or the fashion/* presets) to include them.")]
    g = chosen_group(groups)
    names = g.representative.metrics["class_names"]
    return blocks + [Para(
        f"Classes: {', '.join(f'{i} {n}' for i, n in enumerate(names))}. Chosen configuration: "
        f"{g.label} ({len(g.runs)} run(s)); test loss {g.summary('test_loss').text()}, accuracy "
        f"{g.summary('test_accuracy').text()}, macro-F1 {g.summary('f1_macro').text()}. Most "
        f"confused categories (true → predicted): {pairs_text(pooled_confused_pairs([g], 5))}. "
        f"Its error evolution, confusion matrix, per-class F-scores and misclassified images, "
        f"and the other Fashion-MNIST configurations: section {section}.")]


def _appendix(groups: list[Group], skipped: Sequence[tuple[Path, str]]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "5. Appendix: runs")]
    for g in groups:
        for r in g.runs:
            m = r.metrics
            versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
            rows = (("configuration", g.label), ("path", str(r.path)), ("seed", str(m["seed"])),
                    ("config digest", str(m.get("config_digest", "-"))),
                    ("dataset", str(m.get("dataset", "-"))),
                    ("validation", str(m.get("validation", "-"))),
                    ("epochs", str(len(r.history["val_loss"]))),
                    ("test loss, accuracy, macro-F1", f"{m['test_loss']:.4f}, "
                     f"{m['test_accuracy']:.4f}, {m['f1_macro']:.4f}"),
                    ("most confused", pairs_text(m.get("confused_pairs", [])[:5])),
                    ("train seconds", f"{m.get('train_seconds', float('nan')):.2f}"),
                    ("seconds per epoch (median)", f"{m.get('seconds_per_epoch') or 0:.2f}"),
                    ("device, threads", f"{m.get('device', '-')}, {m.get('threads', '-')}"),
                    ("finished", str(m.get("finished", "-"))), ("versions", versions))
            try:
                config_text = (r.path / "config.toml").read_text()
            except OSError:
                config_text = "(config.toml unreadable)"
            blocks += [Heading(3, r.name), Table(("field", "value"), rows),
                       Code(config_text, "resolved config.toml")]
    if skipped:
        blocks += [Heading(3, "Runs left out"),
                   Table(("run", "why"), tuple((str(p), why) for p, why in skipped))]
    return blocks


def build_report(targets: Sequence[str | Path], runs_dir: str | Path | None = None,
                 title: str = "mnistlab lab report") -> tuple[list[Block], Comparison]:
    """The report's blocks and the comparison they were built from."""
    comp = compare(targets, runs_dir)
    if not comp.groups:
        reasons = "; ".join(f"{p.name}: {why}" for p, why in comp.skipped[:3])
        raise RunError(f"{', '.join(map(str, targets))}: no complete run to report on ({reasons})")
    by_exp: dict[str, list[Group]] = {}
    for name in EXPERIMENTS:
        found = [g for g in comp.groups if g.experiment == name]
        if found:
            by_exp[name] = found
    n_runs = sum(len(g.runs) for g in comp.groups)
    blocks: list[Block] = [
        Heading(1, title),
        Para(f"Generated by mnistlab {__version__} on {time.strftime('%Y-%m-%d %H:%M')} from "
             f"{n_runs} runs in {len(comp.groups)} configurations"
             + (f" ({len(comp.skipped)} damaged or unfinished runs left out, see the appendix)"
                if comp.skipped else "")
             + ". Every number is read from the run directories; nothing is typed by hand."),
        Bullets(("Q1 optimiser, arguments, cost function with equations: section 1.",
                 "Q2 inputs, outputs, weights and biases per layer, totals: section 2.",
                 "Q3 do deeper networks have more weights: section 2, last part.",
                 "Q4 configurations per experiment with loss plots, test scores, confusion "
                 "matrices, F-scores (macro and per class), misclassified images and comments: "
                 "section 3.",
                 "Q5 Fashion-MNIST with a CNN: section 4.")),
    ]
    blocks += optimizer_section(comp.groups)
    blocks += complexity_section(by_exp)
    numbers = {name: f"3.{k}" for k, name in enumerate(by_exp, start=1)}
    for name, groups in by_exp.items():
        blocks += _experiment_section(numbers[name], name, groups)
    blocks += _fashion_section(by_exp.get("fashion", []), numbers.get("fashion"))
    blocks += _appendix(comp.groups, comp.skipped)
    return blocks, comp


def write_report(targets: Sequence[str | Path], out_dir: str | Path,
                 runs_dir: str | Path | None = None, title: str = "mnistlab lab report"
                 ) -> ReportResult:
    """Write `out_dir/report.html` and `out_dir/report.md` (+ PNGs) from the given runs."""
    from mnistlab.report.html import render_html
    from mnistlab.report.markdown import render_markdown

    blocks, comp = build_report(targets, runs_dir, title)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    md = render_markdown(blocks, out)
    html_path = out / "report.html"
    atomic_write_text(html_path, render_html(blocks, title))
    return ReportResult(html_path, md, sum(len(g.runs) for g in comp.groups), len(comp.groups),
                        list(comp.skipped))
