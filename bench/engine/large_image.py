"""Large images from a model of tiles: patch-grid sampling with x0 averaged over overlapping windows.

Graikos et al., "Learned representation-guided diffusion models for large-image generation", CVPR 2024
(arXiv 2312.07330), Fig. 2b, as the authors' code runs it (cvlab-stonybrook/Large-Image-Diffusion,
notebooks/utils.py: `get_conditioning`, `get_panorama`). A model trained on w x w tiles, each conditioned on
an embedding z of itself (a method with `spatial_condition`), paints a canvas k w x k w:

1. Grid.  Z[r, c], r, c < k: the embedding of tile (r, c) of a real large image (`embedding_grid`), or any
   grid of embeddings (e.g. interpolated between images).
2. Windows.  w x w windows at origins (y, x), each of y and x in 0, s, 2 s, ... up to k w - w (stride s; the
   authors' s = w / 4: 16 of 64 latent pixels). Where s does not divide k w - w, one more window sits flush
   with the far edge (their loop leaves that strip uncovered: a division by zero).
3. Conditions.  Window (y, x) sits at grid coordinate (u, v) = (y / w, x / w): a window exactly over tile
   (r, c) gets Z[r, c]. Its embedding blends the 4 grid neighbours floor(u) + {0, 1} x floor(v) + {0, 1}
   (the grid replicated past its last row and column): along v, then along u, spherically (slerp, linear
   where two embeddings are nearly parallel, cos > 0.9995, as theirs) or linearly (`interpolation`).
4. Reverse step i at timestep t, on the canvas x_t:
   a. eps_hat_n = the method's denoiser (the suite's classifier-free guidance) on window n of x_t;
   b. x0_hat_n = mu + (x_t[n] - mu - s_t eps_hat_n) / a_t                   (Schedule.x0_from_eps)
   c. x0_hat = sum_n x0_hat_n, each at its window / the number of windows over each pixel
   d. eps_hat = (x_t - mu - a_t (x0_hat - mu)) / s_t                        (Schedule.eps_from_x0)
   e. x_{t-1} = the method's `step` (the suite's sampler) on the whole canvas with eps_hat; its noise, if
      any, is drawn once for the canvas, so overlapping windows share it.

Where bench differs from the authors' notebook, the difference is a suite setting, the same for every image:
their sampler is their own DDIM (50 steps, noise variance beta_t (1 - abar_prev) / (1 - abar_t) from a single
step's beta though steps lie 20 apart), here `[sample] sampler`; their merged x0 is not clipped, here
`[sample] clip_x0` applies to it; their guidance (1 + 3) eps_c - 3 eps_u would be `[sample] guidance` = 4 in
bench's convention, and the suite's g applies here. Their notebook lays the real image's tiles column-major and reshapes the
embeddings row-major (a transpose, unless their patch list is ordered otherwise); here the grid and the real
image come from one array. In latent mode ([model] vae) `decode` decodes each window and blends the decoded
windows weighted towards their centres, exp(-r^2 / 0.8^2), as theirs, or (`decode = "canvas"`) the whole canvas.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.config import Config
from bench.core.errors import BenchError, RunFailed
from bench.core.seeds import sample_noise_seed
from bench.diffusion import SAMPLERS, Sampler
from bench.engine.sample import sampler_settings
from bench.engine.train import Built, autocast
from bench.metrics.large_image import grid_origins

NEARLY_PARALLEL = 0.9995  # cos above which slerp is linear (the authors' DOT_THRESHOLD): sin(theta) ~ 0
DECODE_SIGMA = 0.8        # width of a decoded window's blending weight, in half-windows (the authors' sigma)


@dataclass(frozen=True)
class LargeImageParams:
    k: int = 4                          # canvas side in tiles: k w x k w (the paper: 1024 px from 256-px tiles)
    stride: int | None = None           # window stride in model-space pixels, 1 to w; None: w // 4 (the
    #                                     authors' 16 of 64); s = w gives independent tiles
    interpolation: Literal["slerp", "lerp"] = "slerp"  # how a window's embedding blends its 4 grid neighbours
    decode: Literal["windows", "canvas"] = "windows"   # latent mode: decode each window and blend them, weighted
    #                                     to its centre (the authors'), or the whole canvas at once

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise BenchError(f"large-image k must be a whole number >= 1 (the canvas side in tiles), got {self.k!r}")
        if self.stride is not None and (isinstance(self.stride, bool) or not isinstance(self.stride, int)
                                        or self.stride < 1):
            raise BenchError(f"large-image stride must be a whole number of pixels >= 1, got {self.stride!r}")
        if self.interpolation not in ("slerp", "lerp"):
            raise BenchError(f"large-image interpolation must be slerp or lerp, got {self.interpolation!r}")
        if self.decode not in ("windows", "canvas"):
            raise BenchError(f"large-image decode must be windows or canvas, got {self.decode!r}")

    def window_stride(self, window: int) -> int:
        """The stride in pixels for w = `window`; BenchError if it exceeds the window (it would leave gaps)."""
        stride = max(1, window // 4) if self.stride is None else self.stride
        if stride > window:
            raise BenchError(f"large-image stride {stride} exceeds the {window}-px window and would leave "
                             f"unpainted gaps; choose a stride from 1 to {window}")
        return stride


def window_layout(canvas: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) of every window of a square canvas, row by row."""
    origins = grid_origins(canvas, window, stride)      # the crops of patch FID lie on the same kind of grid
    return list(itertools.product(origins, origins))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows a, b (N, E) at fractions t (N, 1): sin((1 - t) theta) a / sin(theta) +
    sin(t theta) b / sin(theta), theta the angle between them; linear where they are nearly parallel."""
    cos = F.cosine_similarity(a, b, dim=1, eps=1e-12)[:, None].clamp(-1, 1)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    parallel = cos.abs() > NEARLY_PARALLEL
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / safe
    return torch.where(parallel, torch.lerp(a, b, t), spherical)


def window_embeddings(grid: torch.Tensor, origins: list[tuple[int, int]], window: int,
                      interpolation: str = "slerp") -> torch.Tensor:
    """Each window's embedding (N, E) from the grid (R, C, E): its 4 nearest grid embeddings blended along x,
    then along y, at its fractional grid coordinate (y / w, x / w)."""
    rows, cols = grid.shape[:2]
    yx = torch.tensor(origins, dtype=torch.float64, device=grid.device) / window
    low = yx.floor().long()
    frac = (yx - low).to(grid.dtype)
    r0, c0 = low[:, 0].clamp(max=rows - 1), low[:, 1].clamp(max=cols - 1)
    r1, c1 = (r0 + 1).clamp(max=rows - 1), (c0 + 1).clamp(max=cols - 1)   # the grid replicated past its edge
    blend = slerp if interpolation == "slerp" else torch.lerp
    top = blend(grid[r0, c0], grid[r0, c1], frac[:, 1:])
    bottom = blend(grid[r1, c0], grid[r1, c1], frac[:, 1:])
    return blend(top, bottom, frac[:, :1])


def cut_windows(x: torch.Tensor, origins: list[tuple[int, int]], window: int) -> torch.Tensor:
    """The windows of canvases x (B, C, H, W): (B N, C, w, w), canvas-major."""
    return torch.stack([x[:, :, y:y + window, c:c + window] for y, c in origins], 1).flatten(0, 1)


def merge_windows(windows: torch.Tensor, origins: list[tuple[int, int]], canvas_shape,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """The mean over overlapping windows (B N, C, w, w), canvas-major, at each pixel of canvases (B, C, H, W),
    each window's pixels weighted by `weight` (w, w) if given."""
    window = windows.shape[-1]
    weight = windows.new_ones((window, window)) if weight is None else weight.to(windows)
    per_canvas = windows.unflatten(0, (canvas_shape[0], len(origins)))
    total = windows.new_zeros(canvas_shape)
    count = windows.new_zeros((1, 1, *canvas_shape[2:]))
    for n, (y, x) in enumerate(origins):
        total[:, :, y:y + window, x:x + window] += per_canvas[:, n] * weight
        count[:, :, y:y + window, x:x + window] += weight
    return total / count


def centre_weight(side: int, sigma: float = DECODE_SIGMA) -> torch.Tensor:
    """exp(-r^2 / sigma^2), r a pixel's distance from the window's centre in half-sides (the authors'
    `gaussian_kernel`; their scaling to a maximum of 1 cancels in the weighted mean)."""
    u = torch.linspace(-1, 1, side)
    return torch.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / sigma ** 2)


def decode(built: Built, canvas: torch.Tensor, params: "LargeImageParams") -> torch.Tensor:
    """The canvases as images in [-1, 1]: themselves in pixel space; in latent mode the VAE's decode of the
    whole canvas, or of each window, blended with `centre_weight` (`params.decode`)."""
    ctx = built.method.ctx
    if ctx.latents is None or params.decode == "canvas":
        return ctx.images(canvas)
    window = ctx.image_size
    origins = window_layout(canvas.shape[-1], window, params.window_stride(window))
    decoded = torch.cat([ctx.images(chunk) for chunk in cut_windows(canvas, origins, window).split(64)])
    factor = decoded.shape[-1] // window                      # pixels per latent
    shape = (len(canvas), decoded.shape[1], canvas.shape[-2] * factor, canvas.shape[-1] * factor)
    return merge_windows(decoded, [(y * factor, x * factor) for y, x in origins], shape,
                         centre_weight(decoded.shape[-1]))


def embedding_grid(built: Built, images: torch.Tensor, k: int) -> torch.Tensor:
    """The grid (B, k, k, E) of the method's embeddings of the k x k tiles of images (B, C, k S, k S) in
    [-1, 1], S the data set's tile size (pixels, also in latent mode)."""
    tile = images.shape[-1] // k
    if images.shape[-2:] != (k * tile, k * tile) or tile < 1:
        raise ValueError(f"large images of shape {tuple(images.shape)} are not {k} x {k} square tiles")
    tiles = images.unflatten(2, (k, tile)).unflatten(4, (k, tile)).permute(0, 2, 4, 1, 3, 5).flatten(0, 2)
    with torch.no_grad():
        z = torch.cat([built.method.embed(chunk) for chunk in tiles.split(256)])
    return z.unflatten(0, (images.shape[0], k, k))


def check_spatial(method: type, variant: str, sampler: str) -> None:
    """BenchError unless the method class conditions on embeddings and the sampler keeps x_t = a_t x0 + s_t eps."""
    if not method.spatial_condition:
        raise BenchError(f"method {variant} cannot condition on a spatial grid of embeddings, which large "
                         "images need; use a method that can, e.g. ssl")
    if not SAMPLERS[sampler].vp_samples:
        raise BenchError(f"sampler {sampler!r} does not keep samples as x_t = a_t x0 + s_t eps, which "
                         "averaging x0 over windows needs; set [sample] sampler to ddim, ddpm, dpmsolver++ or unipc")


@torch.no_grad()
def sample_large(built: Built, cfg: Config, grid: torch.Tensor, params: LargeImageParams, gen_seed: int,
                 device: torch.device, on_step=None) -> torch.Tensor:
    """Canvases (B, C, k w, k w) in model space (latents in latent mode), one per grid (B, k, k, E)."""
    check_spatial(type(built.method), built.method.variant, cfg.sample.sampler)
    method, model, schedule = built.method, built.model, built.schedule
    window, k = method.ctx.image_size, params.k
    if grid.shape[1:3] != (k, k):
        raise ValueError(f"a {k} x {k}-tile canvas needs a {k} x {k} grid of embeddings, got {tuple(grid.shape)}")
    origins = window_layout(k * window, window, params.window_stride(window))
    z = torch.stack([window_embeddings(g, origins, window, params.interpolation) for g in grid.to(device)])
    cond = method.embedding_tokens(model, z.flatten(0, 1))           # (B N, L, D), canvas-major like the windows
    sampler = Sampler.from_config(schedule, sampler_settings(cfg))
    shape = (len(grid), method.ctx.channels, k * window, k * window)
    noise_gen = torch.Generator().manual_seed(sample_noise_seed(gen_seed, 0))  # a canvas is one chunk
    x = sampler.start(method.initial_noise(shape, noise_gen, "cpu").to(device))
    finite = torch.ones((), dtype=torch.bool, device=device)
    for i, t in enumerate(sampler.timesteps):
        windows = cut_windows(sampler.model_input(x, i), origins, window)
        eps_hat = []
        for start in range(0, len(windows), cfg.sample.batch_size):   # the suite's images per denoiser call
            rows = slice(start, start + cfg.sample.batch_size)
            tt = t.expand(len(windows[rows])).to(device)
            with autocast(cfg, device):                                # labels: a spatial condition has none
                eps_hat.append(method.sampling_denoise(model, windows[rows], tt, cond[rows], None).float())
        t1 = t.reshape(1).to(device)
        x0_windows = schedule.x0_from_eps(cut_windows(x, origins, window), torch.cat(eps_hat), t1)
        merged_eps = schedule.eps_from_x0(x, merge_windows(x0_windows, origins, shape), t1)
        x = method.step(sampler, x, merged_eps, i, noise_gen)
        finite &= torch.isfinite(merged_eps).all() & torch.isfinite(x).all()
        if on_step:
            on_step(i + 1, len(sampler))
    if not finite:
        raise RunFailed(f"{method.variant} went non-finite (NaN or inf) while sampling a large image at generation "
                        f"seed {gen_seed}: lower its guidance or other scale parameters")
    return x
