"""Steps every source shares: resize, grayscale, stratified split, scored classes, assembly.

Each loader reads its raw images and labels, then calls `assemble`, so every source yields the
same PreparedData under the same options.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from bench.core.errors import BenchError
from bench.datasets.base import SPLITS, DataConfig, PreparedData

LUMA_601 = np.array([0.299, 0.587, 0.114])   # ITU-R BT.601 luma weights


def to_grayscale(x: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, H, W, 1) BT.601 luma; 1-channel input is returned as is."""
    if x.shape[-1] == 1:
        return x
    y = x.astype(np.float32) @ LUMA_601.astype(np.float32)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None]


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, size, size, C) with PIL bicubic, the resizer of every source."""
    if x.shape[1:3] == (size, size):
        return x
    out = np.empty((len(x), size, size, x.shape[-1]), np.uint8)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        arr = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
        out[i] = arr.reshape(size, size, -1)
    return out


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float],
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test): each class shuffled with `seed` and cut by `fractions`."""
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1) > 1e-6 or f[0] == 0:
        raise BenchError(f"split fractions {tuple(fractions)} must be 3 non-negative numbers "
                         "summing to 1 with a non-empty train part, e.g. (0.8, 0.1, 0.1)")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = int(round(f[1] * len(idx))), int(round(f[2] * len(idx)))
        n_train = len(idx) - n_val - n_test
        for part, sl in zip(parts, (slice(0, n_train), slice(n_train, n_train + n_val),
                                    slice(n_train + n_val, None))):
            part.append(idx[sl])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def scored_classes(class_names: tuple[str, ...], exclude: tuple[str, ...],
                   source: str) -> tuple[int, ...]:
    """Label indices left in scoring; an excluded name the source lacks is an error, except
    under the untouched default ("empty", Kather's background class), which applies only to
    sources that have such a class, so `--dataset pathmnist` works without a config edit. Every
    source calls this first, so it also refuses class names that do not tell the classes apart:
    two classes of one name would be merged in every per-class result."""
    repeated = sorted({c for c in class_names if class_names.count(c) > 1})
    if repeated:
        raise BenchError(f"{source} names several classes {', '.join(map(repr, repeated))}; give every class "
                         "its own name")
    unknown = [c for c in exclude if c not in class_names]
    if unknown and tuple(exclude) == DataConfig().exclude_classes:
        unknown, exclude = [], ()
    if unknown:
        raise BenchError(f"exclude_classes {unknown} not in {source} classes "
                         f"{list(class_names)}; fix data.exclude_classes")
    kept = tuple(i for i, c in enumerate(class_names) if c not in exclude)
    if not kept:
        raise BenchError(f"exclude_classes leaves no class of {source} to score")
    return kept


def check_splits(name: str, class_names: tuple[str, ...], scored: tuple[int, ...],
                 splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Every scored class has train, val and test images: a class seen in one split only (labels
    50-59 for train, 0-9 for test) is a broken file, not 60 classes."""
    missing = {s: [class_names[c] for c in scored if not np.any(np.asarray(splits[s][1]) == c)] for s in SPLITS}
    missing = {s: names for s, names in missing.items() if names}
    if missing:
        listed = "; ".join(f"{s} lacks {_some(names)}" for s, names in missing.items())
        raise BenchError(f"{name}: every scored class needs train, val and test images, but {listed}; "
                         "add images to those classes or list them in data.exclude_classes")


def _some(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(map(repr, names[:limit])) + (", ..." if len(names) > limit else "")
    return f"{len(names)} class{'es' if len(names) > 1 else ''} ({shown})"


def assemble(cfg: DataConfig, name: str, class_names: tuple[str, ...],
             splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict, augment: str,
             large: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> PreparedData:
    """Check the splits, resize (if needed), grayscale (if asked), and build the PreparedData. `augment`
    is the source's declared training augmentation ("none" or "dihedral"); cfg.augment overrides it.
    `large`: a tiled set's large images per split (PreparedData.large), grayscaled as the tiles are."""
    if cfg.image_size < 4:
        raise BenchError(f"image_size {cfg.image_size} is too small; use 4 or more (e.g. 32)")
    scored = scored_classes(tuple(class_names), cfg.exclude_classes, name)
    check_splits(name, tuple(class_names), scored, splits)
    arrays: dict[str, np.ndarray] = {}
    sizes = {f"{x.shape[1]}x{x.shape[2]}" for x, _ in splits.values() if len(x)}
    if sizes - {f"{cfg.image_size}x{cfg.image_size}"}:
        meta = {**meta, "resized": f"PIL bicubic from {sorted(sizes)} to {cfg.image_size}"}
    for s in SPLITS:
        x, y = splits[s]
        x = resize(np.asarray(x, np.uint8), cfg.image_size)
        if cfg.grayscale:
            x = to_grayscale(x)
        arrays[f"{s}_x"] = np.ascontiguousarray(x)
        arrays[f"{s}_y"] = np.asarray(y, np.int64).reshape(-1)
    large = {s: (to_grayscale(x) if cfg.grayscale else x, y) for s, (x, y) in (large or {}).items()}
    meta = {**meta, "augment": augment if cfg.augment == "source" else cfg.augment,
            "augment_from": "the data source" if cfg.augment == "source" else "data.augment",
            "image_size": cfg.image_size, "grayscale": cfg.grayscale,
            "counts": {s: int(len(arrays[f"{s}_y"])) for s in SPLITS}}
    if cfg.grayscale:
        meta["grayscale_formula"] = "ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B"
    return PreparedData(name=name, class_names=tuple(class_names), scored_classes=scored, meta=meta, large=large,
                        **arrays)
