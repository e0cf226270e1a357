"""`bench sample-large RUN_DIR`: large images (k x the training size) of a finished run of a method that
conditions on a grid of embeddings (ssl), one task per generation seed on the run's executor, resumable;
patch FID/KID and seam scores of the generated and the real large images (bench/engine/large_task.py)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

import typer

from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import RUN_LAYOUT


def sample_large_command(
    run_dir: Path = typer.Argument(..., help=f"a finished run folder of an ssl suite: {RUN_LAYOUT}"),
    k: int = typer.Option(4, help="canvas side in tiles: k x the training size"),
    stride: Optional[int] = typer.Option(None, help="window stride in pixels, 1 to the window (default: a quarter "
                                         "of the window, as the authors); the window size gives independent tiles"),
    interpolation: str = typer.Option("slerp", help="how a window's embedding blends its grid neighbours: slerp | lerp"),
    decode: str = typer.Option("windows", help="latent mode: decode each window and blend them towards their "
                               "centres (the authors') | canvas: decode the whole canvas at once"),
    seeds: int = typer.Option(1, help="large images: generation seeds 0..N-1, seed s on real large image s of the "
                              "scored split"),
    network: str = typer.Option("scorer", help="feature network of patch FID/KID: scorer | expert | inception | ..."),
    executor: Optional[str] = typer.Option(None, help="ray | local (default: the run's [execution] executor)"),
    plugin: list[str] = typer.Option([], help="a .py file or module defining the run's method, if a plug-in"),
):
    """Sample large images of a finished run, conditioned on real large images' embeddings, and score both."""
    from bench.config import check_value
    from bench.core.errors import RunFailed
    from bench.engine.executors import make_executor
    from bench.engine.large_image import LargeImageParams
    from bench.engine.large_task import check_large_run, large_dir, large_image_task, score_patches
    from bench.methods import load_plugins
    from bench.metrics.extractors import extractor_names

    load_plugins(plugin)
    params = LargeImageParams(k, stride, interpolation, decode)
    if seeds < 1:
        raise BenchError(f"--seeds {seeds}: give at least 1 large image")
    if network not in extractor_names():
        raise BenchError(f"--network {network!r} is not a feature network; use one of {', '.join(extractor_names())}")
    cfg = check_large_run(run_dir, params, seeds)
    execution = cfg.execution if executor is None else dataclasses.replace(
        cfg.execution, executor=check_value("execution", "executor", executor, "--executor"))
    pool = make_executor(execution)
    try:
        handles = [pool.submit(large_image_task, run_dir.resolve(), params, s, kind="eval", name=f"large seed={s}")
                   for s in range(seeds)]
        pending = list(handles)
        while pending:
            for handle in pool.wait(pending):
                pending.remove(handle)
        for handle in handles:
            pool.result(handle)
    except RunFailed as err:
        make_console(stderr=True).print(f"failed: {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        pool.shutdown()
    result = score_patches(run_dir.resolve(), params, list(range(seeds)), network)
    console = make_console()
    for name, value in result["metrics"].items():
        console.print(f"{name} = {value:.6g}  (N = {result['provenance']['n_gen']} crops of {seeds} image(s) "
                      f"against {result['provenance']['n_ref']})", highlight=False)
    for side, values in result["seam_score"].items():
        console.print(f"seam score, {side}: " + ", ".join(f"{v:.3g}" for v in values), highlight=False)
    console.print(f"written to {large_dir(run_dir.resolve(), params)}", highlight=False)
