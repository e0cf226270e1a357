"""Large fields of view of synth-tissue: k x k tiles' worth of tissue from the tiles' own generator, the real
large images that patch-grid samples (Graikos et al. 2024) are compared with.

A field is cut into k^2 regions, one per seed point drawn uniformly over it (about a tile's area each, never
aligned with the tile grid), with ragged borders: each pixel joins the seed nearest to it after each seed's
distance is perturbed by a smooth noise field. A region holds tissue of one class drawn uniformly from
`classes`: a synth-tissue tile of that class (`generate`), repeated across the field at a random offset. The
tiles are toroidal, so the repeats join without a seam and every tile-sized crop inside a region is a cyclic
shift of a tile, as likely as the tile itself: crops follow the tiles' distribution. Region borders are
anti-aliased as the tiles are (decided at twice the resolution, area-averaged) and blended in optical density,
where stains add (Beer-Lambert).
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage

from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.prepare import to_grayscale
from bench.datasets.synth_tissue import CLASS_NAMES, SUPERSAMPLE, generate

FIELD_SEED_OFFSET = 2_000_003   # real fields' tissue: no split's (3 split_seed + 0..2) nor synth-tissue-ihc's
BORDER_WANDER = 0.15     # tile units: how far a region border strays from the straight bisector of two seeds
BORDER_SMOOTHNESS = 0.2  # tile units: the spatial std of the noise that bends it
ALL_CLASSES = tuple(range(len(CLASS_NAMES)))


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(rgb, 1) / np.float32(255))


def field(i: int, k: int, size: int, seed: int, classes=ALL_CLASSES) -> np.ndarray:
    """Field i of k x k tiles of `size` px, uint8 (k size, k size, 3); it depends only on its arguments. Pass a
    seed no split uses (synth_tissue.seed_of_split) so that no tile is a train tile."""
    if k < 1 or i < 0 or not len(classes):
        raise ValueError(f"need k >= 1, i >= 0 and a class, got k={k}, i={i}, classes={classes}")
    rng = np.random.default_rng([seed, k, size, i])
    tile_seed = int(rng.integers(2 ** 31))
    regions = k * k
    region_class = rng.choice(np.asarray(classes), regions)
    textures = np.empty((regions, size, size, 3), np.uint8)
    for c in np.unique(region_class):
        textures[region_class == c] = generate(int(c), int((region_class == c).sum()), size, tile_seed)
    side = SUPERSAMPLE * k * size                       # decided at twice the resolution, then area-averaged
    centres = (np.arange(side) + 0.5) / (SUPERSAMPLE * size)                  # pixel centres in tile units
    seeds = rng.random((regions, 2)) * k
    distance = np.hypot(centres[None, :, None] - seeds[:, 0, None, None], centres[None, None, :] - seeds[:, 1, None, None])
    bend = scipy.ndimage.gaussian_filter(rng.standard_normal((regions, side, side)),
                                         (0, *(2 * [BORDER_SMOOTHNESS * SUPERSAMPLE * size])), mode="wrap")
    bend *= BORDER_WANDER / bend.std(axis=(1, 2), keepdims=True)
    owner = np.argmin(distance + bend, axis=0)
    weight = (owner[None] == np.arange(regions)[:, None, None]).astype(np.float32)
    weight = weight.reshape(regions, k * size, SUPERSAMPLE, k * size, SUPERSAMPLE).mean((2, 4))
    density = np.zeros((k * size, k * size, 3), np.float32)
    for j in range(regions):
        shifted = np.roll(textures[j], tuple(rng.integers(0, size, 2)), axis=(0, 1))
        density += weight[j, :, :, None] * _optical_density(np.tile(shifted, (k, k, 1)))
    return np.clip(np.rint(255 * np.exp(-density)), 0, 255).astype(np.uint8)


def fields(n: int, k: int, size: int, seed: int, classes=ALL_CLASSES) -> np.ndarray:
    """Fields 0..n-1, uint8 (n, k size, k size, 3)."""
    return np.stack([field(i, k, size, seed, classes) for i in range(n)])


def real_field(cfg: DataConfig, data: PreparedData, k: int, index: int) -> tuple[np.ndarray, dict]:
    """Field `index` of k x k tiles as the prepared synth-tissue set's real large image: its tile size, scored
    classes and channels, on tissue of no split; with where it came from."""
    seed = FIELD_SEED_OFFSET + cfg.split_seed
    image = field(index, k, data.image_size, seed, data.scored_classes)
    return (to_grayscale(image[None])[0] if data.channels == 1 else image,
            {"source": "bench.datasets.synth_tissue_fields.field", "index": index, "seed": seed,
             "classes": [data.class_names[c] for c in data.scored_classes]})
