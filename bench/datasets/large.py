"""The real large images of a data set, which `bench sample-large` conditions its canvases on and scores them
against (Graikos et al. 2024), the same two calls whatever the source: synth-tissue renders them
(bench/datasets/synth_tissue_fields.py); a folder: set tiled for training (`[data] tile_large_images`,
bench/datasets/tiles.py) holds its untiled images, split with their tiles; any other set has none.
"""
from __future__ import annotations

import numpy as np

from bench.core.errors import BenchError
from bench.datasets import parse_spec
from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.tiles import centre_crop


def _rendered(cfg: DataConfig) -> bool:
    return parse_spec(cfg.name).kind == "synth-tissue"


def check_large_source(cfg: DataConfig) -> None:
    """BenchError naming the fix unless the data set can have real large images, judged from its config alone."""
    if not (_rendered(cfg) or cfg.tile_large_images):
        raise BenchError(f"data set {cfg.name!r} has no real large images to condition on and compare with; "
                         "large-image sampling runs on a suite of synth-tissue, or of a folder: set of images larger "
                         "than data.image_size with data.tile_large_images = true")


def _held_order(data: PreparedData, split: str) -> np.ndarray:
    """Indices of the split's held large images of scored classes, taking the classes in turn (the first of
    each, then the second of each, ...), so that the first seeds cover every class."""
    labels = data.large[split][1]
    kept = np.flatnonzero(np.isin(labels, data.scored_classes))
    rank = np.array([np.sum(labels[kept[:j]] == labels[i]) for j, i in enumerate(kept)], np.int64)
    return kept[np.lexsort((labels[kept], rank))]


def check_large_images(cfg: DataConfig, data: PreparedData, split: str, k: int, count: int) -> None:
    """BenchError naming the fix unless the prepared data set has `count` real large images of k x k tiles in
    `split`."""
    check_large_source(cfg)
    if _rendered(cfg):              # any number, any k
        return
    tiles = data.meta["large_image_tiles"]
    if k > tiles:
        raise BenchError(f"{data.name}'s large images hold {tiles} x {tiles} tiles of {data.image_size} px (as many "
                         f"as its smallest image); give --k {tiles} or less, or lower data.image_size")
    held = len(_held_order(data, split))
    if count > held:
        raise BenchError(f"the {split} split of {data.name} holds {held} large image(s) of scored classes, one "
                         f"per generation seed; give --seeds {held} or less, or add images")


def real_large_image(cfg: DataConfig, data: PreparedData, split: str, k: int, index: int) -> tuple[np.ndarray, dict]:
    """Real large image `index` of the data set's `split`, uint8 (k S, k S, C), S its tile size, of its scored
    classes, with where it came from."""
    check_large_images(cfg, data, split, k, index + 1)
    if _rendered(cfg):              # tissue of no split: the split does not matter
        from bench.datasets.synth_tissue_fields import real_field
        return real_field(cfg, data, k, index)
    held = int(_held_order(data, split)[index])
    images, labels = data.large[split]
    side = k * data.image_size
    return centre_crop(images[held], side, side), {
        "source": data.name, "split": split, "index": index, "file": data.meta["large_images"][split][held],
        "class": data.class_names[labels[held]], "crop": f"a centred {side}-px square of the image"}
