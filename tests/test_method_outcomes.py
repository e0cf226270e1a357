"""The method outcome check: every built-in method, trained 200 steps on the toy set, gives samples a
reader would accept: not saturated, the data's brightness and colour, and the class it was asked for.

Thresholds: under 2% of pixels at 0 or 255 (the toy data has none); every channel's mean within 15
grey levels of the real data's (the issue's brightness-and-colour bar); the toy expert's accuracy at
least twice chance (every built-in method conditions on the class). Measured at 200 steps: accuracy
0.875-1.0, channel means within 6 grey levels, at most 0.3% of pixels saturated.
"""
import numpy as np
import pytest
import torch
from toy_sets import colour_data, saturated_fraction, toy_config, toy_expert

from bench.engine.sample import generation_labels, sample_images
from bench.engine.tasks import expert_loader
from bench.engine.train import load_model, train_model
from bench.methods import REGISTRY

BUILT_IN = sorted(name for name, cls in REGISTRY.items() if cls.__module__.startswith("bench.methods."))
MAX_SATURATED = 0.02
MEAN_TOLERANCE_GREY_LEVELS = 15


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    data, cfg, cache = colour_data(), toy_config(), tmp_path_factory.mktemp("cache")
    return data, cfg, cache, expert_loader(cfg, data, cache, torch.device("cpu"))


@pytest.mark.parametrize("method", BUILT_IN)
def test_method_learns_the_toy_set(method, toy, tmp_path):
    data, cfg, cache, load_expert = toy
    train_model(cfg, method, 0, data, tmp_path, load_expert, cache)
    built = load_model(cfg, method, data, tmp_path, torch.device("cpu"), load_expert, cache)
    labels = generation_labels(data.scored_classes, cfg.sample.samples_per_class)
    images = sample_images(built, cfg, labels, 0, torch.device("cpu"))
    error = images.reshape(-1, 3).mean(0) - data.train_x.reshape(-1, 3).mean(0)
    accuracy = float((toy_expert(images) == labels).mean())
    assert saturated_fraction(images) < MAX_SATURATED
    assert np.abs(error).max() < MEAN_TOLERANCE_GREY_LEVELS, error
    assert accuracy >= 2 / data.num_classes, accuracy
