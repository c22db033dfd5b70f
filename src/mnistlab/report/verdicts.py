"""The two questions a comparison of runs can answer, kept apart.

(a) Networks: do these two trained networks differ on this test set? McNemar's test on the paired
    test predictions of one run of each configuration. It says nothing about whether another
    training of the same configurations would differ.
(b) Configurations: does configuration A beat configuration B? A paired t-test over shared seeds
    (Welch's t-test when fewer seeds are shared) on the per-seed scores, with the mean difference
    and its 95% interval. It needs at least `MIN_SEEDS` runs of each configuration; with fewer it
    is "not testable", never "significant".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mnistlab.report.compare import Comparison, Group
from mnistlab.report.stats import (
    ALPHA,
    TestResult,
    holm_adjust,
    mcnemar_test,
    paired_test,
    welch_test,
)
from mnistlab.rundir.directory import RunInfo

__all__ = ["Verdict", "network_test", "config_test", "experiment_tests", "MIN_SEEDS",
           "NETWORKS", "CONFIGURATIONS", "QUESTIONS"]

MIN_SEEDS = 3  # runs per configuration before "does A beat B" is tested at all
NETWORKS, CONFIGURATIONS = "networks", "configurations"
QUESTIONS = {
    NETWORKS: "Do these two trained networks differ on this test set? (McNemar's test on paired "
              "test predictions, one run of each; says nothing about the configurations)",
    CONFIGURATIONS: f"Does configuration A beat configuration B? (t-test on per-seed scores; "
                    f"needs >= {MIN_SEEDS} seeds per configuration)",
}


@dataclass(frozen=True)
class Verdict:
    """One comparison of A with B for one question: its test, or why it cannot be tested."""

    question: str  # NETWORKS or CONFIGURATIONS
    a: Group
    b: Group
    metric: str
    result: TestResult | None
    reason: str = ""  # why it was not tested ("not testable: 1 seed(s); run with --seeds 3")
    p_adjusted: float | None = None  # Holm over the comparisons of one question and metric
    a_run: str = ""  # networks: the run of each side whose predictions were compared
    b_run: str = ""

    @property
    def p(self) -> float | None:
        if self.result is None:
            return None
        return self.p_adjusted if self.p_adjusted is not None else self.result.p_value

    @property
    def verdict(self) -> str:
        """Plain words; "significant" only for a configuration-level test that passed."""
        if self.result is None:
            return self.reason
        shown = self.p is not None and self.p < ALPHA
        if self.question == NETWORKS:
            return ("these two networks differ on this test set" if shown else
                    "no difference shown between these two networks on this test set")
        return "significant" if shown else "within noise (not shown different)"

    @property
    def effect(self) -> str:
        """The effect size: A minus B, with its 95% interval where the test gives one."""
        if self.result is None:
            return "-"
        text = self.result.effect_text()
        return f"{text} ({self.result.detail})" if self.question == NETWORKS else text


def _predictions(info: RunInfo) -> dict[str, np.ndarray] | None:
    try:
        with np.load(info.path / "predictions.npz") as data:
            return {k: data[k] for k in ("y_true", "y_pred")}
    except (OSError, ValueError, KeyError):
        return None


def network_test(a: Group, b: Group) -> Verdict:
    """McNemar on one trained network of each configuration (the same seed where both ran it)."""
    shared = sorted(set(a.seeds) & set(b.seeds))
    ra = next((r for r in a.runs if r.metrics["seed"] in shared), a.representative)
    rb = next((r for r in b.runs if r.metrics["seed"] == ra.metrics["seed"]), b.representative)
    pa, pb = _predictions(ra), _predictions(rb)
    base = Verdict(NETWORKS, a, b, "test_accuracy", None, a_run=ra.name, b_run=rb.name)
    if pa is None or pb is None:
        missing = ra.name if pa is None else rb.name
        return replace(base, reason=f"not testable: {missing}/predictions.npz unreadable")
    if not np.array_equal(pa["y_true"], pb["y_true"]):
        return replace(base, reason="not testable: the runs were tested on different test sets")
    return replace(base, result=mcnemar_test(pa["y_true"], pa["y_pred"], pb["y_pred"]))


def config_test(a: Group, b: Group, metric: str = "test_accuracy") -> Verdict:
    """Paired t over shared seeds (>= MIN_SEEDS of them), else Welch; not testable with fewer
    than MIN_SEEDS runs on either side."""
    base = Verdict(CONFIGURATIONS, a, b, metric, None)
    n = min(len(a.runs), len(b.runs))
    if n < MIN_SEEDS:
        return replace(base, reason=f"not testable: {n} seed(s); run with --seeds {MIN_SEEDS}")
    shared = set(a.seeds) & set(b.seeds)
    if len(shared) >= MIN_SEEDS:
        result = paired_test(a.by_seed(metric), b.by_seed(metric))
    else:
        result = welch_test(a.values(metric), b.values(metric))
    return replace(base, result=result)


def _holm(verdicts: list[Verdict]) -> list[Verdict]:
    tested = [v for v in verdicts if v.result is not None]
    adjusted = dict(zip(map(id, tested), holm_adjust([v.result.p_value for v in tested]),
                        strict=True))
    return [replace(v, p_adjusted=adjusted.get(id(v))) for v in verdicts]


def experiment_tests(comp: Comparison, metric: str = "test_accuracy") -> list[Verdict]:
    """The best configuration (highest mean `metric`) against each other one: first the
    configuration-level tests, then (accuracy only) the network-level ones; Holm-adjusted within
    each question."""
    if len(comp.groups) < 2:
        return []
    best = max(comp.groups, key=lambda g: g.summary(metric).mean)
    others = [g for g in comp.groups if g is not best]
    out = _holm([config_test(best, g, metric) for g in others])
    if metric == "test_accuracy":
        out += _holm([network_test(best, g) for g in others])
    return out
