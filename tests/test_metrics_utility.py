"""tstr_acc and aug_gain: the fixed recipe reads real held-out images as well as real train images
and noise as chance; the real-only classifier is trained once; bad sizes are refused before work."""
import numpy as np
import pytest
import torch

from bench.config import load_config
from bench.core.errors import BenchError
from bench.datasets import load_prepared
from bench.datasets.base import DataConfig
from bench.engine.data import check_data
from bench.metrics import evaluate_samples

METRICS = ["tstr_acc", "aug_gain"]


@pytest.fixture(scope="module")
def data():
    return load_prepared(DataConfig(image_size=16, train_per_class=16, val_per_class=16, test_per_class=16))


def _evaluate(data, fake, fake_labels, cache):
    real_x, real_y = data.split("test")
    scored = np.isin(real_y, data.scored_classes)
    return evaluate_samples(fake, fake_labels, real_x[scored], real_y[scored], class_names=data.class_names,
                            scored_classes=data.scored_classes, classifiers={}, metrics=METRICS, cache_dir=cache,
                            reference_key="test", train_images=data.train_x, train_labels=data.train_y)


def test_tstr_reads_real_held_out_images_as_real_and_noise_as_chance(data, tmp_path):
    val_x, val_y = data.split("val")
    keep = np.isin(val_y, data.scored_classes)
    held_out, labels = val_x[keep], val_y[keep]          # 16 real images a class that no classifier trained on
    chance = 1 / len(data.scored_classes)
    rng_before = torch.random.get_rng_state()
    real = _evaluate(data, held_out, labels, tmp_path)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    trained_on_real = real["reference"]["tstr_acc"]      # the recipe on as many real train images
    assert trained_on_real > 3 * chance
    assert abs(real["metrics"]["tstr_acc"] - trained_on_real) <= 0.1
    assert real["metrics"]["aug_gain"] >= 0              # more real images do not hurt
    noise = np.random.default_rng(0).integers(0, 256, held_out.shape, dtype=np.uint8)
    noisy = _evaluate(data, noise, labels, tmp_path)
    assert noisy["metrics"]["tstr_acc"] <= chance + 0.1  # 0.04 here, against 0.93 trained on real
    assert noisy["reference"]["tstr_acc"] == trained_on_real   # the cached real-only classifier
    assert len(list((tmp_path / "utility").glob("real-only-*.json"))) == 1
    recipe = noisy["provenance"]["tstr_acc"]["recipe"]
    assert recipe["seed"] == 0 and recipe["patience"] > 0 and noisy["provenance"]["aug_gain"]["n_real_train"] == 112


def test_aug_gain_needs_as_many_real_train_images_as_generated(data):
    cfg = load_config(None, "tiny", {"sample": {"samples_per_class": 17}, "metrics": {"names": METRICS}})
    with pytest.raises(BenchError, match="aug_gain needs 17 real train images of class tumor"):
        check_data(cfg, data)
