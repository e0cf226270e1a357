"""Prepared data: the arrays every task of a suite shares, whatever the source.

A source (synth-tissue, kather2016, pathmnist, folder:PATH, npz:PATH) turns a `DataConfig`
into one `PreparedData`; the suite caches it by the hash of that config and never loads the
raw source again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

SPLITS = ("train", "val", "test")
LARGE_PREFIX = "large_"     # the saved arrays of PreparedData.large: large_<split>_x, large_<split>_y


@dataclass(frozen=True)
class DataConfig:
    name: str = "synth-tissue"          # a registered source, or folder:PATH / npz:PATH
    image_size: int = 32                # square side in pixels after resizing
    grayscale: bool = False             # the feature-alignment paper trains on grayscale
    train_per_class: int = 256          # procedural sources: images per class and split
    val_per_class: int = 32
    test_per_class: int = 64
    exclude_classes: tuple[str, ...] = ("empty",)  # kept for training, left out of scoring
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # sources without their own split
    split_seed: int = 0                 # seeds the split and any procedural generation
    root: str = ""                      # where downloaded/extracted files live ("" = default)
    augment: Literal["source", "none", "dihedral"] = "source"  # training flips/rotations: "source" =
    #                                     what the data source declares (dihedral only for orientation-free sets)
    tile_large_images: bool = False     # folder: sets only: cut each image into non-overlapping image_size
    #                                     tiles of its class instead of resizing it, split by image, and keep the
    #                                     images as the set's real large images (bench sample-large); off: resize

    def content_key(self) -> dict:
        """The options as content hashes see them (run ids, data caches, pretrain recipes): tile_large_images
        off is left out, so suites from before it existed keep their run ids and caches."""
        key = dataclasses.asdict(self)
        if not self.tile_large_images:
            del key["tile_large_images"]
        return key


@dataclass(frozen=True)
class PreparedData:
    """uint8 images (N, H, W, C), int64 labels (N,), per split; class names in label order."""

    name: str
    class_names: tuple[str, ...]
    scored_classes: tuple[int, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    meta: dict = field(default_factory=dict)
    large: dict = field(default_factory=dict)   # split -> (uint8 (n, m S, m S, C), int64 (n,)): a tiled folder:
    #                                             set's untiled images, centre-cropped to m x m tiles of S px (m
    #                                             from its smallest image), and their labels; empty for any other

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.name, list(self.class_names), list(self.scored_classes)]).encode())
        for s in SPLITS:
            x, y = self.split(s)
            h.update(np.ascontiguousarray(x).tobytes())
            h.update(np.ascontiguousarray(y).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Atomic write of one .npz holding every split and the metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"name": self.name, "class_names": list(self.class_names),
                  "scored_classes": list(self.scored_classes), "meta": self.meta}
        arrays = {f"{s}_{k}": getattr(self, f"{s}_{k}") for s in SPLITS for k in ("x", "y")}
        arrays.update({f"{LARGE_PREFIX}{s}_{k}": a for s, pair in self.large.items() for k, a in zip("xy", pair)})
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "PreparedData":
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            arrays = {k: z[k] for k in z.files if k != "header" and not k.startswith(LARGE_PREFIX)}
            large = {s: (z[f"{LARGE_PREFIX}{s}_x"], z[f"{LARGE_PREFIX}{s}_y"]) for s in SPLITS
                     if f"{LARGE_PREFIX}{s}_x" in z.files}
        return cls(name=header["name"], class_names=tuple(header["class_names"]),
                   scored_classes=tuple(header["scored_classes"]), meta=header.get("meta", {}), large=large,
                   **arrays)
