"""evaluate_samples: the one entry point of `bench run` and `bench eval`."""
import numpy as np
import pytest
import torch
from conftest import make_data

from bench.core.errors import BenchError
from bench.metrics import evaluate_samples, metric_names
from bench.core.pixels import to_model_space
from bench.models.expert import ClassifierConfig, ScorerConfig, get_classifier

METRICS = ["acc[scorer]", "acc[expert]", "ssim", "fid[scorer]", "kid[scorer]", "precision[scorer]",
           "recall[scorer]", "density[scorer]", "coverage[scorer]"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    data = make_data(num_classes=3, per_class=16, size=16)
    classifiers = {
        "expert": get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=3, batch_size=8), cache),
        "scorer": get_classifier("scorer", data, ScorerConfig(backbone="tiny-effnet", epochs=3, batch_size=8), cache)}
    return data, classifiers, cache


def _evaluate(setup, fake, labels, metrics=METRICS, **kw):
    data, classifiers, cache = setup
    return evaluate_samples(fake, labels, data.test_x, data.test_y, class_names=data.class_names,
                            scored_classes=(0, 1), classifiers=classifiers, metrics=metrics, cache_dir=cache,
                            reference_key="toy-test", **kw)


def test_real_images_as_samples(setup):
    data, classifiers, cache = setup
    out = _evaluate(setup, data.test_x, data.test_y, kid_subset_size=1000)
    m = out["metrics"]
    assert set(m) == set(METRICS)
    for net in ("scorer", "expert"):
        assert m[f"acc[{net}]"] == out["reference"][f"acc[{net}]"]    # the same images: the ceiling
        assert set(out["per_class"][f"acc[{net}]"]) == {"c0", "c1"}  # class 2 is not scored
        assert out["provenance"][f"acc[{net}]"]["network"].startswith(net)
    # 0 up to the matrix square root's rounding on 24 images' rank-deficient covariance: -2.8e-4 with scipy
    # 1.17 (a +40-grey shift of the same images scores 474), so it may dip below 0
    assert abs(m["fid[scorer]"]) < 1e-3
    # The unbiased MMD^2 of a set against itself, 2 mean_{i != j} k(x_i, x_j) - 2 mean_{i, j} k(x_i, x_j) < 0
    # (torch-fidelity's cubic kernel on the scorer's features): kept, not clipped.
    scored = np.isin(data.test_y, (0, 1))
    with torch.no_grad():
        f = classifiers["scorer"].features(to_model_space(data.test_x[scored])).double().numpy()

    def kid_against_itself(f):
        k = (f @ f.T / f.shape[1] + 1) ** 3
        n = len(f)
        return 2 * (k.sum() - np.trace(k)) / (n * (n - 1)) - 2 * k.mean()

    assert m["kid[scorer]"] < 0 and m["kid[scorer]"] == pytest.approx(kid_against_itself(f), rel=1e-3)
    assert m["ssim"] == pytest.approx(out["reference"]["ssim"])
    assert m["density[scorer]"] == m["coverage[scorer]"] == m["precision[scorer]"] == 1.0   # identical sets
    assert out["reference"]["density[scorer]"] == 1.0
    assert out["provenance"]["density[scorer]"]["neighborhood_k"] == 5
    # Intra-class: 8 images per class and side, fewer than a FID of the scorer's features needs: null, said so
    fid_counts = out["provenance"]["fid[scorer]"]["per_class"]
    assert fid_counts["n_gen"] == fid_counts["n_ref"] == {"c0": 8, "c1": 8}
    assert fid_counts["min_images"] == classifiers["scorer"].feature_dim + 1 > 8
    assert out["per_class"]["fid[scorer]"] == {"c0": None, "c1": None}
    labels = data.test_y[scored]
    for c in (0, 1):                                                # each class against itself
        assert out["per_class"]["kid[scorer]"][f"c{c}"] == pytest.approx(kid_against_itself(f[labels == c]), rel=1e-3)
    assert np.asarray(out["confusion"]).shape == (2, 3)            # rows scored, cols all classes
    assert np.asarray(out["confusion"]).sum() == out["provenance"]["acc[scorer]"]["n_gen"] == 16
    kid_prov = out["provenance"]["kid[scorer]"]
    assert kid_prov["kid_subset_size"] == 16 and kid_prov["n_ref"] == 16   # capped at N
    assert kid_prov["weights_sha256"] == classifiers["scorer"].provenance["weights_sha256"]
    assert (out["provenance"]["acc[expert]"]["weights_sha256"]
            == classifiers["expert"].provenance["weights_sha256"] != kid_prov["weights_sha256"])
    assert all("network" in prov for prov in out["provenance"].values())
    assert len(list(cache.glob("reference/scorer-*.npy"))) == 1


def test_worse_samples_score_worse_and_provenance_is_stable(setup):
    data, _, cache = setup
    good = _evaluate(setup, data.val_x, data.val_y)
    flat = np.full_like(data.val_x, 128)                # one grey image per sample: no diversity
    bad = _evaluate(setup, flat, data.val_y)
    assert bad["metrics"]["fid[scorer]"] > 3 * good["metrics"]["fid[scorer]"]  # tiny features: small scale
    assert bad["metrics"]["kid[scorer]"] > good["metrics"]["kid[scorer]"]
    assert bad["metrics"]["ssim"] == pytest.approx(1.0)
    assert good["provenance"] == bad["provenance"]      # settings only: the report compares them
    assert len(list(cache.glob("reference/scorer-*.npy"))) == 1   # reference features reused


def test_effnet_features_and_gray_images(setup):
    data, _, cache = setup
    pick = np.r_[0:3, 8:11, 16:19]                     # 3 images of each class: 224 px is slow on CPU
    gray, labels = data.test_x[pick, ..., :1], data.test_y[pick]
    out = evaluate_samples(gray, labels, gray, labels, class_names=data.class_names,
                           scored_classes=(0, 1, 2), classifiers={}, metrics=["fid[effnet]", "ssim"],
                           cache_dir=cache, reference_key="gray")
    assert abs(out["metrics"]["fid[effnet]"]) < 1e-3
    assert out["provenance"]["fid[effnet]"]["input"] == "224 px RGB"


def test_bad_requests_are_refused(setup):
    data, _, cache = setup
    with pytest.raises(BenchError, match="unknown metric"):
        _evaluate(setup, data.val_x, data.val_y, metrics=["fid[nosuchnet]"])
    with pytest.raises(BenchError, match="channel"):
        _evaluate(setup, data.val_x[..., :1], data.val_y)
    with pytest.raises(BenchError, match="uint8"):
        _evaluate(setup, data.val_x.astype(np.float32), data.val_y)
    with pytest.raises(BenchError, match="need the scorer"):
        evaluate_samples(data.val_x, data.val_y, data.test_x, data.test_y, class_names=data.class_names,
                         scored_classes=(0,), classifiers={}, metrics=["acc[scorer]"], cache_dir=cache,
                         reference_key="x")
    assert "fid[inception]" in metric_names() and "kid[effnet]" in metric_names()
