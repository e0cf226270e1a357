"""`BenchPipeline`: a model exported by `bench export` (bench/engine/export.py), sampled in any Python process.

    from bench.pipeline import BenchPipeline
    pipe = BenchPipeline.from_pretrained("exported")     # a local folder
    images = pipe(class_name="tumor", num_images=8, generator=torch.Generator().manual_seed(0)).images

The pipeline rebuilds the run's method from the exported weights and sampling state and calls bench's own
sampling loop (bench.engine.sample.sample_images): it samples exactly as `bench run` does. Its randomness is bench's
generation seed s, read from `generator` (the seed it was given: `initial_seed()`), from which bench draws
its paired noise streams per chunk of `[sample] batch_size` images (bench/engine/sample.py). So the same seed and
the same rows give the same images: `pipe(generator=torch.Generator().manual_seed(s))`, with every scored
class and the run's images per class (the defaults), returns the store's eval/seed=s/samples.npz, bit for
bit on the CPU. Other rows (one class, another count) are other draws of that seed. In latent mode the folder's
`vae` (an AutoencoderKL) decodes the samples through bench's own VAE code (bench/models/latent.py).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from safetensors import SafetensorError
from PIL import Image

from bench.core.errors import BenchError
from bench.datasets.base import PreparedData
from bench.engine.exported import REEXPORT, read_export
from bench.engine.sample import generation_labels, sample_images
from bench.engine.train import Built, new_method
from bench.methods import REGISTRY, Denoiser, method_name
from bench.models.latent import VAE, Latents, downsampling_factor


class BenchPipeline(DiffusionPipeline):
    """A bench-trained U-Net, its scheduler, its VAE in latent mode, and its method's conditioning (loaded by
    `from_pretrained`)."""

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["vae"]     # latent mode only

    def __init__(self, unet, scheduler, vae=None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)
        self.exported = None            # bench.engine.exported.Exported, set by from_pretrained
        self._built = None              # the method and denoiser on the device they were built for

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "BenchPipeline":
        """Load a local folder written by `bench export`."""
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            raise BenchError(f"{folder} is not a folder; BenchPipeline loads a local folder written by `bench export`")
        exported = read_export(folder)
        try:
            pipe = super().from_pretrained(folder, **kwargs)
            pipe.exported = exported
            pipe._method()              # a method that cannot be rebuilt is refused now, not at the first call
        except BenchError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:  # tampered files
            raise BenchError(f"{folder} does not load as the model `bench export` wrote ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:300]}); {REEXPORT}") from None
        return pipe

    @property
    def class_names(self) -> list[str]:
        return list(self.exported.info["class_names"])

    def _method(self):
        """bench's `Built` (method, denoiser, schedule) for the pipeline's device, rebuilt after `.to()`."""
        if self._built is None or self._built.method.ctx.device != self.device:
            self._built = rebuild(self.unet, self.exported, self.device, self.vae)
        return self._built

    def labels(self, class_name: str | list[str] | None = None, num_images: int | None = None) -> np.ndarray:
        """Target labels, class-major: `num_images` per class (default: the run's [sample] samples_per_class)
        for `class_name` (a name or a list of names; default: every scored class, as `bench run` samples)."""
        names = self.class_names
        wanted = [class_name] if isinstance(class_name, str) else class_name
        unknown = [c for c in wanted or [] if c not in names]
        if unknown:
            raise BenchError(f"unknown class {unknown[0]!r}; this model's classes: {', '.join(names)}")
        classes = self.exported.info["scored_classes"] if wanted is None else [names.index(c) for c in wanted]
        count = self.exported.cfg.sample.samples_per_class if num_images is None else num_images
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BenchError(f"num_images must be a positive integer, got {num_images!r}")
        return generation_labels(classes, count)

    @torch.no_grad()
    def __call__(self, class_name: str | list[str] | None = None, num_images: int | None = None,
                 generator: torch.Generator | None = None, output_type: str = "np", return_dict: bool = True):
        """Images of `class_name` (see `labels`), as uint8 (N, H, W, C) for output_type "np" or a list
        of PIL images for "pil". Without a generator the seed is drawn from torch's global RNG."""
        if output_type not in ("np", "pil"):
            raise BenchError(f"output_type {output_type!r}: use np or pil")
        labels = self.labels(class_name, num_images)
        seed = generator.initial_seed() if generator is not None else int(torch.randint(0, 2**31, ()))
        images = sample_images(self._method(), self.exported.cfg, labels, seed, self.device)
        if output_type == "pil":
            images = [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in images]
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def rebuild(unet, exported, device: torch.device, vae=None):
    """bench's `Built` (method, denoiser around `unet`, schedule) from an export, without the run's data or
    expert: the method takes back its `export_state` and samples as it did in the run. With `vae` (an
    AutoencoderKL: latent mode) the method sees latents with empty splits, and decodes through bench's VAE."""
    info = exported.info
    name = method_name(info["method"])
    if name not in REGISTRY:
        raise BenchError(f"this model's method {name!r} is not registered: load its plug-in first, e.g. "
                         "bench.methods.load_plugin('its_file.py')")
    channels, side = unet.config.in_channels, unet.config.sample_size
    if vae is None:
        latents, data = None, _no_data(info, channels, side)
    else:
        empty = torch.zeros((0, channels, side, side))
        latents = Latents(VAE(vae, device), empty, empty, empty)
        data = _no_data(info, vae.config.in_channels, side * downsampling_factor(vae.config))
    method = new_method(exported.cfg, info["method"], data, exported.data_mean,
                        channels=channels, image_size=side, token_dim=unet.config.cross_attention_dim, device=device,
                        expert_loader=partial(_no_expert, info["method"]), latents=latents)
    method.load_export_state({k: v.to(device) for k, v in exported.state.items()}, exported.weights)
    with torch.random.fork_rng(devices=[]):     # module initialisation must not move the caller's RNG
        modules = method.build_modules(unet)
    model = Denoiser(unet, modules, method.ctx.schedule).to(device)
    model.modules_.load_state_dict(exported.weights)
    model.eval()
    method.prepare(model)
    return Built(method, model, method.ctx.schedule)


def _no_data(info: dict, channels: int, side: int):
    """An empty data set of images (`channels`, `side`) with the exported classes: an exported model samples
    without its train split."""
    x, y = np.zeros((0, side, side, channels), np.uint8), np.zeros(0, np.int64)
    return PreparedData(info["dataset"], tuple(info["class_names"]), tuple(info["scored_classes"]), x, y, x, y, x, y)


def _no_expert(method: str):
    raise BenchError(f"method {method} asks for the expert classifier while sampling an exported model, which "
                     "carries none; the method must keep what it needs in export_state")
