"""report.html: one self-contained page (inline CSS, base64 PNGs, no external resource)."""
from __future__ import annotations

import base64
import json
from html import escape

from bench.report.collect import VOLATILE_PROVENANCE_KEYS, SuiteData
from bench.report.figures import feature_accuracy
from bench.report.claims_table import CLAIMS_NOTE, CLAIMS_TITLE, claims_notes, claims_table
from bench.report.headline import LEGEND, headline_table
from bench.report.render import (DETECTABLE_TITLE, FULL_TITLE, HOW_TITLE, REFERENCE_LABEL, WARNING_LABEL,
                                 aggregation_text, ceiling_text, decimals, delta_parts, delta_title,
                                 detectable_table, fmt, method_label, metric_cell, per_class_n_row,
                                 per_class_note, per_class_title, per_class_value, problem_runs,
                                 reference_cell, reference_note, split_text)
from bench.report.setup import setup_text
from bench.report.tables import DatasetTables, arrow, csv_frame
from bench.report.verdict import warnings_text

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
 max-width:1500px;padding:0 1.5rem;color:#1d1d1f;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.4rem;border-bottom:2px solid #ddd}
h3{margin-top:1.6rem;font-size:1.05rem}
p.note{color:#444;max-width:1100px}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-variant-numeric:tabular-nums;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:.25rem .45rem;text-align:right;vertical-align:top}
th{white-space:nowrap}
th{background:#f3f4f6;text-align:center}td.label,th.label{text-align:left;white-space:nowrap}
td small,th small{color:#666;display:block;font-size:.8em;font-weight:normal}
td.num{white-space:nowrap}td.delta{color:#333}
td.best{background:#e8f5e9}tr.ref td{font-style:italic;background:#fafafa}
tr.failed td.label,tr.missing td.label,td.status{color:#b3261e}tr.partial td.label{color:#8a5a00}
figure{margin:1rem 0 2rem}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
details{margin:.5rem 0;border:1px solid #ddd;border-radius:4px;padding:.3rem .7rem}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:12px;max-height:40rem}
nav a{margin-right:1rem}div.wide{overflow-x:auto}table.text td{text-align:left}
div.warn{border:2px solid #b3261e;background:#fdecea;padding:.4rem 1rem;margin:1rem 0;max-width:1100px}
table.headline{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre}
div.prov{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:0 1rem}
"""


def _table(header: list[str] | str, rows: list[list[str]],
           row_classes: list[str] | None = None, kind: str = "") -> str:
    """header (cells, or ready <tr>s) and rows hold ready HTML; the first column is the label."""
    head = header if isinstance(header, str) else "<tr>" + "".join(
        f'<th{" class=label" if i == 0 else ""}>{h}</th>' for i, h in enumerate(header)) + "</tr>"
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<table{f' class={kind}' if kind else ''}><thead>{head}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _leaderboard(t: DatasetTables) -> str:
    header = ('<tr><th class=label rowspan=2>method</th><th rowspan=2>N</th>'
              + "".join(f"<th colspan=2>{escape(f'{m} {arrow(m)}'.strip())}</th>" for m in t.metrics)
              + "</tr><tr>" + "".join(f"<th>mean ± std<small>95% CI</small></th><th>"
                                      f"{escape(delta_title(t, m))}<small>95% CI · p (Holm)</small></th>"
                                      for m in t.metrics) + "</tr>")
    rows, classes = [], []
    for method in t.methods:
        row = [f'<td class="label">{escape(method_label(t, method))}</td>', str(t.row_n[method])]
        for metric in t.metrics:
            c = metric_cell(t, method, metric)
            main = f"<b>{escape(c.main)}</b>" if c.bold else escape(c.main)
            extra = "".join(f"<small>{escape(x)}</small>" for x in (c.ci, c.note) if x)
            delta, note = delta_parts(t, method, metric)
            row += [f'<td class="num{" best" if c.bold else ""}">{main}{extra}</td>',
                    f'<td class="num delta">{escape(delta)}'
                    f'{f"<small>{escape(note)}</small>" if note else ""}</td>']
        rows.append(row)
        classes.append("" if t.row_status[method] == "ok" else t.row_status[method])
    if t.reference:
        rows.append([f'<td class="label">{REFERENCE_LABEL}</td>', ""]
                    + [x for m in t.metrics for x in (escape(reference_cell(t, m)), "")])
        classes.append("ref")
    return f'<div class="wide">{_table(header, rows, classes)}</div>'


def _per_class(t: DatasetTables, key: str) -> str:
    frame = t.per_class[key]
    if frame.empty:
        return ""
    rows, places = [], decimals(frame["mean"])
    for method in t.methods:
        sub = frame[frame.method == method].set_index("class")
        rows.append([f'<td class="label">{escape(method)}</td>']
                    + [f"{value}<small>{spread}</small>" if spread else value
                       for value, spread in (per_class_value(sub, c, places) for c in t.classes)])
    if n_row := per_class_n_row(t, key):
        rows.append(['<td class="label">N</td>', *map(escape, n_row)])
    note = f'<p class="note">{escape(text)}</p>' if (text := per_class_note(t, key)) else ""
    return (f"<h3>{escape(per_class_title(key))}</h3>" + note
            + _table(["method", *map(escape, t.classes)], rows))


def _headline(t: DatasetTables) -> str:
    header, rows = headline_table(t)
    return (_table([*map(escape, header)], [[f'<td class="label">{escape(r[0])}</td>', *map(escape, r[1:])]
                                            for r in rows], kind="headline")
            + f"<p class=note>{escape(LEGEND)}</p>")


def _claims(data: SuiteData, t: DatasetTables) -> str:
    header, rows = claims_table(t)
    if not rows:
        return ""
    return (f"<h3>{escape(CLAIMS_TITLE)}</h3><p class=note>{escape(CLAIMS_NOTE)}</p>"
            + _table([*map(escape, header)], [[f'<td class="label">{escape(r[0])}</td>', *map(escape, r[1:])]
                                              for r in rows], kind="text")
            + "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in claims_notes(data, t)) + "</ul>")


def _detectable(t: DatasetTables) -> str:
    header, rows = detectable_table(t)
    if not rows:
        return ""
    return (f"<h3>{escape(DETECTABLE_TITLE)}</h3>"
            + _table([*map(escape, header)],
                     [[f'<td class="label">{escape(r[0])}</td>', *map(escape, r[1:])] for r in rows]))


def _wide_leaderboard(tables: list[DatasetTables]) -> str:
    """leaderboard.csv's table, its column names included (acc[scorer]_mean, ...)."""
    frame = csv_frame(tables)
    rows = [[f'<td class="label">{escape(str(row[0]))}</td>',
             *(escape(fmt(v, 6) if isinstance(v, float) else str(v)) for v in row[1:])]
            for row in frame.itertuples(index=False)]
    return ("<details><summary>The leaderboard as in leaderboard.csv</summary><div class=wide>"
            + _table([*map(escape, frame.columns)], rows) + "</div></details>")


def _figures(items: list[tuple[str, str, bytes]]) -> str:
    return "".join(
        f'<figure><img alt="{escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{escape(title)} '
        f'(<code>figures/{escape(name)}</code>)</figcaption></figure>'
        for title, name, png in items)


def _feature_accuracy(data: SuiteData, t: DatasetTables) -> str:
    """Per method that stores features of real images: nearest-centroid accuracy per noise level."""
    rows = [[f'<td class="label">{escape(method)}</td>', str(e.train_seed), str(int(level)), f"{float(acc):.3f}",
             str(len(arrays["labels"]))]
            for method, e, arrays in feature_accuracy(data, t) for level, acc in zip(arrays["t"], arrays["accuracy"])]
    if not rows:
        return ""
    return ("<h3>Features cluster by class: nearest-centroid accuracy of held-out real images</h3>"
            f"<p class=note>Each held-out real {escape(data.eval_split)} image, noised to level t, is given the class whose "
            "centroid of the method's features phi is nearest (every class competes; the centroids are "
            "the method's sampling targets).</p>"
            + _table(["method", "train seed", "t", "accuracy", "images"], rows))


def _provenance(tables: list[DatasetTables]) -> str:
    parts = []
    for t in tables:
        parts.append(f"<h3>{escape(t.dataset)}</h3><div class=prov>" + "".join(
            f"<div><b>{escape(metric)}</b><pre>"
            f"{escape(json.dumps(prov, indent=2, sort_keys=True, default=str))}</pre></div>"
            for metric, prov in t.provenance.items()) + "</div>")
    ignored = ", ".join(sorted(VOLATILE_PROVENANCE_KEYS))
    return ("<details><summary>Provenance of every metric</summary>"
            "<p class=note>Every evaluation of a data set was checked to share these settings "
            f"and one code version (fields allowed to differ: {escape(ignored)}); the first "
            f"evaluation's record is shown.</p>{''.join(parts) or '<p>No metrics yet.</p>'}"
            "</details>")


def _runs(data: SuiteData) -> str:
    rows = [[f'<td class="label">{escape(r.dataset)}</td>', escape(r.method), str(r.train_seed),
             escape(r.run_id), escape(r.status), escape(r.code_version or "—"),
             f'<td class="label"><code>{escape(str(r.run_dir.relative_to(data.root)))}</code></td>']
            for r in data.runs]
    return ("<details><summary>Every planned run</summary>"
            + _table(["dataset", "method", "train seed", "run", "status", "code version",
                      "folder"], rows, kind="text") + "</details>")


def page(data: SuiteData, tables: list[DatasetTables],
         figures: dict[str, list[tuple[str, str, bytes]]]) -> str:
    """The whole report as one HTML string; figures: dataset -> (title, file name, PNG bytes)."""
    nav = "".join(f'<a href="#ds-{i}">{escape(t.dataset)}</a>' for i, t in enumerate(tables))
    body = [f"<h1>bench report — suite <code>{escape(data.suite)}</code></h1>",
            f"<p class=note><b>{escape(split_text(data))}</b></p>",
            f"<nav>{nav}<a href=\"#problems\">failed/missing runs</a>"
            "<a href=\"#provenance\">provenance</a></nav>",
            *(f"<div class=warn><p><b>{escape(WARNING_LABEL)}</b> {escape(text)}</p></div>"
              for text in warnings_text(tables))]
    for i, t in enumerate(tables):
        body += [f'<h2 id="ds-{i}">{escape(t.dataset)}</h2>', _headline(t),
                 f"<h3>{escape(FULL_TITLE)}</h3>", _leaderboard(t)]
        if t.reference:
            body.append(f"<p class=note>{escape(reference_note(data))}</p>")
        if ceiling := ceiling_text(t):
            body.append(f"<p class=note>{escape(ceiling)}</p>")
        body += [_detectable(t), _claims(data, t)]
        body += [_per_class(t, key) for key in t.per_class]
        body.append(_feature_accuracy(data, t))
        body.append(_figures(figures.get(t.dataset, [])))
    body += [f"<h2>{escape(HOW_TITLE)}</h2>", f"<p class=note>{escape(aggregation_text(data, tables))}</p>",
             f"<p class=note>{escape(setup_text(data))}</p>"]
    problems = problem_runs(data)
    body.append('<h2 id="problems">Failed and missing runs</h2>')
    body.append(_table(["dataset", "method", "train seed", "run", "status", "reason"],
                       [[f'<td class="label">{escape(r.dataset)}</td>', escape(r.method),
                         str(r.train_seed), escape(r.run_id),
                         f'<td class="status">{escape(r.status)}</td>',
                         f'<td class="label">{escape(r.reason)}</td>'] for r in problems],
                       kind="text")
                if problems else "<p>None: every planned run is done.</p>")
    if data.unplanned:
        body.append("<h3>Run folders not in plan.json (not scored)</h3><ul>" + "".join(
            f"<li><code>{escape(str(p.relative_to(data.root)))}</code></li>"
            for p in data.unplanned) + "</ul>")
    body.append(_wide_leaderboard(tables))
    body += ['<h2 id="provenance">Provenance</h2>', _provenance(tables), _runs(data),
             "<details><summary>Resolved configuration (plan.json)</summary><pre>"
             + escape(json.dumps(data.plan.get("config", {}), indent=2, sort_keys=True,
                                 default=str)) + "</pre></details>"]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>bench report — {escape(data.suite)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
