"""`bench methods` and `bench check-method`: the registered methods; a plug-in's conformance checks."""
from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.table import Table

from bench.core.console import make_console

console = make_console()


def methods(plugin: list[str] = typer.Option([], help="also load these plug-ins")):
    """List every registered method with its parameters, defaults and paper."""
    # bench.methods loads torch and diffusers: imported when a verb runs, not for `bench --help`
    from bench.methods import load_plugins, method_table
    load_plugins(plugin)
    table = Table("method", "parameters (defaults)", "paper")
    for row in method_table():
        params = "\n".join(f"{k} = {v!r}" for k, v in row["params"]) or "-"
        table.add_row(row["name"], params, row["paper"])
    console.print(table)


def check_method(plugin: str = typer.Argument(..., help="a .py file (or module) defining methods")):
    """Run the conformance checks (bench.testing) on every method a plug-in defines, at its defaults."""
    # bench.methods loads torch and diffusers: imported when a verb runs, not for `bench --help`
    from bench.methods import canonical
    from bench.testing import plugin_methods, run_checks

    variants = [canonical(name) for name in plugin_methods(plugin)]  # bad input: BenchError, exit 2
    results = []
    for variant in variants:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as workdir:
            for check, problem in run_checks(variant, Path(workdir)):
                typer.echo(f"pass {variant}: {check}" if problem is None
                           else f"FAIL {variant}: {check}: {problem}")
                results.append(problem is None)
    typer.echo(f"{sum(results)} of {len(results)} checks passed")
    raise typer.Exit(0 if all(results) else 1)
