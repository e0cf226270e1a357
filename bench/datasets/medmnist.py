"""PathMNIST and the other 2-D MedMNIST sets (v3 npz files, their own train/val/test split).

`pathmnist` takes the smallest published size (28, 64, 128, 224) at least cfg.image_size, so
images are only ever shrunk; `pathmnist_64` etc. name one file. The file is looked for in
cfg.root (a directory, or the .npz itself), else the data dir, and checked against the
manifest (md5, keys, counts, shapes and label range).
"""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.fetch import check_file
from bench.datasets.manifest import KNOWN, MEDMNIST_BASES, MEDMNIST_SIZES, KnownSet, data_dir, medmnist_name
from bench.datasets.npz import read_npz
from bench.datasets.prepare import assemble, scored_classes


def resolve(name: str, image_size: int) -> KnownSet:
    if name in MEDMNIST_BASES:
        size = next((s for s in MEDMNIST_SIZES if s >= image_size), MEDMNIST_SIZES[-1])
        name = medmnist_name(name, size)
    if name not in KNOWN or KNOWN[name].kind != "medmnist-npz":
        raise BenchError(f"{name!r} is not a MedMNIST set; known: "
                         f"{', '.join(n for n, k in KNOWN.items() if k.kind == 'medmnist-npz')}")
    return KNOWN[name]


def locate(cfg: DataConfig, known_set: KnownSet) -> Path:
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and root.suffix == ".npz":
        return root
    path = data_dir(cfg.root) / known_set.file.filename
    if not path.is_file():
        raise BenchError(f"{path}: missing; run `bench data fetch {known_set.name}` "
                         "(or set data.root to the folder holding it)")
    return path


def load(cfg: DataConfig) -> PreparedData:
    known_set = resolve(cfg.name, cfg.image_size)
    scored_classes(known_set.class_names, cfg.exclude_classes, known_set.name)
    path = locate(cfg, known_set)
    check_file(path, known_set.file)
    pairs, names, _ = read_npz(path, expect=known_set)
    meta = {"source": known_set.name, "file": str(path.resolve()),
            "native_size": known_set.image_size, "licence": known_set.licence,
            "citation": known_set.citation,
            "checksum": f"md5 {known_set.file.md5}"}
    return assemble(cfg, cfg.name, names, pairs, meta, augment=known_set.augment)
