"""Sampling a trained model with the suite's sampler and a method's sampling hooks.

Paired seeds: for generation seed s, every method draws its initial noise and its sampler's per-step
noise from the same seeded stream, one per chunk of `sample.batch_size` images, and its condition draws
from a stream of their own (bench/core/seeds.py).
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch
from PIL import Image

from bench.config import Config, SampleConfig
from bench.core.errors import RunFailed
from bench.core.pixels import pixel_values
from bench.core.seeds import sample_condition_seed, sample_noise_seed
from bench.core.store import atomic_write_bytes
from bench.diffusion import Sampler
from bench.engine.train import Built, autocast


def generation_labels(scored_classes, samples_per_class: int) -> np.ndarray:
    """Class-major targets: the same rows per class for every method and seed."""
    return np.repeat(np.asarray(scored_classes, dtype=np.int64), samples_per_class)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model space (B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C)."""
    return pixel_values(x).permute(0, 2, 3, 1).cpu().numpy()


def sampler_settings(cfg: Config) -> SampleConfig:
    """[sample] as the sampler applies it. Latents are not bounded to [-1, 1] (nor to mu +- 1), so x0
    clipping, a pixel-space rule, is off in latent mode."""
    return dataclasses.replace(cfg.sample, clip_x0=False) if cfg.model.vae else cfg.sample


@torch.no_grad()
def sample_images(built: Built, cfg: Config, labels: np.ndarray, gen_seed: int,
                  device: torch.device, on_step=None) -> np.ndarray:
    """uint8 images (B, H, W, C) of `labels`, decoded from latents in latent mode."""
    return to_uint8(built.method.ctx.images(sample_model_space(built, cfg, labels, gen_seed, device, on_step)))


@torch.no_grad()
def sample_model_space(built: Built, cfg: Config, labels: np.ndarray, gen_seed: int,
                       device: torch.device, on_step=None) -> torch.Tensor:
    """The samples of `labels` as the U-Net makes them (model space: latents in latent mode)."""
    method, model = built.method, built.model
    ctx = method.ctx
    sampler = Sampler.from_config(built.schedule, sampler_settings(cfg))
    shape1 = (ctx.channels, ctx.image_size, ctx.image_size)
    out = []
    chunk = cfg.sample.batch_size
    for c, start in enumerate(range(0, len(labels), chunk)):
        y = torch.as_tensor(labels[start:start + chunk], device=device)
        shape = (len(y), *shape1)
        noise_gen = torch.Generator().manual_seed(sample_noise_seed(gen_seed, c))
        cond_gen = torch.Generator(device).manual_seed(sample_condition_seed(gen_seed, c))
        sampler.reset()
        x = sampler.start(method.initial_noise(shape, noise_gen, "cpu").to(device))
        cond = method.sample_condition(model, y, cond_gen)
        finite = torch.ones((), dtype=torch.bool, device=device)  # one flag, read once: no sync per step
        for i, t in enumerate(sampler.timesteps):
            tt = t.expand(len(y)).to(device)
            with autocast(cfg, device):
                eps_hat = method.sampling_denoise(model, sampler.model_input(x, i), tt, cond, y).float()
            x = method.step(sampler, x, eps_hat, i, noise_gen)
            finite &= torch.isfinite(eps_hat).all() & torch.isfinite(x).all()
            if on_step:
                on_step(i + 1, len(sampler))
        # x0 clipping turns an inf eps_hat into a finite x, and uint8 conversion NaN/inf into 0s and
        # 255s: either way the images would look scoreable.
        if not finite:
            raise RunFailed(f"{method.variant} went non-finite (NaN or inf) while sampling generation seed "
                            f"{gen_seed}; its samples are not scored: lower its guidance or other scale parameters")
        out.append(x)
    return torch.cat(out)


def save_grid(images: np.ndarray, labels: np.ndarray, path, scale: int = 2) -> None:
    """One row per class in label order, images side by side, 2-px gaps."""
    classes = sorted(set(labels.tolist()))
    rows = [images[labels == c] for c in classes]
    cols = max(len(r) for r in rows)
    h, w, ch = images.shape[1:]
    gap = 2
    canvas = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, ch), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    save_png(canvas, path, scale)


def save_png(canvas: np.ndarray, path, scale: int) -> None:
    """uint8 (H, W, C) written atomically as a PNG, each pixel a scale x scale block (nearest neighbour)."""
    pil = Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas)
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
