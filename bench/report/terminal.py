"""The report in the terminal, in the layout of leaderboard.md: per data set the headline table and its
legend, the full leaderboard (as many metrics side by side as stay legible), the ceiling, the
detectable Δ and the claims; then the failed and missing runs."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text

from bench.report.claims_table import CLAIMS_TITLE, claims_notes, claims_table
from bench.report.headline import LEGEND, fixed_width, headline_table
from bench.report.render import (DETECTABLE_TITLE, FULL_TITLE, REFERENCE_LABEL, WARNING_LABEL,
                                 ceiling_text, delta_cell, delta_title, detectable_table, method_label,
                                 metric_cell, problem_runs, reference_cell)
from bench.report.tables import DatasetTables, arrow
from bench.report.verdict import warnings_text

CONSOLE_LABEL_WIDTH, CONSOLE_CELL_WIDTH = 24, 22   # characters of the method and N columns; of a metric's cell


def print_leaderboard(report, console) -> None:
    for text in warnings_text(list(report.tables)):
        console.print(Text.assemble((WARNING_LABEL, "bold red"), " ", text), highlight=False)
    per_table = max(1, (console.width - CONSOLE_LABEL_WIDTH) // CONSOLE_CELL_WIDTH)  # metric columns that stay legible
    for t in report.tables:
        console.print(Text(f"{report.suite} — {t.dataset}", style="bold"))
        for line in fixed_width(*headline_table(t)):
            console.print(Text(line), highlight=False, soft_wrap=True)
        console.print(Text(LEGEND, style="dim"), highlight=False)
        for start in range(0, len(t.metrics), per_table):
            console.print(_full_table(t, f"{t.dataset}: {FULL_TITLE}", t.metrics[start:start + per_table]))
        if ceiling := ceiling_text(t):
            console.print(Text(ceiling), highlight=False)
        for title, (header, rows) in ((DETECTABLE_TITLE, detectable_table(t)), (CLAIMS_TITLE, claims_table(t))):
            if rows:
                console.print(_text_table(title, header, rows))
        for line in claims_notes(report.data, t):
            console.print(Text(line), highlight=False)
    for r in problem_runs(report.data):
        console.print(Text.assemble((r.status, "red"),
                                    f" {r.dataset} {r.method} train seed {r.train_seed} ({r.run_id}): {r.reason}"),
                      highlight=False)


def _text_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=Text(title), show_lines=True)
    for column in header:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*map(Text, row))
    return table


def _full_table(t: DatasetTables, title: str, metrics) -> Table:
    """The rich table of `metrics` (a slice of t.metrics) for every method of leaderboard table `t`."""
    table = Table(title=Text(title), show_lines=True)
    table.add_column("method")
    table.add_column("N", justify="right")
    for metric in metrics:
        table.add_column(Text(f"{metric} {arrow(metric)}".strip()), justify="right")
    for method in t.methods:
        cells = []
        for metric in metrics:
            c = metric_cell(t, method, metric)
            extra = [c.ci, c.note, "" if method == t.baseline or t.cell(method, metric).n == 0
                     else f"{delta_title(t, metric)} {delta_cell(t, method, metric)}"]
            lines = [Text(c.main, style="bold" if c.bold else ""), *map(Text, extra)]
            cells.append(Text("\n").join(line for line in lines if line.plain))
        table.add_row(Text(method_label(t, method)), str(t.row_n[method]), *cells)
    if t.reference:
        table.add_row(Text(REFERENCE_LABEL, style="italic"), "", *(reference_cell(t, m) for m in metrics))
    return table
