"""Task bodies: plain functions of paths and configs that any executor runs.

Each task first looks for its finished output and returns it; each writes through temp files and
os.replace; each holds a file lock while it computes, so two `bench run` processes on one store
never compute (or half-write) the same thing twice. A deterministic failure is written as FAILED
and reported, not raised: the rest of the grid goes on. A failure of the surroundings (a full disk,
memory) or a damaged store file is reported but not written: the same command tries again.
"""
from __future__ import annotations

import dataclasses
import errno
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench import __version__
from bench.config import Config
from bench.core.errors import BenchError, RunFailed, StoreDamaged
from bench.core.store import (DONE, FAILED, FEATURES_FILE, GRID_FILE, METRICS_FILE, NEAREST_FILE, RUN_CONFIG_FILE,
                              SAMPLES_FILE, TRACEBACK, FileLock, SuiteStore, atomic_write_bytes, atomic_write_json)
from bench.datasets.base import PreparedData
from bench.engine.data import latents_of
from bench.engine.plan import RunSpec
from bench.engine.pretrain import pretrain_backbone, with_init_resolved
from bench.engine.sample import generation_labels, sample_images, save_grid
from bench.engine.train import load_model, resolve_device, train_model
from bench.methods import method_name, parse_variant
from bench.metrics import classifiers_needed, evaluate_samples
from bench.models.expert import get_classifier, labelled_model_space, load_classifier, train_classifier
from bench.models.latent import weights_hash



def classifier_loader(cfg: Config, role: str, data: PreparedData, cache: Path, device):
    """A lazy loader of the suite's `role` classifier (expert or scorer), trained once and cached."""
    def load():
        return get_classifier(role, data, getattr(cfg, role), Path(cache), device=device)
    return load


def expert_loader(cfg: Config, data: PreparedData, cache: Path, device):
    """What a method may be handed: a loader that closes over the expert's cache folder only (no data
    split, no config, nothing of the scorer). The expert is trained here if no task has trained it yet."""
    return partial(load_classifier, train_classifier("expert", data, cfg.expert, Path(cache), device), device)


def method_resources(cfg: Config, variant: str, data: PreparedData, store: SuiteStore, device):
    """What a run's method is handed besides the train split: the expert's loader if the method declares
    that it needs it, and a cache folder of its own (the suite cache holds the scorer and every split)."""
    cls, params = parse_variant(variant)
    return (expert_loader(cfg, data, store.cache, device) if cls.needs_expert(params) else None), store.method_cache


def prepare_classifier(cfg: Config, role: str, data_path: Path, cache: Path) -> dict:
    """Train the `role` classifier once, before the tasks that need it start."""
    train_classifier(role, PreparedData.load(data_path), getattr(cfg, role), cache, resolve_device(cfg.execution.device))
    return {"status": "done"}


def prepare_pretrain(cfg: Config, kind: str, data_path: Path, cache: Path, on_step=None) -> dict:
    """Train the suite's pretrain backbone once ([model] init = "pretrain"), before the train tasks start."""
    _set_threads(cfg)
    return {"status": "done", "path": str(pretrain_backbone(cfg, cache, on_step))}


def _set_threads(cfg: Config) -> None:
    torch.set_num_threads(cfg.execution.threads)


def _failure_reason(err: BaseException) -> str:
    if isinstance(err, (RunFailed, BenchError)):
        return str(err)
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(err).__name__}: {err}{where}"


# OSErrors of the machine, not of the method: the same task succeeds once they are cleared
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                      errno.ENOMEM: "out of memory"}


def environment_failure(err: BaseException) -> str | None:
    """What of the machine `err` says failed (a full disk, memory), or None for a failure of the
    method or its input, which the same task would repeat."""
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return "out of memory"
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        return ENVIRONMENT_ERRNOS[err.errno]
    return None


def _failed(folder: Path, err: Exception) -> dict:
    """A task's failure: the method's own is written as FAILED (deterministic: not retried, listed on
    every re-run), its whole traceback beside it (TRACEBACK); one of the machine, or a damaged store file (its message names the fix), is not
    written, so the same command retries it, and the reason says so."""
    reason = _failure_reason(err)
    if cause := environment_failure(err):
        reason += f" ({cause}: not the method's failure, so not recorded; free it and re-run the same command)"
    elif not isinstance(err, StoreDamaged):
        atomic_write_bytes(folder / TRACEBACK, "".join(traceback.format_exception(err)).encode())
        atomic_write_bytes(folder / FAILED, (reason + "\n").encode())
        return _status(folder)
    return {"status": "failed", "path": str(folder), "reason": reason, "reused": False}


def train_task(cfg: Config, spec: RunSpec, results: Path, data_path: Path, on_step=None) -> dict:
    store = SuiteStore.of(results, cfg.suite.name, cfg.suite.eval_split)
    run_dir = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)
    if (run_dir / DONE).exists() or (run_dir / FAILED).exists():
        return _status(run_dir, reused=True)
    with FileLock(run_dir / ".lock"):
        if (run_dir / DONE).exists() or (run_dir / FAILED).exists():
            return _status(run_dir, reused=True)
        _set_threads(cfg)
        data = PreparedData.load(data_path)
        cls_name = method_name(spec.variant)
        # latent mode: the VAE the model's latents came from, which `bench export` must find unchanged
        vae = {"vae_weights": weights_hash(cfg.model.vae)} if cfg.model.vae else {}
        atomic_write_json(run_dir / RUN_CONFIG_FILE, {
            "run_id": spec.run_id, "dataset": spec.dataset, "method": spec.variant, "method_name": cls_name,
            "method_params": spec.variant.partition(":")[2], "train_seed": spec.train_seed,
            "class_names": list(data.class_names), "augment": data.meta.get("augment", "none"),
            "code_version": __version__, "config": cfg.to_dict(), **vae})
        device = resolve_device(cfg.execution.device)
        try:
            train_model(with_init_resolved(cfg, store.cache), spec.variant, spec.train_seed, data, run_dir,
                        *method_resources(cfg, spec.variant, data, store, device), on_step=on_step,
                        latents=latents_of(cfg, data_path, device))
        except Exception as err:  # the method's failure is recorded, not retried: the same input fails the same way
            return _failed(run_dir, err)
        atomic_write_bytes(run_dir / DONE, b"")
    return _status(run_dir)


def _status(folder: Path, reused: bool = False) -> dict:
    """The recorded outcome of a train (run folder) or evaluation (eval folder) task; `reused` when
    it was already in the store (another process, or an earlier attempt, computed it)."""
    if (folder / FAILED).exists():
        return {"status": "failed", "path": str(folder), "reason": (folder / FAILED).read_text().strip(),
                "reused": reused}
    return {"status": "done", "path": str(folder), "reused": reused}


def eval_task(cfg: Config, spec: RunSpec, gen_seed: int, results: Path, data_path: Path) -> dict:
    store = SuiteStore.of(results, cfg.suite.name, cfg.suite.eval_split)
    run_dir = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)
    out = SuiteStore.eval_dir(run_dir, gen_seed)
    with FileLock(out / ".lock"):
        if (out / METRICS_FILE).exists() or (out / FAILED).exists():
            return _status(out, reused=True)
        _set_threads(cfg)
        data = PreparedData.load(data_path)
        device = resolve_device(cfg.execution.device)
        try:
            latents = latents_of(cfg, data_path, device)
            built = load_model(with_init_resolved(cfg, store.cache), spec.variant, data, run_dir, device,
                               *method_resources(cfg, spec.variant, data, store, device), latents)
            labels = generation_labels(data.scored_classes, cfg.sample.samples_per_class)
            images = sample_images(built, cfg, labels, gen_seed, device)
            _save_npz(out / SAMPLES_FILE, images=images, labels=labels)
            save_grid(images, labels, out / GRID_FILE)
            real_x, real_y = data.split(cfg.suite.eval_split)
            scored = np.isin(real_y, data.scored_classes)
            # a method's features of held-out real images do not depend on the generation seed: stored once
            if gen_seed == 0:
                held_out = labelled_model_space(real_x[scored], real_y[scored], device)
                if latents is not None:  # the method's features are of what its U-Net sees
                    held_out = latents.split(cfg.suite.eval_split)[torch.from_numpy(scored)].to(device), held_out[1]
                features = built.method.evaluation_features(built.model, *held_out)
                if features is not None:
                    _save_npz(out / FEATURES_FILE, **features)
            classifiers = {role: classifier_loader(cfg, role, data, store.cache, device)()
                           for role in classifiers_needed(cfg.metrics.names)}
            result = evaluate_samples(
                images, labels, real_x[scored], real_y[scored], class_names=data.class_names,
                scored_classes=data.scored_classes, classifiers=classifiers, metrics=list(cfg.metrics.names),
                cache_dir=store.cache, reference_key=f"{data.fingerprint()}-{cfg.suite.eval_split}",
                kid_subset_size=cfg.metrics.kid_subset_size, device=device,
                train_images=data.train_x, train_labels=data.train_y)
            if "nearest" in result:
                _save_npz(out / NEAREST_FILE, **result.pop("nearest"))
        except Exception as err:
            return _failed(out, err)
        atomic_write_json(out / METRICS_FILE, {
            "schema": 1, "dataset": spec.dataset, "method": spec.variant, "run_id": spec.run_id,
            "train_seed": spec.train_seed, "gen_seed": gen_seed, "code_version": __version__,
            "class_names": list(data.class_names), "scored_classes": list(data.scored_classes),
            "sample_config": dataclasses.asdict(cfg.sample), **result})
    return _status(out)


def _save_npz(path: Path, **arrays) -> None:
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
