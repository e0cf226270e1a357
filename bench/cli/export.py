"""`bench export RUN_DIR OUT`: a finished run as a diffusers-format folder (bench/engine/export.py)."""
from __future__ import annotations

from pathlib import Path

import typer

from bench.core.store import RUN_LAYOUT


def export_command(
    run_dir: Path = typer.Argument(..., help=f"a finished run folder: {RUN_LAYOUT}"),
    out: Path = typer.Argument(..., help="the folder to write (must not exist, or be empty)"),
    plugin: list[str] = typer.Option([], help="a .py file or module defining the run's method, if a plug-in"),
):
    """Export a finished run as a diffusers-format folder that bench.pipeline.BenchPipeline samples."""
    # torch and diffusers: imported when the verb runs, not for `bench --help`
    from bench.engine.export import export_run
    from bench.methods import load_plugins
    load_plugins(plugin)
    typer.echo(f"exported {run_dir} to {export_run(run_dir, out)}")
