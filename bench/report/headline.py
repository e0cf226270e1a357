"""The headline table, the report's first: for a person, at most WIDTH characters a line.

One row per method variant: its name (shortened in the middle when long), N trained models, then
each headline metric the suite measured as "mean Δ mark", Δ = method − baseline from the
leaderboard (for a metric judged by its closeness to the real data, Δ of that distance) and a
mark from its Holm-corrected test. Full CIs, p values and the detectable Δ are in the tables below.
"""
from __future__ import annotations

import math

from bench.report.render import metric_places, method_label
from bench.report.stats import ALPHA, MODEL_LEVEL, SAMPLER_LEVEL
from bench.metrics.registry import CLOSEST_TO_REAL, HIGHER, LOWER
from bench.report.tables import DatasetTables, judgement
from bench.report.verdict import headline_metric

WIDTH = 120                  # characters of a headline line, in every format
GAP = "  "                   # between columns
MIN_NAME_WIDTH = 12          # a method column narrower than this says too little
# The headline metrics after the headline accuracy (verdict.HEADLINE_METRICS: the scorer's, else the
# expert's), in the design's order: quality, diversity against the real data, utility, privacy.
HEADLINE_AFTER_ACCURACY = ("fid[scorer]", "ssim", "tstr_acc", "copy_rate")
SHORT_ARROWS = {HIGHER: "↑", LOWER: "↓", CLOSEST_TO_REAL: "≈"}
SIGNIFICANT, SAMPLER_ONLY = "*", "~"
LEGEND = (f"N: train seeds (trained models) per method. Each cell: mean, Δ vs the baseline, mark. "
          f"↑ higher is better, ↓ lower is better, ≈ closest to the real data's value is best (its Δ "
          f"compares distances to real: negative = closer). {SIGNIFICANT} p < {ALPHA:g} (Holm), trained "
          f"models as units; {SAMPLER_ONLY} one trained model per method: Δ shows sampler variance only, "
          "no test of the method; blank: not significant. CIs, p values and detectable Δ: the tables below.")


def headline_metrics(t: DatasetTables) -> list[str]:
    first = headline_metric(t)
    return [m for m in (first, *HEADLINE_AFTER_ACCURACY) if m and m in t.metrics]


def _mark(c) -> str:
    if c.level == SAMPLER_LEVEL:
        return SAMPLER_ONLY
    return SIGNIFICANT if c.level == MODEL_LEVEL and c.p_holm < ALPHA else " "


def _cell(t: DatasetTables, method: str, metric: str) -> str:
    c, places = t.cell(method, metric), metric_places(t, metric)
    if c.n == 0:
        return t.row_status[method] if t.row_status[method] in ("failed", "missing") else "—"
    value = f"{c['mean']:.{places}f}"
    if method == t.baseline or not math.isfinite(c.delta):
        return value + " " * len(f" {0:+.{places}f}{SIGNIFICANT}")   # blank Δ: the values line up
    return f"{value} {c.delta:+.{places}f}{_mark(c)}"


def _trained_models(t: DatasetTables, method: str) -> int:
    lb = t.leaderboard
    return int(lb.loc[lb.method == method, "n_train_seeds"].max()) if not lb.empty else 0


def shorten(text: str, width: int) -> str:
    """text, or its start and end around "…" in `width` characters: a variant's parameters (its end)
    tell it from its siblings, so the end is kept too."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2 + (width - 1) % 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def headline_table(t: DatasetTables, text=str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (plain text) of the headline; joined by `fixed_width` no line exceeds WIDTH.
    `text` turns a method's label (store text, made one line) into what the format shows, before
    it is shortened to fit."""
    metrics = headline_metrics(t)
    header = ["method", "N", *(f"{m} {SHORT_ARROWS.get(judgement(m), '')}".strip() for m in metrics)]
    body = [[text(" ".join(method_label(t, method).splitlines())), str(_trained_models(t, method)),
             *(_cell(t, method, m) for m in metrics)] for method in t.methods]
    rest = sum(len(GAP) + max(len(r[i]) for r in [header, *body]) for i in range(1, len(header)))
    name_width = max(MIN_NAME_WIDTH, WIDTH - rest)
    return header, [[shorten(r[0], name_width), *r[1:]] for r in body]


def fixed_width(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned text lines: the first column left-justified, the numbers right-justified."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [GAP.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in [header, *rows]]
