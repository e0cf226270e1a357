"""What a method may use besides the U-Net: the train split, the expert, the cache, the device.

Never the scorer, nor the splits it scores: a method is graded by a network it cannot reach, on
images it never saw. The held-out images an evaluation needs featurised are handed to
`evaluation_features` by the engine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.datasets.base import PreparedData
from bench.diffusion import Schedule
from bench.models.expert import labelled_model_space
from bench.models.latent import Latents


@dataclass
class MethodContext:
    num_classes: int
    channels: int                        # of what the U-Net diffuses: the images, or in latent mode the latents
    image_size: int
    token_dim: int                       # the U-Net's cross_attention_dim
    device: torch.device
    data: PreparedData                   # train split only (SSL embedding banks, same-class conditioners):
    #                                      val, test and the large images are emptied on construction
    schedule: Schedule                   # the suite's forward process (sampling hooks noise references with it)
    expert_loader: Callable[[], torch.nn.Module] | None = None  # lazy: only methods that need it pay
    cache_dir: Path | None = None
    p_uncond: float = 0.0                # classifier-free guidance label dropout ([train] p_uncond); 0 = none
    guidance: float = 1.0                # classifier-free guidance scale ([sample] guidance); 1 = none
    latents: Latents | None = None       # latent mode ([model] vae): the VAE and the train split's latents,
    #                                      which are then what the U-Net diffuses; None in pixel space
    _expert: torch.nn.Module | None = None

    def __post_init__(self):
        empty_x, empty_y = self.data.train_x[:0], self.data.train_y[:0]
        self.data = dataclasses.replace(self.data, val_x=empty_x, val_y=empty_y, test_x=empty_x, test_y=empty_y,
                                        large={})
        if self.latents is not None:
            self.latents = self.latents.train_only()

    def expert(self) -> torch.nn.Module:
        if self._expert is None:
            if self.expert_loader is None:
                raise RuntimeError("this method uses the expert classifier but does not declare it: return True from "
                                   "its needs_expert(params), so the engine hands it the expert")
            self._expert = self.expert_loader().to(self.device)
        return self._expert

    def train_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The train split in model space: float (N, C, H, W) in [-1, 1] (in latent mode its latents), int64
        labels."""
        if self.latents is None:
            return labelled_model_space(self.data.train_x, self.data.train_y, self.device)
        return self.latents.train.to(self.device), torch.from_numpy(self.data.train_y).long().to(self.device)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """What a network trained on images (the expert, an SSL encoder) sees of model-space `x`: `x`
        itself, or in latent mode the VAE's decode of it, at the data set's size."""
        return x if self.latents is None else self.latents.vae.decode(x).to(x.dtype)
