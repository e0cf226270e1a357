"""Metrics of large images (bench/metrics/large_image.py): the seam score and patch FID/KID."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from bench.datasets.synth_tissue import generate
from bench.datasets.synth_tissue_fields import fields
from bench.metrics.extractors import FeatureExtractor
from bench.metrics.large_image import crops, patch_fid_kid, seam_score

TILE = 16


def _smooth(rng, shape, sigma=3.0):
    """Smooth noise (N, H, W, C) in uint8, filtered in space only."""
    field = scipy.ndimage.gaussian_filter(rng.normal(size=shape), (0, sigma, sigma, 0), mode="wrap")
    return np.clip(128 + 40 * field / field.std(), 0, 255).astype(np.uint8)


def _independent_tiles(rng, n, k):
    """Images of k x k independently drawn smooth tiles (N, k TILE, k TILE, 3)."""
    tiles = _smooth(rng, (n * k * k, TILE, TILE, 3))
    return tiles.reshape(n, k, k, TILE, TILE, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, k * TILE, k * TILE, 3)


def test_independent_tiles_score_a_seam_excess_and_a_smooth_image_none():
    rng = np.random.default_rng(0)
    tiled = seam_score(_independent_tiles(rng, 4, 4), TILE)
    smooth = seam_score(_smooth(rng, (4, 4 * TILE, 4 * TILE, 3)), TILE)
    assert tiled.shape == smooth.shape == (4,)
    assert (tiled > 3).all()
    assert (abs(smooth - 1) < 0.3).all()   # 0.88-1.17 at this seed


def test_a_seam_score_needs_a_border_and_flat_images_have_none():
    flat = np.full((1, 32, 32, 3), 90, np.uint8)
    assert np.isnan(seam_score(flat, TILE)).all()
    with pytest.raises(ValueError, match="no 32-px border"):
        seam_score(flat, 32)


def _mean_colour():
    return FeatureExtractor("toy", None, False, lambda x: torch.cat([x.float().mean((2, 3)), x.float().std((2, 3))], 1),
                            {"network": "mean and std of each channel"})


def test_patch_metrics_compare_crops_at_the_tile_size_at_half_its_stride():
    rng = np.random.default_rng(1)
    real, fake = _smooth(rng, (3, 4 * TILE, 4 * TILE, 3)), _independent_tiles(rng, 3, 4)
    assert crops(real, TILE).shape == (3 * 7 * 7, TILE, TILE, 3)   # (2 k - 1)^2 crops of each image
    assert np.array_equal(crops(real, TILE)[8], real[0, 8:24, 8:24])
    out = patch_fid_kid(fake, real, TILE, _mean_colour(), kid_subset_size=50)
    assert set(out["metrics"]) == {"patch_fid[toy]", "patch_kid[toy]"}
    assert out["provenance"]["n_gen"] == out["provenance"]["n_ref"] == 147
    assert out["provenance"]["kid_subset_size"] == 50
    same = patch_fid_kid(real, real, TILE, _mean_colour(), kid_subset_size=50)["metrics"]
    assert abs(same["patch_fid[toy]"]) < 1e-6


def test_synth_tissue_fields_hold_together_where_a_mosaic_of_its_tiles_does_not():
    real = fields(8, 4, TILE, 777)
    assert real.shape == (8, 4 * TILE, 4 * TILE, 3) and real.dtype == np.uint8
    assert np.array_equal(fields(1, 4, TILE, 777)[0], real[0])       # field i does not depend on n
    order = np.random.default_rng(0).permutation(128)
    tiles = np.concatenate([generate(c, 16, TILE, 99) for c in range(8)])[order]
    mosaic = tiles.reshape(8, 4, 4, TILE, TILE, 3).transpose(0, 1, 3, 2, 4, 5).reshape(8, 4 * TILE, 4 * TILE, 3)
    assert 0.8 < seam_score(real, TILE).mean() < 1.3                   # 1.16 at this seed
    assert seam_score(mosaic, TILE).mean() > 3                          # 5.3
