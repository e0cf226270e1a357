"""The report's tables as data: leaderboard cells, per-class tables, references, the CSV frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.store import METRICS_FILE
from bench.metrics.registry import CLOSEST_TO_REAL, HIGHER, LOWER, direction_of, registered_kinds, split_name
from bench.report.claims import ClaimResult, dataset_claims
from bench.report.collect import SuiteData, seed_keyed, store_number
from bench.report.stats import UNPAIRED, holm, paired_test, summarize

NETWORK_ORDER = ("scorer", "expert", "inception", "effnet")   # acc[scorer], the headline, first
ARROWS = {HIGHER: "↑", LOWER: "↓", CLOSEST_TO_REAL: f"({CLOSEST_TO_REAL})"}
DISTANCE_TO_REAL = "distance to real"     # what Δ compares for CLOSEST_TO_REAL metrics

# The statistics of one (method, metric) cell: its summary, then Δ vs the baseline (at `level`,
# over `n_units` units, with its CI and `test`), then the smallest Δ the design could detect.
CELL_STATS = ["n", "n_train_seeds", "mean", "std", "ci_low", "ci_high", "ci_method", "n_pairs",
              "level", "n_units", "test", "delta_of", "delta", "delta_ci_low", "delta_ci_high",
              "p", "p_holm", "detectable_delta"]
LEADERBOARD_COLUMNS = ["method", "metric", *CELL_STATS]
WIDE_STATS = ("mean", "std", "ci_low", "ci_high")
WIDE_TEST_STATS = ("delta", "delta_ci_low", "delta_ci_high", "p", "p_holm", "level",
                   "detectable_delta")


def wide_column(metric: str, stat: str) -> str:
    """leaderboard.csv's name for one statistic of one metric, e.g. acc[scorer]_ci_low."""
    return f"{metric}_{stat}"


def judgement(metric: str) -> str:
    """HIGHER, LOWER, CLOSEST_TO_REAL (as the metric registered itself), or "" (unknown: no arrow, no bold)."""
    return direction_of(metric)


def direction(metric: str) -> int:
    """+1 higher is better, -1 lower is better, 0 neither (unknown, or judged against real)."""
    return {HIGHER: 1, LOWER: -1}.get(judgement(metric), 0)


def arrow(metric: str) -> str:
    return ARROWS.get(judgement(metric), "")


def ordered_metrics(names) -> list[str]:
    """The design's column order (the registry's: acc, ssim, fid, kid, ...; scorer first), unknown ones last."""
    kinds = registered_kinds()

    def key(metric: str):
        kind, net = split_name(metric)
        return (kinds.index(kind) if kind in kinds else len(kinds),
                NETWORK_ORDER.index(net) if net in NETWORK_ORDER else len(NETWORK_ORDER), metric)

    return sorted(set(names), key=key)


@dataclass(frozen=True)
class DatasetTables:
    dataset: str
    baseline: str
    methods: tuple[str, ...]          # rows, baseline first
    metrics: tuple[str, ...]          # columns in display order
    leaderboard: pd.DataFrame         # LEADERBOARD_COLUMNS, one row per (method, metric)
    row_n: dict[str, int]             # evaluations per method
    row_status: dict[str, str]        # "ok" | "partial" | "failed" | "missing"
    runs_failed: dict[str, int]
    runs_missing: dict[str, int]
    runs_total: dict[str, int]        # planned runs (train seeds) per method
    per_class: dict[str, pd.DataFrame]  # key -> rows method, class, n, mean, std (n = 0: stored as null)
    classes: tuple[str, ...]          # scored classes in label order
    reference: dict[str, float]       # the same statistics on the real images of the scored split
    provenance: dict[str, dict]       # metric -> provenance of its first evaluation
    claims: tuple[ClaimResult, ...]   # every method variant's paper claims, tested (bench/report/claims.py)

    def cell(self, method: str, metric: str) -> pd.Series:
        lb = self.leaderboard
        return lb[(lb.method == method) & (lb.metric == metric)].iloc[0]

    def best(self, metric: str) -> set[str]:
        """Methods with the best mean (ties all win): the highest, the lowest, or the closest to
        the real data's value; empty when the metric has no judgement (or no real value)."""
        lb = self.leaderboard[(self.leaderboard.metric == metric) & (self.leaderboard.n > 0)]
        if lb.empty:
            return set()
        if judgement(metric) == CLOSEST_TO_REAL and metric in self.reference:
            score = -(lb["mean"] - self.reference[metric]).abs()
        elif direction(metric):
            score = direction(metric) * lb["mean"]
        else:
            return set()
        return set(lb.loc[np.isclose(score, score.max(), rtol=1e-12, atol=0), "method"])


def _judged_values(metric: str, values: pd.Series,
                   reference: dict[str, float]) -> tuple[pd.Series, str]:
    """What Δ compares: the value, or for CLOSEST_TO_REAL metrics its distance to the real one."""
    if judgement(metric) == CLOSEST_TO_REAL and metric in reference:
        return (values - reference[metric]).abs(), DISTANCE_TO_REAL
    return values, "value"


def _leaderboard(obs: pd.DataFrame, methods: tuple[str, ...], baseline: str,
                 metrics: tuple[str, ...], reference: dict[str, float]) -> pd.DataFrame:
    rows = []
    for metric in metrics:
        m_obs = obs[obs.metric == metric]
        judged, delta_of = _judged_values(metric, m_obs["value"], reference)
        keyed = {m: seed_keyed(m_obs[m_obs.method == m], judged[m_obs.method == m]) for m in methods}
        block = []
        for method in methods:
            cell = m_obs[m_obs.method == method]
            s = summarize({int(k): g["value"].to_numpy() for k, g in cell.groupby("train_seed")})
            test = (paired_test(keyed[method], keyed[baseline])
                    if method != baseline and baseline in keyed else UNPAIRED)
            block.append({"method": method, "metric": metric, "n": s.n,
                          "n_train_seeds": s.n_train_seeds, "mean": s.mean, "std": s.std,
                          "ci_low": s.ci_low, "ci_high": s.ci_high, "ci_method": s.ci_method,
                          "n_pairs": test.n_pairs, "level": test.level, "n_units": test.n_units,
                          "test": test.test, "delta_of": delta_of, "delta": test.delta,
                          "delta_ci_low": test.ci_low, "delta_ci_high": test.ci_high,
                          "p": test.p, "detectable_delta": test.detectable})
        adjusted = holm([row["p"] for row in block])           # across methods, per metric
        rows.extend({**row, "p_holm": p_holm} for row, p_holm in zip(block, adjusted))
    return pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)


def _class_names(record: dict) -> tuple[str, ...]:
    names = record.get("class_names", [])
    scored = record.get("scored_classes", names)
    return tuple(names[c] if isinstance(c, int) and c < len(names) else str(c) for c in scored)


def _class_label(record: dict, key: str) -> str:
    """Per-class entries are keyed by class name; an index written as a string maps to it."""
    names = record.get("class_names", [])
    return names[int(key)] if key.isdigit() and int(key) < len(names) else key


def _per_class(data: SuiteData, dataset: str, methods, key: str) -> pd.DataFrame:
    rows = [(m, _class_label(e.record, str(cls)),
             store_number(v, e.eval_dir / METRICS_FILE, f"per_class[{key!r}][{cls!r}]"))
            for m in methods for e in data.evals_of(dataset, m)
            for cls, v in e.record.get("per_class", {}).get(key, {}).items()]
    frame = pd.DataFrame(rows, columns=["method", "class", "value"])
    return (frame.groupby(["method", "class"], sort=False)["value"]
            .agg(n="count", mean="mean", std="std").reset_index())


def _row_status(statuses: list[str], n: int) -> str:
    if statuses and all(s == "done" for s in statuses):
        return "ok"
    if n:
        return "partial"
    return "failed" if "failed" in statuses else "missing"


def dataset_tables(data: SuiteData, dataset: str) -> DatasetTables:
    methods = data.methods[dataset]
    obs = data.observations
    obs = obs[obs.dataset == dataset] if not obs.empty else obs
    metrics = tuple(ordered_metrics(obs["metric"].unique() if not obs.empty else []))
    evals = data.evals_of(dataset)
    row_n = {m: len(data.evals_of(dataset, m)) for m in methods}
    statuses = {m: [r.status for r in data.runs_of(dataset, m)] for m in methods}
    references: dict[str, list[float]] = {}
    for e in evals:
        for name, v in e.record.get("reference", {}).items():
            if v is not None:
                references.setdefault(name, []).append(
                    store_number(v, e.eval_dir / METRICS_FILE, f"reference[{name!r}]"))
    reference = {k: float(np.mean(v)) for k, v in references.items()}
    per_class_keys = ordered_metrics(k for e in evals for k in e.record.get("per_class", {}))
    provenance = {}
    for e in evals:
        for metric, prov in e.record.get("provenance", {}).items():
            provenance.setdefault(metric, prov)
    return DatasetTables(
        dataset=dataset, baseline=data.baseline, methods=methods, metrics=metrics,
        leaderboard=_leaderboard(obs, methods, data.baseline, metrics, reference), row_n=row_n,
        row_status={m: _row_status(statuses[m], row_n[m]) for m in methods},
        runs_failed={m: statuses[m].count("failed") for m in methods},
        runs_missing={m: statuses[m].count("missing") for m in methods},
        runs_total={m: len(statuses[m]) for m in methods},
        per_class={k: _per_class(data, dataset, methods, k) for k in per_class_keys},
        classes=_class_names(evals[0].record) if evals else (),
        reference=reference,
        provenance={m: provenance[m] for m in ordered_metrics(provenance)},
        claims=dataset_claims(obs, methods, data.baseline))


def csv_frame(tables: list[DatasetTables]) -> pd.DataFrame:
    """One row per (dataset, method variant): dataset, method, n, then per metric WIDE_STATS;
    then per metric WIDE_TEST_STATS (Δ vs the baseline, its level, the detectable Δ); then the
    row status. Column names come from wide_column."""
    metrics = ordered_metrics(m for t in tables for m in t.metrics)
    stat_cols = [wide_column(m, s) for m in metrics for s in WIDE_STATS]
    test_cols = [wide_column(m, s) for m in metrics for s in WIDE_TEST_STATS]
    rows = []
    for t in tables:
        for method in t.methods:
            row = {"dataset": t.dataset, "method": method, "n": t.row_n[method]}
            for metric in t.metrics:
                c = t.cell(method, metric)
                row.update({wide_column(metric, s): c[s] for s in (*WIDE_STATS, *WIDE_TEST_STATS)})
            row.update(status=t.row_status[method], runs_failed=t.runs_failed[method],
                       runs_missing=t.runs_missing[method])
            rows.append(row)
    columns = ["dataset", "method", "n", *stat_cols, *test_cols, "status", "runs_failed",
               "runs_missing"]
    return pd.DataFrame(rows, columns=columns)
