"""Batched SSIM equals scikit-image's structural_similarity with Wang et al.'s settings."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from bench.core.errors import BenchError
from bench.metrics.ssim import class_ssim, pairwise_ssim


def _skimage(a, b):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if a.shape[-1] == 1:
        return structural_similarity(a[..., 0], b[..., 0], **kw)
    return structural_similarity(a, b, channel_axis=-1, **kw)


@pytest.mark.parametrize("shape", [(6, 32, 32, 3), (5, 16, 16, 1), (4, 11, 11, 3), (4, 24, 13, 1)])
def test_equals_skimage_on_random_pairs(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 256, shape).astype(np.uint8)
    x[1] = np.clip(x[0] + rng.normal(0, 25, shape[1:]), 0, 255).astype(np.uint8)  # one similar pair
    x[2] = 200  # a flat image
    ours = pairwise_ssim(x)
    first, second = np.triu_indices(len(x), 1)
    ref = np.array([_skimage(x[i], x[j]) for i, j in zip(first, second)])
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert ours[0] > 0.5 > ours[1]  # the similar pair scores high, random pairs low


def test_identical_images_score_one_and_classes_are_separate():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8), 3, axis=0)
    noise = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    per = class_ssim(np.concatenate([same, noise]), np.array([0, 0, 0, 1, 1, 1]), [0, 1])
    assert per[0] == pytest.approx(1.0) and abs(per[1]) < 0.1


def test_too_small_or_too_few_images_are_refused():
    with pytest.raises(BenchError, match="at least 11 px"):
        pairwise_ssim(np.zeros((3, 10, 10, 3), np.uint8))
    with pytest.raises(BenchError, match="at least 2 images"):
        pairwise_ssim(np.zeros((1, 16, 16, 3), np.uint8))
