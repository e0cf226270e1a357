"""The `bench` command line (a contract: see DESIGN.md "Command line and outputs").

Exit codes: 0 all done; 1 the grid finished but some runs FAILED; 2 bad input or usage.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark conditioning methods for diffusion models on medical images.")
console = Console()
err_console = Console(stderr=True)
VERSIONED_LIBRARIES = ("torch", "diffusers", "torch-fidelity", "ray")  # what a result's numbers depend on


def _print_versions(requested: bool) -> None:
    """`bench --version`: read from package metadata, so nothing heavy is imported."""
    if not requested:
        return
    from importlib.metadata import PackageNotFoundError, version
    from bench import __version__

    typer.echo(f"bench {__version__}")
    for name in VERSIONED_LIBRARIES:
        try:
            typer.echo(f"{name} {version(name)}")
        except PackageNotFoundError:
            typer.echo(f"{name} not installed")
    raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_versions,
                                          help="print the versions of bench and its main libraries")):
    pass


def _load_plugins(plugins: list[str]) -> None:
    from bench.methods import load_entry_points, load_plugin
    load_entry_points()
    for spec in plugins:
        load_plugin(spec)


@app.command()
def run(
    config: Path = typer.Option(Path("bench.toml"), help="suite config (TOML)"),
    methods: Optional[str] = typer.Option(None, help="comma-separated method variants, e.g. baseline,drift:delta=-0.05"),
    seeds: Optional[int] = typer.Option(None, help="generation seeds 0..N-1 per trained model"),
    train_seeds: Optional[int] = typer.Option(None, help="independently trained models per variant"),
    dataset: Optional[str] = typer.Option(None, help="data set: a name, folder:PATH, npz:PATH (or a bare path)"),
    preset: Optional[str] = typer.Option(None, help="named overrides (bench/presets.py): tiny, a paper's regime, ..."),
    executor: Optional[str] = typer.Option(None, help="ray | local"),
    address: Optional[str] = typer.Option(None, help="join a Ray cluster: auto | ray://host:port"),
    results: Path = typer.Option(Path("results"), help="results store"),
    plugin: list[str] = typer.Option([], help="a .py file or module defining ConditioningMethod subclasses"),
    eval_split: Optional[str] = typer.Option(None, help="real split to score against: test | val (val: a suite "
                                             "of its own, for choosing settings without the test split)"),
):
    """Train and evaluate every method variant of the suite; re-running resumes."""
    from bench.config import check_value, load_config
    from bench.datasets import parse_spec
    from bench.plan import build_plan
    from bench.runner import run_suite

    _load_plugins(plugin)
    overrides: dict = {}
    if methods is not None:
        # A variant's parameters are comma-separated too: split only before a new method name.
        overrides.setdefault("suite", {})["methods"] = _split_methods(methods)
    if seeds is not None:
        overrides.setdefault("suite", {})["seeds"] = seeds
    if train_seeds is not None:
        overrides.setdefault("suite", {})["train_seeds"] = train_seeds
    if dataset is not None:  # any data-set spec; a bare path becomes folder:PATH or npz:PATH
        spec = parse_spec(dataset)
        overrides.setdefault("data", {})["name"] = spec.name
        if spec.root:  # the Kather zip given as a path
            overrides["data"]["root"] = spec.root
    if eval_split is not None:
        overrides.setdefault("suite", {})["eval_split"] = check_value("suite", "eval_split", eval_split, "--eval-split")
    if executor is not None:
        overrides.setdefault("execution", {})["executor"] = executor
    if address is not None:
        overrides.setdefault("execution", {})["address"] = address
    cfg = load_config(config, preset, overrides)
    build_plan(cfg)  # every variant validated before anything is written
    summary = run_suite(cfg, results.resolve(), err_console)
    console.print(f"[bold]{summary.root}[/]: {summary.trained} trained, {summary.evaluated} evaluated"
                  + (", nothing to do (all finished)" if summary.skipped else ""))
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} failed:[/]")
        for line in summary.failed:
            console.print(f"  {line}", markup=False)
        raise typer.Exit(1)


def _split_methods(text: str) -> list[str]:
    """`baseline,drift:delta=0.1,target=shifted,ssl` -> three variants: a piece holding '=' but no
    ':' continues the previous variant's parameters."""
    out: list[str] = []
    for piece in filter(None, (p.strip() for p in text.split(","))):
        if "=" in piece and ":" not in piece and out:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


@app.command()
def pretrain(
    config: Path = typer.Option(Path("bench.toml"), help="suite config (TOML): its pretrain, data and model sections"),
    preset: Optional[str] = typer.Option(None, help="named overrides (bench/presets.py): tiny, a paper's regime, ..."),
    results: Path = typer.Option(Path("results"), help="results store (the artefact goes to the suite's cache)"),
):
    """Train the suite's unconditional pretrain backbone once (cached in the suite's cache) and print its folder."""
    from bench.config import load_config
    from bench.pretrain import check_source, pretrain_backbone
    from bench.store import SuiteStore

    cfg = load_config(config, preset)
    check_source(cfg)
    store = SuiteStore.of(results.resolve(), cfg.suite.name, cfg.suite.eval_split)
    typer.echo(pretrain_backbone(cfg, store.cache))


@app.command()
def report(
    results: Path = typer.Option(Path("results"), help="results store"),
    suite: Optional[str] = typer.Option(None, help="suite name (default: every suite in the store)"),
    format: Optional[str] = typer.Option(None, help="md | csv | html (default: all three)"),
    eval_split: Optional[str] = typer.Option(None, help="test | val: the suite scored on that split "
                                             "(default: test with --suite, else every suite)"),
):
    """Rebuild the leaderboards, tables and figures from the store."""
    from bench.config import check_value
    from bench.report import build_report, print_leaderboard
    from bench.store import SuiteStore, folder_split

    formats = ("md", "csv", "html") if format is None else (format,)
    if any(f not in ("md", "csv", "html") for f in formats):
        raise BenchError(f"unknown --format {format!r}; use md, csv or html")
    if eval_split is not None:
        check_value("suite", "eval_split", eval_split, "--eval-split")
    if suite:
        roots = [SuiteStore.of(results, suite, eval_split or "test").root]
    else:
        roots = sorted(p.parent for p in results.glob("*/plan.json")
                       if eval_split in (None, folder_split(p.parent.name)))
    if not roots or not all((r / "plan.json").exists() for r in roots):
        raise BenchError(f"no suite results under {results}; run `bench run` first or pass --results DIR")
    for root in roots:
        rep = build_report(root, formats)
        print_leaderboard(rep, console)
        console.print(f"report written to {root / 'report'}")


@app.command(name="methods")
def methods_cmd(plugin: list[str] = typer.Option([], help="also load these plug-ins")):
    """List every registered method with its parameters, defaults and paper."""
    from rich.table import Table
    from bench.methods import method_table

    _load_plugins(plugin)
    table = Table("method", "parameters (defaults)", "paper")
    for row in method_table():
        params = "\n".join(f"{k} = {v!r}" for k, v in row["params"]) or "-"
        table.add_row(row["name"], params, row["paper"])
    console.print(table)


@app.command(name="check-method")
def check_method(plugin: str = typer.Argument(..., help="a .py file (or module) defining methods")):
    """Run the conformance checks (bench.testing) on every method a plug-in defines, at its defaults."""
    import tempfile

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


def _register_subcommands() -> None:
    from bench.data_cli import data_app
    from bench.eval_cli import eval_command
    from bench.export import export_command
    app.add_typer(data_app, name="data", help="list, verify and fetch data sets")
    app.command(name="eval")(eval_command)
    app.command(name="export")(export_command)


_register_subcommands()


def main() -> None:
    try:
        app(standalone_mode=True)
    except BenchError as err:
        _bad_input(str(err))
    except OSError as err:  # a read-only store, a file where a folder belongs: name the path
        if err.filename is None:
            raise
        _bad_input(f"{err.strerror or err}: {err.filename}; fix that path or its permissions")


def _bad_input(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
