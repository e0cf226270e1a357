"""Mean pairwise SSIM within a class: a diversity statistic (lower = more diverse; the report judges it by
distance to the real images' own value, since pure noise is the most "diverse").

SSIM of Wang et al. 2004 (IEEE TIP 13:600, eq. 13) with their settings -- an 11x11 Gaussian window
of sigma 1.5, K1 = 0.01, K2 = 0.03, population (co)variances -- exactly as
`skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)` computes it, but for all pairs of
a class at once in torch. skimage filters the whole image and then averages the SSIM map over
the interior `(win - 1) // 2` pixels away from the border; there the window never leaves the image,
so a 'valid' convolution gives the same values with no padding at all.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.metrics.registry import CLOSEST_TO_REAL, Metric, Scoring, register_metric

SIGMA = 1.5
TRUNCATE = 3.5                          # skimage's (and scipy.ndimage's) Gaussian truncation
RADIUS = int(TRUNCATE * SIGMA + 0.5)    # 5 -> the 11 x 11 window
K1, K2 = 0.01, 0.03


def _filter_matrix(side: int, dtype, device) -> torch.Tensor:
    """(side - 2r, side) banded matrix M: M @ v is v filtered by the Gaussian, valid part only."""
    x = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (x / SIGMA) ** 2)
    window /= window.sum()
    out = side - 2 * RADIUS
    m = torch.zeros(out, side, dtype=torch.float64)
    for row in range(out):
        m[row, row:row + 2 * RADIUS + 1] = window
    return m.to(dtype=dtype, device=device)


def pairwise_ssim(images: np.ndarray, data_range: float = 255.0, device="cpu") -> np.ndarray:
    """SSIM of every pair (i < j, in np.triu_indices order) of uint8 images (N, H, W, C).

    Separable filtering is two matrix products (BLAS beats a 1-channel convolution by far). Images
    are centred on their own mean first: (co)variances do not change under a shift, and small
    centred values keep float32 rounding far below the 1e-4 agreement with skimage, so the
    per-pair work (the bulk) runs in float32 while per-image statistics are computed in float64.
    """
    n, h, w = images.shape[:3]
    if min(h, w) < 2 * RADIUS + 1:
        raise BenchError(f"SSIM needs images of at least {2 * RADIUS + 1} px (Wang et al.'s 11x11 "
                         f"Gaussian window), got {h}x{w}; use a larger data.image_size or drop 'ssim'")
    if n < 2:
        raise BenchError(f"SSIM needs at least 2 images per class, got {n}; raise samples_per_class")
    rows, cols = _filter_matrix(h, torch.float64, device), _filter_matrix(w, torch.float64, device)
    rows32, cols32 = rows.float(), cols.float()
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).double()
    offset = x.mean(dim=(2, 3), keepdim=True)                     # per image and channel
    centred = x - offset
    mu_c = rows @ centred @ cols.T                                 # local means of the centred images
    var = rows @ (centred * centred) @ cols.T - mu_c * mu_c        # local variances
    # Per-pair work in float32: per-image statistics are computed in float64 first.
    mu, mu_c, var, centred = (mu_c + offset).float(), mu_c.float(), var.float(), centred.float()
    mu_sq = mu * mu
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    out = []
    for i in range(n - 1):  # image i against every later image: contiguous slices, no gathers
        later = slice(i + 1, n)
        covariance = rows32 @ (centred[i] * centred[later]) @ cols32.T - mu_c[i] * mu_c[later]
        ssim_map = (((2 * mu[i] * mu[later] + c1) * (2 * covariance + c2))
                    / ((mu_sq[i] + mu_sq[later] + c1) * (var[i] + var[later] + c2)))
        out.append(ssim_map.double().mean(dim=(1, 2, 3)))  # = skimage's mean over channels of channel means
    return torch.cat(out).cpu().numpy()


def class_ssim(images: np.ndarray, labels: np.ndarray, classes, device="cpu") -> dict[int, float]:
    """Mean pairwise SSIM of each class's images, keyed by class index."""
    return {int(c): float(pairwise_ssim(images[labels == c], device=device).mean()) for c in classes}


def diversity(scoring: Scoring, network: None = None) -> dict:
    """Mean pairwise SSIM per class of the generated images, and of as many real images per class."""
    fake, fake_labels, name_of = scoring.fake, scoring.fake_labels, scoring.name_of
    per = class_ssim(fake, fake_labels, [c for c in scoring.scored if np.sum(fake_labels == c) >= 2], scoring.device)
    if not per:
        raise BenchError("ssim needs at least 2 generated images of one scored class")
    counts = {c: int(np.sum(fake_labels == c)) for c in per}
    reals = {c: scoring.real[scoring.real_labels == c][:n] for c, n in counts.items()}   # the first n_c real images
    reference = [pairwise_ssim(images, device=scoring.device).mean() for images in reals.values() if len(images) >= 2]
    return {"value": float(np.mean(list(per.values()))), "per_class": {name_of[c]: v for c, v in per.items()},
            "reference": float(np.mean(reference)) if reference else float("nan"), "provenance": {
                "network": "none (SSIM of pixels)",
                "statistic": "mean pairwise SSIM within a class, averaged over classes",
                "implementation": "torch, equal to skimage.metrics.structural_similarity",
                "gaussian_sigma": SIGMA, "truncate": TRUNCATE, "K1": K1, "K2": K2, "data_range": 255,
                "use_sample_covariance": False, "n_per_class": {name_of[c]: n for c, n in counts.items()},
                "reference_n_per_class": {name_of[c]: len(x) for c, x in reals.items() if len(x) >= 2}}}


# Its best value is the real data's own (its reference): lower is not better, or pure noise would win.
register_metric(Metric("ssim", CLOSEST_TO_REAL, diversity))
