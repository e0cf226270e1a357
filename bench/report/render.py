"""Text forms of the tables: the cell formatting every output shares, markdown, the terminal."""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

from bench.report.collect import RunStatus, SuiteData
from bench.report.stats import (BOOTSTRAP_METHOD, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE,
                                T_METHOD, smallest_wilcoxon_p)
from bench.report.tables import DatasetTables, arrow

REFERENCE_LABEL = "real data (reference)"
PER_CLASS_TITLES = {"expert_recall": "Expert recall per class ↑", "ssim": "SSIM per class ↓"}


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


def delta_parts(t: DatasetTables, method: str, metric: str) -> tuple[str, str]:
    """("+0.029", "p=0.250, 3 pairs"): the paired difference and its Holm-corrected test."""
    if method == t.baseline:
        return "baseline", ""
    c = t.cell(method, metric)
    if c.n == 0:
        return "—", ""
    if t.baseline not in t.methods:
        return "—", f"no {t.baseline} in this data set"
    if c.n_pairs == 0:
        return "—", "no shared seeds"
    return f"{c.delta:+.{metric_places(t, metric)}f}", f"p={fmt_p(c.p_holm)} · {c.n_pairs} pairs"


def delta_cell(t: DatasetTables, method: str, metric: str) -> str:
    main, note = delta_parts(t, method, metric)
    return f"{main} ({note})" if note and main != "—" else main


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
    max_pairs = max((int(lb.n_pairs.max()) for lb in lbs), default=0)
    level = f"{CONFIDENCE:.0%}"
    ci = []
    if T_METHOD in used:
        ci.append(f"a Student-t {level} interval over the observations (cells with one train seed)")
    if BOOTSTRAP_METHOD in used:
        ci.append(f"a two-level percentile bootstrap {level} interval ({BOOTSTRAP_RESAMPLES:,} "
                  f"draws, seed {BOOTSTRAP_SEED}: train seeds resampled, then generation seeds "
                  "within each; cells with several train seeds; with few train seeds it can "
                  "only recombine the models it has, so read it as optimistic)")
    text = (f"One observation = one evaluation: a trained model sampled at one generation seed "
            f"({images}). A cell shows mean ± sample std (ddof 1) over its observations and, in "
            f"brackets, {' or '.join(ci) if ci else 'no interval (fewer than two observations)'}. "
            "N counts observations (n= marks a cell whose N differs from its row's). "
            "Δ = mean paired difference (method − baseline) over observations that share "
            "(train seed, generation seed); p = two-sided Wilcoxon signed-rank test "
            "(scipy.stats.wilcoxon), Holm-corrected across the methods of each metric. "
            "Best mean per metric in bold; ↑ higher is better, ↓ lower is better "
            "(SSIM: lower = more diverse).")
    if max_pairs:
        text += (f" With {max_pairs} pairs the smallest p the exact test can reach is "
                 f"{smallest_wilcoxon_p(max_pairs):.3g}: with few seeds a large p is no "
                 "evidence of equality.")
    return text


def problem_runs(data: SuiteData) -> list[RunStatus]:
    return [r for r in data.runs if r.status != "done"]


_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]|])")


def md_text(text) -> str:
    """Text from the store (names, reasons, paths) as literal markdown on one line: HTML escaped,
    markdown punctuation and table pipes backslash-escaped, line breaks made spaces."""
    one_line = " ".join(str(text).splitlines())
    return _MD_PUNCTUATION.sub(r"\\\1", html.escape(one_line, quote=False))


def _md_row(cells) -> str:
    """cells: ready markdown (store text through md_text)."""
    return "| " + " | ".join(cells) + " |"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_md_row(header), _md_row(["---"] * len(header)), *(_md_row(r) for r in rows)]


def _md_leaderboard(t: DatasetTables) -> list[str]:
    header = ["method", "N"]
    for metric in t.metrics:
        header += [md_text(f"{metric} {arrow(metric)}".strip()), f"Δ {md_text(metric)} (p Holm)"]
    rows = []
    for method in t.methods:
        row = [md_text(method_label(t, method)), str(t.row_n[method])]
        for metric in t.metrics:
            c = metric_cell(t, method, metric)
            main = f"**{c.main}**" if c.bold else c.main  # numbers bench formatted: nothing to escape
            row += [" ".join(x for x in (main, c.ci, f"({c.note})" if c.note else "") if x),
                    delta_cell(t, method, metric)]
        rows.append(row)
    if t.reference:
        rows.append([f"*{REFERENCE_LABEL}*", ""]
                    + [x for m in t.metrics for x in (reference_cell(t, m), "")])
    return _md_table(header, rows)


def _md_per_class(t: DatasetTables, key: str) -> list[str]:
    frame = t.per_class[key]
    if frame.empty:
        return []
    rows, places = [], decimals(frame["mean"])
    for method in t.methods:
        sub = frame[frame.method == method].set_index("class")
        rows.append([md_text(method)] + [f"{fmt(sub.at[c, 'mean'], places)} ± {fmt(sub.at[c, 'std'], places)}"
                                         if c in sub.index else "—" for c in t.classes])
    return [f"### {PER_CLASS_TITLES[key]}", "", *_md_table(["method", *map(md_text, t.classes)], rows), ""]


def markdown(data: SuiteData, tables: list[DatasetTables],
             figures: dict[str, list[tuple[str, str, bytes]]]) -> str:
    """leaderboard.md: the aggregation, one leaderboard per data set, per-class tables,
    links to the figures (dataset -> (title, file name, PNG)), failed/missing runs."""
    lines = [f"# bench report — suite {md_text(data.suite)}", "", aggregation_text(data, tables), ""]
    for t in tables:
        lines += [f"## {md_text(t.dataset)}", "", *_md_leaderboard(t), ""]
        if t.reference:
            lines += ["The reference row holds the same statistic on real test images "
                      "(expert accuracy: the ceiling; SSIM: the real data's diversity).", ""]
        for key in t.per_class:
            lines += _md_per_class(t, key)
        for title, name, _ in figures.get(t.dataset, []):
            lines += [f"![{title}](figures/{name})", ""]
    problems = problem_runs(data)
    lines += ["## Failed and missing runs", ""]
    lines += (_md_table(["dataset", "method", "train seed", "run", "status", "reason"],
                        [[*map(md_text, (r.dataset, r.method, r.train_seed, r.run_id, r.status, r.reason))]
                         for r in problems]) if problems else ["None: every planned run is done."])
    if data.unplanned:
        lines += ["", "## Run folders not in plan.json (not scored)", "",
                  *(f"- {md_text(p.relative_to(data.root))}" for p in data.unplanned)]
    return "\n".join(lines) + "\n"


def print_leaderboard(report, console) -> None:
    """A rich table per data set, then the failed and missing runs."""
    from rich.markup import escape
    from rich.table import Table

    for t in report.tables:
        table = Table(title=escape(f"{report.suite} — {t.dataset}"), show_lines=True)
        table.add_column("method")
        table.add_column("N", justify="right")
        for metric in t.metrics:
            table.add_column(escape(f"{metric} {arrow(metric)}".strip()), justify="right")
        for method in t.methods:
            cells = []
            for metric in t.metrics:
                c = metric_cell(t, method, metric)
                main = f"[bold]{escape(c.main)}[/bold]" if c.bold else escape(c.main)
                extra = [c.ci, c.note, "" if method == t.baseline or t.cell(method, metric).n == 0
                         else "Δ " + delta_cell(t, method, metric)]
                cells.append("\n".join(x for x in (main, *map(escape, extra)) if x))
            table.add_row(escape(method_label(t, method)), str(t.row_n[method]), *cells)
        if t.reference:
            table.add_row(f"[italic]{REFERENCE_LABEL}[/italic]", "",
                          *(reference_cell(t, m) for m in t.metrics))
        console.print(table)
    for r in problem_runs(report.data):
        console.print(f"[red]{r.status}[/red] " + escape(
            f"{r.dataset} {r.method} train seed {r.train_seed} ({r.run_id}): {r.reason}"),
            highlight=False)
