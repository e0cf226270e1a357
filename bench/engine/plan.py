"""The grid: data set x method variant x train seed -> RunSpec, each with a content-hashed run_id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from bench.config import Config
from bench.core.errors import BenchError
from bench.diffusion import sampler_kind
from bench.engine.executors import check_execution
from bench.engine.pretrain import check_source, pretrain_key
from bench.engine.sample import sampler_settings
from bench.methods import canonical_variant, method_code, parse_variant
from bench.methods.base import method_class_path
from bench.metrics import check_metric_names
from bench.models.expert import ROLES, check_weights
from bench.models.init import PRETRAIN, check_prediction, init_architecture, init_stamp
from bench.models.latent import latent_shape, weights_hash
from bench.models.unet import build_unet


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    variant: str              # canonical method variant string: names the folder and the row
    train_seed: int
    run_id: str               # short hash of everything that determines this run's results
    gen_seeds: tuple[int, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_id(cfg: Config, variant: str, train_seed: int) -> str:
    """Hash of the resolved config that shapes this run's numbers (not the seed count, not where
    or how it is executed): the same run in another suite or on another machine shares the id.
    The method's class (module and qualname) is part of it: a plug-in never shares a built-in's id; so
    are, in latent mode, the VAE's weights."""
    cls, params = parse_variant(variant)
    key = {k: v for k, v in cfg.to_dict().items() if k not in ("suite", "execution")}
    key["data"] = cfg.data.content_key()
    # the backbone's identity: the pretrain artefact's content key, or a folder's or cache entry's files
    # (replaced weights retrain); a [pretrain] recipe no run starts from shapes nothing, and a run from
    # scratch keeps the id it had before [model] init existed
    del key["pretrain"]
    if not cfg.model.init:
        del key["model"]["init"]
    elif cfg.model.init == PRETRAIN:
        key["init_backbone"] = pretrain_key(cfg)
    else:
        key["init_backbone"] = init_stamp(cfg.model.init)
    key.update(method=cls.name, method_class=method_class_path(cls), params=dataclasses.asdict(params),
               train_seed=train_seed)
    if cfg.model.vae:  # the VAE's weights, not only its path: new weights at the same path are a new run
        key.update(vae_weights=weights_hash(cfg.model.vae))
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def build_plan(cfg: Config) -> list[RunSpec]:
    """The grid, every variant and metric name validated (BenchError) before anything is written:
    each variant's parameters are also resolved on the suite's U-Net architecture (hooks, layers,
    encoders) and checked against the sampler, so a bad one stops the suite here instead of failing
    its runs later."""
    check_metric_names(cfg.metrics.names)
    check_execution(cfg.execution)
    for role in ROLES:
        check_weights(role, getattr(cfg, role), 1 if cfg.data.grayscale else 3)
    sampler = sampler_kind(cfg.sample.sampler, sampler_settings(cfg).clip_x0)
    unet = _architecture(cfg)
    variants = []
    for text in cfg.suite.methods:
        cls, params = parse_variant(text)
        variant = canonical_variant(cls.name, params)
        with method_code(cls, "check_sampler", f"method {variant} cannot sample with sampler {cfg.sample.sampler!r}"):
            cls.check_sampler(params, sampler)
        if variant in variants:
            raise BenchError(f"method variant {variant!r} is listed twice; list each variant once")
        if cls.classifier_free_guidance and cfg.sample.guidance != 1 and cfg.train.p_uncond == 0:
            raise BenchError(f"method {variant} would sample with sample.guidance = {cfg.sample.guidance} from an "
                             "untrained null condition: set train.p_uncond > 0 (e.g. 0.1), or sample.guidance = 1")
        with method_code(cls, "check", f"method variant {variant}"):
            cls.check(params, unet)
        variants.append(variant)
    cls, params = parse_variant(cfg.suite.baseline)
    baseline = canonical_variant(cls.name, params)
    if baseline in variants:  # baseline first: the reference row and the left side of every test
        variants.remove(baseline)
        variants.insert(0, baseline)
    gen_seeds = tuple(range(cfg.suite.seeds))
    return [RunSpec(cfg.data.name, v, k, run_id(cfg, v, k), gen_seeds)
            for v in variants for k in range(cfg.suite.train_seeds)]


def _architecture(cfg: Config):
    """The suite's U-Net on the meta device: its modules and shapes, no memory, no weights. In latent mode
    it diffuses the VAE's latents (a VAE that does not fit the data is refused here). A pretrained init's
    is its checkpoint's (BenchError here when it is missing or does not fit the data); the pretrain
    artefact's is the suite's size, which it is trained at."""
    import torch
    channels, size = 1 if cfg.data.grayscale else 3, cfg.data.image_size
    if cfg.model.vae:
        channels, size = latent_shape(cfg.model.vae, channels, size)
    if cfg.model.init == PRETRAIN:
        check_source(cfg)  # fails now, not in its task
    if cfg.model.init not in ("", PRETRAIN):
        check_prediction(cfg.model.init, cfg.train.prediction)
    with torch.device("meta"):
        if cfg.model.init not in ("", PRETRAIN):
            return init_architecture(cfg.model.init, channels, size, cfg.model.condition_path)
        return build_unet(cfg.model.size, channels, size, cfg.model.condition_path)
