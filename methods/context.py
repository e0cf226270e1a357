"""What a method may use besides the U-Net: data, the expert, the cache, the device."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.datasets.base import PreparedData
from bench.diffusion import Schedule


@dataclass
class MethodContext:
    num_classes: int
    channels: int
    image_size: int
    token_dim: int                       # the U-Net's cross_attention_dim
    device: torch.device
    data: PreparedData                   # train split: SSL embedding banks, same-class conditioners
    schedule: Schedule                   # the suite's forward process (sampling hooks noise references with it)
    expert_loader: Callable[[], torch.nn.Module] | None = None  # lazy: only methods that need it pay
    cache_dir: Path | None = None
    eval_split: str = "test"             # the suite's scored split: the held-out images of evaluation_features
    p_uncond: float = 0.0                # classifier-free guidance label dropout ([train] p_uncond); 0 = none
    guidance: float = 1.0                # classifier-free guidance scale ([sample] guidance); 1 = none
    _expert: torch.nn.Module | None = None

    def expert(self) -> torch.nn.Module:
        if self._expert is None:
            if self.expert_loader is None:
                raise RuntimeError("this method needs the expert classifier, but none was provided")
            self._expert = self.expert_loader().to(self.device)
        return self._expert

    def train_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The train split in model space: float (N, C, H, W) in [-1, 1], int64 labels."""
        return self.split_images("train")

    def split_images(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A split (train, val, test) in model space: float (N, C, H, W) in [-1, 1], int64 labels."""
        x, y = self.data.split(split)
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x.to(self.device), torch.from_numpy(y).long().to(self.device)
