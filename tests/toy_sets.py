"""A toy set a tiny model learns in a few hundred CPU steps, and the checks of its samples.

Three classes, each a flat colour (one value per channel, different per class) plus pixel noise,
none near 0 or 255: a sampler that drifts or saturates shows at once in the per-channel means, and
the class of an image is its nearest class colour (the toy expert).
"""
import numpy as np

from bench.datasets.base import PreparedData

CLASS_COLOURS = np.array([[64, 128, 192], [128, 192, 64], [192, 64, 128]], dtype=np.float64)
PIXEL_STD = 20.0


def colour_data(per_class: int = 32, size: int = 8, seed: int = 0) -> PreparedData:
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.repeat(np.arange(len(CLASS_COLOURS)), n)
        x = CLASS_COLOURS[y][:, None, None, :] + rng.normal(0, PIXEL_STD, (len(y), size, size, 3))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    return PreparedData("colours", ("c0", "c1", "c2"), (0, 1, 2), *split(per_class), *split(8), *split(8))


def toy_expert(images: np.ndarray) -> np.ndarray:
    """The class whose colour is nearest to each uint8 image's mean colour."""
    means = images.reshape(len(images), -1, images.shape[-1]).mean(1)
    return np.linalg.norm(means[:, None, :] - CLASS_COLOURS[None], axis=2).argmin(1)


def saturated_fraction(images: np.ndarray) -> float:
    return float(((images == 0) | (images == 255)).mean())
