"""Suite configuration: bench.toml -> frozen dataclasses, CLI flags on top.

Every section of bench.toml is one dataclass below; every key has a commented default, the base
that every config file, preset and test config builds on. The default suite is one such file,
DEFAULT_SUITE (bench/config/default_suite.toml): `bench run` reads it where no bench.toml is given
or found (`suite_file`), so a user without one runs the suite the README describes.
Unknown keys, wrong types and out-of-range values raise BenchError naming the key and file.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.config.presets import preset_tables
from bench.core.errors import BenchError
from bench.core.field_values import NotOfType, from_toml, is_union
from bench.core.store import EVAL_SPLITS, SUITE_NAME_RULE, is_suite_name
from bench.datasets.base import DataConfig
from bench.diffusion import SAMPLERS
from bench.models.expert import ROLES, ClassifierConfig, ScorerConfig, check_independent, known_backbone
from bench.models.unet import ConditionPath


@dataclass(frozen=True)
class SuiteSection:
    name: str = "default"               # names the folder results/<name>/
    methods: tuple[str, ...] = ("baseline",)  # method variants, e.g. "drift:delta=-0.05"
    seeds: int = 3                      # generation seeds 0..seeds-1 per trained model
    train_seeds: int = 1                # independently trained models per method variant
    baseline: str = "baseline"          # the variant every other one is tested against
    eval_split: str = "test"            # the real split scored against; "val" scores into a
    #                                     suite of its own (results/<name>@val/), to choose settings
    #                                     without looking at the test split


@dataclass(frozen=True)
class ModelConfig:
    size: Literal["tiny", "small", "paper"] = "small"  # U-Net size (bench/models/unet.py)
    condition_path: ConditionPath = "attention+time"  # where the condition tokens enter the U-Net
    #                                     (bench/models/unet.py): cross-attention and, mean-pooled, the
    #                                     time embedding (ADM-style), or cross-attention only
    vae: str = ""                       # a local AutoencoderKL folder (or a pipeline folder with vae/): diffuse
    #                                     in its latent space (bench/models/latent.py; checked when the
    #                                     suite is planned); "" = pixel space
    init: str = ""                      # pretrained U-Net to fine-tune (bench/models/init.py): "" = from scratch; a
    #                                     local diffusers folder (with unet/, or the unet folder), a Hugging Face
    #                                     id in the local cache, or "pretrain" ([pretrain], bench pretrain)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600                    # optimizer steps per trained model
    batch_size: int = 32
    lr: float = 1e-3                    # AdamW peak learning rate
    weight_decay: float = 0.0
    warmup_steps: int = 50              # linear warm-up, then the lr schedule
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warm-up: constant, or cosine decay to 0 at
    #                                     `steps` (Loshchilov & Hutter 2017)
    ema_decay: float = 0.995            # EMA of weights; 0 disables; sampling uses the EMA
    min_snr_gamma: float = 5.0          # min-SNR loss weighting (Hang et al. 2023); 0 disables
    prediction: Literal["epsilon", "v"] = "v"  # what the U-Net predicts: eps, or v = a_t eps - s_t (x0 - mu)
    #                                     (Salimans & Ho 2022); methods and samplers see eps_hat either way
    #                                     (bench/diffusion.py). v: synth-tissue val acc[scorer] 0.75 vs eps 0.37
    #                                     (405 steps, g = 1.5, README "Learning per CPU-minute"). A pretrained [model]
    #                                     init keeps the prediction it was trained with (Stable Diffusion
    #                                     2.1-base: "epsilon")
    center_data: bool = True            # diffuse x0 - mu, mu = the train split's per-channel mean, so x_T ~ N(mu, I)
    #                                     (bench/diffusion.py); off, samples of bright data come out too dark
    grad_clip: float = 1.0              # max grad norm; 0 disables
    num_train_timesteps: int = 1000     # DDPM training schedule
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear"
    checkpoint_every: int = 100         # steps between resumable checkpoints
    log_every: int = 10                 # steps between train_log.jsonl lines
    p_uncond: float = 0.1               # classifier-free guidance label dropout (Ho & Salimans 2022): the
    #                                     rate at which a training condition is replaced by the null
    #                                     condition, for every class-conditional method (the ssl authors' 0.1)


@dataclass(frozen=True)
class SampleConfig:
    sampler: str = "ddim"               # a diffusers scheduler by name: ddim | ddpm | dpmsolver++ | unipc | euler
    steps: int = 50                     # sampling steps (the scheduler's inference timesteps)
    eta: float = 0.0                    # DDIM stochasticity, ddim only; 0 = deterministic
    spacing: Literal["trailing", "leading", "linspace"] = "trailing"  # timesteps; trailing starts at
    #                                     T - 1 (Lin et al. 2024), leading at T - T / steps
    clip_x0: bool = True                # clip the predicted x0 at every step to [-1, 1], or with center_data to
    #                                     mu +- 1 (the scheduler's box around the data mean): clipping bright x0
    #                                     at 1 biases every step dark (synth-tissue val, g = 2: exact [-1, 1]
    #                                     -33/-32/-29 grey levels, mu +- 1 +0.5/-2.4/-1.6)
    samples_per_class: int = 10         # images per scored class per generation seed
    batch_size: int = 128               # images per denoiser call
    guidance: float = 1.5               # classifier-free guidance scale g: eps_u + g (eps_c - eps_u), for every
    #                                     class-conditional method; 1 = purely conditional (one U-Net call
    #                                     per step), 0 = unconditional. 1.5: chosen on the validation split
    #                                     (default_suite.toml gives the numbers); higher pushes colours past the class's


@dataclass(frozen=True)
class MetricsConfig:
    names: tuple[str, ...] = ("acc[scorer]", "acc[expert]", "ssim", "fid[scorer]", "kid[scorer]",
                              # k-NN metrics on the scorer features FID/KID already computed: milliseconds
                              "precision[scorer]", "recall[scorer]", "density[scorer]", "coverage[scorer]",
                              "tstr_acc", "aug_gain", "copy_rate")  # the last three also read the train split
    kid_subset_size: int = 1000         # capped at N for small sample sets


@dataclass(frozen=True)
class PretrainConfig:
    data: str = "synth-tissue-ihc"      # source data set (any data source name); rendered at the suite's
    #                                     data.image_size, grayscale and per-class counts. The default is
    #                                     synth-tissue in IHC stain (hematoxylin + DAB): a real stain shift
    steps: int = 600                    # optimizer steps
    batch_size: int = 32
    lr: float = 1e-3                    # AdamW peak learning rate (train.warmup_steps, ema_decay, ... apply)
    seed: int = 0                       # initialisation, batch order and noise


@dataclass(frozen=True)
class ExecutionConfig:
    executor: Literal["ray", "local"] = "ray"
    address: str = ""                   # "" = start a local Ray; "auto" or "ray://host:port" to join
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    bf16: bool = True                   # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True          # channels_last memory format on CUDA
    num_cpus: float = 1                 # Ray CPUs per task
    num_gpus: float | Literal["auto"] = "auto"  # Ray GPUs per network task; "auto" = a share of a GPU sized
    #                                     from a training step's measured memory when the cluster has GPUs,
    #                                     else 0 (bench/engine/gpu_share.py)
    gpu_tasks_max: int = 4              # "auto" packs at most this many tasks on one GPU
    threads: int = 1                    # torch intra-op threads per task
    max_retries: int = 3                # retries of a task whose worker or node was lost


@dataclass(frozen=True)
class Config:
    suite: SuiteSection = field(default_factory=SuiteSection)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    expert: ClassifierConfig = field(default_factory=ClassifierConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _ints(lo: int, hi: int | None = None, why: str = ""):
    """A range rule: lo <= v (<= hi). Upper bounds keep a typo (seeds = 10**9) from becoming a
    MemoryError or a run of years; they sit far above any sane benchmark."""
    text = (f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}") + why
    return (lambda v: v >= lo and (hi is None or v <= hi)), text


_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0 (0 disables)")
_POSITIVE = (lambda v: v > 0, "a positive number")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

# Range rules: (section, key) -> (predicate, what a valid value is). Every float is also finite
# (bench.core.numbers.finite_float, applied to every float key by from_toml).
_RANGES = {
    ("suite", "name"): (is_suite_name, SUITE_NAME_RULE),
    ("suite", "seeds"): _ints(1, 1000),
    ("suite", "train_seeds"): _ints(1, 100),
    ("suite", "methods"): (lambda v: len(v) >= 1, "a non-empty list"),
    ("suite", "eval_split"): (lambda v: v in EVAL_SPLITS, " or ".join(map(repr, EVAL_SPLITS))),
    ("data", "image_size"): _ints(8, 1024),
    ("data", "train_per_class"): _ints(1, 100_000),
    ("data", "val_per_class"): _ints(1, 100_000),
    ("data", "test_per_class"): _ints(1, 100_000),
    ("data", "split"): (lambda v: len(v) == 3 and all(f > 0 for f in v) and abs(sum(v) - 1) < 1e-6,
                        "three positive fractions summing to 1"),
    ("train", "steps"): _ints(1, 10_000_000),
    ("train", "batch_size"): _ints(1, 65_536),
    ("train", "lr"): _POSITIVE,
    ("train", "weight_decay"): _NON_NEGATIVE,
    ("train", "warmup_steps"): _ints(0),
    ("train", "ema_decay"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train", "min_snr_gamma"): _NON_NEGATIVE,
    ("train", "grad_clip"): _NON_NEGATIVE,
    ("train", "checkpoint_every"): _ints(1),
    ("train", "log_every"): _ints(1),
    ("train", "num_train_timesteps"): _ints(2, 100_000),
    ("train", "p_uncond"): (lambda v: 0 <= v < 1, "in [0, 1) (1 would never train the conditional model)"),
    ("sample", "guidance"): (lambda v: v >= 0, "a number >= 0 (0 = unconditional, 1 = purely conditional)"),
    ("sample", "sampler"): (lambda v: v in SAMPLERS, "one of " + ", ".join(map(repr, SAMPLERS))),
    ("sample", "steps"): _ints(1, 100_000),
    ("sample", "eta"): (lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("sample", "samples_per_class"): _ints(2, 100_000, " (SSIM needs pairs)"),
    ("sample", "batch_size"): _ints(1, 65_536),
    ("metrics", "kid_subset_size"): _ints(2),
    **{(role, key): rule for role in ROLES for key, rule in {
        "backbone": (known_backbone, 'a timm model name (e.g. resnet10t, efficientnet_lite0) or "tiny"'),
        "epochs": _ints(1, 10_000),
        "patience": _ints(1, 10_000),
        "batch_size": _ints(2, 65_536, " (BatchNorm needs 2 images)"),
        "lr": _POSITIVE,
        "weight_decay": _NON_NEGATIVE,
        "weights": (lambda v: not v or Path(v).expanduser().is_file(), 'an existing file, or ""'),
        "min_side": _ints(0, 4096),
    }.items()},
    ("execution", "device"): (DEVICE.fullmatch, "auto, cpu, cuda or cuda:N"),
    ("execution", "num_cpus"): (lambda v: v >= 0, "a number >= 0"),
    ("execution", "num_gpus"): (lambda v: v == "auto" or v >= 0, "a number >= 0, or \"auto\""),
    ("execution", "gpu_tasks_max"): _ints(1, 64),
    ("execution", "threads"): _ints(1, 1024),
    ("execution", "max_retries"): _ints(0, 100),
    ("pretrain", "steps"): _ints(1, 10_000_000),
    ("pretrain", "batch_size"): _ints(1, 65_536),
    ("pretrain", "lr"): _POSITIVE,
}



_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _expected(hint) -> str:
    """What a value of a config type hint looks like, for a message: "one of 'a', 'b'", "a number or 'auto'"."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if typing.get_origin(hint) is tuple:
        return "a list"
    if is_union(hint):
        return " or ".join(" or ".join(map(repr, typing.get_args(arm))) if typing.get_origin(arm) is Literal
                           else _EXPECTED[arm] for arm in typing.get_args(hint))
    return _EXPECTED[hint]


def _coerce(value, hint, where: str):
    """Check `value` against a type hint from a config dataclass; return it in that type."""
    try:
        return from_toml(value, hint)
    except NotOfType as err:
        at = where + "".join(f"[{i}]" for i in err.index)
        raise BenchError(f"{at} must be {err.reason or _expected(err.hint)}, got {err.value!r}") from None


def _build_section(cls, table: dict, section: str, source: str):
    if not isinstance(table, dict):
        raise BenchError(f"[{section}] in {source} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        where = f"{section}.{key} in {source}"
        if key not in names:
            raise BenchError(f"unknown key {section}.{key} in {source}; valid keys: {', '.join(sorted(names))}")
        kwargs[key] = _check(value, hints[key], section, key, where)
    return cls(**kwargs)


def _check(value, hint, section: str, key: str, where: str):
    value = _coerce(value, hint, where)
    rule = _RANGES.get((section, key))
    if rule and not rule[0](value):
        raise BenchError(f"{where} must be {rule[1]}, got {value!r}")
    return value


def check_value(section: str, key: str, value, where: str):
    """`value` for [section] key, with that key's type and range rule; a BenchError names `where`
    (e.g. the command-line option that gave it)."""
    section_cls = typing.get_type_hints(Config)[section]
    return _check(value, typing.get_type_hints(section_cls)[key], section, key, where)


def _merge(base: dict, over: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, table in over.items():
        if isinstance(table, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **table}
        else:
            out[section] = table
    return out


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"config file {path} is a folder; pass --config PATH/TO/bench.toml, the file itself")
    if not path.is_file():
        raise BenchError(f"config file {path} not found; pass an existing file to --config, or leave --config out "
                         "to run ./bench.toml or else the default suite")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path} is not valid TOML: {err}") from None


def build_config(tables: dict, source: str) -> Config:
    if not isinstance(tables, dict):
        raise BenchError(f"{source} holds {tables!r} as its config, not a table of sections ([suite], [data], ...); "
                         "bench did not write that: write it again (`bench run` for a run folder, `bench export` "
                         "for an export)")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise BenchError(f"unknown section [{unknown[0]}] in {source}; valid sections: {', '.join(sections)}")
    hints = typing.get_type_hints(Config)
    cfg = Config(**{name: _build_section(hints[name], tables.get(name, {}), name, source)
                    for name in sections})
    check_independent(cfg.expert, cfg.scorer, source)
    return cfg


DEFAULT_SUITE = Path(__file__).with_name("default_suite.toml")
LOCAL_SUITE = Path("bench.toml")    # found in the working directory, it replaces the default suite


def suite_file(given: Path | None) -> Path:
    """The config file `bench run` reads: --config if given, else ./bench.toml if there is one, else
    the default suite."""
    if given is not None:
        return given
    return LOCAL_SUITE if LOCAL_SUITE.is_file() else DEFAULT_SUITE


def load_config(path: str | Path | None, preset: str | None = None, overrides: dict | None = None) -> Config:
    """bench.toml (or the defaults when path is None) + preset + CLI overrides, validated."""
    tables = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "the defaults"
    if preset is not None:  # --preset '' names no preset: refused, not taken for no preset
        tables = _merge(tables, preset_tables(preset))
        source += f" + preset {preset}"
    if overrides:
        tables = _merge(tables, overrides)
        source += " + command-line flags"
    return build_config(tables, source)
