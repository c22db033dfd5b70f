"""Plain-word findings computed from recorded runs: diagnostics of one history, and the paragraph
that compares an experiment's configurations (which is best, which differences are noise, which
classes are confused). Numbers in, sentences out; nothing here is typed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnistlab.report.compare import Comparison, Group
from mnistlab.report.verdicts import CONFIGURATIONS, MIN_SEEDS, NETWORKS, experiment_tests
from mnistlab.rundir.directory import RunInfo
from mnistlab.rundir.metrics import confused_pairs

__all__ = ["Diagnostics", "diagnose", "diagnostic_sentences", "pairs_text", "has_dropout",
           "experiment_tests", "experiment_paragraph", "pooled_confused_pairs"]

PLATEAU = 0.01  # a rise of less than 1% of the minimum is never called overfitting
SUSTAIN = 2  # the minimum must lie at least this many epochs before the end
OVERFIT_RULE = (f"overfitting is claimed only when the lowest validation loss lies at least "
                f"{SUSTAIN} epochs before the end and the mean of the last {SUSTAIN} epochs "
                f"exceeds that minimum by more than the epoch-to-epoch noise (the median absolute "
                f"change between consecutive epochs) and by more than {100 * PLATEAU:.0f}%")


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

    noise: float = 0.0  # median absolute change of the validation loss between epochs
    tail_val_loss: float = 0.0  # mean validation loss of the last SUSTAIN epochs

    @property
    def rise(self) -> float:
        """Relative rise of the validation loss from its minimum to the last epoch."""
        return (self.final_val_loss - self.best_val_loss) / max(self.best_val_loss, 1e-12)

    @property
    def overfits(self) -> bool:
        """A sustained rise after the minimum (see OVERFIT_RULE), not one noisy epoch."""
        tail_rise = self.tail_val_loss - self.best_val_loss
        return (self.best_epoch <= self.epochs - SUSTAIN and tail_rise > self.noise
                and tail_rise > PLATEAU * self.best_val_loss)

    @property
    def loss_name(self) -> str:
        return "validation loss (on the test set)" if self.validation_is_test else \
            "validation loss"


def diagnose(info: RunInfo) -> Diagnostics:
    h, m = info.history, info.metrics
    val = np.asarray(h["val_loss"], dtype=float)
    best = int(np.argmin(val))
    noise = float(np.median(np.abs(np.diff(val)))) if val.size > 1 else 0.0
    return Diagnostics(len(val), best + 1, float(val[best]), float(h["loss"][-1]),
                       float(val[-1]), has_dropout(info.config or {}),
                       m.get("validation") == "test", list(m.get("confused_pairs", []))[:5],
                       noise, float(val[-SUSTAIN:].mean()))


def pairs_text(pairs: Sequence[dict]) -> str:
    """`4 → 9 (12), 7 → 2 (9)`: true class → predicted class (count)."""
    if not pairs:
        return "no mistakes"
    return ", ".join(f"{p['true_name']} → {p['predicted_name']} ({p['count']})" for p in pairs)


def diagnostic_sentences(d: Diagnostics) -> list[str]:
    """The diagnostics of one run, each as one plain sentence."""
    out = []
    name = d.loss_name
    where = f"{name[0].upper()}{name[1:]} is lowest at epoch {d.best_epoch} of {d.epochs} " \
            f"({d.best_val_loss:.4f})"
    on_test = " on the test set" if d.validation_is_test else ""
    if d.best_epoch == d.epochs:
        out.append(where + " and still falling at the end: more epochs would likely help.")
    elif d.overfits:
        out.append(where + f", then rises {100 * d.rise:.1f}% to {d.final_val_loss:.4f}; the "
                   f"last {SUSTAIN} epochs average {d.tail_val_loss - d.best_val_loss:.4f} above "
                   f"the minimum, more than the epoch-to-epoch noise of {d.noise:.4f}: the model "
                   f"overfits{on_test} after epoch {d.best_epoch}, its best epoch.")
    else:
        out.append(where + f"; after it the curve shows no sustained rise (rule: {OVERFIT_RULE}"
                   f"), so no overfitting is claimed and epoch {d.best_epoch} is not singled out "
                   "as a best epoch.")
    side = "above" if d.gap > 0 else "below"
    out.append(f"At the end, training loss is {d.final_loss:.4f} and {name} "
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


def _verdict_sentences(comp: Comparison) -> list[str]:
    """Configuration-level and network-level findings, each question in its own sentences."""
    verdicts = experiment_tests(comp)
    if not verdicts:
        return []
    parts = []
    config = [v for v in verdicts if v.question == CONFIGURATIONS]
    real = [v for v in config if v.verdict == "significant"]
    noise = [v for v in config if v.result is not None and v.verdict != "significant"]
    untested = [v for v in config if v.result is None]

    def tested(v) -> str:
        t = v.result
        return (f"{v.b.label} (best minus it {v.effect}; {t.test}, p = {t.p_value:.3g}, "
                f"Holm-adjusted {v.p_adjusted:.3g})")

    if real:
        parts.append("Configuration level, over seeds: the best is significantly better than "
                     + "; ".join(map(tested, real)) + ".")
    if noise:
        parts.append("Configuration level, over seeds: not shown different from the best at "
                     "the 5% level: " + "; ".join(map(tested, noise)) + ".")
        if min(len(g.runs) for g in comp.groups) < 5:
            parts.append("With fewer than 5 seeds only large differences can be shown; 'within "
                         "noise' means not shown different, not shown equal.")
    if untested:
        parts.append("Configuration level: whether the best configuration beats "
                     + ", ".join(f"{v.b.label} is {v.reason}" for v in untested)
                     + f" (this needs >= {MIN_SEEDS} seeds per configuration).")
    nets = [v for v in verdicts if v.question == NETWORKS]
    said = [f"{v.a_run} vs {v.b_run}: {v.verdict} (accuracy difference {v.effect}; "
            f"{v.result.test}, p = {v.result.p_value:.3g}, Holm-adjusted {v.p_adjusted:.3g})"
            if v.result is not None else f"{v.a_run} vs {v.b_run}: {v.reason}" for v in nets]
    if said:
        parts.append("Network level (McNemar's test on paired test predictions; it says whether "
                     "these trained networks differ on this test set, not whether their "
                     "configurations do): " + "; ".join(said) + ".")
    return parts


def experiment_paragraph(comp: Comparison) -> str:
    """Which configuration is best, what each of the two questions (configurations over seeds,
    networks on this test set) can say, which classes are confused: one generated paragraph."""
    groups = comp.groups
    best = max(groups, key=lambda g: g.summary("test_accuracy").mean)
    acc, f1 = best.summary("test_accuracy"), best.summary("f1_macro")
    runs = f"{acc.n} runs" if acc.n > 1 else "a single run"
    parts = [f"Best by mean test accuracy: {best.label}, accuracy {acc.text()} and macro-F1 "
             f"{f1.text()} over {runs}."]
    if len(groups) == 1:
        parts.append("Only one configuration of this experiment is in the report, so there is "
                     "nothing to compare it with.")
    parts += _verdict_sentences(comp)
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
