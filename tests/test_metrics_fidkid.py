"""FID / KID / precision, recall, density, coverage (whole sets and per class): golden values against
closed forms, hand-computed sets and direct numpy/scipy code."""
import numpy as np
import pytest
import scipy.linalg

from bench.core.errors import BenchError
from bench.metrics.fidkid import fid, fid_min_images, fid_statistics, kid, manifold_metrics, per_class


def _fid_scipy(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _kid_direct(a, b):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on the full sets (Binkowski et al. 2018, eq. 4)."""
    d = a.shape[1]
    kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    m, n = len(a), len(b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(fid(x, x)) < 1e-6


def test_fid_matches_the_gaussian_closed_form():
    """Diagonal covariances: FID = |mu1 - mu2|^2 + sum_i (s1_i - s2_i)^2 with s the standard deviations."""
    rng = np.random.default_rng(1)
    mu1, mu2 = np.zeros(4), np.array([1.0, -0.5, 0.0, 2.0])
    sd1, sd2 = np.array([1.0, 2.0, 3.0, 1.0]), np.array([2.0, 1.0, 1.0, 1.0])
    closed = float(((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum())   # 5.25 + 6
    x = mu1 + sd1 * rng.normal(size=(40000, 4))
    y = mu2 + sd2 * rng.normal(size=(40000, 4))
    assert fid(x, y) == pytest.approx(closed, rel=0.02)


def test_fid_equals_scipy_on_the_same_features():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(0.3, 1.2, size=(250, 16))
    assert fid(a, b) == pytest.approx(_fid_scipy(a, b), rel=1e-6)
    assert fid(a, fid_statistics(b)) == fid(a, b)


def test_kid_equals_direct_mmd_when_the_subset_is_the_whole_set():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 6)), rng.normal(0.5, 1, size=(40, 6))
    mean, std, size = kid(a, b, subset_size=1000)   # capped at N = 40: every subset is the whole set
    assert size == 40 and std < 1e-12
    assert mean == pytest.approx(_kid_direct(a, b), rel=1e-9)


def test_kid_equals_torch_fidelity_on_random_subsets():
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.2, 1, size=(45, 8))
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subset_size=30, verbose=False)
    mean, std, size = kid(a, b, subset_size=30)
    assert size == 30
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    same = kid(rng.normal(size=(300, 16)), rng.normal(size=(300, 16)), subset_size=100)[0]
    different = kid(rng.normal(size=(300, 16)), rng.normal(0.7, 1, size=(300, 16)), subset_size=100)[0]
    assert abs(same) < 0.02 and different > 0.2


def test_kid_with_fewer_images_than_the_subset_size():
    rng = np.random.default_rng(5)
    mean, _, size = kid(rng.normal(size=(7, 5)), rng.normal(size=(30, 5)), subset_size=1000)
    assert size == 7 and np.isfinite(mean)   # may be slightly negative: noise, kept as is


def test_precision_recall_and_too_few_samples():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(200, 4))
    inside = manifold_metrics(rng.normal(size=(200, 4)), real, ["precision", "recall"])
    outside = manifold_metrics(rng.normal(6, 1, size=(200, 4)), real, ["precision"])
    assert inside["precision"] > 0.8 and inside["recall"] > 0.8 and outside["precision"] < 0.05
    with pytest.raises(BenchError, match="at least 2"):
        kid(real[:1], real)
    with pytest.raises(BenchError, match="density needs at least 7"):
        manifold_metrics(real[:6], real, ["density"])
    assert np.isfinite(manifold_metrics(real[:7], real[:7], ["density", "coverage"])["coverage"])


KINDS = ["precision", "recall", "density", "coverage"]


def test_manifold_metrics_of_identical_sets_are_one():
    """Density of a set against itself: each real ball (k-th neighbour radius, self included) holds
    itself and its k - 1 nearer neighbours strictly inside, k points in all, so the counts sum to
    k N and density = k N / (k N) = 1; every point lies in its own ball: coverage = precision = 1."""
    x = np.random.default_rng(8).normal(size=(50, 3))
    assert manifold_metrics(x, x.copy(), KINDS) == pytest.approx(dict.fromkeys(KINDS, 1.0), abs=1e-12)


def test_manifold_metrics_of_disjoint_far_sets_are_zero():
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(40, 3)), rng.normal(100, 1, size=(30, 3))
    assert manifold_metrics(fake, real, KINDS) == dict.fromkeys(KINDS, 0.0)


def test_density_and_coverage_on_a_hand_computed_line():
    """Real points 0, 1, ..., 9 on a line, k = 5: the 5th-neighbour radius is 5 at 0 and 9, 4 at 1 and 8,
    3 elsewhere. Generated points -100..-104 (far off), 0.5 and 0.6. Strictly inside a ball (Naeem et al.
    use <): 0.5 lies in the balls of 0, 1, 2, 3 (|0.5 - 3| = 2.5 < 3, |0.5 - 4| = 3.5 >= 3), 0.6 in the
    same four (|0.6 - 4| = 3.4 >= 3). Density = (4 + 4) / (5 * 7) = 8/35. Coverage: the real points
    whose nearest generated point lies in their ball: 0, 1, 2, 3 -> 4/10. Precision (k = 3): 2/7."""
    real = np.arange(10.0)[:, None]
    fake = np.array([[-100.0], [-101.0], [-102.0], [-103.0], [-104.0], [0.5], [0.6]])
    out = manifold_metrics(fake, real, ["density", "coverage", "precision"])
    assert out["density"] == pytest.approx(8 / 35)
    assert out["coverage"] == pytest.approx(0.4)
    assert out["precision"] == pytest.approx(2 / 7)


def test_per_class_fid_and_kid_equal_the_metric_on_the_class_subset():
    rng = np.random.default_rng(10)
    real, real_labels = rng.normal(size=(90, 4)), np.repeat([0, 1, 2], 30)
    # class 2: 4 generated images, fewer than the 5 a FID of 4-d features needs
    fake, fake_labels = rng.normal(0.5, 1, size=(60, 4)), np.repeat([0, 1, 2], [26, 30, 4])
    by_class = per_class(fid, fake, fake_labels, real, real_labels, [0, 1, 2], fid_min_images(4))
    assert by_class[0] == pytest.approx(_fid_scipy(fake[fake_labels == 0], real[real_labels == 0]), rel=1e-6)
    assert by_class[1] == pytest.approx(_fid_scipy(fake[fake_labels == 1], real[real_labels == 1]), rel=1e-6)
    assert by_class[2] is None
    kids = per_class(lambda f, r: kid(f, r, 1000)[0], fake, fake_labels, real, real_labels, [0, 1, 2], 2)
    assert kids[2] == pytest.approx(kid(fake[fake_labels == 2], real[real_labels == 2], 1000)[0])
    assert kids[0] == pytest.approx(kid(fake[fake_labels == 0], real[real_labels == 0], 1000)[0])


def test_fid_needs_one_image_more_than_the_feature_dimension_per_class():
    """n images span at most n - 1 dimensions: a full-rank d-d covariance needs d + 1 images."""
    rng = np.random.default_rng(11)
    d = 6
    assert fid_min_images(d) == d + 1
    assert np.linalg.matrix_rank(np.cov(rng.normal(size=(d, d)), rowvar=False)) == d - 1
    assert np.linalg.matrix_rank(np.cov(rng.normal(size=(d + 1, d)), rowvar=False)) == d
