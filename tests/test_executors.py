"""The same grid under the local executor and under Ray gives bitwise identical samples."""
import numpy as np
import pytest

from bench.config import load_config
from bench.engine.runner import run_suite


@pytest.mark.timeout(600)
def test_ray_and_local_executors_give_identical_samples(tmp_path):
    results = {}
    for executor in ("local", "ray"):
        cfg = load_config(None, "tiny", {"suite": {"name": executor, "methods": ["baseline", "drift"], "seeds": 1},
                                         "execution": {"executor": executor, "device": "cpu"}})
        summary = run_suite(cfg, tmp_path)
        assert not summary.failed and summary.trained == 2 and summary.evaluated == 2
        results[executor] = {p.relative_to(tmp_path / executor): np.load(p)["images"]
                             for p in sorted((tmp_path / executor).glob("runs/**/samples.npz"))}
    assert results["local"].keys() == results["ray"].keys() and len(results["local"]) == 2
    for key, images in results["local"].items():
        assert np.array_equal(images, results["ray"][key]), key
