"""`bench data list | verify NAME_OR_PATH | fetch NAME` (mounted by bench.cli as `data`).

Errors are BenchError; the main CLI prints them on one line and exits with code 2.
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bench.core.console import make_console
from bench.datasets import PROCEDURAL, DataConfig, PreparedData, load_prepared, parse_spec
from bench.datasets.fetch import fetch
from bench.datasets.manifest import KNOWN, data_dir
from bench.datasets.npz import read_npz

data_app = typer.Typer(help="List, check and download data sets.", no_args_is_help=True)
console = make_console()

ROOT_HELP = "data dir (default: $BENCH_DATA or ~/.cache/bench/data)"


@data_app.command("list")
def list_sets(root: str = typer.Option("", help=ROOT_HELP)) -> None:
    """Known data sets, their licence and whether a copy is in the data dir."""
    table = Table(title=f"data sets (data dir: {data_dir(root)})")
    for col in ("name", "size", "classes", "images", "licence", "local copy"):
        table.add_column(col)
    table.add_row("synth-tissue", "any", "8", "unlimited", "generated", "embedded")
    table.add_row("synth-tissue-ihc", "any", "8", "unlimited", "generated", "embedded")
    for name, ks in KNOWN.items():
        path = data_dir(root) / ks.file.filename
        table.add_row(name, f"{ks.image_size}px", str(len(ks.class_names)),
                      str(sum(ks.counts.values())), ks.licence,
                      "present" if path.is_file() else "missing")
    table.add_row("folder:PATH", "any", "sub-folders", "", "yours", "")
    table.add_row("npz:PATH", "any", "labels", "", "yours", "")
    console.print(table)


def _config_for(target: str, root: str) -> DataConfig:
    """A DataConfig that loads `target` (any data-set spec) at its native size with nothing excluded."""
    spec = parse_spec(target)
    if spec.kind in PROCEDURAL:
        return DataConfig(name=spec.name, train_per_class=2, val_per_class=1, test_per_class=1,
                          exclude_classes=())
    if spec.kind == "kather2016":
        return DataConfig(name=spec.name, image_size=KNOWN["kather2016"].image_size, exclude_classes=(),
                          root=spec.root or root)
    if spec.kind == "medmnist":
        return DataConfig(name=spec.name, image_size=KNOWN[spec.name].image_size, exclude_classes=(),
                          root=root)
    if spec.kind == "npz":
        return DataConfig(name=spec.name, image_size=_npz_side(Path(spec.path).expanduser()),
                          exclude_classes=())
    return DataConfig(name=spec.name, image_size=64, exclude_classes=())


def _npz_side(path: Path) -> int:
    pairs, _, _ = read_npz(path)
    return int(next(iter(pairs.values()))[0].shape[1])


@data_app.command("verify")
def verify(target: str = typer.Argument(..., help="a data set: a known name, folder:PATH, npz:PATH, "
                                                         "or a .zip/.npz/folder path"),
           root: str = typer.Option("", help=ROOT_HELP)) -> None:
    """Load a data set fully (checksums, layout, every image) and summarise it."""
    data: PreparedData = load_prepared(_config_for(target, root))
    counts = ", ".join(f"{s} {len(data.split(s)[1])}" for s in ("train", "val", "test"))
    console.print(f"OK {data.name}: {data.num_classes} classes, {counts}, "
                  f"{data.image_size}px x{data.channels}", soft_wrap=True)  # one line, whatever the path's length
    for key in ("converted", "center_cropped", "resized", "checksum"):
        if key in data.meta:
            console.print(f"  {key}: {data.meta[key]}", soft_wrap=True)


@data_app.command("fetch")
def fetch_cmd(name: str = typer.Argument(..., help="a known data set name (see `bench data list`)"),
              root: str = typer.Option("", help=ROOT_HELP),
              quiet: bool = typer.Option(False, help="no progress bar")) -> None:
    """Download a known data set (resumable, checksum-verified); BENCH_DATA_URL overrides the URL."""
    if name in PROCEDURAL:
        console.print(f"{name} is generated on the fly; nothing to fetch")
        return
    path = fetch(name, root, show_progress=not quiet)
    console.print(f"OK {name}: {path}", soft_wrap=True)
