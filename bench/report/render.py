"""Text forms of the tables: the cell formatting and the words every output (markdown.py, html.py,
terminal.py) shares."""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report.collect import RunStatus, SuiteData
from bench.report.stats import (ALPHA, BOOTSTRAP_METHOD, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
                                CONFIDENCE, MODEL_LEVEL, POWER, SAMPLER_LEVEL, T_METHOD,
                                smallest_exact_p)
from bench.report.tables import DISTANCE_TO_REAL, DatasetTables, arrow

REFERENCE_LABEL = "real data (reference)"
WARNING_LABEL = "Uninformative comparison."
DETECTABLE_TITLE = f"Smallest detectable Δ (α = {ALPHA:g} two-sided, power {POWER:g}, paired t)"
FULL_TITLE = "Every metric: mean ± std, 95% CI, Δ vs the baseline with its CI and p"
HOW_TITLE = "How the numbers were computed"


def reference_note(data: SuiteData) -> str:
    return (f"The reference row holds the same statistic on real {data.eval_split} images (accuracies: the "
            "ceiling; SSIM: the real data's diversity, the value to be closest to; density: 1, its expectation "
            "when generated and real images come from one distribution; tstr_acc: the same classifier recipe "
            "trained on as many real train images; copy_rate: the rate of the real held-out images).")


def ceiling_text(t: DatasetTables) -> str:
    """Each classifier's accuracy on the real images of the scored split (its ceiling) and the baseline's
    accuracy as a fraction of it, in one sentence; "" without a classifier metric and its real value."""
    parts = []
    for metric in t.metrics:
        if not (metric.startswith("acc[") and t.reference.get(metric)):
            continue
        ceiling = t.reference[metric]
        text = f"{metric} {ceiling:.3f}"
        if t.baseline in t.methods and t.cell(t.baseline, metric).n:
            mean = t.cell(t.baseline, metric)["mean"]
            text += f" (the baseline's {mean:.3f} is {mean / ceiling:.0%} of it)"
        parts.append(text)
    if not parts:
        return ""
    return "Ceiling, each classifier's accuracy on the real scored images: " + "; ".join(parts) + "."


def per_class_title(key: str) -> str:
    return f"{key} per class {arrow(key)}".strip()


TOO_FEW = "too few images"


def per_class_value(sub, cls: str, places: int) -> tuple[str, str]:
    """(mean, "± std") of one per-class cell of `sub` (its frame rows of one method, indexed by
    class): "—" where the class has no entry, TOO_FEW where its value was stored as null."""
    if cls not in sub.index:
        return "—", ""
    if sub.at[cls, "n"] == 0:
        return TOO_FEW, ""
    return fmt(sub.at[cls, "mean"], places), f"± {fmt(sub.at[cls, 'std'], places)}"


def _per_class_counts(t: DatasetTables, key: str) -> dict | None:
    prov = t.provenance.get(key)
    counts = prov.get("per_class") if isinstance(prov, dict) else None
    return counts if isinstance(counts, dict) else None


def per_class_n_row(t: DatasetTables, key: str) -> list[str]:
    """"generated / real" images per class and evaluation behind an intra-class metric; [] if not recorded."""
    counts = _per_class_counts(t, key)
    if counts is None:
        return []
    return [f"{counts.get('n_gen', {}).get(c, '—')} / {counts.get('n_ref', {}).get(c, '—')}" for c in t.classes]


def per_class_note(t: DatasetTables, key: str) -> str:
    counts = _per_class_counts(t, key)
    if counts is None:
        return ""
    why = f" ({counts['min_images_rule']})" if counts.get("min_images_rule") else ""
    return (f"Intra-class: each class's generated images against the real images of that class; N is "
            f"generated / real images per evaluation. \"{TOO_FEW}\": fewer than {counts.get('min_images')} "
            f"on a side{why}, so no value is given.")


def decimals(values) -> int:
    """Decimals that give a column's typical magnitude three significant digits (at least one
    decimal), so every number of one column (mean, std, CI, Δ) is printed alike."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 3
    typical = sorted(finite)[len(finite) // 2]
    return min(6, max(1, 2 - math.floor(math.log10(typical))))


def fmt(v: float, places: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.{places}f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class Cell:
    main: str       # "mean ± std", or why there is no value
    ci: str         # "[low, high]" or ""
    note: str       # "n=k" when the cell's N differs from its row's
    bold: bool


def metric_places(t: DatasetTables, metric: str) -> int:
    lb = t.leaderboard
    return decimals([*lb.loc[lb.metric == metric, "mean"], t.reference.get(metric)])


def metric_cell(t: DatasetTables, method: str, metric: str) -> Cell:
    c, places = t.cell(method, metric), metric_places(t, metric)
    if c.n == 0:
        status = t.row_status[method]
        return Cell(status if status in ("failed", "missing") else "—", "", "", False)
    main = fmt(c["mean"], places) + (f" ± {fmt(c['std'], places)}"
                                     if math.isfinite(c["std"]) else "")
    ci = (f"[{fmt(c.ci_low, places)}, {fmt(c.ci_high, places)}]"
          if math.isfinite(c.ci_low) else "")
    note = f"n={c.n}" if c.n != t.row_n[method] else ""
    return Cell(main, ci, note, method in t.best(metric))


def delta_title(t: DatasetTables, metric: str) -> str:
    """The Δ column's name: Δ of the value, or of its distance to the real data's value."""
    lb = t.leaderboard
    distance = (lb.loc[lb.metric == metric, "delta_of"] == DISTANCE_TO_REAL).any()
    return f"Δ |{metric} − real|" if distance else f"Δ {metric}"


def _units(n_units: int, level: str) -> str:
    if level == MODEL_LEVEL:
        return f"{n_units} trained models"
    return f"{n_units} seed pairs · {SAMPLER_LEVEL}"


def delta_parts(t: DatasetTables, method: str, metric: str) -> tuple[str, str]:
    """("+0.029", "[-0.010, 0.068] · p=0.250 · 3 trained models"): the paired difference, its CI,
    its Holm-corrected test and the level of its unit (SAMPLER_LEVEL spelled out)."""
    if method == t.baseline:
        return "baseline", ""
    c = t.cell(method, metric)
    if c.n == 0:
        return "—", ""
    if t.baseline not in t.methods:
        return "—", f"no {t.baseline} in this data set"
    if c.n_pairs == 0:
        return "—", "no shared seeds"
    places = metric_places(t, metric)
    ci = (f"[{c.delta_ci_low:+.{places}f}, {c.delta_ci_high:+.{places}f}] · "
          if math.isfinite(c.delta_ci_low) else "")
    return (f"{c.delta:+.{places}f}",
            f"{ci}p={fmt_p(c.p_holm)} · {_units(int(c.n_units), c.level)}")


def delta_cell(t: DatasetTables, method: str, metric: str) -> str:
    main, note = delta_parts(t, method, metric)
    return f"{main} ({note})" if note and main != "—" else main


def detectable_table(t: DatasetTables) -> tuple[list[str], list[list[str]]]:
    """Header and rows (plain text) of the smallest Δ each comparison could detect, per metric."""
    header = ["method", *(delta_title(t, m) for m in t.metrics)]
    rows = []
    for method in t.methods:
        if method == t.baseline:
            continue
        row = [method]
        for metric in t.metrics:
            c = t.cell(method, metric)
            if c.n_units < 2:
                row.append("—")
                continue
            floor = smallest_exact_p(int(c.n_units))
            reachable = "" if floor <= ALPHA else f", exact test: p ≥ {floor:.3g}"
            row.append(f"{fmt(c.detectable_delta, metric_places(t, metric))} "
                       f"(n={c.n_units}{reachable})")
        rows.append(row)
    return header, rows


def method_label(t: DatasetTables, method: str) -> str:
    status = t.row_status[method]
    if status == "ok":
        return method
    if status != "partial":
        return f"{method} ({status})"
    runs = t.runs_total[method]
    counts = [f"{n}/{runs} runs {what}" for n, what in ((t.runs_failed[method], "failed"),
                                                       (t.runs_missing[method], "missing")) if n]
    return f"{method} (partial{': ' + ', '.join(counts) if counts else ''})"


def reference_cell(t: DatasetTables, metric: str) -> str:
    return fmt(t.reference[metric], metric_places(t, metric)) if metric in t.reference else ""


def aggregation_text(data: SuiteData, tables: list[DatasetTables]) -> str:
    """How every number was computed, in the words the report prints above its tables."""
    per_class = data.plan.get("config", {}).get("sample", {}).get("samples_per_class")
    images = f"{per_class} images per scored class" if per_class else "its images"
    lbs = [t.leaderboard for t in tables if not t.leaderboard.empty]
    used = {m for lb in lbs for m in lb.ci_method.unique()}
    level = f"{CONFIDENCE:.0%}"
    ci = []
    if T_METHOD in used:
        ci.append(f"a Student-t {level} interval over the observations (cells with one train seed)")
    if BOOTSTRAP_METHOD in used:
        ci.append(f"a two-level percentile bootstrap {level} interval ({BOOTSTRAP_RESAMPLES:,} "
                  f"draws, seed {BOOTSTRAP_SEED}: train seeds resampled, then generation seeds "
                  "within each; cells with several train seeds; with few train seeds it can "
                  "only recombine the models it has, so read it as optimistic)")
    levels = {level for lb in lbs for level in lb.level.unique() if level}
    max_units = max((int(lb.n_units.max()) for lb in lbs), default=0)
    text = (f"One observation = one evaluation: a trained model sampled at one generation seed "
            f"({images}). A cell shows mean ± sample std (ddof 1) over its observations and, in "
            f"brackets, {' or '.join(ci) if ci else 'no interval (fewer than two observations)'}. "
            "N counts observations (n= marks a cell whose N differs from its row's). "
            "Δ = method − baseline, paired by (train seed, generation seed), with its "
            f"{level} CI and p, two-sided and Holm-corrected across the methods of each metric.")
    if MODEL_LEVEL in levels:
        text += (" Where the two methods share several train seeds the unit is the trained model: "
                 "Δ is the mean over train seeds of each model's mean paired difference, its CI a "
                 "two-level bootstrap of the paired differences (train seeds, then generation seeds "
                 "within), p the exact sign-flip permutation test over the per-model differences "
                 "(scipy.stats.permutation_test, permutation_type=\"samples\", every sign pattern).")
    if SAMPLER_LEVEL in levels:
        text += (f" Where they share one train seed the Δ is labelled \"{SAMPLER_LEVEL}\": its "
                 "units are generation seeds of one trained model per method, so its CI (Student t "
                 "over the paired differences) and p (Wilcoxon signed-rank, scipy.stats.wilcoxon) "
                 "measure the sampler's noise, not whether the method trains better models; train "
                 "more seeds (--train-seeds) to test that.")
    text += (" Best mean per metric in bold; ↑ higher is better, ↓ lower is better, \"closest to "
             "real\": nearest the real data's own value (SSIM: the real images' within-class "
             "similarity), so pure noise cannot win by being dissimilar; for such a metric Δ "
             "compares distances to the real value (negative = closer).")
    if max_units:
        text += (f" With {max_units} units the smallest p an exact test can reach is "
                 f"{smallest_exact_p(max_units):.3g}: with few seeds a large p is no evidence "
                 "of equality.")
    text += (f" Smallest detectable Δ (table under each leaderboard): the paired-t approximation "
             f"at α = {ALPHA:g} two-sided and power {POWER:g}, (t_{{1−α/2, n−1}} + "
             "t_{power, n−1}) · sd_diff / √n, n the test's units and sd_diff the std (ddof 1) "
             "of their paired differences; where n is too small for the exact test to reach "
             "p < α whatever the Δ, its smallest p is shown beside the figure.")
    return text


def split_text(data: SuiteData) -> str:
    """Which real split scored the suite, in the words the report prints first."""
    if data.eval_split == "val":
        return ("Scored against the validation split: numbers for choosing settings, not test results "
                "(bench run --eval-split test scores the test split, in a suite of its own).")
    return f"Scored against the {data.eval_split} split."


def problem_runs(data: SuiteData) -> list[RunStatus]:
    return [r for r in data.runs if r.status != "done"]
