"""The one pixel convention of bench: uint8 values u in [0, 255] <-> model space x in [-1, 1],
x = u / 127.5 - 1 (the DDPM convention, Ho et al. 2020, sec. 3.3). Every network bench trains or
scores with sees model space; every file bench writes holds uint8."""
from __future__ import annotations

import numpy as np
import torch

HALF_RANGE = 127.5   # 255 / 2: u = 0 -> x = -1, u = 255 -> x = 1


def model_space(u):
    """Pixel values (a uint8 or float tensor of any layout, or a number) -> model space."""
    if isinstance(u, torch.Tensor):
        u = u.float()
    return u / HALF_RANGE - 1


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, C) -> float32 (N, C, H, W) in model space."""
    return model_space(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))


def pixel_values(x: torch.Tensor) -> torch.Tensor:
    """Model space (any layout) -> uint8 pixel values, the same layout: clamped to [-1, 1], rounded."""
    return ((x.float().clamp(-1, 1) + 1) * HALF_RANGE).round().to(torch.uint8)
