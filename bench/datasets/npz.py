"""npz:PATH — MedMNIST-style arrays, and the checks every npz source shares.

Layouts: MedMNIST's `{train,val,test}_images` / `{train,val,test}_labels`, or unsplit
`images` / `labels` (then a stratified split with cfg.split and cfg.split_seed). Images are
uint8 (N, H, W) or (N, H, W, 1|3), square; labels integer (N,) or (N, 1) in 0..K-1. An optional
`class_names` string array names the classes (else "0".."K-1").
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.datasets.base import SPLITS, DataConfig, PreparedData
from bench.datasets.manifest import KnownSet
from bench.datasets.prepare import assemble, scored_classes, stratified_split

Pair = tuple[np.ndarray, np.ndarray]


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, never unpickling: object arrays are refused with one line."""
    if not path.is_file():
        raise BenchError(f"{path}: missing; check the path (or run `bench data fetch`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise BenchError(f"{path}: truncated or not an .npz of plain arrays ({type(err).__name__}: {err}); "
                         "write it again with numeric arrays") from None


def check_images(path: Path, images: np.ndarray, name: str) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 1|3), square -> (N, H, W, C)."""
    if images.dtype != np.uint8:
        raise BenchError(f"{path}: {name} dtype {images.dtype}; expected uint8 (0..255)")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise BenchError(f"{path}: {name} shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3)")
    if images.shape[1] != images.shape[2]:
        raise BenchError(f"{path}: {name} are {images.shape[1]}x{images.shape[2]}; expected square images")
    return images


def check_labels(path: Path, labels: np.ndarray, name: str, n_images: int) -> np.ndarray:
    """Integer class indices (N,) or (N, 1), one per image -> int64 (N,)."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BenchError(f"{path}: {name} shape {labels.shape} dtype {labels.dtype}; "
                         "expected integer class indices (N,) or (N, 1) (multi-label is not "
                         "supported)")
    if len(labels) != n_images:
        raise BenchError(f"{path}: {len(labels)} {name} for {n_images} images")
    return labels.astype(np.int64)


def _pair(path: Path, images: np.ndarray, labels: np.ndarray, key: str) -> Pair:
    images = check_images(path, images, f"{key}_images")
    return images, check_labels(path, labels, f"{key}_labels", len(images))


def read_npz(path: Path, expect: KnownSet | None = None
             ) -> tuple[dict[str, Pair], tuple[str, ...], bool]:
    """Checked pairs by split ("all" when unsplit), class names, and whether it was split."""
    z = read_arrays(path)
    medmnist = {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")}
    if medmnist <= set(z):
        pairs = {s: _pair(path, z[f"{s}_images"], z[f"{s}_labels"], s) for s in SPLITS}
    elif {"images", "labels"} <= set(z):
        pairs = {"all": _pair(path, z["images"], z["labels"], "")}
    else:
        raise BenchError(f"{path}: keys {sorted(z)}; expected train/val/test_images and "
                         "_labels (MedMNIST) or images and labels")
    if not sum(len(y) for _, y in pairs.values()):
        raise BenchError(f"{path}: holds no images; save the images and their labels into it")
    shapes = {x.shape[1:] for x, _ in pairs.values()}
    if len(shapes) > 1:
        raise BenchError(f"{path}: splits disagree on image shape {sorted(shapes)}")
    all_labels = np.concatenate([y for _, y in pairs.values()])
    if expect is not None:
        names = expect.class_names
    elif "class_names" in z:
        names = tuple(str(c) for c in np.asarray(z["class_names"]).reshape(-1))
    else:
        names = tuple(str(i) for i in range(int(all_labels.max(initial=-1)) + 1))
    if len(all_labels) and (all_labels.min() < 0 or all_labels.max() >= len(names)):
        raise BenchError(f"{path}: labels span {all_labels.min()}..{all_labels.max()}; expected "
                         f"0..{len(names) - 1} for {len(names)} classes")
    if expect is not None:
        _check_known(path, pairs, expect)
    return pairs, names, "all" not in pairs


def _check_known(path: Path, pairs: dict[str, Pair], expect: KnownSet) -> None:
    counts = {s: len(y) for s, (_, y) in pairs.items()}
    if counts != expect.counts:
        raise BenchError(f"{path}: image counts {counts}, expected {expect.counts} for "
                         f"{expect.name}; delete it and fetch again")
    h, _, c = next(iter(pairs.values()))[0].shape[1:]
    if (h, c) != (expect.image_size, expect.channels):
        raise BenchError(f"{path}: images {h}x{h}x{c}, expected {expect.image_size}x"
                         f"{expect.image_size}x{expect.channels} for {expect.name}")


def to_splits(pairs: dict[str, Pair], cfg: DataConfig) -> dict[str, Pair]:
    """The file's own split, or a stratified split of the single "all" pair."""
    if "all" not in pairs:
        return pairs
    x, y = pairs["all"]
    idx = stratified_split(y, cfg.split, cfg.split_seed)
    return {s: (x[i], y[i]) for s, i in zip(SPLITS, idx)}


def load(cfg: DataConfig, path: str) -> PreparedData:
    file = Path(path).expanduser()
    pairs, names, has_split = read_npz(file)
    scored_classes(names, cfg.exclude_classes, f"npz:{path}")
    meta = {"source": f"npz:{file.resolve()}", "native_size": int(pairs[next(iter(pairs))][0].shape[1])}
    if not has_split:
        meta.update(split=list(cfg.split), split_seed=cfg.split_seed)
    return assemble(cfg, f"npz:{path}", names, to_splits(pairs, cfg), meta, augment="none")  # orientation unknown
