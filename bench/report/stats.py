"""Statistics of the leaderboard: cell summaries with 95% CIs, paired tests, Holm correction.

One observation = one evaluation (trained model x generation seed). A cell summarises every
observation of one method variant on one metric:
- one train seed: Student-t interval over the observations (scipy.stats.t);
- several train seeds: a two-level percentile bootstrap that resamples train seeds, then
  generation seeds within each drawn train seed (Davison & Hinkley 1997, sec. 3.8, "strategy 1"),
  so the between-model variance is not mistaken for noise of the sampler. Seeded: reproducible.
Δ vs the baseline pairs observations by (train seed, generation seed) and tests with the
Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided); p-values are Holm-corrected across
the methods of one metric (Holm 1979).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95          # level of every interval in the report
BOOTSTRAP_RESAMPLES = 10_000  # two-level bootstrap draws; the CI ends move < 1% of a std between seeds
BOOTSTRAP_SEED = 0         # fixed: the same store always gives the same report

T_METHOD = "t"
BOOTSTRAP_METHOD = "bootstrap2"


@dataclass(frozen=True)
class CellSummary:
    n: int                 # observations (evaluations) in the cell
    n_train_seeds: int
    mean: float
    std: float             # sample standard deviation (ddof=1) over observations
    ci_low: float
    ci_high: float
    ci_method: str         # T_METHOD or BOOTSTRAP_METHOD ("" when n < 2)


@dataclass(frozen=True)
class PairedTest:
    n_pairs: int           # (train seed, generation seed) keys observed for both methods
    delta: float           # mean of method - baseline over the pairs
    p: float               # two-sided Wilcoxon signed-rank p-value, uncorrected


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Student-t CI of the mean; NaN with fewer than two observations."""
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
    return float(low), float(high)


def two_level_bootstrap(groups: list[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile CI of the mean over all observations; groups = values per train seed.

    Each draw picks len(groups) train seeds with replacement, then, inside each picked seed,
    as many generation seeds as it holds, with replacement; the statistic is the mean of
    every drawn observation (the point estimate's definition, so seeds with more evaluations
    weigh more in both).
    """
    rng = np.random.default_rng(seed)
    sizes = np.array([len(g) for g in groups])
    padded = np.full((len(groups), sizes.max()), np.nan)
    for i, g in enumerate(groups):
        padded[i, :len(g)] = g
    picked = rng.integers(0, len(groups), size=(resamples, len(groups)))   # train seeds
    n_picked = sizes[picked]                                                # (B, K)
    slots = np.arange(sizes.max())
    within = (rng.random((resamples, len(groups), sizes.max())) * n_picked[..., None]).astype(int)
    drawn = padded[picked[..., None], within]                              # (B, K, max)
    valid = slots[None, None, :] < n_picked[..., None]
    means = np.where(valid, drawn, 0.0).sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
    alpha = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(values_by_train_seed: dict[int, np.ndarray]) -> CellSummary:
    """Mean, std and CI of one cell; NaN values (a metric not computed) are left out."""
    groups = [np.asarray(v, float) for _, v in sorted(values_by_train_seed.items())]
    groups = [g[~np.isnan(g)] for g in groups]
    groups = [g for g in groups if len(g)]
    if not groups:
        return CellSummary(0, 0, *(float("nan"),) * 4, "")
    values = np.concatenate(groups)
    n = len(values)
    std = float(np.std(values, ddof=1)) if n > 1 else float("nan")
    if n < 2:
        low, high, method = float("nan"), float("nan"), ""
    elif len(groups) == 1:
        (low, high), method = t_interval(values), T_METHOD
    else:
        (low, high), method = two_level_bootstrap(groups), BOOTSTRAP_METHOD
    return CellSummary(n, len(groups), float(np.mean(values)), std, low, high, method)


def paired_test(method: dict[tuple[int, int], float],
                baseline: dict[tuple[int, int], float]) -> PairedTest:
    """Wilcoxon signed-rank test of method vs baseline on their shared (train, gen) seeds.

    A key missing (or NaN) on either side drops that pair; pair order never matters.
    """
    keys = sorted(k for k in method.keys() & baseline.keys()
                  if np.isfinite(method[k]) and np.isfinite(baseline[k]))
    if not keys:
        return PairedTest(0, float("nan"), float("nan"))
    diffs = np.array([method[k] - baseline[k] for k in keys])
    if not np.any(diffs):
        return PairedTest(len(keys), 0.0, 1.0)    # identical on every pair: nothing to rank
    with warnings.catch_warnings():                # scipy warns on ties/zeros with tiny n
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.wilcoxon(diffs).pvalue)
    return PairedTest(len(keys), float(diffs.mean()), p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979); NaN entries stay NaN, not counted in m."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out.tolist()


def smallest_wilcoxon_p(n_pairs: int) -> float:
    """The smallest two-sided p the exact test can reach with n pairs: 2 / 2**n."""
    return min(1.0, 2.0 / 2.0 ** n_pairs) if n_pairs else float("nan")
