"""FID / KID / precision-recall: golden values against closed forms and direct numpy/scipy code."""
import numpy as np
import pytest
import scipy.linalg

from bench.errors import BenchError
from bench.metrics.fidkid import fid, fid_statistics, kid, precision_recall


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
    p_in, r_in = precision_recall(rng.normal(size=(200, 4)), real)
    p_out, _ = precision_recall(rng.normal(6, 1, size=(200, 4)), real)
    assert p_in > 0.8 and r_in > 0.8 and p_out < 0.05
    with pytest.raises(BenchError, match="at least 2"):
        kid(real[:1], real)
