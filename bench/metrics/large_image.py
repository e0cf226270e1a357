"""Metrics of large images (Graikos et al., CVPR 2024, large-image evaluation): patch FID/KID and a seam score.

Patch FID/KID: FID and KID (bench/metrics/fidkid.py, one feature network of the registry) of crops at the
training size cut from generated large images against the same crops of real large images, so a large image
is judged by the tile distribution it was trained on. The crops lie on a grid at half a tile's stride: half of
them straddle a tile border, where a seam would show.

Seam score: the mean squared difference between neighbouring pixels across the lines every `period` pixels
(the tile or window borders of a patch-grid sample), over the same for every other pair of neighbours, in
both directions and all channels. 1: borders look like interiors; above 1: edges line up with the grid, as
where independently sampled tiles meet. Computed for real and generated images alike; real large images
that hold together score about 1.
"""
from __future__ import annotations

import numpy as np

from bench.metrics.extractors import RESIZER, FeatureExtractor
from bench.metrics.fidkid import fid, kid


def grid_origins(extent: int, size: int, stride: int) -> list[int]:
    """Starts of windows (crops) of `size` along an axis of `extent`: 0, stride, 2 stride, ..., and one
    flush with the far edge where the stride does not reach it exactly."""
    starts = list(range(0, extent - size + 1, stride))
    return starts if starts[-1] == extent - size else starts + [extent - size]


def crops(images: np.ndarray, size: int) -> np.ndarray:
    """Every size x size crop of images (N, H, W, C) on the grid of half a tile's stride, image-major."""
    ys = grid_origins(images.shape[1], size, max(1, size // 2))
    xs = grid_origins(images.shape[2], size, max(1, size // 2))
    return np.stack([im[y:y + size, x:x + size] for im in images for y in ys for x in xs])


def seam_score(images: np.ndarray, period: int) -> np.ndarray:
    """The seam score (N,) of images (N, H, W, C) with borders every `period` pixels; nan for an image whose
    neighbouring pixels are all equal. ValueError if no border falls inside the images."""
    x = np.asarray(images, np.float64)
    across_rows = np.diff(x, axis=1) ** 2               # pair (r, r + 1) at index r: a border where r + 1 = m period
    across_cols = np.diff(x, axis=2) ** 2
    on_row = np.arange(1, x.shape[1]) % period == 0
    on_col = np.arange(1, x.shape[2]) % period == 0
    if not (on_row.any() or on_col.any()):
        raise ValueError(f"no {period}-px border inside images of {x.shape[1]} x {x.shape[2]} px")
    n = len(x)
    border = np.concatenate([across_rows[:, on_row].reshape(n, -1), across_cols[:, :, on_col].reshape(n, -1)], 1)
    inside = np.concatenate([across_rows[:, ~on_row].reshape(n, -1), across_cols[:, :, ~on_col].reshape(n, -1)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return border.mean(1) / inside.mean(1)


def patch_fid_kid(fake: np.ndarray, real: np.ndarray, tile: int, extractor: FeatureExtractor, device="cpu",
                  kid_subset_size: int = 1000) -> dict:
    """{"patch_fid[net]", "patch_kid[net]": value} and their provenance, of crops at `tile` px of generated
    large images `fake` against those of real ones `real` (uint8 (N, H, W, C))."""
    fake_crops, real_crops = crops(fake, tile), crops(real, tile)
    fake_f, real_f = extractor.features(fake_crops, device), extractor.features(real_crops, device)
    kid_mean, _, size = kid(fake_f, real_f, kid_subset_size)
    net = extractor.name
    provenance = {**extractor.provenance, "extractor": net, "resizer": RESIZER, "crop": f"{tile} px, stride "
                  f"{max(1, tile // 2)}", "n_gen": len(fake_crops), "n_ref": len(real_crops),
                  "n_gen_images": len(fake), "n_ref_images": len(real), "kid_subset_size": size}
    return {"metrics": {f"patch_fid[{net}]": fid(fake_f, real_f), f"patch_kid[{net}]": kid_mean},
            "provenance": provenance}
