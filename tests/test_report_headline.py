"""The headline table: at most 120 characters a line in every format, long plug-in names shortened,
a significance mark per Δ."""
import re

import pytest

import test_report
from bench.core.console import make_console
from bench.report import build_report, print_leaderboard
from bench.report.headline import (SAMPLER_ONLY, SIGNIFICANT, WIDTH, fixed_width, headline_table,
                                   shorten)
from test_report import make_store

LONG = ("a-third-party-plugin-method-with-a-very-long-name:alpha=0.5,beta=2",
        "a-third-party-plugin-method-with-a-very-long-name:alpha=0.5,beta=3")
HEADLINE = ["acc[scorer]", "fid[scorer]", "ssim", "tstr_acc", "copy_rate"]


@pytest.fixture
def long_names(monkeypatch):
    methods = ("baseline", *LONG)
    monkeypatch.setattr(test_report, "METHODS", methods)     # value() looks methods up there
    monkeypatch.setattr(test_report, "METRICS", [*test_report.METRICS, "tstr_acc", "copy_rate"])
    return methods


def _headline_block(md: str) -> list[str]:
    return re.search(r"^```\n(.*?)\n```$", md, re.M | re.S).group(1).splitlines()


def test_the_headline_fits_120_characters_in_every_format_with_long_plugin_names(tmp_path, long_names):
    root = make_store(tmp_path, methods=long_names, train_seeds=(0, 1))
    report = build_report(root)
    t = report.tables[0]
    header, rows = headline_table(t)
    assert header[:2] == ["method", "N"] and [h.split()[0] for h in header[2:]] == HEADLINE
    lines = fixed_width(header, rows)
    assert max(map(len, lines)) <= WIDTH
    names = [r[0] for r in rows]
    assert names[0] == "baseline" and names[1] != names[2] and all("…" in n for n in names[1:])
    assert names[1].endswith("beta=2") and names[2].endswith("beta=3")    # the parameters stay visible
    assert [r[1] for r in rows] == ["2", "2", "2"]                          # trained models
    assert _headline_block((root / "report" / "leaderboard.md").read_text()) == lines
    console = make_console(record=True, width=200)
    print_leaderboard(report, console)
    shown = console.export_text().splitlines()
    assert all(line in shown for line in lines)
    html = (root / "report" / "report.html").read_text()
    assert all(f">{name}<" in html for name in names)


def test_marks_say_significant_sampler_only_or_nothing(tmp_path, long_names):
    rows = headline_table(build_report(make_store(tmp_path, methods=long_names), ("csv",)).tables[0])[1]
    assert all(cell.endswith(SAMPLER_ONLY) for row in rows[1:] for cell in row[2:])   # one trained model
    assert not any(SAMPLER_ONLY in cell or SIGNIFICANT in cell for cell in rows[0][2:])   # the baseline


def test_shorten_keeps_both_ends():
    assert shorten("short", 10) == "short"
    assert shorten("abcdefghijkl", 7) == "abc…jkl" and len(shorten("x" * 50, 12)) == 12


def test_a_significant_model_level_delta_is_starred(tmp_path):
    # fgscore sits 0.15 above the baseline on every trained model: the exact test's smallest p, 2/2**6
    root = make_store(tmp_path, methods=("baseline", "fgscore"), train_seeds=tuple(range(6)), gen_seeds=(0,))
    rows = headline_table(build_report(root, ("csv",)).tables[0])[1]
    assert rows[1][1] == "6" and rows[1][2].endswith(SIGNIFICANT) and "+0.15" in rows[1][2]
