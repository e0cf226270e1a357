"""bench.report.stats against scipy and hand computations."""
import numpy as np
import pytest
from scipy import stats

from bench.report.stats import (BOOTSTRAP_METHOD, MODEL_LEVEL, PERMUTATION_TEST, SAMPLER_LEVEL,
                                T_METHOD, WILCOXON_TEST, detectable_delta, holm, paired_test,
                                smallest_exact_p, summarize, t_interval, two_level_bootstrap)


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
    assert (got.level, got.test, got.n_units) == (SAMPLER_LEVEL, WILCOXON_TEST, 6)
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
    models = paired_test({(k, 0): 0.5 for k in range(3)}, {(k, 0): 0.5 for k in range(3)})
    assert (models.level, models.n_units, models.delta, models.p) == (MODEL_LEVEL, 3, 0.0, 1.0)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, np.nan, 0.5]
    # m = 4 finite: sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    want = [0.04, 0.09, 0.09, np.nan, 0.5]
    np.testing.assert_allclose(holm(p), want, equal_nan=True)
    assert holm([0.6, 0.7]) == [1.0, 1.0]     # capped at 1
    assert holm([]) == []


def test_smallest_exact_p():
    assert smallest_exact_p(3) == 0.25
    x = np.arange(1, 6) * 0.1    # five positive differences: the exact minimum of both tests
    assert smallest_exact_p(5) == pytest.approx(stats.wilcoxon(x).pvalue)
    signs = stats.permutation_test((x,), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert smallest_exact_p(5) == pytest.approx(signs.pvalue)


def test_one_train_seed_is_labelled_sampler_variance_only_and_keeps_its_ci():
    base = {(3, g): v for g, v in enumerate([0.30, 0.35, 0.28, 0.33, 0.31])}
    meth = {(3, g): v for g, v in enumerate([0.36, 0.34, 0.37, 0.40, 0.38])}
    diffs = np.array([meth[k] - base[k] for k in sorted(base)])
    got = paired_test(meth, base)
    assert got.level == SAMPLER_LEVEL == "single trained models: sampler variance only"
    assert got.n_units == got.n_pairs == 5
    low, high = stats.t.interval(0.95, 4, loc=diffs.mean(), scale=stats.sem(diffs))
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert got.p == pytest.approx(stats.wilcoxon(diffs).pvalue, abs=1e-15)


def test_several_train_seeds_test_the_trained_model_exactly():
    """K = 6 trained models: the unit is the model. Generation-seed noise is tiny next to the
    model-to-model spread, so a test over the 18 (train, gen) pairs would call it significant."""
    rng = np.random.default_rng(1)
    model_effect = np.array([0.05, -0.02, 0.04, 0.03, -0.01, 0.06])
    base = {(k, g): 0.4 + rng.normal(0, 1e-3) for k in range(6) for g in range(3)}
    meth = {(k, g): base[k, g] + model_effect[k] + rng.normal(0, 1e-3) for k, g in base}
    del meth[(2, 1)]                     # an unpaired evaluation: model 2 averages its 2 pairs
    per_model = np.array([np.mean([meth[k, g] - base[k, g] for g in range(3) if (k, g) in meth])
                          for k in range(6)])
    got = paired_test(meth, base)
    assert (got.level, got.test, got.n_units, got.n_pairs) == (MODEL_LEVEL, PERMUTATION_TEST, 6, 17)
    want = stats.permutation_test((per_model,), np.mean, permutation_type="samples",
                                  n_resamples=np.inf, alternative="two-sided")
    assert got.p == pytest.approx(want.pvalue, abs=1e-15)
    flips = np.array(np.meshgrid(*[[-1, 1]] * 6)).reshape(6, -1).T     # all 64 sign patterns
    by_hand = np.mean(np.abs((flips * per_model).mean(1)) >= abs(per_model.mean()) - 1e-15)
    assert got.p == pytest.approx(by_hand)
    assert got.p > 0.05 > stats.wilcoxon([meth[k] - base[k] for k in sorted(meth)]).pvalue
    assert got.delta == pytest.approx(per_model.mean())
    groups = [np.array([meth[k, g] - base[k, g] for g in range(3) if (k, g) in meth]) for k in range(6)]
    assert (got.ci_low, got.ci_high) == pytest.approx(two_level_bootstrap(groups, per_model=True))
    assert got.ci_low < got.delta < got.ci_high
    assert got.detectable == pytest.approx(detectable_delta(per_model))


def test_detectable_delta_is_the_paired_t_approximation():
    diffs = np.array([0.02, -0.01, 0.035, 0.0, 0.015, 0.04, -0.005, 0.01])
    n, sd = len(diffs), np.std(diffs, ddof=1)
    want = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
    assert detectable_delta(diffs) == pytest.approx(want, rel=1e-12)
    base = {(0, g): 0.5 for g in range(n)}
    meth = {(0, g): 0.5 + d for g, d in enumerate(diffs)}
    assert paired_test(meth, base).detectable == pytest.approx(want, rel=1e-12)
    assert np.isnan(detectable_delta(diffs[:1]))


def test_per_model_bootstrap_weighs_every_trained_model_equally():
    # model A: one evaluation at 0; model B: nine at 10. Draws (A,A), (A,B), (B,B): per model
    # 0, 5, 10; pooled over observations 0, 9, 10. The 50% interval sits around 5 only per model.
    groups = [np.array([0.0]), np.full(9, 10.0)]
    assert two_level_bootstrap(groups, resamples=4000, per_model=True)[0] == 0.0
    assert 0.2 < np.mean([two_level_bootstrap(groups, resamples=1, seed=s, per_model=True)[0] == 5.0
                          for s in range(200)]) < 0.8
    assert not any(two_level_bootstrap(groups, resamples=1, seed=s)[0] == 5.0 for s in range(200))
