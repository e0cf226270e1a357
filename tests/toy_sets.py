"""A toy set a tiny model learns in a few hundred CPU steps, its training recipe, and the checks of
its samples.

Three classes, each a flat colour (one value per channel, different per class) plus pixel noise,
none near 0 or 255: a sampler that drifts or saturates shows at once in the per-channel means, and
the class of an image is its nearest class colour (the toy expert). At 4 px a step costs little
more than the U-Net's Python overhead, so a batch of 32 is almost free and buys convergence: after
200 steps every built-in method's samples have the right colour and class.
"""
import numpy as np

from bench.config import Config, load_config
from bench.datasets.base import PreparedData

CLASS_COLOURS = np.array([[64, 128, 192], [128, 192, 64], [192, 64, 128]], dtype=np.float64)
PIXEL_STD = 20.0


TOY_SIZE = 4


def colour_data(per_class: int = 32, size: int = TOY_SIZE, seed: int = 0, pixel_std: float = PIXEL_STD) -> PreparedData:
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.repeat(np.arange(len(CLASS_COLOURS)), n)
        x = CLASS_COLOURS[y][:, None, None, :] + rng.normal(0, pixel_std, (len(y), size, size, 3))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    return PreparedData("colours", ("c0", "c1", "c2"), (0, 1, 2), *split(per_class), *split(8), *split(8))


def toy_expert(images: np.ndarray) -> np.ndarray:
    """The class whose colour is nearest to each uint8 image's mean colour."""
    means = images.reshape(len(images), -1, images.shape[-1]).mean(1)
    return np.linalg.norm(means[:, None, :] - CLASS_COLOURS[None], axis=2).argmin(1)


def saturated_fraction(images: np.ndarray) -> float:
    return float(((images == 0) | (images == 255)).mean())


def toy_config(steps: int = 200, samples_per_class: int = 16) -> Config:
    """The tiny preset, trained long enough to learn the toy set and sampled like the default suite, but for
    guidance 1: on flat class colours a model that has learnt them (v prediction does in 200 steps) is taken by
    guidance g past each colour, (g - 1) times its distance from the mean colour, into 0 and 255; what
    guidance does is tests/test_guidance.py's."""
    return load_config(None, "tiny", {
        "execution": {"executor": "local", "device": "cpu"},
        "train": {"steps": steps, "batch_size": 32, "lr": 4e-3, "warmup_steps": 10, "ema_decay": 0.99,
                  "checkpoint_every": 10_000},
        "sample": {"steps": 20, "eta": 1.0, "samples_per_class": samples_per_class, "guidance": 1.0}})
