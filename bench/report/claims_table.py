"""The claims section as text every format shares: its table, the regime lines, its note."""
from __future__ import annotations

import math

from bench.methods.claims import HIGHER
from bench.report.claims import VERDICT_RULES, regime_here
from bench.report.collect import SuiteData
from bench.report.render import fmt, fmt_p, metric_places
from bench.report.tables import DatasetTables
from bench.report.verdict import uninformative_reasons

CLAIMS_TITLE = "What the papers claim, against what this suite measured"
CLAIMS_NOTE = ("Each method declares its paper's claims (bench.methods.claims). Δ = the method − the "
               "variant it is compared against (\"vs\"), on the metric's values as the paper measured "
               "them (SSIM: the value itself, not its distance to real), paired by (train seed, generation "
               "seed) as in the leaderboard; p Holm-corrected across this data set's claims. " + VERDICT_RULES)

UNINFORMATIVE_CAVEAT = ("This data set's comparison is uninformative (see the warning at the top): "
                        "read these verdicts as about models that have not learned, not about the papers.")


def _claimed(claim) -> str:
    if claim.untestable:
        return "—"
    arrow = "↑" if claim.direction == HIGHER else "↓"
    return f"{arrow} {claim.magnitude:g}" if claim.magnitude is not None else arrow


def claims_table(t: DatasetTables) -> tuple[list[str], list[list[str]]]:
    """Header and rows (plain text), one row per (method variant, claim); no rows without claims."""
    header = ["method", "claim", "vs", "metric", "paper", "Δ [95% CI]", "p (Holm)", "detectable Δ",
              "verdict", "why"]
    rows = []
    for r in t.claims:
        places = metric_places(t, r.claim.metric) if r.claim.metric in t.metrics else 3
        test = r.test
        delta = "—" if not math.isfinite(test.delta) else f"{test.delta:+.{places}f}" + (
            f" [{test.ci_low:+.{places}f}, {test.ci_high:+.{places}f}]" if math.isfinite(test.ci_low) else "")
        rows.append([r.method, r.claim.statement, r.reference, r.claim.metric or "—", _claimed(r.claim),
                     delta, fmt_p(r.p_holm), fmt(test.detectable, places), r.verdict, r.reason])
    return header, rows


def claims_notes(data: SuiteData, t: DatasetTables) -> list[str]:
    """One line per paper, its regime beside this suite's (from plan.json); first, where the data set's
    comparison is uninformative (bench/report/verdict.py), that every verdict stands on it."""
    here = regime_here(data.plan.get("config", {}))
    papers = dict.fromkeys((r.claim.citation, r.claim.regime) for r in t.claims)
    caveat = [UNINFORMATIVE_CAVEAT] if t.claims and uninformative_reasons(t) else []
    return caveat + [f"{citation}: paper: {regime}; here: {here}." for citation, regime in papers]
