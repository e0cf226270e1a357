"""`bench sample-large`: large images of a finished run (Graikos et al. 2024; the sampler is
bench/engine/large_image.py), each conditioned on the embeddings of a real large image and scored against it.

1. `large_image_task`, one per generation seed s, on any executor: real large image s of the data set's scored
   split (bench/datasets/large.py: synth-tissue renders them, a tiled folder: set holds them) -> the k x k grid of
   the method's embeddings of its tiles -> a large image sampled on that grid -> large.npz (both images), large.png
   (real | generated) and seams.json (both images' seam scores at the tile borders, and where the real image came
   from), written last: its presence marks the seed done.
2. `score_patches`, once every seed is done: patch FID/KID (bench/metrics/large_image.py) of all seeds' generated
   images against the real ones, in one feature network -> patch_metrics.json.
Each output is written atomically and found again on a re-run, which skips it.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from bench import __version__
from bench.core.pixels import to_model_space
from bench.core.store import (LARGE_FIGURE_FILE, LARGE_IMAGES_FILE, PATCH_METRICS_FILE, SEAMS_FILE, FileLock,
                              SuiteStore, atomic_write_bytes, atomic_write_json, read_json)
from bench.datasets.base import PreparedData
from bench.datasets.large import check_large_images, check_large_source, real_large_image
from bench.engine.data import prepare_data
from bench.engine.export import finished_run_config, load_finished_run
from bench.engine.large_image import LargeImageParams, check_spatial, decode, embedding_grid, sample_large
from bench.engine.sample import save_png, to_uint8
from bench.engine.tasks import classifier_loader
from bench.methods import parse_variant
from bench.metrics.extractors import build_extractor
from bench.metrics.large_image import patch_fid_kid, seam_score

FIGURE_SIDE = 512                   # px the figure's images are scaled up to (nearest neighbour), at most


def setting_name(params: LargeImageParams) -> str:
    """The folder name of one setting of large-image sampling."""
    stride = "quarter" if params.stride is None else params.stride
    return f"k={params.k},stride={stride},{params.interpolation}" + (",canvas" if params.decode == "canvas" else "")


def large_dir(run_dir: Path, params: LargeImageParams) -> Path:
    return SuiteStore.large_dir(Path(run_dir), setting_name(params))


def check_large_run(run_dir: Path, params: LargeImageParams, seeds: int):
    """The run's resolved config, once the run can sample large images at `params` for generation seeds
    0..seeds-1; else BenchError naming the fix. Reads config.json, then the run's prepared data (cached when it
    trained): no model is loaded, nothing is written."""
    store, config, cfg = finished_run_config(run_dir)
    check_spatial(parse_variant(config["method"])[0], config["method"], cfg.sample.sampler)
    check_large_source(cfg.data)
    if not cfg.model.vae:           # in latent mode the window is the latents' side, known once the VAE is loaded
        params.window_stride(cfg.data.image_size)
    data = PreparedData.load(prepare_data(cfg, store.cache, check=False, reused_runs=[Path(run_dir).resolve()]))
    check_large_images(cfg.data, data, cfg.suite.eval_split, params.k, seeds)
    return cfg


def large_image_task(run_dir: Path, params: LargeImageParams, gen_seed: int) -> dict:
    """One generation seed's large image of the run at `run_dir`, beside the real one it was conditioned on."""
    out = large_dir(run_dir, params) / f"seed={gen_seed}"
    with FileLock(out / ".lock"):
        if (out / SEAMS_FILE).exists():
            return {"status": "done", "path": str(out), "reused": True}
        run = load_finished_run(run_dir)
        torch.set_num_threads(run.cfg.execution.threads)
        real, real_from = real_large_image(run.cfg.data, run.data, run.cfg.suite.eval_split, params.k, gen_seed)
        grid = embedding_grid(run.built, to_model_space(real[None]).to(run.device), params.k)
        canvas = sample_large(run.built, run.cfg, grid, params, gen_seed, run.device)
        generated = to_uint8(decode(run.built, canvas, params))[0]
        buf = io.BytesIO()
        np.savez_compressed(buf, generated=generated, real=real)
        atomic_write_bytes(out / LARGE_IMAGES_FILE, buf.getvalue())
        save_side_by_side(real, generated, out / LARGE_FIGURE_FILE)
        tile = run.data.image_size
        scores = seam_score(np.stack([generated, real]), tile)
        atomic_write_json(out / SEAMS_FILE, {
            "seam_score": {"generated": float(scores[0]), "real": float(scores[1])},
            "provenance": {"period_px": tile, "definition": "mean squared neighbour difference across the tile "
                           "borders over that elsewhere (bench/metrics/large_image.py)"},
            "method": run.config["method"], "run_id": run.config["run_id"], "gen_seed": gen_seed,
            "params": dataclasses.asdict(params), "window_stride_px": params.window_stride(run.built.method.ctx.image_size),
            "real_image": real_from,
            "sample_config": dataclasses.asdict(run.cfg.sample), "code_version": __version__})
    return {"status": "done", "path": str(out), "reused": False}


def save_side_by_side(real: np.ndarray, generated: np.ndarray, path: Path) -> None:
    """real | generated, uint8 (H, W, C) each, a white gap between, scaled up by a whole factor."""
    gap = np.full((real.shape[0], max(2, real.shape[1] // 32), real.shape[2]), 255, np.uint8)
    save_png(np.concatenate([real, gap, generated], 1), path, max(1, FIGURE_SIDE // real.shape[0]))


def score_patches(run_dir: Path, params: LargeImageParams, seeds: list[int], network: str = "scorer") -> dict:
    """Patch FID/KID in `network` of the seeds' generated large images against their real ones, with the seam
    scores of both; computed once per (seeds, network) and kept in patch_metrics.json."""
    folder = large_dir(run_dir, params)
    path = folder / PATCH_METRICS_FILE
    if path.exists():
        kept = read_json(path)
        if kept.get("gen_seeds") == seeds and kept.get("network") == network:
            return kept
    images = [np.load(folder / f"seed={s}" / LARGE_IMAGES_FILE) for s in seeds]
    generated, real = np.stack([i["generated"] for i in images]), np.stack([i["real"] for i in images])
    run = load_finished_run(run_dir)
    classifiers = {role: classifier_loader(run.cfg, role, run.data, run.store.cache, run.device)()
                   for role in ("scorer", "expert") if network == role}
    # inception: its weights from $BENCH_INCEPTION_WEIGHTS or the cache, as a suite's evaluation finds them
    extractor = build_extractor(network, classifiers=classifiers, cache_dir=run.store.cache, device=run.device)
    result = patch_fid_kid(generated, real, run.data.image_size, extractor, run.device, run.cfg.metrics.kid_subset_size)
    seams = [read_json(folder / f"seed={s}" / SEAMS_FILE)["seam_score"] for s in seeds]
    result.update(network=network, gen_seeds=seeds, method=run.config["method"], run_id=run.config["run_id"],
                  seam_score={side: [s[side] for s in seams] for side in ("generated", "real")},
                  params=dataclasses.asdict(params), code_version=__version__)
    atomic_write_json(path, result)
    return result
