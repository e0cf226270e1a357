"""When a leaderboard means nothing: the words the report prints at its top.

A comparison of methods is uninformative when
- the baseline's headline accuracy is not above chance (its CI reaches 1 / scored classes): the
  models have not learned the classes, so the table ranks failures; or
- the scorer itself is weak on the real images of the scored split: a scorer that errs on many real images cannot
  tell a method's samples from its own mistakes.
"""
from __future__ import annotations

import math

from bench.report.tables import DatasetTables

# The headline accuracy and its fall-back: the scorer's, else the expert's (old stores' expert_acc is read
# as acc[expert], bench/report/collect.py).
HEADLINE_METRICS = ("acc[scorer]", "acc[expert]")
# A scorer is trusted when right on at least 60% of the real scored images AND at least halfway from
# chance to perfect, (1 + chance) / 2: below 60% four real images in ten are misread, a larger
# error than the method differences the leaderboard is there to show; the halfway rule keeps a
# few-class data set (chance 0.5: 0.75 needed) from passing a scorer barely above chance.
MIN_SCORER_REAL_ACCURACY = 0.6
REMEDY = ("Likely remedy: train longer (more steps), use a larger image size, or a stronger "
          "scorer.")


def headline_metric(t: DatasetTables) -> str | None:
    return next((m for m in HEADLINE_METRICS if m in t.metrics), None)


def chance_level(t: DatasetTables) -> float:
    """1 / the number of scored classes (NaN when the store names none)."""
    return 1.0 / len(t.classes) if t.classes else float("nan")


def trusted_scorer_accuracy(chance: float) -> float:
    return max(MIN_SCORER_REAL_ACCURACY, (1.0 + chance) / 2) if math.isfinite(chance) \
        else MIN_SCORER_REAL_ACCURACY


def uninformative_reasons(t: DatasetTables) -> list[str]:
    """Why this data set's comparison means nothing, in sentences; empty when it may mean something."""
    metric = headline_metric(t)
    if metric is None:
        return []
    chance, reasons = chance_level(t), []
    if t.baseline in t.methods and math.isfinite(chance):
        c = t.cell(t.baseline, metric)
        low = c.ci_low if math.isfinite(c.ci_low) else c["mean"]
        if c.n and low <= chance:
            interval = (f", 95% CI [{c.ci_low:.3f}, {c.ci_high:.3f}]" if math.isfinite(c.ci_low)
                        else "")
            reasons.append(f"the baseline's {metric} ({c['mean']:.3f}{interval}) is not above "
                           f"chance ({chance:.3f} = 1/{len(t.classes)} scored classes): the models "
                           "have not learned the classes, so the table ranks failures")
    if metric in t.reference:
        bar = trusted_scorer_accuracy(chance)
        if t.reference[metric] < bar:
            reasons.append(f"the scoring network is weak on the real images ({metric} on real images "
                           f"{t.reference[metric]:.3f}, below the {bar:.2f} this report requires: "
                           f"at least {MIN_SCORER_REAL_ACCURACY:.0%} and halfway from chance to "
                           "perfect)")
    return reasons


def warnings_text(tables: list[DatasetTables]) -> list[str]:
    """One paragraph per data set whose comparison is uninformative."""
    out = []
    for t in tables:
        reasons = uninformative_reasons(t)
        if reasons:
            out.append(f"This comparison is uninformative for {t.dataset}: "
                       + "; and ".join(reasons) + f". {REMEDY}")
    return out
