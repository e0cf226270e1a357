"""The report: leaderboards with uncertainty and paired tests, per-class tables, figures.

build_report(suite_root, formats) rebuilds suite_root/report/ from the store;
print_leaderboard(report, console) shows the leaderboards in the terminal.
"""
from bench.report.build import FORMATS, Report, build_report
from bench.report.terminal import print_leaderboard

__all__ = ["FORMATS", "Report", "build_report", "print_leaderboard"]
