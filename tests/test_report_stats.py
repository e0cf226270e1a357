"""bench.report.stats against scipy and hand computations."""
import numpy as np
import pytest
from scipy import stats

from bench.report.stats import (BOOTSTRAP_METHOD, T_METHOD, holm, paired_test,
                                smallest_wilcoxon_p, summarize, t_interval, two_level_bootstrap)


def test_one_train_seed_cell_equals_scipy_t_interval():
    values = np.array([0.41, 0.38, 0.45, 0.40, 0.36])
    s = summarize({0: values})
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert (s.n, s.n_train_seeds, s.ci_method) == (5, 1, T_METHOD)
    assert s.mean == pytest.approx(values.mean(), abs=1e-15)
    assert s.std == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high), abs=1e-12)


def test_nan_values_are_left_out_and_single_values_have_no_interval():
    s = summarize({0: np.array([0.5, np.nan])})
    assert s.n == 1 and s.mean == 0.5 and np.isnan(s.std) and np.isnan(s.ci_low)
    assert summarize({0: np.array([np.nan])}).n == 0
    assert t_interval(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)


def test_two_level_bootstrap_is_seeded_and_sees_between_model_variance():
    # three trained models far apart, five nearly identical generation seeds each
    groups = {k: mu + np.array([0.0, 1e-3, -1e-3, 2e-3, -2e-3]) for k, mu in enumerate([0., 1., 2.])}
    s = summarize(groups)
    assert s.ci_method == BOOTSTRAP_METHOD and s.n == 15 and s.n_train_seeds == 3
    assert s.mean == pytest.approx(1.0)
    again = summarize(groups)
    assert (again.ci_low, again.ci_high) == (s.ci_low, s.ci_high)     # seeded
    naive = stats.t.interval(0.95, 14, loc=1.0, scale=stats.sem(np.concatenate(list(groups.values()))))
    # resampling models: the interval spans what 3 models can show, wider than 15 i.i.d. draws
    assert s.ci_high - s.ci_low > naive[1] - naive[0]
    assert 0.0 <= s.ci_low < 1.0 < s.ci_high <= 2.0


def test_two_level_bootstrap_unequal_groups_and_degenerate_case():
    low, high = two_level_bootstrap([np.array([1.0, 1.0]), np.array([1.0])])
    assert low == high == 1.0
    # models A = [0] and B = [10]*9: draws (A,A) -> 0, (B,B) -> 10, (A,B) -> 90/10 = 9
    low, high = two_level_bootstrap([np.array([0.0]), np.full(9, 10.0)], resamples=4000)
    assert (low, high) == (0.0, 10.0)


def test_paired_test_equals_scipy_and_pairs_by_seed():
    base = {(0, g): v for g, v in enumerate([0.30, 0.35, 0.28, 0.33, 0.31, 0.29])}
    meth = {(0, g): v for g, v in enumerate([0.36, 0.34, 0.37, 0.40, 0.38, 0.39])}
    keys = sorted(base)
    want = stats.wilcoxon([meth[k] for k in keys], [base[k] for k in keys])
    got = paired_test(meth, base)
    assert got.n_pairs == 6 and got.p == pytest.approx(want.pvalue, abs=1e-15)
    assert got.delta == pytest.approx(np.mean([meth[k] - base[k] for k in keys]))
    # insertion order is irrelevant
    shuffled = dict(reversed(list(meth.items())))
    assert paired_test(shuffled, base) == got
    # a seed missing on one side drops exactly that pair
    del meth[(0, 2)]
    dropped = paired_test(meth, base)
    k2 = [k for k in keys if k != (0, 2)]
    assert dropped.n_pairs == 5
    assert dropped.p == pytest.approx(stats.wilcoxon([meth[k] for k in k2],
                                                     [base[k] for k in k2]).pvalue)


def test_paired_test_edge_cases():
    assert paired_test({(0, 0): 1.0}, {(1, 0): 1.0}).n_pairs == 0
    same = paired_test({(0, g): 0.5 for g in range(3)}, {(0, g): 0.5 for g in range(3)})
    assert (same.n_pairs, same.delta, same.p) == (3, 0.0, 1.0)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, np.nan, 0.5]
    # m = 4 finite: sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    want = [0.04, 0.09, 0.09, np.nan, 0.5]
    np.testing.assert_allclose(holm(p), want, equal_nan=True)
    assert holm([0.6, 0.7]) == [1.0, 1.0]     # capped at 1
    assert holm([]) == []


def test_smallest_wilcoxon_p():
    assert smallest_wilcoxon_p(3) == 0.25
    x = np.arange(1, 6) * 0.1    # five positive differences: the exact minimum
    assert smallest_wilcoxon_p(5) == pytest.approx(stats.wilcoxon(x).pvalue)
