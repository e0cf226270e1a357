"""The suite's data set as the tasks read it: prepared once per data config and source state, checked
against the suite's metrics, encoded to latents in latent mode ([model] vae)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.config import Config
from bench.core.errors import BenchError
from bench.core.shapes import RUN_CONFIG, checked
from bench.core.store import RUN_CONFIG_FILE, SHORT_LOCK_TIMEOUT_S, FileLock, folder_name, read_json
from bench.datasets import load_prepared
from bench.datasets.base import PreparedData
from bench.engine.train import resolve_device
from bench.metrics import check_set_sizes
from bench.metrics.utility import check_matched_real
from bench.models.latent import load_latents, prepare_latents


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def source_stamp(name: str) -> list:
    """(file, size, mtime) of a folder:/npz: source, so edited files are prepared afresh; named
    sources are checksum-verified files and need none."""
    prefix, _, location = name.partition(":")
    if prefix not in ("folder", "npz") or not Path(location).exists():
        return []
    root = Path(location)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return [(str(p.relative_to(root)) if root.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]


def prepare_data(cfg: Config, cache: Path, check: bool = True, reused_runs: Sequence[Path] = ()) -> Path:
    """The prepared arrays of the suite's data set, computed once per data config and source state (and in
    latent mode their latents, once per VAE: bench/models/latent.py); `check`: that they can feed the
    suite's metrics (not for a pretrain's source, which is never scored); `reused_runs`: run folders that
    will be resumed or evaluated, refused unless trained on the same classes."""
    key = _hash([cfg.data.content_key(), source_stamp(cfg.data.name)])
    path = Path(cache) / f"data-{folder_name(cfg.data.name)}-{key}.npz"
    # bad input raises here, before anything is written; a cached copy is checked against these metrics too
    data = PreparedData.load(path) if path.exists() else load_prepared(cfg.data)
    if check:
        check_data(cfg, data)
    _check_reused_runs(reused_runs, list(data.class_names))
    if cfg.model.vae:  # first: a VAE that does not load leaves no data cache behind
        prepare_latents(cfg.model.vae, data, path, resolve_device(cfg.execution.device))
    if path.exists():
        return path
    with FileLock(path.with_suffix(".lock"), SHORT_LOCK_TIMEOUT_S):
        if not path.exists():
            data.save(path)
    return path


def latents_of(cfg: Config, data_path: Path, device):
    """The VAE and latents a run diffuses in latent mode ([model] vae); None in pixel space."""
    return load_latents(cfg.model.vae, data_path, device) if cfg.model.vae else None


def _check_reused_runs(run_dirs: Sequence[Path], classes: list[str]) -> None:
    """Refuse (BenchError) to resume or evaluate a run trained on other classes than the data now has."""
    for run_dir in run_dirs:
        config = run_dir / RUN_CONFIG_FILE
        trained_on = checked(read_json(config), RUN_CONFIG, config, f"delete the run folder {run_dir} to retrain it"
                             ).get("class_names") if config.exists() else None
        if trained_on is not None and trained_on != classes:
            raise BenchError(f"the data set's classes {classes} do not match the {trained_on} that {run_dir} was "
                             "trained on; restore the data or delete that run folder to retrain it")


def check_data(cfg: Config, data: PreparedData) -> None:
    """BenchError unless the prepared data can feed every metric of the suite (run before the data
    is cached and before plan.json is written)."""
    split = cfg.suite.eval_split
    n_real = int(np.isin(data.split(split)[1], data.scored_classes).sum())
    n_gen = cfg.sample.samples_per_class * len(data.scored_classes)
    check_set_sizes(cfg.metrics.names, n_gen, n_real,
                    "raise sample.samples_per_class" if n_gen < n_real else
                    f"{data.name} has too few {split} images: add images, or raise data.{split}_per_class "
                    f"(procedural sets) or the {split} share of data.split")
    if "aug_gain" in cfg.metrics.names:
        check_matched_real({c: cfg.sample.samples_per_class for c in data.scored_classes}, data.train_y,
                           data.class_names)
