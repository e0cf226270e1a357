"""Statistics of the leaderboard: cell summaries with 95% CIs, paired tests, Holm correction.

One observation = one evaluation (trained model x generation seed). A cell summarises every
observation of one method variant on one metric:
- one train seed: Student-t interval over the observations (scipy.stats.t);
- several train seeds: a two-level percentile bootstrap that resamples train seeds, then
  generation seeds within each drawn train seed (Davison & Hinkley 1997, sec. 3.8, "strategy 1"),
  so the between-model variance is not mistaken for noise of the sampler. Seeded: reproducible.

Δ vs the baseline pairs observations by (train seed, generation seed). Its unit is the trained
model whenever the two methods share K >= 2 train seeds (MODEL_LEVEL):
- each shared train seed gives one paired difference, the mean over its shared generation seeds
  of (method - baseline); Δ is the mean of these K per-model differences;
- Δ's CI: the two-level bootstrap of the paired differences (train seeds, then generation seeds
  within), the statistic being the mean of the drawn models' means;
- p: the exact sign-flip permutation test of the K per-model differences
  (scipy.stats.permutation_test, permutation_type="samples", statistic the mean, two-sided;
  exact, every one of the 2**K sign patterns, up to K = 16 train seeds).
With one shared train seed (SAMPLER_LEVEL, "single trained models: sampler variance only") the
units are the generation seeds: Δ's CI is the Student-t interval of the paired differences and
p the two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon). Either way p-values are
Holm-corrected across the methods of one metric (Holm 1979).

The smallest detectable Δ is the paired-t approximation at α = 0.05 two-sided and power 0.8,
(t_{1-α/2, n-1} + t_{power, n-1}) * sd_diff / sqrt(n), n the test's unit count and sd_diff the
sample std (ddof 1) of its unit differences. Both exact tests need n >= 6 to reach p < 0.05 at
all (their smallest two-sided p is 2 / 2**n).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95          # level of every interval in the report
ALPHA = 1.0 - CONFIDENCE   # two-sided level of the detectable-Δ figure
POWER = 0.8                # power of the detectable-Δ figure (Cohen's convention)
BOOTSTRAP_RESAMPLES = 10_000  # two-level bootstrap draws; the CI ends move < 1% of a std between seeds
BOOTSTRAP_SEED = 0         # fixed: the same store always gives the same report
PERMUTATION_RESAMPLES = 2 ** 16  # >= 2**K sign patterns, so exact up to K = 16 train seeds

MODEL_LEVEL = "trained models"
SAMPLER_LEVEL = "single trained models: sampler variance only"
PERMUTATION_TEST = "exact sign-flip permutation test over train seeds"
WILCOXON_TEST = "Wilcoxon signed-rank test over generation seeds"

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
    level: str             # MODEL_LEVEL or SAMPLER_LEVEL ("" when nothing is paired)
    n_units: int           # the test's units: shared train seeds, or the pairs of one
    test: str              # PERMUTATION_TEST or WILCOXON_TEST ("" when nothing is paired)
    delta: float           # mean of the units' paired differences (method - baseline)
    ci_low: float
    ci_high: float
    p: float               # two-sided, uncorrected
    detectable: float      # smallest Δ detectable at ALPHA with POWER (paired t), NaN if n < 2


UNPAIRED = PairedTest(0, "", 0, "", *(float("nan"),) * 5)   # no shared seed, or the baseline itself


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
                        seed: int = BOOTSTRAP_SEED, per_model: bool = False) -> tuple[float, float]:
    """Percentile CI of a mean; groups = values per train seed.

    Each draw picks len(groups) train seeds with replacement, then, inside each picked seed,
    as many generation seeds as it holds, with replacement. The statistic is the mean of every
    drawn observation (a cell's point estimate: seeds with more evaluations weigh more), or with
    per_model the mean of the drawn models' means (Δ's point estimate: one model, one unit).
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
    sums, counts = np.where(valid, drawn, 0.0).sum(axis=2), valid.sum(axis=2)    # (B, K)
    means = (sums / counts).mean(axis=1) if per_model else sums.sum(axis=1) / counts.sum(axis=1)
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


def detectable_delta(unit_diffs: np.ndarray) -> float:
    """Smallest |Δ| a paired t test would detect at ALPHA two-sided with POWER, given these
    unit differences' spread: (t_{1-ALPHA/2, n-1} + t_{POWER, n-1}) * sd / sqrt(n)."""
    n = len(unit_diffs)
    if n < 2:
        return float("nan")
    quantiles = stats.t.ppf(1.0 - ALPHA / 2, n - 1) + stats.t.ppf(POWER, n - 1)
    return float(quantiles * np.std(unit_diffs, ddof=1) / np.sqrt(n))


def _sign_flip_p(unit_diffs: np.ndarray) -> float:
    result = stats.permutation_test((unit_diffs,), np.mean, vectorized=True,
                                    permutation_type="samples", alternative="two-sided",
                                    n_resamples=PERMUTATION_RESAMPLES, random_state=BOOTSTRAP_SEED)
    return float(result.pvalue)


def _wilcoxon_p(unit_diffs: np.ndarray) -> float:
    with warnings.catch_warnings():                # scipy warns on ties/zeros with tiny n
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(unit_diffs).pvalue)


def paired_test(method: dict[tuple[int, int], float],
                baseline: dict[tuple[int, int], float]) -> PairedTest:
    """Method vs baseline on their shared (train seed, generation seed) keys, at MODEL_LEVEL
    when they share two or more train seeds, else at SAMPLER_LEVEL (see the module docstring).

    A key missing (or NaN) on either side drops that pair; pair order never matters.
    """
    keys = sorted(k for k in method.keys() & baseline.keys()
                  if np.isfinite(method[k]) and np.isfinite(baseline[k]))
    if not keys:
        return UNPAIRED
    by_model: dict[int, list[float]] = {}
    for k in keys:
        by_model.setdefault(k[0], []).append(method[k] - baseline[k])
    groups = [np.array(d) for _, d in sorted(by_model.items())]
    if len(groups) >= 2:
        level, test, units = MODEL_LEVEL, PERMUTATION_TEST, np.array([g.mean() for g in groups])
        low, high = two_level_bootstrap(groups, per_model=True)
        p_of = _sign_flip_p
    else:
        level, test, units = SAMPLER_LEVEL, WILCOXON_TEST, groups[0]
        low, high = t_interval(units)
        p_of = _wilcoxon_p
    p = p_of(units) if np.any(units) else 1.0    # identical on every unit: nothing to test
    return PairedTest(len(keys), level, len(units), test, float(units.mean()), low, high, p,
                      detectable_delta(units))


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


def smallest_exact_p(n_units: int) -> float:
    """The smallest two-sided p either exact test (sign-flip, Wilcoxon) reaches with n units:
    2 / 2**n, all differences of one sign."""
    return min(1.0, 2.0 / 2.0 ** n_units) if n_units else float("nan")
