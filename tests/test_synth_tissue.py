"""synth-tissue: determinism, shapes, class separability, real intra-class variation."""
import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.datasets import DataConfig, PreparedData, known_sources, load_prepared
from bench.datasets.synth_tissue import CLASS_NAMES, generate


def test_same_seed_same_bytes_other_seed_differs():
    a = generate(2, 6, 32, seed=5)
    assert a.tobytes() == generate(2, 6, 32, seed=5).tobytes()
    assert not np.array_equal(a, generate(2, 6, 32, seed=6))
    # image i depends only on (class, size, seed, i): asking for more keeps the first ones
    assert np.array_equal(generate(2, 40, 32, seed=5)[:6], a)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_dtype(size):
    for c in range(len(CLASS_NAMES)):
        x = generate(c, 3, size, seed=0)
        assert x.shape == (3, size, size, 3) and x.dtype == np.uint8
        assert 20 < x.mean() < 250                      # neither black nor saturated white


def test_kather_size_renders():
    x = generate(5, 1, 150, seed=0)
    assert x.shape == (1, 150, 150, 3)


def _features(x: np.ndarray) -> np.ndarray:
    """Colour and texture statistics an expert classifier would trivially pick up."""
    f = x.astype(np.float32) / 255
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    n, s = luma.shape[:2]
    coarse = luma.reshape(n, s // 4, 4, s // 4, 4).mean(axis=(2, 4))
    return np.column_stack([
        f.mean(axis=(1, 2)), f.std(axis=(1, 2)),
        np.abs(np.diff(luma, axis=1)).mean(axis=(1, 2)),
        np.abs(np.diff(luma, axis=2)).mean(axis=(1, 2)),
        (luma > 0.85).mean(axis=(1, 2)), (luma < 0.45).mean(axis=(1, 2)),
        coarse.std(axis=(1, 2)),
        (f[..., 2] - f[..., 0]).mean(axis=(1, 2)),      # blue-shift of lymphocytes
    ])


def test_classes_separable_by_nearest_centroid():
    data = load_prepared(DataConfig(train_per_class=40, val_per_class=1, test_per_class=25))
    ftr, fte = _features(data.train_x), _features(data.test_x)
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    centroids = np.stack([ftr[data.train_y == c].mean(0) for c in range(data.num_classes)])
    pred = np.argmin(((fte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    acc = (pred == data.test_y).mean()
    assert acc > 0.8, f"nearest-centroid accuracy {acc:.2f}"


def test_intra_class_variation_is_real():
    for c in range(len(CLASS_NAMES)):
        x = generate(c, 12, 32, seed=1).astype(np.float32)
        # pixels differ a lot between tiles of one class (layout), ...
        pair_diff = np.abs(x[:6] - x[6:]).mean()
        assert pair_diff > 3, (CLASS_NAMES[c], pair_diff)
        # ... and so do the tiles' mean colours (stain / density jitter)
        assert x.mean(axis=(1, 2)).std(axis=0).max() > 1.0, CLASS_NAMES[c]


def test_load_prepared_splits_disjoint_and_scored():
    cfg = DataConfig(image_size=32, train_per_class=4, val_per_class=2, test_per_class=3,
                     split_seed=7)
    data = load_prepared(cfg)
    assert isinstance(data, PreparedData) and data.class_names == CLASS_NAMES
    assert data.train_x.shape == (32, 32, 32, 3) and data.val_x.shape[0] == 16
    assert data.test_x.shape[0] == 24 and data.test_y.dtype == np.int64
    assert np.bincount(data.train_y).tolist() == [4] * 8
    assert data.scored_classes == tuple(range(7))         # "empty" excluded by default
    train = {img.tobytes() for img in data.train_x}
    assert not train & {img.tobytes() for img in data.test_x}
    assert not train & {img.tobytes() for img in data.val_x}
    again = load_prepared(cfg)
    assert again.fingerprint() == data.fingerprint()
    other = load_prepared(DataConfig(train_per_class=4, val_per_class=2, test_per_class=3,
                                     split_seed=8))
    assert other.fingerprint() != data.fingerprint()


def test_grayscale_is_bt601_luma():
    rgb = load_prepared(DataConfig(train_per_class=2, val_per_class=1, test_per_class=1))
    gray = load_prepared(DataConfig(train_per_class=2, val_per_class=1, test_per_class=1,
                                    grayscale=True))
    assert gray.train_x.shape == (16, 32, 32, 1) and gray.channels == 1
    expect = np.rint(rgb.train_x.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert np.abs(gray.train_x[..., 0] - expect).max() <= 1


def test_exclusions_and_names_checked():
    data = load_prepared(DataConfig(train_per_class=1, val_per_class=1, test_per_class=1,
                                    exclude_classes=("empty", "debris")))
    assert data.scored_classes == (0, 1, 2, 3, 5, 6)
    with pytest.raises(BenchError, match="necrosis"):
        load_prepared(DataConfig(exclude_classes=("necrosis",)))
    with pytest.raises(BenchError, match="synth-tissue"):
        load_prepared(DataConfig(name="no-such-set"))
    assert {"synth-tissue", "kather2016", "pathmnist", "folder:PATH", "npz:PATH"} <= set(
        known_sources())
