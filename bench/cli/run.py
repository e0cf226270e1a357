"""`bench run` and `bench pretrain`: train and evaluate a suite; train its pretrain backbone."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import SuiteStore
from bench.datasets import parse_spec

console = make_console()
err_console = make_console(stderr=True)


def run(
    config: Optional[Path] = typer.Option(None, help="suite config (TOML); default: ./bench.toml if there is "
                                          "one, else the default suite (bench/config/default_suite.toml)"),
    methods: Optional[str] = typer.Option(None, help="comma-separated method variants, e.g. baseline,drift:delta=-0.05"),
    seeds: Optional[int] = typer.Option(None, help="generation seeds 0..N-1 per trained model"),
    train_seeds: Optional[int] = typer.Option(None, help="independently trained models per variant"),
    dataset: Optional[str] = typer.Option(None, help="data set: a name, folder:PATH, npz:PATH (or a bare path)"),
    preset: Optional[str] = typer.Option(None, help="named overrides (bench/config/presets.py): tiny, a paper's regime, ..."),
    executor: Optional[str] = typer.Option(None, help="ray | local"),
    address: Optional[str] = typer.Option(None, help="join a Ray cluster: auto | ray://host:port"),
    results: Path = typer.Option(Path("results"), help="results store"),
    plugin: list[str] = typer.Option([], help="a .py file or module defining ConditioningMethod subclasses"),
    eval_split: Optional[str] = typer.Option(None, help="real split to score against: test | val (val: a suite "
                                             "of its own, for choosing settings without the test split)"),
):
    """Train and evaluate every method variant of the suite; re-running resumes."""
    # bench's engine, torch and diffusers load when a verb runs, not for `bench --help`
    from bench.config import check_value, load_config, suite_file
    from bench.engine.plan import build_plan
    from bench.engine.runner import run_suite
    from bench.methods import load_plugins

    load_plugins(plugin)
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
    cfg = load_config(suite_file(config), preset, overrides)
    build_plan(cfg)  # every variant validated before anything is written
    summary = run_suite(cfg, results.resolve(), err_console)
    console.print(Text.assemble((str(summary.root), "bold"),
                                f": {summary.trained} trained, {summary.evaluated} evaluated"
                                + (", nothing to do (all finished)" if summary.skipped else "")), soft_wrap=True)
    if summary.failed:
        console.print(f"{len(summary.failed)} failed:", style="red")
        for line in summary.failed:
            console.print(f"  {line}", soft_wrap=True)
        raise typer.Exit(1)


def _split_methods(text: str) -> list[str]:
    """`baseline,drift:delta=0.1,target=shifted,ssl` -> three variants: a piece holding '=' but no
    ':' continues the parameters of the variant before it, which must have some (a method name
    holds no '=')."""
    out: list[str] = []
    for piece in filter(None, (p.strip() for p in text.split(","))):
        if "=" in piece and ":" not in piece:
            if not out or ":" not in out[-1]:
                after = f"follows {out[-1]!r}, which has no parameters" if out else "comes first"
                raise BenchError(f"--methods: {piece!r} is a key=value parameter but {after}; write parameters "
                                 f"after their method and a colon, e.g. {out[-1] if out else 'drift'}:{piece}")
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def pretrain(
    config: Optional[Path] = typer.Option(None, help="suite config (TOML): its pretrain, data and model sections; "
                                          "default as for bench run"),
    preset: Optional[str] = typer.Option(None, help="named overrides (bench/config/presets.py): tiny, a paper's regime, ..."),
    results: Path = typer.Option(Path("results"), help="results store (the artefact goes to the suite's cache)"),
):
    """Train the suite's unconditional pretrain backbone once (cached in the suite's cache) and print its folder."""
    # bench's engine, torch and diffusers load when a verb runs, not for `bench --help`
    from bench.config import load_config, suite_file
    from bench.engine.pretrain import check_source, pretrain_backbone

    cfg = load_config(suite_file(config), preset)
    check_source(cfg)
    store = SuiteStore.of(results.resolve(), cfg.suite.name, cfg.suite.eval_split)
    typer.echo(pretrain_backbone(cfg, store.cache))
