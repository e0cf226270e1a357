"""kather2016 — Kather et al. 2016 colorectal texture tiles (5000 x 150 px, 8 classes, CC BY 4.0).

Read from the published zip (sha256 checked, read in place, never extracted) or from its
extracted folder, found as cfg.root (the zip, the folder, or a directory holding either) or in
the data dir. The layout must be the published one: Kather_texture_2016_image_tiles_5000/
01_TUMOR ... 08_EMPTY with 625 .tif tiles each; for subsets or re-arranged copies use
folder:PATH. No split is published: stratified split with cfg.split and cfg.split_seed.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from bench.core.errors import BenchError
from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.fetch import check_file
from bench.datasets.images import decode
from bench.datasets.manifest import KATHER, KATHER_FOLDERS, KATHER_TOP, data_dir
from bench.datasets.prepare import assemble, scored_classes, stratified_split

TILES_PER_CLASS = 625


def locate(cfg: DataConfig) -> Path:
    """The zip or the extracted top folder."""
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and (root.suffix == ".zip" or root.name == KATHER_TOP):
        return root
    base = data_dir(cfg.root)
    for candidate in (base / KATHER.file.filename, base / KATHER_TOP, base / KATHER_TOP / KATHER_TOP):
        if candidate.exists():
            return candidate
    raise BenchError(f"kather2016 not found in {base}: run `bench data fetch kather2016` or set "
                     "data.root to the zip or its extracted folder")


def _zip_items(path: Path, zf: zipfile.ZipFile):
    """(label, name, opener) for every tile; members outside the class folders are ignored."""
    by_class: dict[int, list[str]] = {i: [] for i in range(len(KATHER_FOLDERS))}
    for member in zf.namelist():
        parts = PurePosixPath(member).parts
        if (len(parts) == 3 and parts[0] == KATHER_TOP and parts[1] in KATHER_FOLDERS
                and not parts[2].startswith(".") and not member.endswith("/")):
            by_class[KATHER_FOLDERS.index(parts[1])].append(member)

    def opener(member: str):
        def read() -> bytes:
            try:
                return zf.read(member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise BenchError(f"{path}: member {member} is truncated or corrupt ({err}); "
                                 "delete the zip and fetch again") from None
        return read
    return by_class, {m: opener(m) for ms in by_class.values() for m in ms}


def _folder_items(path: Path):
    by_class: dict[int, list[str]] = {}
    for i, name in enumerate(KATHER_FOLDERS):
        sub = path / name
        if not sub.is_dir():
            raise BenchError(f"{sub}: missing class folder; expected {', '.join(KATHER_FOLDERS)}")
        by_class[i] = sorted(str(p) for p in sub.iterdir() if p.is_file() and not p.name.startswith("."))
    return by_class, {m: Path(m).read_bytes for ms in by_class.values() for m in ms}


def read(path: Path, cfg: DataConfig, tiles_per_class: int | None = TILES_PER_CLASS
         ) -> PreparedData:
    """Decode the tiles at path (zip or folder); tiles_per_class None accepts any count."""
    scored_classes(KATHER.class_names, cfg.exclude_classes, "kather2016")
    zf = None
    try:
        if path.is_dir():
            by_class, openers = _folder_items(path)
        else:
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as err:
                raise BenchError(f"{path}: truncated or not a zip ({err}); delete it and "
                                 "run `bench data fetch kather2016`") from None
            by_class, openers = _zip_items(path, zf)
        for i, members in by_class.items():
            where = f"{path}: {KATHER_TOP}/{KATHER_FOLDERS[i]}"
            if not members:
                raise BenchError(f"{where} is empty or missing")
            if tiles_per_class is not None and len(members) != tiles_per_class:
                raise BenchError(f"{where} holds {len(members)} tiles, expected "
                                 f"{tiles_per_class}; for a subset use folder:PATH")
        items = [(i, f"{path}!{m}" if zf else m, openers[m])
                 for i, members in by_class.items() for m in sorted(members)]
        x, y, notes = decode(items, cfg.image_size)
    finally:
        if zf is not None:
            zf.close()
    train, val, test = stratified_split(y, cfg.split, cfg.split_seed)
    splits = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    meta = {"source": "kather2016", "file": str(path.resolve()), "native_size": KATHER.image_size,
            "split": list(cfg.split), "split_seed": cfg.split_seed, "licence": KATHER.licence,
            "citation": KATHER.citation, **notes}
    return assemble(cfg, "kather2016", KATHER.class_names, splits, meta, augment=KATHER.augment)


def load(cfg: DataConfig) -> PreparedData:
    path = locate(cfg)
    if not path.is_dir():
        check_file(path, KATHER.file)   # size, then sha256 of the published zip
    return read(path, cfg)
