"""vendi[<network>] against the Vendi score's definition (Friedman & Dieng 2023), written here from the paper:
its known cases, its two eigenproblems, and the evaluation's per-class values and real reference."""
import numpy as np
import pytest

from bench.metrics import evaluate_samples, metric_names
from bench.metrics.extractors import EXTRACTORS, build_extractor, extractor_names
from bench.metrics.registry import CLOSEST_TO_REAL, direction_of
from bench.metrics.vendi import vendi_score
from bench.report import build_report
from bench.report.tables import DISTANCE_TO_REAL
from bench.testing import toy_data
import test_report
from test_metrics_registry import pooled


def reference_vendi(features: np.ndarray) -> float:
    """exp(-sum_i l_i log l_i), l the eigenvalues of the n x n kernel K / n, K_ij = cos(x_i, x_j), 0 log 0 = 0."""
    x = np.asarray(features, np.float64)
    k = np.array([[a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in x] for a in x])
    eigenvalues = np.clip(np.linalg.eigvalsh(k / len(x)), 0, None)   # round-off below 0 is a 0
    positive = np.where(eigenvalues > 0, eigenvalues, 1)
    return float(np.exp(-np.sum(np.where(eigenvalues > 0, eigenvalues * np.log(positive), 0))))


@pytest.mark.parametrize("n, d", [(10, 40), (40, 10), (16, 16)])   # n x n, and d x d where n > d
def test_vendi_score_is_the_published_formula(n, d):
    features = np.random.default_rng(n * d).normal(size=(n, d)) + 0.5   # correlated: a score between 1 and n
    expected = reference_vendi(features)
    assert 1 < expected < n
    assert vendi_score(features) == pytest.approx(expected, rel=1e-6)


def test_identical_images_score_1_and_orthogonal_features_score_n():
    assert vendi_score(np.tile([[0.3, -1.2, 2.0]], (7, 1))) == pytest.approx(1, rel=1e-9)
    assert vendi_score(np.diag([1.0, 2.0, 0.5, 7.0, 3.0]) @ np.eye(5, 9)) == pytest.approx(5, rel=1e-9)   # any lengths


def test_vendi_is_every_networks_and_judged_against_the_real_images():
    assert {f"vendi[{n}]" for n in extractor_names()} <= set(metric_names())
    assert {"vendi[scorer]", "vendi[inception]"} <= set(metric_names())
    assert direction_of("vendi[scorer]") == CLOSEST_TO_REAL


def test_the_report_judges_vendi_by_its_distance_to_the_real_images(monkeypatch, tmp_path):
    monkeypatch.setattr(test_report, "METRICS", [*test_report.METRICS, "vendi[scorer]"])
    monkeypatch.setattr(test_report, "REFERENCE", {**test_report.REFERENCE, "vendi[scorer]": 0.36})
    t = build_report(test_report.make_store(tmp_path)).tables[0]
    rows = t.leaderboard[t.leaderboard.metric == "vendi[scorer]"]
    means = dict(zip(rows.method, rows["mean"]))   # about 0.33, 0.38, 0.43, 0.48: the highest is not the best
    assert t.best("vendi[scorer]") == {min(means, key=lambda m: abs(means[m] - 0.36))} == {"drift:delta=-0.05"}
    assert set(rows.delta_of) == {DISTANCE_TO_REAL}


def test_the_evaluation_scores_all_images_each_class_and_as_many_real_ones(monkeypatch, tmp_path):
    monkeypatch.setitem(EXTRACTORS, "pooled", pooled)
    data = toy_data(per_class=16)        # 8 test (real) and 8 val images a class, 12-d features
    fake_rows = np.concatenate([np.flatnonzero(data.val_y == c)[:5] for c in range(3)])
    fake, fake_labels = data.val_x[fake_rows], data.val_y[fake_rows]

    def score(images, labels):
        return evaluate_samples(images, labels, data.test_x, data.test_y, class_names=data.class_names,
                                scored_classes=(0, 1, 2), classifiers={}, metrics=["vendi[pooled]"],
                                cache_dir=tmp_path, reference_key="toy-test")
    out = score(fake, fake_labels)
    extractor = build_extractor("pooled", classifiers={}, cache_dir=tmp_path)
    f_fake, f_real = extractor.features(fake), extractor.features(data.test_x)
    assert out["metrics"]["vendi[pooled]"] == pytest.approx(reference_vendi(f_fake), rel=1e-6)   # 15 > 12: d x d
    for c, name in enumerate(data.class_names):                                                 # 5 < 12: n x n
        assert out["per_class"]["vendi[pooled]"][name] == pytest.approx(
            reference_vendi(f_fake[fake_labels == c]), rel=1e-6)
    first_5 = np.concatenate([np.flatnonzero(data.test_y == c)[:5] for c in range(3)])
    assert out["reference"]["vendi[pooled]"] == pytest.approx(reference_vendi(f_real[first_5]), rel=1e-6)
    provenance = out["provenance"]["vendi[pooled]"]
    assert provenance["n_per_class"] == provenance["reference_n_per_class"] == {"c0": 5, "c1": 5, "c2": 5}

    one_image = np.repeat(fake[:1], 6, axis=0)                 # mode collapse: 6 copies of one image
    collapsed = score(one_image, np.zeros(6, np.int64))
    assert collapsed["metrics"]["vendi[pooled]"] == pytest.approx(1, rel=1e-6)
    assert collapsed["per_class"]["vendi[pooled]"] == {"c0": pytest.approx(1, rel=1e-6), "c1": None, "c2": None}
