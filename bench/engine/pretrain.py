"""`bench pretrain` and `[model] init = "pretrain"`: an unconditional backbone trained once per recipe.

The backbone is the suite's U-Net trained on a source data set with its labels dropped: every image
carries the same single condition token, so the U-Net learns the source's unconditional
distribution, as a model pretrained on another domain has. Training is bench's own (train.py: the
same EMA, warm-up, min-SNR weighting and resumable checkpoints as every run). Like the expert it is
cached by content hash in the suite cache, as a diffusers-format folder any diffusers user can load:

    cache/pretrain-<key>/unet/        save_pretrained (config.json + diffusion_pytorch_model.safetensors)
    cache/pretrain-<key>/recipe.json  the recipe and its key; written last, it marks a finished artefact
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from bench.config import Config
from bench.core.errors import BenchError
from bench.core.store import CHECKPOINT_FILE, FileLock, atomic_write_json
from bench.datasets import parse_spec
from bench.datasets.base import DataConfig, PreparedData
from bench.engine.data import latents_of, prepare_data, source_stamp
from bench.engine.train import resolve_device, train_model
from bench.models.init import PRETRAIN, RECIPE_FILE
from bench.models.latent import weights_hash
from bench.models.unet import build_unet

PRETRAIN_VERSION = 1        # bump when pretraining changes: artefacts of older versions are not reused


def check_source(cfg: Config) -> None:
    """BenchError naming [pretrain] data when it is no data source (before anything is written)."""
    try:
        parse_spec(cfg.pretrain.data)
    except BenchError as err:
        raise BenchError(f"pretrain.data: {err}") from None


def source_data_config(cfg: Config) -> DataConfig:
    """The suite's data options with the pretrain's source in place of the target (the target's location and
    tiling stay with it)."""
    same = cfg.pretrain.data == cfg.data.name
    return dataclasses.replace(cfg.data, name=cfg.pretrain.data, root=cfg.data.root if same else "",
                               tile_large_images=cfg.data.tile_large_images and same)


def pretrain_suite_config(cfg: Config) -> Config:
    """The Config the backbone trains under: the suite's model and training recipe from scratch, the
    pretrain's source, steps, batch size and rate, and no label dropout (there is one condition)."""
    pre = cfg.pretrain
    return dataclasses.replace(
        cfg, data=source_data_config(cfg), model=dataclasses.replace(cfg.model, init=""),
        train=dataclasses.replace(cfg.train, steps=pre.steps, batch_size=pre.batch_size, lr=pre.lr, p_uncond=0.0))


def recipe(cfg: Config) -> dict:
    """Everything that shapes the backbone's weights (and nothing that does not, e.g. the methods)."""
    pre_cfg = pretrain_suite_config(cfg)
    vae = {}
    if cfg.model.vae:  # latent mode: the backbone diffuses this VAE's latents
        vae = {"vae_weights": weights_hash(cfg.model.vae)}
    return {**vae, "version": PRETRAIN_VERSION, "data": pre_cfg.data.content_key(),
            "source_stamp": source_stamp(pre_cfg.data.name), "model": dataclasses.asdict(pre_cfg.model),
            "train": dataclasses.asdict(pre_cfg.train), "seed": cfg.pretrain.seed,
            "condition": "one learned token for every image: unconditional, the source's labels are not used"}


def pretrain_key(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(recipe(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrain_dir(cfg: Config, cache: Path) -> Path:
    return Path(cache) / f"pretrain-{pretrain_key(cfg)}"


def with_init_resolved(cfg: Config, cache: Path) -> Config:
    """`cfg` with init = "pretrain" replaced by the suite's artefact folder (what the U-Net loads)."""
    if cfg.model.init != PRETRAIN:
        return cfg
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init=str(pretrain_dir(cfg, cache))))


def pretrain_backbone(cfg: Config, cache: Path, on_step=None) -> Path:
    """The suite's pretrain artefact folder: trained now unless a finished one is cached. A file lock
    makes concurrent callers wait for one trainer; an interrupted one resumes from its checkpoint."""
    import numpy as np
    import torch
    from safetensors.torch import load_file


    folder = pretrain_dir(cfg, cache)
    if (folder / RECIPE_FILE).exists():
        return folder
    pre_cfg = pretrain_suite_config(cfg)
    source_path = prepare_data(pre_cfg, Path(cache), check=False)
    source = PreparedData.load(source_path)
    with FileLock(folder.with_suffix(".lock")):
        if (folder / RECIPE_FILE).exists():  # another process finished it while we waited
            return folder
        # one class in both splits training reads (its val loss's labels too)
        one_class = dataclasses.replace(source, class_names=("source",), scored_classes=(0,),
                                        train_y=np.zeros_like(source.train_y), val_y=np.zeros_like(source.val_y))
        latents = latents_of(pre_cfg, source_path, resolve_device(cfg.execution.device))  # latent mode: the source's
        if not (folder / CHECKPOINT_FILE).exists():  # else trained already, stopped before the folder was finished
            with torch.random.fork_rng(devices=[]):  # its seeding leaves the caller's RNG alone
                train_model(pre_cfg, "baseline", cfg.pretrain.seed, one_class, folder, on_step=on_step,
                            latents=latents)
        weights = load_file(str(folder / CHECKPOINT_FILE))
        channels, size = (source.channels, source.image_size) if latents is None else (latents.channels, latents.size)
        unet = build_unet(cfg.model.size, channels, size, cfg.model.condition_path)
        unet.load_state_dict({k.removeprefix("unet."): v for k, v in weights.items() if k.startswith("unet.")})
        unet.save_pretrained(folder / "unet", safe_serialization=True)
        atomic_write_json(folder / RECIPE_FILE, {"key": pretrain_key(cfg), "recipe": recipe(cfg),
                                                 "source": source.name, "source_fingerprint": source.fingerprint()})
        (folder / CHECKPOINT_FILE).unlink()  # unet/ holds these weights
    return folder
