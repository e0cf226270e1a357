import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench.config import PRESETS, load_config  # noqa: E402
from bench.datasets.base import PreparedData  # noqa: E402

torch.set_num_threads(1)


def make_data(num_classes=3, per_class=8, size=16, channels=3, seed=0) -> PreparedData:
    """Class-coloured noise images: distinct per class, cheap, no generator needed."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.repeat(np.arange(num_classes), n)
        base = (np.arange(num_classes)[:, None] * 255 // max(1, num_classes - 1))[y]
        x = np.clip(base[:, None, None, :1] + rng.normal(0, 30, (len(y), size, size, channels)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)

    tr, va, te = split(per_class), split(max(2, per_class // 2)), split(max(2, per_class // 2))
    return PreparedData("toy", tuple(f"c{i}" for i in range(num_classes)), tuple(range(num_classes)),
                        *tr, *va, *te)


@pytest.fixture
def toy_data():
    return make_data()


@pytest.fixture
def tiny_config():
    return load_config(None, "tiny", {"execution": {"executor": "local", "device": "cpu"}})


import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_sys.path.insert(0, str(_Path(__file__).parent))  # tests import the shared conformance class
