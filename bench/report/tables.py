"""The report's tables as data: leaderboard cells, per-class tables, references, the CSV frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.collect import SuiteData
from bench.report.stats import holm, paired_test, summarize

# Which way is better: expert accuracy up; SSIM down (more diverse); FID/KID down.
_DIRECTIONS = (("expert_acc", 1), ("ssim", -1), ("fid", -1), ("kid", -1))
PER_CLASS_KEYS = ("expert_recall", "ssim")

LEADERBOARD_COLUMNS = ["method", "metric", "n", "n_train_seeds", "mean", "std", "ci_low",
                       "ci_high", "ci_method", "n_pairs", "delta", "p", "p_holm"]


def direction(metric: str) -> int:
    """+1 higher is better, -1 lower is better, 0 unknown (no arrow, no bold)."""
    family = metric.split("[", 1)[0]
    return next((d for name, d in _DIRECTIONS if family == name), 0)


def arrow(metric: str) -> str:
    return {1: "↑", -1: "↓"}.get(direction(metric), "")


def ordered_metrics(names) -> list[str]:
    """The design's column order (expert_acc, ssim, fid[...], kid[...]), unknown ones last."""
    families = [name for name, _ in _DIRECTIONS]

    def key(metric: str):
        family = metric.split("[", 1)[0]
        return (families.index(family) if family in families else len(families), metric)

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
    per_class: dict[str, pd.DataFrame]  # key -> rows method, class, n, mean, std
    classes: tuple[str, ...]          # scored classes in label order
    reference: dict[str, float]       # the same statistics on real test images
    provenance: dict[str, dict]       # metric -> provenance of its first evaluation

    def cell(self, method: str, metric: str) -> pd.Series:
        lb = self.leaderboard
        return lb[(lb.method == method) & (lb.metric == metric)].iloc[0]

    def best(self, metric: str) -> set[str]:
        """Methods with the best mean (ties all win); empty when the metric has no direction."""
        sign = direction(metric)
        lb = self.leaderboard[(self.leaderboard.metric == metric) & (self.leaderboard.n > 0)]
        if not sign or lb.empty:
            return set()
        best = (sign * lb["mean"]).max()
        return set(lb.loc[np.isclose(sign * lb["mean"], best, rtol=1e-12, atol=0), "method"])


def _leaderboard(obs: pd.DataFrame, methods: tuple[str, ...], baseline: str,
                 metrics: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for metric in metrics:
        m_obs = obs[obs.metric == metric]
        keyed = {m: {(int(t), int(g)): v for t, g, v in
                     m_obs.loc[m_obs.method == m, ["train_seed", "gen_seed", "value"]].itertuples(
                         index=False)} for m in methods}
        block = []
        for method in methods:
            cell = m_obs[m_obs.method == method]
            s = summarize({int(k): g["value"].to_numpy() for k, g in cell.groupby("train_seed")})
            test = (paired_test(keyed[method], keyed[baseline])
                    if method != baseline and baseline in keyed else None)
            block.append([method, metric, s.n, s.n_train_seeds, s.mean, s.std, s.ci_low,
                          s.ci_high, s.ci_method, test.n_pairs if test else 0,
                          test.delta if test else np.nan, test.p if test else np.nan, np.nan])
        adjusted = holm([row[11] for row in block])           # across methods, per metric
        for row, p_holm in zip(block, adjusted):
            row[12] = p_holm
        rows.extend(block)
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
    rows = [(m, _class_label(e.record, str(cls)), float(v))
            for m in methods for e in data.evals_of(dataset, m)
            for cls, v in e.record.get("per_class", {}).get(key, {}).items() if v is not None]
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
                references.setdefault(name, []).append(float(v))
    provenance = {}
    for e in evals:
        for metric, prov in e.record.get("provenance", {}).items():
            provenance.setdefault(metric, prov)
    return DatasetTables(
        dataset=dataset, baseline=data.baseline, methods=methods, metrics=metrics,
        leaderboard=_leaderboard(obs, methods, data.baseline, metrics), row_n=row_n,
        row_status={m: _row_status(statuses[m], row_n[m]) for m in methods},
        runs_failed={m: statuses[m].count("failed") for m in methods},
        runs_missing={m: statuses[m].count("missing") for m in methods},
        runs_total={m: len(statuses[m]) for m in methods},
        per_class={k: _per_class(data, dataset, methods, k) for k in PER_CLASS_KEYS},
        classes=_class_names(evals[0].record) if evals else (),
        reference={k: float(np.mean(v)) for k, v in references.items()},
        provenance={m: provenance[m] for m in ordered_metrics(provenance)})


def csv_frame(tables: list[DatasetTables]) -> pd.DataFrame:
    """One row per (dataset, method variant): dataset, method, n, then per metric mean, std,
    ci_low, ci_high; then per metric delta, p, p_holm (vs the baseline); then the row status."""
    metrics = ordered_metrics(m for t in tables for m in t.metrics)
    stat_cols = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci_low", "ci_high")]
    test_cols = [f"{m}_{s}" for m in metrics for s in ("delta", "p", "p_holm")]
    rows = []
    for t in tables:
        for method in t.methods:
            row = {"dataset": t.dataset, "method": method, "n": t.row_n[method]}
            for metric in t.metrics:
                c = t.cell(method, metric)
                for s in ("mean", "std", "ci_low", "ci_high", "delta", "p", "p_holm"):
                    row[f"{metric}_{s}"] = c[s]
            row.update(status=t.row_status[method], runs_failed=t.runs_failed[method],
                       runs_missing=t.runs_missing[method])
            rows.append(row)
    columns = ["dataset", "method", "n", *stat_cols, *test_cols, "status", "runs_failed",
               "runs_missing"]
    return pd.DataFrame(rows, columns=columns)
