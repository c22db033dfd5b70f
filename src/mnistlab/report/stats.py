"""Honest statistics over repeated runs: spread, confidence intervals and significance tests.

Distributions come from SciPy and statsmodels, never from hand-written formulas. Two
configurations are compared with a paired t-test across seeds (run i of each shares seed i, so
initialisation and shuffling noise is matched) or Welch's t-test when seeds do not match: both
answer "does configuration A beat configuration B". McNemar's test on the test-set predictions
answers a different question: "do these two trained networks differ on this test set".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Summary", "TestResult", "summarize", "paired_test", "welch_test", "mcnemar_test",
           "holm_adjust", "ALPHA"]

ALPHA = 0.05  # significance level used in every verdict


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and a t confidence interval of a few repeated values."""

    n: int
    mean: float
    std: float  # sample std (ddof=1); nan for a single value
    low: float  # confidence interval bounds; nan when n < 2
    high: float
    confidence: float = 0.95

    def text(self, digits: int = 4) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (1 run)"
        return (f"{self.mean:.{digits}f} ± {self.std:.{digits}f} "
                f"[{self.low:.{digits}f}, {self.high:.{digits}f}]")


@dataclass(frozen=True)
class TestResult:
    """Outcome of comparing configuration A with configuration B on one metric."""

    test: str  # "paired t-test", "Welch t-test", "McNemar exact", "McNemar chi2"
    statistic: float
    p_value: float
    n: int  # seed pairs, runs, or discordant test images (McNemar)
    difference: float  # mean of A minus mean of B (accuracy for McNemar)
    detail: str = ""  # e.g. "A right/B wrong on 12 images, the reverse on 5"
    low: float = math.nan  # 95% confidence interval of `difference` (t tests only)
    high: float = math.nan

    @property
    def significant(self) -> bool:
        return bool(self.p_value < ALPHA)

    def effect_text(self, digits: int = 4) -> str:
        """`+0.0123 [+0.0040, +0.0206]`: the effect (A minus B) and, where known, its 95% CI."""
        text = f"{self.difference:+.{digits}f}"
        if math.isfinite(self.low) and math.isfinite(self.high):
            text += f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return text


def summarize(values: Sequence[float], confidence: float = 0.95,
              bounds: tuple[float, float] | None = None) -> Summary:
    """Mean, sample std and Student-t interval (scipy.stats.t) of repeated measurements.

    `bounds` clips the interval to the metric's possible range (e.g. (0, 1) for accuracy): the
    t interval knows nothing of it and, with few seeds, can reach past 1.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("summarize() needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan, confidence)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Summary(int(x.size), mean, 0.0, mean, mean, confidence)
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean,
                                 scale=std / math.sqrt(x.size))
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(int(x.size), mean, std, float(low), float(high), confidence)


def paired_test(a_by_seed: Mapping[int, float], b_by_seed: Mapping[int, float]
                ) -> TestResult | None:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds both configurations ran.

    Returns None when fewer than two seeds are shared. Identical differences on every seed
    (zero spread) give p = 0 if the difference is non-zero and p = 1 if it is zero.
    """
    from scipy import stats

    seeds = sorted(set(a_by_seed) & set(b_by_seed))
    if len(seeds) < 2:
        return None
    a = np.array([a_by_seed[s] for s in seeds], dtype=float)
    b = np.array([b_by_seed[s] for s in seeds], dtype=float)
    diff = a - b
    if np.all(diff == diff[0]):  # ttest_rel is undefined (nan) without spread
        p = 1.0 if diff[0] == 0 else 0.0
        return TestResult("paired t-test", math.inf if p == 0 else 0.0, p, len(seeds),
                          float(diff.mean()), "identical difference on every seed",
                          float(diff[0]), float(diff[0]))
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(0.95)
    return TestResult("paired t-test", float(res.statistic), float(res.pvalue), len(seeds),
                      float(diff.mean()), f"{len(seeds)} seeds matched", float(ci.low),
                      float(ci.high))


def welch_test(a: Sequence[float], b: Sequence[float]) -> TestResult | None:
    """Welch's unequal-variance t-test for repeated runs whose seeds do not match."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    diff = float(x.mean() - y.mean())
    if x.std() == 0 and y.std() == 0:
        p = 1.0 if diff == 0 else 0.0
        return TestResult("Welch t-test", math.inf if p == 0 else 0.0, p, x.size + y.size, diff,
                          "no spread in either configuration", diff, diff)
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(0.95)
    return TestResult("Welch t-test", float(res.statistic), float(res.pvalue), x.size + y.size,
                      diff, f"{x.size} vs {y.size} runs, seeds not matched", float(ci.low),
                      float(ci.high))


def mcnemar_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> TestResult:
    """McNemar's test on two classifiers' predictions for the same test images (statsmodels):
    do these two trained networks differ on this test set? It says nothing about configurations.

    Only images where exactly one classifier is right carry information; the exact binomial
    version is used when there are fewer than 25 of them, the continuity-corrected chi-square
    otherwise.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not (y_true.shape == pred_a.shape == pred_b.shape):
        raise ValueError("McNemar's test needs predictions for the same test images")
    a_ok, b_ok = pred_a == y_true, pred_b == y_true
    table = [[int(np.sum(a_ok & b_ok)), int(np.sum(a_ok & ~b_ok))],
             [int(np.sum(~a_ok & b_ok)), int(np.sum(~a_ok & ~b_ok))]]
    discordant = table[0][1] + table[1][0]
    exact = discordant < 25
    res = mcnemar(table, exact=exact, correction=True)
    p = 1.0 if discordant == 0 else float(res.pvalue)
    diff = float(a_ok.mean() - b_ok.mean())
    return TestResult("McNemar exact" if exact else "McNemar chi2", float(res.statistic), p,
                      discordant, diff, f"A right/B wrong on {table[0][1]} images, "
                      f"A wrong/B right on {table[1][0]}")


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels), for several comparisons at once."""
    from statsmodels.stats.multitest import multipletests

    if len(p_values) == 0:
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]
