import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from bench import testing  # noqa: E402
from bench.testing import toy_data as make_data  # noqa: E402,F401  (tests import make_data from here)

torch.set_num_threads(1)


@pytest.fixture
def toy_data():
    return make_data()


@pytest.fixture
def tiny_config():
    return testing.tiny_config()
