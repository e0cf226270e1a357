"""copy_rate: a method that hands back training images is caught, a barely trained baseline is not;
the rule against a direct computation; the report's nearest-neighbour figure."""
import io

import numpy as np
import pytest

from bench.config import load_config
from bench.core.console import make_console
from bench.core.store import NEAREST_FILE
from bench.engine.runner import run_suite
from bench.methods import REGISTRY, ConditioningMethod
from bench.metrics.privacy import COPY_QUANTILE, NEIGHBOURS, copy_scores, nearest, pixels
from bench.core.pixels import to_model_space
from bench.report import build_report


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
    summary = run_suite(cfg, tmp_path, make_console(file=io.StringIO()))
    assert not summary.failed and summary.evaluated == 2
    report = build_report(summary.root, ("html",))
    table = report.tables[0]
    assert table.cell("test-copier", "copy_rate")["mean"] >= 0.9
    assert table.cell("baseline", "copy_rate")["mean"] <= 0.1     # 4 training steps: noise, far from any image
    copier_eval = report.data.evals_of(table.dataset, "test-copier")[0]
    with np.load(copier_eval.eval_dir / NEAREST_FILE) as pairs:
        for space in ("pixel", "scorer"):     # each shown pair: a generated image and its own source
            assert np.array_equal(pairs[f"{space}_generated"], pairs[f"{space}_train"])
    html = (report.report_dir / "report.html").read_text()
    assert "Memorisation: generated images closest to a training image" in html


def _direct_normalised_nearest(query, bank, k):
    """Distance to the nearest bank row over the mean distance to the k nearest, by brute force."""
    d = np.sort(np.linalg.norm(query[:, None, :] - bank[None, :, :], axis=2), axis=1)[:, :k]
    return d[:, 0] / d.mean(1)


def test_copy_rule_against_a_direct_computation():
    """Held-out images lie at growing distances from a training image; generated ones are two verbatim
    copies and eight fresh draws. copy_rate and its reference equal the rule computed by brute force."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (80, 4, 4, 1), dtype=np.uint8)
    flat = train.reshape(len(train), -1).astype(np.float64) / 255
    held = flat[:40] + rng.normal(size=(40, flat.shape[1])) * np.linspace(0.01, 0.4, 40)[:, None]
    fake = np.concatenate([flat[:2], rng.random((8, flat.shape[1]))])
    fake_labels = np.repeat([0, 1], 5)
    spaces = {space: (fake, held, flat) for space in ("pixel", "scorer")}
    result = copy_scores(np.zeros((10, 4, 4, 1), np.uint8), fake_labels, train, spaces, {0: "a", 1: "b"})
    held_r, fake_r = (_direct_normalised_nearest(x, flat, NEIGHBOURS) for x in (held, fake))
    threshold = np.quantile(held_r, COPY_QUANTILE)
    assert COPY_QUANTILE == 0.05 and NEIGHBOURS == 50
    assert result["value"] == pytest.approx(np.mean(fake_r <= threshold)) and result["value"] >= 0.2
    assert result["reference"] == pytest.approx(np.mean(held_r <= threshold))
    assert result["per_class"]["a"] >= 0.4                       # the two copies are class a's
    assert (result["nearest"]["pixel_ratio"][:2] < 1e-3).all()   # and come first


def test_a_smooth_image_near_many_smooth_training_images_is_no_copy():
    """Half the training images are near-blank tiles (a dense cluster), half textured; the held-out images
    are textured. A new near-blank image lies closer to a training image than any held-out image does,
    yet it copies none: its nearest distance is like its distance to the other blank tiles. A verbatim
    copy of a textured tile is a copy."""
    rng = np.random.default_rng(1)
    blank = np.clip(240 + rng.normal(0, 2, (60, 8, 8, 3)), 0, 255).astype(np.uint8)
    textured = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    train = np.concatenate([blank, textured])
    held = np.clip(textured.astype(int) + rng.integers(-60, 61, textured.shape), 0, 255).astype(np.uint8)
    fake = np.stack([np.clip(240 + rng.normal(0, 2, (8, 8, 3)), 0, 255).astype(np.uint8), textured[0]])
    spaces = {space: (pixels(fake), pixels(held), pixels(train)) for space in ("pixel", "scorer")}
    nearest_raw = nearest(pixels(fake), pixels(train))[0][:, 0]
    assert nearest_raw[0] < nearest(pixels(held), pixels(train))[0][:, 0].min()    # closer than any fresh image
    result = copy_scores(fake, np.array([0, 1]), train, spaces, {0: "blank", 1: "textured"})
    assert result["per_class"] == {"blank": 0.0, "textured": 1.0}
