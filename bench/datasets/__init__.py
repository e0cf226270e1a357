"""Data sources: a DataConfig -> PreparedData, whatever the source.

Sources: `synth-tissue` (procedural, embedded), `synth-tissue-ihc` (the same classes in IHC stain: a
source domain for `bench pretrain`), `kather2016`, the 2-D MedMNIST sets
(`pathmnist` picks the smallest file at least image_size; `pathmnist_64` etc. name one file),
`folder:PATH` (one sub-folder per class) and `npz:PATH` (MedMNIST-style arrays). Source modules
are imported on use, so listing sources stays cheap.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.manifest import KNOWN

PATH_PREFIXES = ("folder:", "npz:")
PROCEDURAL = ("synth-tissue", "synth-tissue-ihc")  # generated, embedded: no files


@dataclass(frozen=True)
class DataSpec:
    kind: str           # synth-tissue | synth-tissue-ihc | kather2016 | medmnist | folder | npz
    name: str           # the canonical spec: what PreparedData.name and every command print
    path: str = ""      # the folder:/npz: location
    root: str = ""      # the Kather zip given as a path: DataConfig.root


def parse_spec(text: str) -> DataSpec:
    """The one grammar of data-set specs, accepted by every command (`run --dataset`, `eval --real`,
    `data verify`) and printed by them: synth-tissue | a known name (kather2016, pathmnist,
    pathmnist_64, ...) | folder:PATH | npz:PATH; a bare path is read as what it is (a folder, an
    .npz, the Kather zip)."""
    if text in PROCEDURAL:
        return DataSpec(text, text)
    if text in KNOWN:
        return DataSpec("kather2016" if text == "kather2016" else "medmnist", text)
    prefix, colon, location = text.partition(":")
    if colon and f"{prefix}:" in PATH_PREFIXES:
        if not location:
            raise BenchError(f"data set {text!r} names no path; write {prefix}:PATH")
        return DataSpec(prefix, text, location)
    path = Path(text).expanduser()
    if path.is_dir():
        return DataSpec("folder", f"folder:{text}", text)
    if path.is_file() and path.suffix in (".npz", ".zip"):
        return DataSpec("npz", f"npz:{text}", text) if path.suffix == ".npz" else DataSpec("kather2016", "kather2016", root=text)
    raise BenchError(f"unknown data set {text!r}; known: {', '.join(known_sources())}, "
                     "or an existing folder, .npz or Kather .zip")


def known_sources() -> list[str]:
    return [*PROCEDURAL, *KNOWN, *(f"{p}PATH" for p in PATH_PREFIXES)]


def load_prepared(cfg: DataConfig) -> PreparedData:
    spec = parse_spec(cfg.name)
    if cfg.tile_large_images and spec.kind != "folder":
        raise BenchError(f"data.tile_large_images tiles the images of a folder: data set, and {cfg.name} is none; "
                         "set it to false, or give data.name = \"folder:PATH\"")
    if spec.kind == "synth-tissue":
        from bench.datasets import synth_tissue
        return synth_tissue.load(cfg)
    if spec.kind == "synth-tissue-ihc":
        from bench.datasets import synth_tissue_ihc
        return synth_tissue_ihc.load(cfg)
    if spec.kind == "kather2016":
        from bench.datasets import kather2016
        return kather2016.load(dataclasses.replace(cfg, root=spec.root or cfg.root))
    if spec.kind == "medmnist":
        from bench.datasets import medmnist
        return medmnist.load(cfg)
    if spec.kind == "folder":
        from bench.datasets import folder
        return folder.load(cfg, spec.path)
    from bench.datasets import npz
    return npz.load(cfg, spec.path)


__all__ = ["DataConfig", "DataSpec", "PreparedData", "known_sources", "load_prepared", "parse_spec"]
