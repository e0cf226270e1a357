"""The `bench` command line (a contract: see DESIGN.md "Command line and outputs"): one module per group of
verbs, put together here.

Exit codes: 0 all done; 1 the grid finished but some runs FAILED; 2 bad input or usage.
"""
from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import typer

from bench import __version__
from bench.cli import data, eval, export, large, methods, report, run
from bench.core.console import make_console
from bench.core.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark conditioning methods for diffusion models on medical images.")
err_console = make_console(stderr=True)
VERSIONED_LIBRARIES = ("torch", "diffusers", "torch-fidelity", "ray")  # what a result's numbers depend on


def _print_versions(requested: bool) -> None:
    """`bench --version`: read from package metadata, so nothing heavy is imported."""
    if not requested:
        return
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


def _register_verbs() -> None:
    for name, verb in (("run", run.run), ("pretrain", run.pretrain), ("report", report.report),
                       ("methods", methods.methods), ("check-method", methods.check_method)):
        app.command(name=name)(verb)
    app.add_typer(data.data_app, name="data", help="list, verify and fetch data sets")
    app.command(name="eval")(eval.eval_command)
    app.command(name="export")(export.export_command)
    app.command(name="sample-large")(large.sample_large_command)


_register_verbs()


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
    err_console.print(f"error: {message}", highlight=False, soft_wrap=True)
    sys.exit(2)

