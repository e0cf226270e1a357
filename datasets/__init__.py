"""Data sources: a DataConfig -> PreparedData, whatever the source.

Sources: `synth-tissue` (procedural, embedded), `kather2016`, the 2-D MedMNIST sets
(`pathmnist` picks the smallest file at least image_size; `pathmnist_64` etc. name one file),
`folder:PATH` (one sub-folder per class) and `npz:PATH` (MedMNIST-style arrays). Source modules
are imported on use, so listing sources stays cheap.
"""
from __future__ import annotations

from bench.datasets.base import DataConfig, PreparedData
from bench.datasets.manifest import KNOWN, MEDMNIST_BASES
from bench.errors import BenchError

PATH_PREFIXES = ("folder:", "npz:")


def known_sources() -> list[str]:
    return ["synth-tissue", *KNOWN, *(f"{p}PATH" for p in PATH_PREFIXES)]


def load_prepared(cfg: DataConfig) -> PreparedData:
    name = cfg.name
    if name == "synth-tissue":
        from bench.datasets import synth_tissue
        return synth_tissue.load(cfg)
    if name == "kather2016":
        from bench.datasets import kather2016
        return kather2016.load(cfg)
    if name in KNOWN or name in MEDMNIST_BASES:
        from bench.datasets import medmnist
        return medmnist.load(cfg)
    if name.startswith("folder:"):
        from bench.datasets import folder
        return folder.load(cfg, name.removeprefix("folder:"))
    if name.startswith("npz:"):
        from bench.datasets import npz
        return npz.load(cfg, name.removeprefix("npz:"))
    raise BenchError(f"unknown data set {name!r}; known: {', '.join(known_sources())}")


__all__ = ["DataConfig", "PreparedData", "known_sources", "load_prepared"]
