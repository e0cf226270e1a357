"""Known downloadable data sets: files, sizes, checksums, licences, where they come from.

`bench data fetch NAME` downloads exactly these files; loaders check them before use. A file's
URL is `<base>/<filename>`; the environment variable BENCH_DATA_URL replaces every base (a
mirror, or a local test server).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    base_url: str
    size: int | None = None             # bytes; None = not recorded
    sha256: str | None = None
    md5: str | None = None              # MedMNIST publishes md5 only

    @property
    def url(self) -> str:
        return f"{os.environ.get('BENCH_DATA_URL', self.base_url).rstrip('/')}/{self.filename}"


@dataclass(frozen=True)
class KnownSet:
    name: str
    file: RemoteFile
    kind: str                           # "kather-zip" | "medmnist-npz"
    class_names: tuple[str, ...]
    image_size: int                     # native side in pixels
    channels: int
    counts: dict                        # images per split ({"all": n} when there is no split)
    licence: str
    citation: str
    augment: str = "none"               # training augmentation: "dihedral" only if the images have no up or left


KATHER_BASE = "https://zenodo.org/records/53169/files"
MEDMNIST_BASE = "https://zenodo.org/records/10519652/files"
KATHER_CLASSES = ("tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty")
KATHER_FOLDERS = ("01_TUMOR", "02_STROMA", "03_COMPLEX", "04_LYMPHO", "05_DEBRIS", "06_MUCOSA",
                  "07_ADIPOSE", "08_EMPTY")
KATHER_TOP = "Kather_texture_2016_image_tiles_5000"
MEDMNIST_SIZES = (28, 64, 128, 224)
MEDMNIST_CITATION = ("Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); "
                     "doi:10.5281/zenodo.10519652")

KATHER = KnownSet(
    name="kather2016",
    file=RemoteFile(f"{KATHER_TOP}.zip", KATHER_BASE, size=258_098_431,
                    sha256="936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32"),
    kind="kather-zip", class_names=KATHER_CLASSES, image_size=150, channels=3,
    counts={"all": 5000}, licence="CC BY 4.0", augment="dihedral",
    citation="Kather et al., Multi-class texture analysis in colorectal cancer histology, "
             "Scientific Reports 6:27988 (2016); doi:10.5281/zenodo.53169")

# 2-D single-label MedMNIST sets: (class names, channels, train/val/test counts); labels and
# counts from MedMNIST's medmnist/info.py.
_MEDMNIST = {
    "pathmnist": (("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                   "normal colon mucosa", "cancer-associated stroma",
                   "colorectal adenocarcinoma epithelium"), 3, (89996, 10004, 7180)),
    "dermamnist": (("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                    "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                    "melanocytic nevi", "vascular lesions"), 3, (7007, 1003, 2005)),
    "bloodmnist": (("basophil", "eosinophil", "erythroblast", "immature granulocytes",
                    "lymphocyte", "monocyte", "neutrophil", "platelet"), 3, (11959, 1712, 3421)),
    "octmnist": (("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 1, (97477, 10832, 1000)),
    "pneumoniamnist": (("normal", "pneumonia"), 1, (4708, 524, 624)),
    "breastmnist": (("malignant", "normal, benign"), 1, (546, 78, 156)),
    "organamnist": (("bladder", "femur-left", "femur-right", "heart", "kidney-left",
                     "kidney-right", "liver", "lung-left", "lung-right", "pancreas", "spleen"),
                    1, (34561, 6491, 17778)),
}
# md5 of every file: INFO[set]["MD5"] (28 px) and ["MD5_<size>"] in medmnist 3.0.2's medmnist/info.py.
_MEDMNIST_MD5 = {
    "pathmnist": {28: "a8b06965200029087d5bd730944a56c1", 64: "55aa9c1e0525abe5a6b9d8343a507616",
                  128: "ac42d08fb904d92c244187169d1fd1d9", 224: "2c51a510bcdc9cf8ddb2af93af1eadec"},
    "dermamnist": {28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
                   128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"},
    "bloodmnist": {28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
                   128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"},
    "octmnist": {28: "c68d92d5b585d8d81f7112f81e2d0842", 64: "e229e9440236b774d9f0dfef9d07bdaf",
                 128: "0a97e76651ace45c5d943ee3f65b63ae", 224: "abc493b6d529d5de7569faaef2773ba3"},
    "pneumoniamnist": {28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
                       128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"},
    "breastmnist": {28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
                    128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"},
    "organamnist": {28: "68e3f8846a6bd62f0c9bf841c0d9eacc", 64: "2dcccc29b88e6da5a01161ef20cda288",
                    128: "eeae80d0a227a8d099027e1b3cfd3b60", 224: "50747347e05c87dd3aaf92c49f9f3170"},
}
# Histology tiles have no up or left; X-ray, OCT, CT slices, dermoscopy and blood smears are left
# unaugmented (anatomy, text, acquisition orientation): a user who knows better sets data.augment.
ORIENTATION_FREE = ("pathmnist",)


def medmnist_name(base: str, size: int) -> str:
    """pathmnist, pathmnist_64, ...: the MedMNIST file naming (28 px has no suffix)."""
    return base if size == 28 else f"{base}_{size}"


def _medmnist_sets() -> dict[str, KnownSet]:
    sets = {}
    for base, (classes, channels, (n_train, n_val, n_test)) in _MEDMNIST.items():
        for size in MEDMNIST_SIZES:
            name = medmnist_name(base, size)
            sets[name] = KnownSet(
                name=name, file=RemoteFile(f"{name}.npz", MEDMNIST_BASE, md5=_MEDMNIST_MD5[base][size]),
                kind="medmnist-npz", class_names=classes, image_size=size, channels=channels,
                counts={"train": n_train, "val": n_val, "test": n_test}, licence="CC BY 4.0",
                citation=MEDMNIST_CITATION, augment="dihedral" if base in ORIENTATION_FREE else "none")
    return sets


KNOWN: dict[str, KnownSet] = {"kather2016": KATHER, **_medmnist_sets()}
MEDMNIST_BASES = tuple(_MEDMNIST)


def known(name: str) -> KnownSet:
    if name not in KNOWN:
        raise BenchError(f"unknown data set {name!r}; known: {', '.join(KNOWN)}")
    return KNOWN[name]


def data_dir(root: str = "") -> Path:
    """Where downloads live: cfg.root, else $BENCH_DATA, else ~/.cache/bench/data."""
    return Path(root or os.environ.get("BENCH_DATA", "") or Path.home() / ".cache/bench/data")
