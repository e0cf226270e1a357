"""`bench export RUN_DIR OUT`: a finished run as a diffusers-format folder (its layout: bench/engine/exported.py),
sampled outside the benchmark (no Ray, no results store) by `bench.pipeline.BenchPipeline`.

The folder is written under a temporary name beside OUT and renamed at the end: OUT is whole or absent.
`load_finished_run` loads a run as both this and `bench sample-large` (bench/engine/large_task.py) sample it.
"""
from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import __version__
from bench.config import Config, build_config
from bench.core.errors import BenchError
from bench.core.shapes import TRAINED_RUN_CONFIG, checked
from bench.core.store import (CHECKPOINT_FILE, DONE, FAILED, PLAN_FILE, RUNS_DIR, RUN_CONFIG_FILE, RUN_LAYOUT,
                              SuiteStore, read_json)
from bench.datasets.base import PreparedData
from bench.diffusion import Sampler
from bench.engine.data import latents_of, prepare_data
from bench.engine.exported import Exported
from bench.engine.pipeline import BenchPipeline
from bench.engine.pretrain import with_init_resolved
from bench.engine.sample import sampler_settings
from bench.engine.tasks import method_resources
from bench.engine.train import Built, load_model, resolve_device
from bench.models.latent import Latents, weights_hash


def export_run(run_dir: Path, out: Path) -> Path:
    """Write the export of `run_dir` to `out` (whole, or not at all); return `out`."""
    run_dir, out = Path(run_dir).resolve(), Path(out).resolve()
    _suite_store(run_dir)
    _check_out(out)
    pipeline, files = _contents(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()
    try:
        pipeline.save_pretrained(tmp)
        for name, data in files.items():
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(data)
        os.replace(tmp, out)              # onto OUT if it is an empty folder (checked above)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class FinishedRun:
    """A finished run, loaded to sample: its config, prepared data, store and model (EMA weights)."""
    cfg: Config
    config: dict                # its config.json
    data: PreparedData
    store: SuiteStore
    built: Built
    latents: Latents | None
    device: torch.device


def finished_run_config(run_dir: Path) -> tuple[SuiteStore, dict, Config]:
    """The store, config.json and resolved config of the finished run at `run_dir`, nothing loaded nor written;
    BenchError naming the fix unless it is a finished run folder of a store."""
    run_dir = Path(run_dir).resolve()
    store = _suite_store(run_dir)
    config = checked(read_json(run_dir / RUN_CONFIG_FILE), TRAINED_RUN_CONFIG, run_dir / RUN_CONFIG_FILE,
                     f"delete the run folder {run_dir} and run `bench run` again to retrain it")
    return store, config, build_config(config["config"], str(run_dir / RUN_CONFIG_FILE))


def load_finished_run(run_dir: Path) -> FinishedRun:
    """The run at `run_dir`, loaded (finished_run_config's refusals first)."""
    run_dir = Path(run_dir).resolve()
    store, config, cfg = finished_run_config(run_dir)
    if cfg.model.vae:   # before prepare_data, which would encode the data with another VAE
        _check_vae(cfg.model.vae, config.get("vae_weights"), run_dir)
    data_path = prepare_data(cfg, store.cache, reused_runs=[run_dir])
    data = PreparedData.load(data_path)
    device = resolve_device(cfg.execution.device)
    variant = config["method"]
    latents = latents_of(cfg, data_path, device)
    built = load_model(with_init_resolved(cfg, store.cache), variant, data, run_dir, device,
                       *method_resources(cfg, variant, data, store, device), latents)
    return FinishedRun(cfg, config, data, store, built, latents, device)


def _contents(run_dir: Path):
    """The run's pipeline (U-Net with EMA weights, scheduler) and the other files of its export, by name."""
    run = load_finished_run(run_dir)
    cfg, config, built = run.cfg, run.config, run.built
    source = {"run_dir": str(run_dir), "run_id": config["run_id"], "train_seed": config["train_seed"],
              "code_version": config.get("code_version", ""), "exported_by": __version__}
    sampler = Sampler.from_config(built.schedule, sampler_settings(cfg))
    exported = Exported.of(built, sampler, cfg, run.data, source)
    vae = None if run.latents is None else run.latents.vae.model
    scheduler = sampler.scheduler   # bench feeds it eps_hat; the saved one says what the U-Net predicts
    if built.schedule.prediction == "v":
        scheduler = type(scheduler).from_config(scheduler.config, prediction_type="v_prediction")
    return BenchPipeline(unet=built.model.unet, scheduler=scheduler, vae=vae), exported.files()


def _check_vae(spec: str, trained_with: str | None, run_dir: Path) -> None:
    """BenchError unless the VAE at `spec` has the weights (`weights_hash`) run_dir's model was trained on: with
    other weights its latents mean something else. A run that did not record them (written before
    config.json kept vae_weights) is taken on trust."""
    if trained_with is not None and weights_hash(spec) != trained_with:
        raise BenchError(f"model.vae {spec} holds other weights than the VAE run {run_dir} was trained with "
                         f"(sha256 {trained_with}...); put that VAE back at this path to export the run")


def _suite_store(run_dir: Path) -> SuiteStore:
    """The store holding `run_dir`, once it is a finished run folder of one."""
    root = run_dir.parents[4] if len(run_dir.parents) > 4 else None
    if not (run_dir / RUN_CONFIG_FILE).is_file() or root is None or run_dir.parents[3].name != RUNS_DIR \
            or not (root / PLAN_FILE).is_file():
        raise BenchError(f"{run_dir} is not a run folder of a results store ({RUN_LAYOUT} holding config.json); "
                         "pass one of those")
    if (run_dir / FAILED).exists():
        reason = (run_dir / FAILED).read_text().strip()
        raise BenchError(f"run {run_dir} failed ({reason}); there is no model to export")
    if not (run_dir / DONE).exists():
        raise BenchError(f"run {run_dir} is not finished (no {DONE} marker); finish it with `bench run` first")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise BenchError(f"run {run_dir} has no {CHECKPOINT_FILE}; delete the run folder and run `bench run` again "
                         "to retrain it")
    return SuiteStore(root.parent, root.name)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out} already exists and is not an empty folder; choose a new OUT or delete it")
