"""Statistics against SciPy references on generated data."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from mnistlab.report.stats import holm_adjust, mcnemar_test, paired_test, summarize, welch_test


def test_summarize_matches_the_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(0.97, 0.004, size=5)
    s = summarize(x)
    half = sps.t.ppf(0.975, df=4) * x.std(ddof=1) / math.sqrt(5)
    assert s.n == 5
    assert s.mean == pytest.approx(x.mean())
    assert s.std == pytest.approx(x.std(ddof=1))
    assert (s.low, s.high) == pytest.approx((x.mean() - half, x.mean() + half))
    assert "±" in s.text()


def test_summarize_clips_to_bounds_and_handles_one_or_equal_values():
    s = summarize([0.99, 0.999], bounds=(0.0, 1.0))
    assert s.high == 1.0 and s.low < 0.99
    one = summarize([0.5])
    assert one.n == 1 and math.isnan(one.std) and math.isnan(one.low)
    assert one.text() == "0.5000 (1 run)"
    flat = summarize([0.3, 0.3, 0.3])
    assert (flat.std, flat.low, flat.high) == (0.0, 0.3, 0.3)
    with pytest.raises(ValueError):
        summarize([])


def test_paired_test_matches_ttest_rel_and_pairs_by_seed():
    rng = np.random.default_rng(1)
    a = rng.normal(0.98, 0.002, size=6)
    b = a - 0.001 + rng.normal(0, 0.0015, size=6)
    ref = sps.ttest_rel(a, b)
    # given in a different seed order, with an unmatched seed on each side
    a_by = {s: a[s] for s in reversed(range(6))} | {10: 0.5}
    b_by = {s: b[s] for s in range(6)} | {11: 0.1}
    res = paired_test(a_by, b_by)
    assert res.test == "paired t-test" and res.n == 6
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.difference == pytest.approx(np.mean(a - b))
    assert paired_test({0: 1.0}, {0: 0.5, 1: 0.4}) is None


def test_paired_test_without_spread_in_the_differences():
    same = paired_test({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8})
    assert same.p_value == 1.0 and not same.significant
    shifted = paired_test({0: 0.9, 1: 0.8}, {0: 0.85, 1: 0.75})
    assert shifted.p_value == 0.0 and shifted.significant


def test_welch_test_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.9, 0.01, 4), rng.normal(0.88, 0.02, 3)
    ref = sps.ttest_ind(a, b, equal_var=False)
    res = welch_test(a, b)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(ref.statistic)
    assert welch_test([0.9], b) is None


def _predictions(n_only_a: int, n_only_b: int, n_both: int = 200, n_none: int = 30):
    y = np.zeros(n_only_a + n_only_b + n_both + n_none, dtype=int)
    a = np.concatenate([np.zeros(n_only_a), np.ones(n_only_b), np.zeros(n_both),
                        np.ones(n_none)]).astype(int)
    b = np.concatenate([np.ones(n_only_a), np.zeros(n_only_b), np.zeros(n_both),
                        np.ones(n_none)]).astype(int)
    perm = np.random.default_rng(3).permutation(len(y))
    return y[perm], a[perm], b[perm]


def test_mcnemar_exact_equals_the_binomial_test():
    y, a, b = _predictions(12, 3)
    res = mcnemar_test(y, a, b)
    assert res.test == "McNemar exact" and res.n == 15
    assert res.p_value == pytest.approx(sps.binomtest(3, 15, 0.5).pvalue)
    assert res.difference == pytest.approx((12 - 3) / len(y))


def test_mcnemar_chi2_with_continuity_correction():
    y, a, b = _predictions(40, 20)
    res = mcnemar_test(y, a, b)
    chi2 = (abs(40 - 20) - 1) ** 2 / 60
    assert res.test == "McNemar chi2"
    assert res.statistic == pytest.approx(chi2)
    assert res.p_value == pytest.approx(sps.chi2.sf(chi2, df=1))
    identical = mcnemar_test(y, a, a)
    assert identical.p_value == 1.0 and identical.n == 0
    with pytest.raises(ValueError):
        mcnemar_test(y, a[:-1], b[:-1])


def test_holm_adjust():
    p = [0.01, 0.04, 0.03, 0.5]
    # Holm: sorted p_(i) * (m - i), made monotone, capped at 1
    order = np.argsort(p)
    adj = np.empty(4)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, p[idx] * (4 - rank)))
        adj[idx] = running
    assert holm_adjust(p) == pytest.approx(list(adj))
    assert holm_adjust([]) == []


def test_t_tests_give_the_effect_with_scipys_95_percent_interval():
    rng = np.random.default_rng(4)
    a = rng.normal(0.98, 0.002, size=4)
    b = a - 0.002 + rng.normal(0, 0.001, size=4)
    paired = paired_test(dict(enumerate(a)), dict(enumerate(b)))
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (paired.low, paired.high) == pytest.approx((ci.low, ci.high))
    assert paired.effect_text() == f"{np.mean(a - b):+.4f} [{ci.low:+.4f}, {ci.high:+.4f}]"
    welch = welch_test(a, b[:3])
    ci = sps.ttest_ind(a, b[:3], equal_var=False).confidence_interval(0.95)
    assert (welch.low, welch.high) == pytest.approx((ci.low, ci.high))
    # McNemar compares two networks: its effect is the accuracy difference, with no interval
    y, pa, pb = _predictions(12, 3)
    assert mcnemar_test(y, pa, pb).effect_text() == f"{9 / len(y):+.4f}"
