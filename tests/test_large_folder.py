"""folder: sets of large images tiled for training ([data] tile_large_images): tile counts and labels, a split by
image, the held large images; `bench sample-large` on a tiny suite of such a set; the refusals, one line, exit 2."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from cli_runner import assert_refused, run_cli
from PIL import Image
from test_export import finished_suite

from bench.core.errors import BenchError
from bench.core.store import LARGE_IMAGES_FILE, PATCH_METRICS_FILE, SEAMS_FILE, folder_name
from bench.datasets import DataConfig, PreparedData, load_prepared
from bench.datasets.base import SPLITS
from bench.datasets.large import check_large_images, check_large_source, real_large_image

SSL = "ssl:simclr_steps=3"
TILE = 16


def write_tree(root: Path, sizes: dict[str, tuple[int, int]], per_class: int) -> Path:
    """`per_class` PNGs of W x H `sizes[class]` per class folder: smooth noise in a colour of the class's own."""
    rng = np.random.default_rng(0)
    for label, (name, (width, height)) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = scipy.ndimage.gaussian_filter(rng.standard_normal((height, width, 3)), (2, 2, 0))
            colour = np.roll([200, 90, 140], label)
            image = np.clip(colour + 400 * noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def tiled(root: Path, **kw) -> DataConfig:
    return DataConfig(name=f"folder:{root}", image_size=TILE, exclude_classes=(), split=(0.6, 0.2, 0.2),
                      tile_large_images=True, **kw)


def tiles_of(image: np.ndarray) -> list[bytes]:
    """The bytes of the image's whole TILE-px tiles, its whole-tile region centred."""
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    top, left = image.shape[0] % TILE // 2, image.shape[1] % TILE // 2
    return [image[top + TILE * r:top + TILE * (r + 1), left + TILE * c:left + TILE * (c + 1)].tobytes()
            for r in range(rows) for c in range(cols)]


def test_each_image_is_cut_into_tiles_of_its_class_and_split_whole(tmp_path):
    root = write_tree(tmp_path / "tree", {"wide": (64, 48), "tall": (50, 70)}, per_class=5)
    data = load_prepared(tiled(root))
    images = {str(f): np.asarray(Image.open(f)) for f in sorted(root.rglob("*.png"))}
    owner = {tile: file for file, image in images.items() for tile in tiles_of(image)}
    assert len(owner) == 12 * len(images)         # 64 x 48 -> 4 x 3 tiles; 50 x 70 -> 3 x 4 (48 x 64 centred)
    files = {s: data.meta["large_images"][s] for s in SPLITS}
    assert [len(files[s]) for s in SPLITS] == [6, 2, 2]       # by image: 3 / 1 / 1 of each class
    assert sorted(sum(files.values(), [])) == sorted(images)  # every image in exactly one split
    for s in SPLITS:
        x, y = data.split(s)
        sources = [owner[tile.tobytes()] for tile in x]
        assert sorted(set(sources)) == sorted(files[s]) and len(x) == 12 * len(files[s])  # all its tiles, no other
        assert [data.class_names[c] for c in y] == [Path(f).parent.name for f in sources]
        large_x, large_y = data.large[s]
        assert large_x.shape == (len(files[s]), 48, 48, 3)         # 3 x 3 tiles: as many as the smallest image holds
        for image, label, file in zip(large_x, large_y, files[s]):
            full = images[file]
            top, left = (full.shape[0] - 48) // 2, (full.shape[1] - 48) // 2
            assert (image == full[top:top + 48, left:left + 48]).all()
            assert data.class_names[label] == Path(file).parent.name
    assert data.meta["large_image_tiles"] == 3 and data.meta["tiles_per_image"]["val"] == [12, 12]
    saved = tmp_path / "data.npz"
    data.save(saved)
    again = PreparedData.load(saved)
    assert all((again.large[s][0] == data.large[s][0]).all() and (again.large[s][1] == data.large[s][1]).all()
               for s in SPLITS)
    gray = load_prepared(tiled(root, grayscale=True))
    assert gray.train_x.shape[-1] == gray.large["test"][0].shape[-1] == 1


def test_the_held_large_images_take_the_classes_in_turn(tmp_path):
    root = write_tree(tmp_path / "tree", {"a": (64, 64), "b": (64, 64)}, per_class=10)
    cfg = tiled(root)
    data = load_prepared(cfg)
    picked = [real_large_image(cfg, data, "train", 2, i) for i in range(4)]
    assert [p[1]["class"] for p in picked] == ["a", "b", "a", "b"]
    assert all(p[0].shape == (32, 32, 3) for p in picked)
    check_large_images(cfg, data, "train", 4, 12)
    with pytest.raises(BenchError, match=r"the test split of folder:.* holds 4 large image\(s\) .*give --seeds 4"):
        check_large_images(cfg, data, "test", 2, 5)
    with pytest.raises(BenchError, match=r"hold 4 x 4 tiles of 16 px .*give --k 4 or less"):
        check_large_images(cfg, data, "test", 5, 1)


def test_tiling_refuses_what_it_cannot_tile(tmp_path):
    with pytest.raises(BenchError, match="tiles the images of a folder: data set, and synth-tissue is none"):
        load_prepared(DataConfig(tile_large_images=True))
    root = write_tree(tmp_path / "tree", {"a": (64, 64), "b": (20, 12)}, per_class=3)
    with pytest.raises(BenchError, match=r"smaller than one 16-px tile, e\.g\. .*b/0\.png \(20x12\)"):
        load_prepared(tiled(root))
    with pytest.raises(BenchError, match="has no real large images .* data.tile_large_images = true"):
        check_large_source(DataConfig(name=f"folder:{root}"))


def test_untiled_suites_keep_their_content_keys():
    assert "tile_large_images" not in DataConfig().content_key()       # run ids and data caches as before
    assert DataConfig(tile_large_images=True).content_key()["tile_large_images"] is True


def folder_suite(results: Path, folder: Path, capsys, tile: bool = True) -> Path:
    store = finished_suite(results, (SSL,), {
        "data": {"name": f"folder:{folder}", "split": [0.6, 0.2, 0.2], "exclude_classes": [],
                 "tile_large_images": tile},
        "sample": {"samples_per_class": 4}, "metrics": {"names": ["acc[scorer]", "fid[scorer]"]}})
    capsys.readouterr()             # the suite's progress, not the command's
    return store


def the_run(store: Path, folder: Path) -> Path:
    (run,) = (store / "runs" / folder_name(f"folder:{folder}") / folder_name(SSL) / "train-seed=0").iterdir()
    return run


def test_sample_large_paints_on_and_scores_against_a_folders_large_images(monkeypatch, capsys, tmp_path):
    folder = write_tree(tmp_path / "tree", {"a": (64, 64), "b": (64, 64)}, per_class=5)
    store = folder_suite(tmp_path / "results", folder, capsys)
    run = the_run(store, folder)
    for args, says in ((("--seeds", "3"), "the test split of folder:"), (("--k", "5"), "give --k 4 or less")):
        assert_refused(monkeypatch, capsys, "sample-large", str(run), *args, "--executor", "local", store=store,
                       says=says)
    code, out, err = run_cli(monkeypatch, capsys, "sample-large", str(run), "--k", "2", "--stride", "8",
                             "--seeds", "2", "--executor", "local")
    assert code in (0, None), err
    folder_out = run / "large" / "k=2+stride=8+slerp"
    real_from = []
    for seed in (0, 1):
        images = np.load(folder_out / f"seed={seed}" / LARGE_IMAGES_FILE)
        assert images["generated"].shape == images["real"].shape == (32, 32, 3)
        real_from.append(json.loads((folder_out / f"seed={seed}" / SEAMS_FILE).read_text())["real_image"])
        full = np.asarray(Image.open(real_from[-1]["file"]))
        assert (images["real"] == full[16:48, 16:48]).all()       # the centred 2 x 2 tiles of a test image
    assert [r["class"] for r in real_from] == ["a", "b"] and {r["split"] for r in real_from} == {"test"}
    scores = json.loads((folder_out / PATCH_METRICS_FILE).read_text())
    assert scores["provenance"]["n_gen"] == scores["provenance"]["n_ref"] == 18     # 2 images x (2 k - 1)^2 crops
    assert "seam score, real:" in out


@pytest.mark.parametrize("tile, says", [
    (True, "large images hold 1 x 1 tiles of 16 px (as many as its smallest image); give --k 1 or less"),
    (False, "has no real large images to condition on and compare with"),
])
def test_a_folder_of_tile_sized_images_has_no_large_images_to_sample(monkeypatch, capsys, tmp_path, tile, says):
    folder = write_tree(tmp_path / "tree", {"a": (16, 16), "b": (16, 16)}, per_class=10)
    store = folder_suite(tmp_path / "results", folder, capsys, tile)
    assert_refused(monkeypatch, capsys, "sample-large", str(the_run(store, folder)), "--executor", "local",
                   store=store, says=says)
