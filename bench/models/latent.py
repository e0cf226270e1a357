"""Latent diffusion ([model] vae): a local diffusers AutoencoderKL between the images and the U-Net.

This module is the one owner of the VAE: where its folder is, its latent shape, its scaling (and
shift) factor, encoding, decoding and the cached latents of a data set. Nothing else calls the VAE.

  z = (mean of q(z | x) - shift_factor) * scaling_factor        x = decode(z / scaling_factor + shift_factor)

Methods diffuse z with their hooks unchanged; the networks trained on images (the expert, an SSL
encoder) see `decode(z)` (MethodContext.images), and samples are decoded before any metric, so every
network that scores sees images at the data set's size. center_data's mu is the latents' channel mean.
A data set's dihedral augmentation turns and flips the latents: for a convolutional VAE these are close
to the latents of the turned image, not equal, and encoding each image eight times would multiply the
cache by eight.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.shapes import INTS, NUMBER, AnyOf, ListOf, Obj, checked
from bench.core.store import SHORT_LOCK_TIMEOUT_S, FileLock, atomic_write_bytes
from bench.datasets.base import SPLITS, PreparedData
from bench.core.pixels import to_model_space
from bench.models.local import local_folder

if TYPE_CHECKING:  # diffusers is imported on use
    from diffusers import AutoencoderKL

VAE_CLASS = "AutoencoderKL"
VAE_SUBFOLDER = "vae"               # a diffusers pipeline folder keeps its VAE here
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
# What bench and diffusers read of an AutoencoderKL's config.json before building it
VAE_CONFIG = Obj({"in_channels": int, "out_channels": int, "latent_channels": int, "block_out_channels": ListOf(int),
                  "layers_per_block": int, "sample_size": INTS, "scaling_factor": NUMBER,
                  "shift_factor": AnyOf((NUMBER, type(None))), "down_block_types": ListOf(str),
                  "up_block_types": ListOf(str)})
NOT_A_VAE_FIX = ("point it at a VAE saved with save_pretrained (or a pipeline folder with vae/, or a model id in "
                 "the local Hugging Face cache), or set model.vae = \"\" for pixel space")
CHUNK = 64                          # images per VAE call: bounds memory for large VAEs and sets


def vae_folder(spec: str) -> Path:
    """The AutoencoderKL folder `spec` names (a local folder or a cached Hugging Face id): a pipeline folder
    with `vae/`, or the VAE folder itself; BenchError unless it has an AutoencoderKL config and safetensors
    weights."""
    root, _ = local_folder(spec, "model.vae", NOT_A_VAE_FIX)
    for folder in (root / VAE_SUBFOLDER, root):
        if _class_name(folder / "config.json") == VAE_CLASS:
            if not (folder / WEIGHTS_FILE).is_file():
                raise BenchError(f"model.vae {folder} has no {WEIGHTS_FILE}; bench loads VAE weights from safetensors "
                                 "only: re-save the VAE with save_pretrained(safe_serialization=True)")
            return folder
    raise BenchError(f"model.vae = {spec!r} is not a local {VAE_CLASS} folder (no config.json of an {VAE_CLASS} there "
                     f"or in its {VAE_SUBFOLDER}/ subfolder); {NOT_A_VAE_FIX}")


def _class_name(config: Path) -> str | None:
    try:
        return json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def latent_shape(spec: str, channels: int, image_size: int) -> tuple[int, int]:
    """(latent channels, latent side) of images (channels, image_size) under the VAE `spec`; BenchError
    if the VAE takes another channel count or the size does not divide into its downsampling."""
    folder = vae_folder(spec)
    config = vae_config(folder)
    in_channels = config.get("in_channels", 3)
    if in_channels != channels:
        raise BenchError(f"model.vae {folder} encodes {in_channels}-channel images but the data have {channels} "
                         f"channel(s); use a VAE for {channels}-channel images, or set data.grayscale = "
                         f"{'true' if in_channels == 1 else 'false'}")
    factor = downsampling_factor(config)
    if image_size % factor:
        raise BenchError(f"data.image_size = {image_size} is not a multiple of {factor}, the downsampling factor of "
                         f"model.vae {folder}; choose an image size divisible by {factor}")
    return config.get("latent_channels", 4), image_size // factor


def vae_config(folder: Path) -> dict:
    """The AutoencoderKL config.json of `folder` (`vae_folder`), of the shape diffusers builds from."""
    return checked(json.loads((folder / "config.json").read_text()), VAE_CONFIG, folder / "config.json",
                   f"model.vae {folder} is no {VAE_CLASS} as saved; {NOT_A_VAE_FIX}")


def downsampling_factor(config: Mapping) -> int:
    """Image side / latent side of the AutoencoderKL with `config`: every encoder block but the last halves
    the side (diffusers' Encoder)."""
    return 2 ** (len(config.get("block_out_channels", (64,))) - 1)


def weights_hash(spec: str) -> str:
    """sha256 (16 hex digits) of the VAE's weights file: what its cached latents and run ids are keyed by."""
    path = vae_folder(spec) / WEIGHTS_FILE
    stat = path.stat()
    return _file_hash(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_hash(path: Path, size: int, mtime_ns: int) -> str:
    """Hashed once per file state: planning asks for every run of a suite, and a real VAE is ~300 MB."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


class VAE:
    """A frozen AutoencoderKL on `device`, in the scaled latent space the diffusion runs in."""

    def __init__(self, model: "AutoencoderKL", device: torch.device):
        self.model = model.to(device).eval().requires_grad_(False)
        self.scaling_factor = float(self.model.config.scaling_factor)
        self.shift_factor = float(self.model.config.shift_factor or 0.0)
        self.device = device

    @classmethod
    def load(cls, spec: str, device: torch.device) -> "VAE":
        """The VAE of the folder `spec` names (`vae_folder`); BenchError if its weights do not load."""
        from diffusers import AutoencoderKL
        folder = vae_folder(spec)
        vae_config(folder)
        try:
            model = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                  low_cpu_mem_usage=False)  # no `accelerate` needed
        except (OSError, RuntimeError, ValueError, TypeError) as err:  # torn weights, or weights of another config
            reason = str(err).strip().splitlines()[0]
            raise BenchError(f"model.vae {folder} does not load ({reason}); re-save the VAE with save_pretrained") \
                from None
        return cls(model, device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space images (B, C, H, W) in [-1, 1] -> scaled latents. The posterior mean, not a draw:
        the cached latents are then a function of the image alone, like the prepared arrays they are
        cached beside (a draw would freeze one arbitrary noise sample into the cache for every epoch),
        and the posterior's std is small next to the noise the diffusion itself adds."""
        return torch.cat([(self.model.encode(c.to(self.device)).latent_dist.mean - self.shift_factor)
                          * self.scaling_factor for c in x.float().split(CHUNK)])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> model-space images (B, C, H, W), nominally in [-1, 1]."""
        return torch.cat([self.model.decode(c.float() / self.scaling_factor + self.shift_factor).sample
                          for c in z.split(CHUNK)])


@dataclass(frozen=True)
class Latents:
    """The VAE and the scaled latents (N, C, h, w) float32 of each split, in the data's order."""

    vae: VAE
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def size(self) -> int:
        return int(self.train.shape[2])

    def split(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def channel_mean(self) -> tuple[float, ...]:
        """The train split's per-channel latent mean: center_data's mu in latent mode."""
        return tuple(float(m) for m in self.train.double().mean((0, 2, 3)))

    def train_only(self) -> "Latents":
        """These latents with val and test emptied: what a method may see (MethodContext)."""
        empty = self.train[:0]
        return dataclasses.replace(self, val=empty, test=empty)


def latents_path(spec: str, data_path: Path) -> Path:
    """Where the latents of the prepared data at `data_path` under the VAE `spec` are cached."""
    return Path(data_path).with_name(f"latents-{weights_hash(spec)}-{Path(data_path).stem}.npz")


def prepare_latents(spec: str, data: PreparedData, data_path: Path, device: torch.device) -> Path:
    """Encode every split of `data` (cached at `data_path`) once per data set and VAE weights; return the
    cache file. A VAE that does not fit or load raises BenchError before anything is written."""
    latent_shape(spec, data.channels, data.image_size)
    path = latents_path(spec, data_path)
    if path.exists():
        return path
    vae = VAE.load(spec, device)
    with FileLock(path.with_suffix(".lock"), SHORT_LOCK_TIMEOUT_S):
        if not path.exists():
            arrays = {s: vae.encode(to_model_space(data.split(s)[0])).cpu().numpy() for s in SPLITS}
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            atomic_write_bytes(path, buf.getvalue())
    return path


def load_latents(spec: str, data_path: Path, device: torch.device) -> Latents:
    """The VAE on `device` and the cached latents of every split on the CPU, like the prepared arrays
    (encoded first if not yet cached)."""
    path = latents_path(spec, data_path)
    if not path.exists():
        prepare_latents(spec, PreparedData.load(data_path), data_path, device)
    with np.load(path, allow_pickle=False) as z:
        splits = {s: torch.from_numpy(z[s]) for s in SPLITS}
    return Latents(VAE.load(spec, device), **splits)
