"""Plain-word findings computed from recorded runs: diagnostics of one history, and the paragraph
that compares an experiment's configurations (which is best, which differences are noise, which
classes are confused). Numbers in, sentences out; nothing here is typed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnistlab.report.compare import Comparison, Group
from mnistlab.runs.metrics import confused_pairs
from mnistlab.runs.directory import RunInfo
from mnistlab.report.stats import ALPHA, TestResult, holm_adjust

__all__ = ["Diagnostics", "diagnose", "diagnostic_sentences", "pairs_text", "has_dropout",
           "experiment_tests", "experiment_paragraph", "pooled_confused_pairs"]

PLATEAU = 0.01  # a final validation loss within 1% of its minimum counts as "no rise"


def has_dropout(config: dict) -> bool:
    model = config.get("model", {})
    if float(model.get("dropout", 0) or 0) > 0:
        return True
    return any(isinstance(layer, dict) and str(layer.get("type", "")).lower() == "dropout"
               for layer in model.get("layers", []) or [])


@dataclass(frozen=True)
class Diagnostics:
    """What one run's history and test predictions say, as numbers."""

    epochs: int
    best_epoch: int  # 1-based epoch of the lowest validation loss
    best_val_loss: float
    final_loss: float  # training loss (mean over the last epoch's batches)
    final_val_loss: float
    dropout: bool
    validation_is_test: bool
    confused: list[dict]  # top mistakes: true, predicted, count, true_name, predicted_name

    @property
    def gap(self) -> float:
        """Validation minus training loss at the last epoch (positive: validation is worse)."""
        return self.final_val_loss - self.final_loss

    @property
    def rise(self) -> float:
        """Relative rise of the validation loss from its minimum to the last epoch."""
        return (self.final_val_loss - self.best_val_loss) / max(self.best_val_loss, 1e-12)


def diagnose(info: RunInfo) -> Diagnostics:
    h, m = info.history, info.metrics
    val = np.asarray(h["val_loss"], dtype=float)
    best = int(np.argmin(val))
    return Diagnostics(len(val), best + 1, float(val[best]), float(h["loss"][-1]),
                       float(val[-1]), has_dropout(info.config or {}),
                       m.get("validation") == "test", list(m.get("confused_pairs", []))[:5])


def pairs_text(pairs: Sequence[dict]) -> str:
    """`4 → 9 (12), 7 → 2 (9)`: true class → predicted class (count)."""
    if not pairs:
        return "no mistakes"
    return ", ".join(f"{p['true_name']} → {p['predicted_name']} ({p['count']})" for p in pairs)


def diagnostic_sentences(d: Diagnostics) -> list[str]:
    """The diagnostics of one run, each as one plain sentence."""
    out = []
    where = (f"Validation loss is lowest at epoch {d.best_epoch} of {d.epochs} "
             f"({d.best_val_loss:.4f})")
    if d.best_epoch == d.epochs:
        out.append(where + " and still falling at the end: more epochs would likely help.")
    elif d.rise > PLATEAU:
        out.append(where + f", then rises {100 * d.rise:.1f}% to {d.final_val_loss:.4f}: the "
                   f"model overfits after epoch {d.best_epoch}.")
    else:
        out.append(where + f" and ends within {100 * PLATEAU:.0f}% of it: a plateau.")
    side = "above" if d.gap > 0 else "below"
    out.append(f"At the end, training loss is {d.final_loss:.4f} and validation loss "
               f"{d.final_val_loss:.4f} ({abs(d.gap):.4f} {side}).")
    if d.gap < 0:
        why = ("expected with dropout: the training loss is averaged over the epoch with dropout "
               "active, the validation loss is measured afterwards without it"
               if d.dropout else
               "without dropout this means the epoch-averaged training loss lags the improving "
               "weights, or the validation set is easier than the training set")
        out.append(f"Validation loss sits below training loss: {why}.")
    if d.validation_is_test:
        out.append("Validation used the test set (as the lab did), so the test score also "
                   "guided the curves; it is not an untouched estimate.")
    out.append(f"Most confused (true → predicted, count): {pairs_text(d.confused)}.")
    return out


def pooled_confused_pairs(groups: Sequence[Group], top: int = 5) -> list[dict]:
    """Top mistakes over every run of the given configurations (summed confusion matrices)."""
    runs = [r for g in groups for r in g.runs]
    total = np.sum([np.asarray(r.metrics["confusion"], dtype=np.int64) for r in runs], axis=0)
    return confused_pairs(total, runs[0].metrics["class_names"], top)


def experiment_tests(comp: Comparison, metric: str = "test_accuracy"
                     ) -> list[tuple[Group, Group, TestResult | None, float | None]]:
    """Best configuration against each other one, with Holm-adjusted p-values."""
    tests = comp.tests(metric)
    testable = [t for _, _, t in tests if t is not None]
    adjusted = iter(holm_adjust([t.p_value for t in testable]))
    return [(a, b, t, next(adjusted) if t is not None else None) for a, b, t in tests]


def _verdict(t: TestResult | None, p_adj: float | None) -> str:
    if t is None:
        return "cannot be tested"
    return "significant" if p_adj is not None and p_adj < ALPHA else "within noise"


def experiment_paragraph(comp: Comparison) -> str:
    """Which configuration is best, which differences are within noise, which classes are
    confused: one generated paragraph for one experiment's configurations."""
    groups = comp.groups
    best = max(groups, key=lambda g: g.summary("test_accuracy").mean)
    acc, f1 = best.summary("test_accuracy"), best.summary("f1_macro")
    runs = f"{acc.n} runs" if acc.n > 1 else "a single run"
    parts = [f"Best by mean test accuracy: {best.label}, accuracy {acc.text()} and macro-F1 "
             f"{f1.text()} over {runs}."]
    if len(groups) == 1:
        parts.append("Only one configuration of this experiment is in the report, so there is "
                     "nothing to compare it with.")
    noise, real, untested = [], [], []
    for _, other, t, p_adj in experiment_tests(comp):
        verdict = _verdict(t, p_adj)
        if t is None:
            untested.append(other.label)
            continue
        text = (f"{other.label} ({-t.difference:+.4f}; {t.test}, p = {t.p_value:.3g}, "
                f"Holm-adjusted {p_adj:.3g})")
        (real if verdict == "significant" else noise).append(text)
    if real:
        parts.append("Significantly worse than the best: " + "; ".join(real) + ".")
    if noise:
        parts.append("Within noise of the best (not shown different at the 5% level): "
                     + "; ".join(noise) + ".")
    if untested:
        parts.append("Cannot be tested against the best (different test sets or missing "
                     "predictions): " + ", ".join(untested) + ".")
    if any(len(g.runs) == 1 for g in groups) and len(groups) > 1:
        parts.append("Single runs carry no estimate of run-to-run noise: McNemar's test says "
                     "whether two trained models differ on this test set, not whether their "
                     "configurations do; repeat with --seeds to know.")
    elif len(groups) > 1 and min(len(g.runs) for g in groups) < 5:
        parts.append(f"With {min(len(g.runs) for g in groups)} seeds per configuration only "
                     "large differences can be shown; 'within noise' means not shown different, "
                     "not shown equal.")
    n_runs = sum(len(g.runs) for g in groups)
    pooled = pooled_confused_pairs(groups, 3)
    parts.append(f"Over all {n_runs} runs of this experiment the most frequent mistakes are "
                 f"{pairs_text(pooled)}.")
    if len(groups) > 1 and pooled:
        top = (pooled[0]["true"], pooled[0]["predicted"])
        leading = sum(1 for g in groups if g.representative.metrics.get("confused_pairs")
                      and (g.representative.metrics["confused_pairs"][0]["true"],
                           g.representative.metrics["confused_pairs"][0]["predicted"]) == top)
        parts.append(f"{pooled[0]['true_name']} → {pooled[0]['predicted_name']} is the top "
                     f"mistake in {leading} of {len(groups)} configurations (first seed).")
    return " ".join(parts)
