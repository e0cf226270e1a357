"""leaderboard.md: the report as markdown, in the layout every format shares (see `markdown`)."""
from __future__ import annotations

import html
import re

from bench.report.claims_table import CLAIMS_NOTE, CLAIMS_TITLE, claims_notes, claims_table
from bench.report.collect import SuiteData
from bench.report.headline import LEGEND, fixed_width, headline_table
from bench.report.render import (DETECTABLE_TITLE, FULL_TITLE, HOW_TITLE, REFERENCE_LABEL, WARNING_LABEL,
                                 aggregation_text, ceiling_text, decimals, delta_cell, delta_title,
                                 detectable_table, method_label, metric_cell, per_class_n_row,
                                 per_class_note, per_class_title, per_class_value, problem_runs,
                                 reference_cell, reference_note, split_text)
from bench.report.setup import setup_text
from bench.report.tables import DatasetTables, arrow
from bench.report.verdict import warnings_text

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
        header += [md_text(f"{metric} {arrow(metric)}".strip()),
                   f"{md_text(delta_title(t, metric))} [CI] (p Holm)"]
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
        rows.append([md_text(method)] + [" ".join(x for x in per_class_value(sub, c, places) if x)
                                         for c in t.classes])
    if n_row := per_class_n_row(t, key):
        rows.append(["*N*", *n_row])
    note = [md_text(text), ""] if (text := per_class_note(t, key)) else []
    return [f"### {md_text(per_class_title(key))}", "", *note,
            *_md_table(["method", *map(md_text, t.classes)], rows), ""]


def _code_text(text: str) -> str:
    """Store text inside a code block: HTML escaped (a renderer that reads HTML there runs nothing)."""
    return html.escape(text, quote=False)


def _code_block(lines: list[str]) -> list[str]:
    """A fenced block longer than any run of backticks in `lines` (store text: method names)."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def _md_claims(data: SuiteData, t: DatasetTables) -> list[str]:
    header, rows = claims_table(t)
    if not rows:
        return []
    return [f"### {CLAIMS_TITLE}", "", md_text(CLAIMS_NOTE), "",
            *_md_table([*map(md_text, header)], [[*map(md_text, r)] for r in rows]), "",
            *(f"- {md_text(line)}" for line in claims_notes(data, t)), ""]


def markdown(data: SuiteData, tables: list[DatasetTables],
             figures: dict[str, list[tuple[str, str, bytes]]]) -> str:
    """leaderboard.md: per data set the headline table (fixed width, for a person) and its legend, the
    full leaderboard, the detectable Δ, the claims, per-class tables, the figures (dataset -> (title,
    file name, PNG)); then how every number was computed, and the failed/missing runs."""
    lines = [f"# bench report — suite {md_text(data.suite)}", "", f"**{md_text(split_text(data))}**", ""]
    lines += [x for text in warnings_text(tables) for x in (f"> **{WARNING_LABEL}** {md_text(text)}", "")]
    for t in tables:
        lines += [f"## {md_text(t.dataset)}", "", *_code_block(fixed_width(*headline_table(t, _code_text))), "",
                  md_text(LEGEND), "", f"### {FULL_TITLE}", "", *_md_leaderboard(t), ""]
        if t.reference:
            lines += [reference_note(data), ""]
        if ceiling := ceiling_text(t):
            lines += [md_text(ceiling), ""]
        header, rows = detectable_table(t)
        if rows:
            lines += [f"### {DETECTABLE_TITLE}", "",
                      *_md_table([*map(md_text, header)], [[*map(md_text, r)] for r in rows]), ""]
        lines += _md_claims(data, t)
        for key in t.per_class:
            lines += _md_per_class(t, key)
        for title, name, _ in figures.get(t.dataset, []):
            lines += [f"![{title}](figures/{name})", ""]
    lines += [f"## {HOW_TITLE}", "", aggregation_text(data, tables), "", md_text(setup_text(data)), ""]
    problems = problem_runs(data)
    lines += ["## Failed and missing runs", ""]
    lines += (_md_table(["dataset", "method", "train seed", "run", "status", "reason"],
                        [[*map(md_text, (r.dataset, r.method, r.train_seed, r.run_id, r.status, r.reason))]
                         for r in problems]) if problems else ["None: every planned run is done."])
    if data.unplanned:
        lines += ["", "## Run folders not in plan.json (not scored)", "",
                  *(f"- {md_text(p.relative_to(data.root))}" for p in data.unplanned)]
    return "\n".join(lines) + "\n"
