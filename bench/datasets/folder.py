"""folder:PATH — one sub-folder per class (its name is the class name), PIL-readable images.

A folder with images and no sub-folders is one class. Hidden files (.DS_Store, ._x) are
skipped; any other file must be an image. There is no given split: a stratified split with
cfg.split fractions and cfg.split_seed. Images are resized to cfg.image_size, or with
cfg.tile_large_images cut into tiles of that size, split by image (bench/datasets/tiles.py).
"""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.images import decode
from bench.datasets.prepare import assemble, scored_classes, stratified_split
from bench.datasets.tiles import load_tiled


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def class_tree(root: Path) -> tuple[tuple[str, ...], list[tuple[int, str, object]]]:
    """Class names (sorted sub-folder names) and (label, name, opener) items; checks layout."""
    if not root.exists():
        raise BenchError(f"{root}: no such folder; give folder:PATH an existing directory")
    if not root.is_dir():
        raise BenchError(f"{root}: not a directory; folder:PATH needs one sub-folder per class")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        if not _files(root):
            raise BenchError(f"{root}: empty folder; put one sub-folder of images per class")
        subdirs = [root]                # a plain folder of images is one class
    items = []
    for label, sub in enumerate(subdirs):
        files = _files(sub)
        if not files:
            raise BenchError(f"{sub}: empty class folder; add images or remove the folder")
        items += [(label, str(f), f.read_bytes) for f in files]
    return tuple(d.name for d in subdirs), items


def load(cfg: DataConfig, path: str) -> PreparedData:
    root = Path(path).expanduser()
    class_names, items = class_tree(root)
    scored_classes(class_names, cfg.exclude_classes, f"folder:{path}")   # fail before decoding
    meta = {"source": f"folder:{root.resolve()}", "split": list(cfg.split), "split_seed": cfg.split_seed}
    if cfg.tile_large_images:
        return load_tiled(cfg, f"folder:{path}", class_names, items, meta)
    x, y, notes = decode(items, cfg.image_size)
    train, val, test = stratified_split(y, cfg.split, cfg.split_seed)
    splits = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    meta = {**meta, **notes}
    return assemble(cfg, f"folder:{path}", class_names, splits, meta, augment="none")  # orientation unknown
