"""What `bench report` leaves in report/: safe markdown, the long observations table, no stale files."""
import json
import re

import pandas as pd

import test_report
from bench.report import build_report
from test_report import METRICS, make_store, value

EVIL_METHOD = "drift:<script>alert(1)</script>|x\n## injected [link](http://evil.example) *em*"
EVIL_CLASS = "<b onmouseover=x>tu|mor\r\nsecond line"


def _rename_class(root, old: str, new: str) -> None:
    for path in root.glob("runs/**/metrics.json"):
        path.write_text(path.read_text().replace(json.dumps(old), json.dumps(new)))


def test_markdown_escapes_html_newlines_and_pipes_in_names(tmp_path, monkeypatch):
    methods = ("baseline", EVIL_METHOD)
    monkeypatch.setattr(test_report, "METHODS", methods)  # value() looks methods up there
    root = make_store(tmp_path, methods=methods)
    _rename_class(root, "tumor", EVIL_CLASS)
    build_report(root, ("md",))
    md = (root / "report" / "leaderboard.md").read_text()
    assert "<script" not in md and "<b " not in md and "&lt;script&gt;" in md and "&lt;b onmouseover" in md
    lines = md.splitlines()
    assert "## injected" not in lines and not any(line.startswith("second line") for line in lines)
    assert r"\[link\](http" in md and r"\*em\*" in md  # shown as typed, neither a link nor emphasis
    for table in re.findall(r"(?:^\|.*\n)+", md, re.M):  # every row of a table has the header's cells
        cells = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(cells) == 1, table


def test_observations_csv_has_one_row_per_evaluation_and_metric(tmp_path):
    root = make_store(tmp_path)
    build_report(root, ("csv",))
    obs = pd.read_csv(root / "report" / "observations.csv")
    assert list(obs.columns) == ["dataset", "method", "run_id", "train_seed", "gen_seed", "metric", "value",
                                 "code_version", "extractor", "n_gen", "n_ref"]
    assert len(obs) == len(test_report.METHODS) * 3 * len(METRICS)
    row = obs[(obs.method == "aligned") & (obs.gen_seed == 2) & (obs.metric == "ssim")].iloc[0]
    assert row.value == value("aligned", 0, 2, "ssim")
    assert (row.run_id, row.code_version, row.extractor, row.n_gen) == (test_report.run_id("aligned", 0),
                                                                        "0.1.0", "none", 20)


def test_formats_not_written_this_time_are_removed(tmp_path):
    root = make_store(tmp_path)
    out = root / "report"
    build_report(root)
    assert {"leaderboard.md", "report.html", "figures", "observations.csv"} <= {p.name for p in out.iterdir()}
    build_report(root, ("csv",))
    assert sorted(p.name for p in out.iterdir()) == ["claims.csv", "leaderboard.csv", "observations.csv"]
    build_report(root, ("html",))
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html"]
