"""copy_rate: a method that hands back training images is caught, a barely trained baseline is not;
the rule against a direct computation; the report's nearest-neighbour figure."""
import io

import numpy as np
import pytest
from rich.console import Console

from bench.config import load_config
from bench.methods import REGISTRY, ConditioningMethod
from bench.metrics.privacy import COPY_QUANTILE, copy_scores, nearest
from bench.models.expert import to_model_space
from bench.report import build_report
from bench.runner import run_suite


@pytest.fixture
def copier_plugin():
    """A plug-in method whose samples are its training images, verbatim: the last sampling step returns,
    for each target label, the next training image of that class (the train split every method holds)."""
    class Copier(ConditioningMethod):
        name = "test-copier"

        def sample_condition(self, model, labels, generator):
            self.targets = labels.cpu().numpy()
            return super().sample_condition(model, labels, generator)

        def step(self, sampler, xt, eps_hat, i, generator):
            x = super().step(sampler, xt, eps_hat, i, generator)
            if i < len(sampler) - 1:
                return x
            train_x, train_y = self.ctx.data.train_x, self.ctx.data.train_y
            picks = [np.flatnonzero(train_y == c)[np.sum(self.targets[:row] == c)]
                     for row, c in enumerate(self.targets)]
            return to_model_space(train_x[picks]).to(x.device)

    yield Copier
    REGISTRY.pop("test-copier", None)


def test_copy_rate_catches_a_method_that_returns_training_images(tmp_path, copier_plugin):
    cfg = load_config(None, "tiny", {"suite": {"methods": ["baseline", "test-copier"], "seeds": 1},
                                     "metrics": {"names": ["copy_rate"]},
                                     "execution": {"executor": "local", "device": "cpu"}})
    summary = run_suite(cfg, tmp_path, Console(file=io.StringIO()))
    assert not summary.failed and summary.evaluated == 2
    report = build_report(summary.root, ("html",))
    table = report.tables[0]
    assert table.cell("test-copier", "copy_rate")["mean"] >= 0.9
    assert table.cell("baseline", "copy_rate")["mean"] <= 0.1     # 4 training steps: noise, far from any image
    copier_eval = report.data.evals_of(table.dataset, "test-copier")[0]
    with np.load(copier_eval.eval_dir / "nearest.npz") as pairs:
        for space in ("pixel", "scorer"):     # each shown pair: a generated image and its own source
            assert np.array_equal(pairs[f"{space}_generated"], pairs[f"{space}_train"])
    html = (report.report_dir / "report.html").read_text()
    assert "Memorisation: generated images closest to a training image" in html


def test_copy_rule_against_a_direct_computation():
    """Held-out images of each class lie 0.01, 0.02, ..., 0.20 from a training image: the 5% quantile
    is 0.0195, so one held-out image per class (5%) and the one verbatim copy per class are copies."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
    flat = train.reshape(len(train), -1).astype(np.float64) / 255
    direction = rng.normal(size=flat.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    held, held_labels = flat + direction * np.tile(np.arange(1, 21) / 100, 2)[:, None], np.repeat([0, 1], 20)
    assert np.allclose(nearest(held, flat)[0], np.tile(np.arange(1, 21) / 100, 2), atol=1e-4)
    fake = np.concatenate([flat[:5], flat[20:25]]) + np.tile([0, 0.5, 0.5, 0.5, 0.5], 2)[:, None]  # 1 copy a class
    fake_labels = np.repeat([0, 1], 5)
    images = np.zeros((len(fake), 4, 4, 1), np.uint8)
    spaces = {space: (fake, held, flat) for space in ("pixel", "scorer")}
    result = copy_scores(images, fake_labels, held_labels, train, spaces, {0: "a", 1: "b"})
    assert COPY_QUANTILE == 0.05
    assert result["value"] == 0.2 and result["per_class"] == {"a": 0.2, "b": 0.2}
    assert result["reference"] == 0.05
    assert (result["nearest"]["pixel_ratio"][:2] < 0.1).all()   # the copies come first
