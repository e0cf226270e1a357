"""`bench report`: rebuild the leaderboards, tables and figures of the suites in a store."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import PLAN_FILE, SuiteStore, folder_split

console = make_console()


def report(
    results: Path = typer.Option(Path("results"), help="results store"),
    suite: Optional[str] = typer.Option(None, help="suite name (default: every suite in the store)"),
    format: Optional[str] = typer.Option(None, help="md | csv | html (default: all three)"),
    eval_split: Optional[str] = typer.Option(None, help="test | val: the suite scored on that split "
                                             "(default: test with --suite, else every suite)"),
    plugin: list[str] = typer.Option([], help="a .py file or module whose metrics (their directions) and "
                                     "methods the report should know, as given to bench run"),
):
    """Rebuild the leaderboards, tables and figures from the store."""
    # the report's figures load matplotlib and torch when the verb runs, not for `bench --help`
    from bench.config import check_value
    from bench.methods import load_plugins
    from bench.report import build_report, print_leaderboard

    load_plugins(plugin)

    formats = ("md", "csv", "html") if format is None else (format,)
    if any(f not in ("md", "csv", "html") for f in formats):
        raise BenchError(f"unknown --format {format!r}; use md, csv or html")
    if eval_split is not None:
        check_value("suite", "eval_split", eval_split, "--eval-split")
    if suite:
        roots = [SuiteStore.of(results, suite, eval_split or "test").root]
    else:
        roots = sorted(p.parent for p in results.glob(f"*/{PLAN_FILE}")
                       if eval_split in (None, folder_split(p.parent.name)))
    if not roots or not all((r / PLAN_FILE).exists() for r in roots):
        raise BenchError(f"no suite results under {results}; run `bench run` first or pass --results DIR")
    for root in roots:
        rep = build_report(root, formats)
        print_leaderboard(rep, console)
        console.print(f"report written to {root / 'report'}", soft_wrap=True)
