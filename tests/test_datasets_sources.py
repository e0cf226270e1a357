"""folder:PATH, npz:PATH, kather2016 and MedMNIST loaders on fixtures built in tmp_path."""
import hashlib
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import BenchError
from bench.datasets import DataConfig, kather2016, load_prepared, manifest
from bench.datasets.manifest import KATHER_FOLDERS, KATHER_TOP, KnownSet, RemoteFile

RNG = np.random.default_rng(0)


def _img(size=(20, 20), mode="RGB"):
    arr = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _cfg(name, **kw):
    return DataConfig(name=name, image_size=kw.pop("image_size", 16), exclude_classes=(), **kw)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for c in ("benign", "malignant"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            _img().save(root / c / f"{i}.png")
    return root


def test_folder_loads_with_stratified_split(tree):
    data = load_prepared(_cfg(f"folder:{tree}", split=(0.6, 0.2, 0.2), split_seed=3))
    assert data.class_names == ("benign", "malignant")
    assert [len(data.split(s)[1]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert np.bincount(data.test_y).tolist() == [2, 2]
    assert data.train_x.shape[1:] == (16, 16, 3) and data.meta["resized"]
    other = load_prepared(_cfg(f"folder:{tree}", split=(0.6, 0.2, 0.2), split_seed=4))
    assert other.fingerprint() != data.fingerprint()
    gray = load_prepared(_cfg(f"folder:{tree}", grayscale=True))
    assert gray.train_x.shape[-1] == 1


def test_folder_converts_mixed_modes_sizes_and_crops(tree):
    _img((30, 30), "RGBA").save(tree / "benign" / "rgba.png")
    _img((20, 20), "L").save(tree / "benign" / "gray.png")
    _img((20, 20), "P").save(tree / "malignant" / "palette.png")
    _img((40, 20)).save(tree / "malignant" / "wide.png")
    data = load_prepared(_cfg(f"folder:{tree}"))
    assert data.channels == 3 and "RGBA" in data.meta["converted"]
    assert "1 non-square" in data.meta["center_cropped"]
    assert "30x30" in data.meta["resized"]


@pytest.mark.parametrize("case, match", [
    ("missing", "no such folder"), ("empty_class", "empty class folder"),
    ("not_image", "notes.txt: not a readable image"), ("float", "float"),
])
def test_folder_bad_inputs(tree, case, match):
    if case == "missing":
        target = tree / "nope"
    else:
        target = tree
        if case == "empty_class":
            (tree / "zz").mkdir()
        elif case == "not_image":
            (tree / "benign" / "notes.txt").write_text("hello")
        else:
            Image.fromarray(np.ones((8, 8), np.float32)).save(tree / "benign" / "f.tif")
    with pytest.raises(BenchError, match=match):
        load_prepared(_cfg(f"folder:{target}"))


def _medmnist_arrays(n=(18, 9, 9), size=28, classes=9):  # every class in every split
    out = {}
    for s, k in zip(("train", "val", "test"), n):
        out[f"{s}_images"] = RNG.integers(0, 256, (k, size, size, 3), dtype=np.uint8)
        out[f"{s}_labels"] = (np.arange(k) % classes).reshape(-1, 1).astype(np.uint8)
    return out


def test_npz_medmnist_layout_and_unsplit(tmp_path):
    np.savez(tmp_path / "m.npz", **_medmnist_arrays())
    data = load_prepared(_cfg(f"npz:{tmp_path / 'm.npz'}", image_size=28))
    assert data.num_classes == 9 and data.train_x.shape == (18, 28, 28, 3)
    assert data.test_y.dtype == np.int64 and data.meta["native_size"] == 28
    x = RNG.integers(0, 256, (20, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "u.npz", images=x, labels=np.arange(20) % 2,
             class_names=np.array(["a", "b"]))
    data = load_prepared(_cfg(f"npz:{tmp_path / 'u.npz'}", image_size=8))
    assert data.class_names == ("a", "b") and data.channels == 1 and len(data.train_y) == 16


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("val_labels"), "keys"),
    (lambda a: a.update(train_images=a["train_images"].astype(np.float32)), "dtype float32"),
    (lambda a: a.update(train_images=a["train_images"][:, :, :20]), "square"),
    (lambda a: a.update(test_images=a["test_images"][:, :14, :14]), "disagree"),
    (lambda a: a.update(val_labels=a["val_labels"] + 20), "labels span"),
    (lambda a: a.update(val_labels=a["val_labels"][:2]), "2 val_labels for 9 images"),
    (lambda a: a.update(train_labels=np.zeros((12, 14), np.uint8)), "multi-label"),
])
def test_npz_bad_contents(tmp_path, change, match):
    arrays = _medmnist_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", class_names=np.array([str(i) for i in range(9)]), **arrays)
    with pytest.raises(BenchError, match=match):
        load_prepared(_cfg(f"npz:{tmp_path / 'bad.npz'}"))


def test_npz_truncated_and_missing(tmp_path):
    np.savez(tmp_path / "m.npz", **_medmnist_arrays())
    blob = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BenchError, match="t.npz: truncated"):
        load_prepared(_cfg(f"npz:{tmp_path / 't.npz'}"))
    with pytest.raises(BenchError, match="none.npz: missing"):
        load_prepared(_cfg(f"npz:{tmp_path / 'none.npz'}"))


def _kather_zip(path, per_class=3):
    with zipfile.ZipFile(path, "w") as zf:
        for folder in KATHER_FOLDERS:
            for i in range(per_class):
                buf = io.BytesIO()
                _img().save(buf, format="TIFF")
                zf.writestr(f"{KATHER_TOP}/{folder}/{i}.tif", buf.getvalue())
    return path


def test_kather_zip_and_folder_read(tmp_path):
    zpath = _kather_zip(tmp_path / "mini.zip", per_class=10)   # 10: every class in every split
    data = kather2016.read(zpath, _cfg("kather2016"), tiles_per_class=None)
    assert data.num_classes == 8 and len(data.train_y) + len(data.val_y) + len(data.test_y) == 80
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path / "x")
    again = kather2016.read(tmp_path / "x" / KATHER_TOP, _cfg("kather2016"), tiles_per_class=None)
    assert again.fingerprint() == data.fingerprint()
    with pytest.raises(BenchError, match="holds 10 tiles, expected 625"):
        kather2016.read(zpath, _cfg("kather2016"))


def test_kather_bad_inputs(tmp_path):
    with pytest.raises(BenchError, match="bench data fetch kather2016"):
        load_prepared(_cfg("kather2016", root=str(tmp_path)))
    published = _kather_zip(tmp_path / manifest.KATHER.file.filename)
    with pytest.raises(BenchError, match="expected 258098431"):
        load_prepared(_cfg("kather2016", root=str(tmp_path)))
    blob = published.read_bytes()
    (tmp_path / "cut.zip").write_bytes(blob[: len(blob) - 200])
    with pytest.raises(BenchError, match="cut.zip: truncated or not a zip"):
        kather2016.read(tmp_path / "cut.zip", _cfg("kather2016"), tiles_per_class=None)
    with zipfile.ZipFile(tmp_path / "gap.zip", "w") as zf:
        zf.writestr(f"{KATHER_TOP}/01_TUMOR/a.tif", b"not a tiff")
    with pytest.raises(BenchError, match="02_STROMA is empty"):
        kather2016.read(tmp_path / "gap.zip", _cfg("kather2016"), tiles_per_class=None)


@pytest.fixture
def tiny_pathmnist(tmp_path, monkeypatch):
    """A 28 px 'pathmnist' file registered in the manifest with its own counts and md5."""
    np.savez(tmp_path / "pathmnist.npz", **_medmnist_arrays())
    md5 = hashlib.md5((tmp_path / "pathmnist.npz").read_bytes()).hexdigest()
    real = manifest.KNOWN["pathmnist"]
    fake = KnownSet(**{**real.__dict__, "counts": {"train": 18, "val": 9, "test": 9},
                       "file": RemoteFile("pathmnist.npz", "http://unused", md5=md5)})
    monkeypatch.setitem(manifest.KNOWN, "pathmnist", fake)
    return tmp_path


def test_pathmnist_loads_checked(tiny_pathmnist):
    data = load_prepared(DataConfig(name="pathmnist", image_size=28, root=str(tiny_pathmnist),
                                    exclude_classes=("background",)))
    assert data.num_classes == 9 and data.scored_classes == (0, 2, 3, 4, 5, 6, 7, 8)
    assert "md5" in data.meta["checksum"] and len(data.test_y) == 9
    # 32 px asks for the 64 px file, which is not there
    with pytest.raises(BenchError, match="bench data fetch pathmnist_64"):
        load_prepared(DataConfig(name="pathmnist", image_size=32, root=str(tiny_pathmnist)))


def test_pathmnist_checksum_and_counts(tiny_pathmnist, monkeypatch):
    arrays = _medmnist_arrays(n=(17, 9, 9))
    np.savez(tiny_pathmnist / "pathmnist.npz", **arrays)
    with pytest.raises(BenchError, match="md5 .* does not match"):
        load_prepared(DataConfig(name="pathmnist", image_size=28, root=str(tiny_pathmnist),
                                 exclude_classes=()))
    fake = manifest.KNOWN["pathmnist"]
    monkeypatch.setitem(manifest.KNOWN, "pathmnist", KnownSet(**{
        **fake.__dict__, "file": RemoteFile("pathmnist.npz", "http://unused")}))
    with pytest.raises(BenchError, match="image counts"):
        load_prepared(DataConfig(name="pathmnist", image_size=28, root=str(tiny_pathmnist),
                                 exclude_classes=()))
