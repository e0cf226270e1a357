"""`[model] init`: start the denoiser from a pretrained diffusers UNet2DConditionModel.

A source is a local folder (a diffusers pipeline folder with `unet/`, or the unet folder itself), a
Hugging Face model id found in the local cache (never downloaded), or a bench pretrain artefact
(`bench pretrain`: a folder with `unet/` and `recipe.json`; `init = "pretrain"` is resolved to the
suite's own by bench.engine.pretrain). Channels, sample size and cross-attention width are the checkpoint's;
what the suite's condition path needs and the checkpoint lacks (the ADM-style class projection of
"attention+time") is initialised and listed in the run's provenance, what it has and the path does
not use is listed as unused. Weights are read from safetensors files only: nothing is unpickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core.errors import BenchError
from bench.core.shapes import INTS, ListOf, Obj, checked
from bench.models.local import local_folder

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

PRETRAIN = "pretrain"       # [model] init naming the suite's `bench pretrain` artefact
RECIPE_FILE = "recipe.json"  # what makes a folder a bench pretrain artefact
WEIGHTS = "diffusion_pytorch_model"  # diffusers' weights file name (.safetensors, maybe sharded)
# What bench and diffusers read of a U-Net's config.json before building it; diffusers reads the rest
UNET_CONFIG = Obj({"in_channels": int, "out_channels": int, "sample_size": INTS, "block_out_channels": ListOf(int),
                   "cross_attention_dim": INTS, "layers_per_block": INTS, "down_block_types": ListOf(str),
                   "up_block_types": ListOf(str)})
FIX = "set model.init to a folder holding a diffusers U-Net (unet/config.json), a model id in the local " \
      "Hugging Face cache, \"pretrain\", or \"\" to train from scratch"


def resolve_init(spec: str) -> tuple[Path, str | None, str]:
    """(folder, subfolder, kind) of an init source, kind "folder" or "hf-cache"; BenchError when
    it names nothing loadable here."""
    path, kind = local_folder(spec, "model.init", FIX)
    if (path / "unet" / "config.json").is_file():
        return path, "unet", kind
    if (path / "config.json").is_file():
        return path, None, kind
    raise BenchError(f"model.init {spec} holds no diffusers U-Net (neither unet/config.json nor config.json); {FIX}")


def init_config(spec: str) -> dict:
    """The checkpoint's U-Net config (no weights read)."""
    folder, subfolder, _ = resolve_init(spec)
    path = folder / (subfolder or "") / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchError(f"model.init {spec}: its U-Net config.json is unreadable ({err}); {FIX}") from None
    return checked(config, UNET_CONFIG, path, f"model.init {spec} is no diffusers U-Net as saved; {FIX}")


def init_stamp(spec: str) -> list:
    """(file, size, mtime) of the U-Net folder's files: part of a run's id, so replaced weights retrain."""
    folder, subfolder, _ = resolve_init(spec)
    unet_dir = folder / (subfolder or "")
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(unet_dir.iterdir()) if p.is_file()]


def reconciled_config(spec: str, channels: int, image_size: int, condition_path: str) -> tuple[dict, dict]:
    """(config overrides, architecture facts): what the suite's data and condition path change in the
    checkpoint's config; BenchError on shapes that cannot be reconciled."""
    config = init_config(spec)
    for key in ("in_channels", "out_channels"):
        if config.get(key, 4) != channels:
            raise BenchError(f"model.init {spec} has {key} = {config.get(key, 4)} but the data set has {channels} "
                             "channel(s); pick a checkpoint for this data's channels or set data.grayscale to match "
                             "(a latent-space U-Net needs model.vae)")
    downsamples = 2 ** (len(config.get("block_out_channels", ())) - 1)
    if image_size % downsamples:
        raise BenchError(f"model.init {spec} downsamples by {downsamples}, which data.image_size = {image_size} is "
                         f"not a multiple of; set data.image_size to a multiple of {downsamples}")
    width = token_width(spec, config)
    for key in ("addition_embed_type", "encoder_hid_dim_type"):
        if config.get(key):
            raise BenchError(f"model.init {spec} needs extra conditioning inputs ({key} = {config[key]!r}) that "
                             "bench does not supply; pick a U-Net conditioned by cross-attention only (e.g. Stable "
                             "Diffusion 1.x)")
    time_path = condition_path == "attention+time"
    overrides = {"class_embed_type": "projection" if time_path else None,
                 "projection_class_embeddings_input_dim": width if time_path else None}
    overrides = {k: v for k, v in overrides.items() if config.get(k) != v}
    facts = {"in_channels": channels, "sample_size": config.get("sample_size"), "cross_attention_dim": width,
             "block_out_channels": list(config.get("block_out_channels", ()))}
    return overrides, facts


def token_width(spec: str, config: dict | None = None) -> int:
    """The checkpoint's cross-attention width: the width of every method's condition tokens."""
    width = (config or init_config(spec)).get("cross_attention_dim", 1280)  # diffusers' default
    if isinstance(width, (list, tuple)):
        if len(set(width)) != 1:
            raise BenchError(f"model.init {spec} has a cross-attention width per block ({width}); bench's condition "
                             "tokens have one width: pick a checkpoint with one cross_attention_dim")
        width = width[0]
    return int(width)


def init_structure(spec: str, channels: int, image_size: int, condition_path: str) -> UNet2DConditionModel:
    """The reconciled U-Net built from its config alone, its weights not read: for a run whose own
    checkpoint replaces them (call under torch.device("meta") to pay nothing)."""
    from diffusers import UNet2DConditionModel
    overrides, _ = reconciled_config(spec, channels, image_size, condition_path)
    try:
        return UNet2DConditionModel.from_config({**init_config(spec), **overrides})
    except (TypeError, ValueError, KeyError) as err:  # values of the right types that do not fit together
        raise BenchError(f"model.init {spec}: its U-Net config.json does not build a U-Net ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]}); {FIX}") from None


PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v"}   # diffusers' prediction_type -> [train] prediction


def check_prediction(spec: str, prediction: str) -> None:
    """BenchError when a pipeline folder's scheduler says its U-Net predicts other than [train] prediction:
    fine-tuning it to the other target would first unlearn what it was trained for. A folder without a
    scheduler config says nothing, and is taken as the suite's."""
    folder, subfolder, _ = resolve_init(spec)
    path = folder / "scheduler" / "scheduler_config.json"
    if subfolder is None or not path.is_file():
        return
    try:
        theirs = json.loads(path.read_text()).get("prediction_type", "epsilon")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise BenchError(f"model.init {spec}: {path} is unreadable ({err}); {FIX}") from None
    if PREDICTIONS.get(theirs, theirs) != prediction:
        raise BenchError(f"model.init {spec} predicts {theirs!r} ({path}) but [train] prediction is {prediction!r}; "
                         f"set [train] prediction = \"{PREDICTIONS.get(theirs, theirs)}\" to fine-tune it as it was trained")


def init_architecture(spec: str, channels: int, image_size: int, condition_path: str) -> UNet2DConditionModel:
    """`init_structure`, its weights file checked against it by the safetensors header (BenchError when
    they do not fit)."""
    unet = init_structure(spec, channels, image_size, condition_path)
    _check_weights(spec, {k: tuple(v.shape) for k, v in unet.state_dict().items()})
    return unet


def _check_weights(spec: str, shapes: dict[str, tuple]) -> None:
    """That the U-Net folder's safetensors weights (maybe sharded) exist and fit `shapes`; read from
    the files' headers only."""
    from safetensors import SafetensorError, safe_open
    folder, subfolder, _ = resolve_init(spec)
    unet_dir = folder / (subfolder or "")
    index = unet_dir / f"{WEIGHTS}.safetensors.index.json"
    try:
        files = ([unet_dir / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
                 if index.is_file() else [unet_dir / f"{WEIGHTS}.safetensors"])
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise BenchError(f"model.init {spec}: {index.name} is unreadable ({err}); {FIX}") from None
    if not all(f.is_file() for f in files):
        raise BenchError(f"model.init {spec} holds no U-Net weights in safetensors ({files[0].name}; bench never "
                         "unpickles a .bin file: convert it once with save_pretrained(safe_serialization=True)); "
                         + FIX)
    for file in files:
        try:
            with safe_open(file, "pt") as weights:
                found = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
        except (SafetensorError, OSError) as err:
            raise BenchError(f"model.init {spec}: {file.name} is not a valid safetensors file ({err}); {FIX}") from None
        wrong = next((k for k, shape in found.items() if k in shapes and shapes[k] != shape), None)
        if wrong:
            raise BenchError(f"model.init {spec}: {wrong} has shape {found[wrong]} in the checkpoint but "
                             f"{shapes[wrong]} in its own config; the folder's config.json and weights disagree")


def load_init_unet(spec: str, channels: int, image_size: int, condition_path: str
                   ) -> tuple[UNet2DConditionModel, dict]:
    """The pretrained U-Net, reconciled with the suite, and its provenance: source, resolved folder,
    the layers initialised here (missing from the checkpoint) and the checkpoint's layers left unused.
    Initialised layers draw from torch's global RNG: callers seed it first."""
    from diffusers import UNet2DConditionModel
    folder, subfolder, kind = resolve_init(spec)
    overrides, facts = reconciled_config(spec, channels, image_size, condition_path)
    try:
        # low_cpu_mem_usage=False: its default True wants `accelerate`, which bench does not need
        unet, info = UNet2DConditionModel.from_pretrained(folder, subfolder=subfolder, local_files_only=True,
                                                          use_safetensors=True, low_cpu_mem_usage=False,
                                                          output_loading_info=True, **overrides)
    except (OSError, ValueError, RuntimeError, TypeError) as err:
        reason = str(err).strip().splitlines()
        raise BenchError(f"model.init {spec} does not load as a U-Net ({reason[-1] if reason else type(err).__name__}"
                         f"); {FIX}") from None
    initialised = _layers(info["missing_keys"])
    for name in initialised:  # diffusers leaves a layer the checkpoint lacks as raw memory
        layer = unet.get_submodule(name)
        if not hasattr(layer, "reset_parameters"):
            raise BenchError(f"model.init {spec} lacks {name}, which bench cannot initialise; {FIX}")
        layer.reset_parameters()
    recipe = folder / RECIPE_FILE
    provenance = {"source": spec, "kind": "bench-pretrain" if recipe.is_file() else kind, "folder": str(folder),
                  "subfolder": subfolder, **facts,
                  "initialised": initialised, "unused": _layers(info["unexpected_keys"])}
    if recipe.is_file():
        provenance["pretrain_key"] = json.loads(recipe.read_text()).get("key")
    return unet, provenance


def _layers(keys: list[str]) -> list[str]:
    """Parameter names -> their modules (`class_embedding.linear_1.weight` -> `class_embedding.linear_1`)."""
    return sorted({key.rpartition(".")[0] for key in keys})
