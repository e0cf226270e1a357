"""A folder: set of large images tiled for training (`[data] tile_large_images`), as Graikos et al. 2024 tile
their large pathology images into patches.

Each image is cut into non-overlapping image_size tiles (its whole-tile region, centred: a 70 x 50 image gives
4 x 3 tiles of 16 px), every tile labelled with its image's class. The split is made by image, stratified by
class with data.split and data.split_seed, before tiling: tiles of one image never reach two splits, where
their neighbours would leak across. The images themselves, centre-cropped to the m x m tiles that the smallest
image holds, are the set's real large images (PreparedData.large), split with their tiles, which
`bench sample-large` conditions on and scores against.
"""
from __future__ import annotations

import numpy as np

from bench.core.errors import BenchError
from bench.datasets.base import SPLITS, DataConfig, PreparedData
from bench.datasets.images import decode_native
from bench.datasets.prepare import assemble, stratified_split


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred height x width region of uint8 (H, W, C)."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def cut_tiles(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C) -> (rows cols, size, size, C): the tiles of its centred whole-tile region, row by row."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    region = centre_crop(image, rows * size, cols * size)
    return region.reshape(rows, size, cols, size, -1).swapaxes(1, 2).reshape(rows * cols, size, size, -1)


def _stacked(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 arrays (n_i, *shape) one after another, also when there are none."""
    return np.concatenate([np.empty((0, *shape), np.uint8), *arrays])


def load_tiled(cfg: DataConfig, name: str, class_names: tuple[str, ...], items: list, meta: dict) -> PreparedData:
    """The PreparedData of a class tree's (label, display name, opener) items, tiled (the module's docstring)."""
    size = cfg.image_size
    names = [item[1] for item in items]
    images, labels, notes = decode_native(items)
    small = [f"{n} ({im.shape[1]}x{im.shape[0]})" for n, im in zip(names, images) if min(im.shape[:2]) < size]
    if small:
        raise BenchError(f"{name}: {len(small)} image(s) smaller than one {size}-px tile, e.g. {small[0]}; remove "
                         f"them or lower data.image_size (data.tile_large_images cuts images into image_size tiles)")
    side = size * min(min(im.shape[:2]) // size for im in images)     # the large images' side: m tiles
    by_image = dict(zip(SPLITS, stratified_split(labels, cfg.split, cfg.split_seed)))
    channels = images[0].shape[-1]
    splits, large, files, tiles_per_image = {}, {}, {}, {}
    for s, chosen in by_image.items():
        tiles = [cut_tiles(images[i], size) for i in chosen]
        splits[s] = (_stacked(tiles, (size, size, channels)), np.repeat(labels[chosen], [len(t) for t in tiles]))
        large[s] = (_stacked([centre_crop(images[i], side, side)[None] for i in chosen], (side, side, channels)),
                    labels[chosen])
        files[s] = [names[i] for i in chosen]
        tiles_per_image[s] = [len(t) for t in tiles]
    meta = {**meta, **notes, "tiled": f"each image cut into non-overlapping {size}-px tiles of its class, "
            "split by image", "tiles_per_image": tiles_per_image, "large_image_tiles": side // size,
            "large_images": files}
    return assemble(cfg, name, class_names, splits, meta, augment="none", large=large)   # orientation unknown
