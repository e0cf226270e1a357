"""Memorisation: how close each generated image lies to its nearest training image (copy_rate).

Diffusion models trained on small medical sets can reproduce their training images. For every
generated image bench finds its nearest training image (Euclidean distance) in two SPACES: pixels
(uint8 / 255, flattened) and the scorer's pooled features (which see through small shifts and, as
the scorer trains with flips, through flips).

Rule. A raw distance is no test of copying: a smooth, texture-poor image (an adipose-like tile, a
failed sample) lies close to many training images at once, closer than fresh textured images come
to any, without copying one. So the distance to the nearest training image is divided by the mean
distance to the NEIGHBOURS nearest (Carlini et al. 2023, "Extracting training data from diffusion
models", USENIX Security: a copy is near one training image and not the rest; ~1 in a dense region,
0 for a verbatim copy). The threshold of a space is taken from the real held-out images of the scored
split, which nothing trained on (distance to closest record against a holdout, Platzer & Reutterer
2021, Front. Big Data 4:679939): their COPY_QUANTILE quantile of the same normalised distance (the 5th
percentile as in CTAB-GAN, Zhao et al. 2021). A generated image is a copy when, in either space, it
lies at least that close: closer to one training image, relative to its neighbours, than 95% of fresh
real images do. copy_rate is the fraction of copies; its reference is the same rule applied to the
held-out images themselves (5-10%: what a generator drawing fresh images from the data distribution
gets), a verbatim copier gets 1.

The evaluation task, not the method, reads the train split here: a method never sees it.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.metrics.extractors import reference_features
from bench.metrics.registry import LOWER, Metric, Scoring, register_metric

PRIVACY_METRICS = ("copy_rate",)
PRIVACY_NETWORK = "scorer"          # the feature space besides pixels
SPACES = ("pixel", PRIVACY_NETWORK)
COPY_QUANTILE = 0.05
NEIGHBOURS = 50                     # training images a nearest distance is normalised by (Carlini et al. 2023)
SHOWN_PAIRS = 8                     # closest pairs per space kept for the report's figure


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, H*W*C) in [0, 1]: the pixel space."""
    return images.reshape(len(images), -1).astype(np.float32) / 255


def nearest(query: np.ndarray, bank: np.ndarray, k: int = 1, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances (N, k) of each query row to its k nearest bank rows, nearest first, and those rows'
    indices (float32, three times faster than float64: rounding moves a distance by about 1e-3, a verbatim
    copy stays far below any threshold of real images)."""
    bank_t = torch.from_numpy(np.asarray(bank, np.float32))
    dist, index = [], []
    for i in range(0, len(query), chunk):
        d = torch.cdist(torch.from_numpy(np.asarray(query[i:i + chunk], np.float32)), bank_t)
        best = d.topk(k, dim=1, largest=False)
        dist.append(best.values)
        index.append(best.indices)
    return torch.cat(dist).numpy(), torch.cat(index).numpy()


def normalised_nearest(query: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query row's distance to its nearest bank row over its mean distance to the NEIGHBOURS nearest
    (Carlini et al. 2023), and the nearest row's index."""
    d, index = nearest(query, bank, min(NEIGHBOURS, len(bank)))
    return d[:, 0] / np.maximum(d.mean(1), np.finfo(np.float32).tiny), index[:, 0]


def copy_scores(fake: np.ndarray, fake_labels: np.ndarray, train: np.ndarray,
                features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], name_of: dict[int, str]) -> dict:
    """copy_rate of generated images against the training images.

    features: space -> (generated, held-out, train) rows; fake/train: the uint8 images (for the figure).
    Returns {"value", "per_class", "reference", "nearest"} with "nearest" the arrays of
    the SHOWN_PAIRS closest pairs per space (relative to the threshold).
    """
    flagged_fake, flagged_held = np.zeros(len(fake), bool), np.zeros(len(features[SPACES[0]][1]), bool)
    shown = {}
    for space in SPACES:
        fake_f, held_f, train_f = features[space]
        fake_r, fake_nn = normalised_nearest(fake_f, train_f)
        held_r, _ = normalised_nearest(held_f, train_f)
        threshold = max(float(np.quantile(held_r, COPY_QUANTILE)), float(np.finfo(np.float32).tiny))
        flagged_fake |= fake_r <= threshold
        flagged_held |= held_r <= threshold
        ratio = fake_r / threshold     # a copy has ratio ~0, a typical fresh image ~1 or more
        order = np.argsort(ratio, kind="stable")[:SHOWN_PAIRS]
        shown.update({f"{space}_generated": fake[order], f"{space}_train": train[fake_nn[order]],
                      f"{space}_labels": fake_labels[order], f"{space}_ratio": ratio[order]})
    return {"value": float(flagged_fake.mean()),
            "per_class": {name_of.get(int(c), str(c)): float(flagged_fake[fake_labels == c].mean())
                          for c in np.unique(fake_labels)},
            "reference": float(flagged_held.mean()), "nearest": shown}


def copy_rate(scoring: Scoring, network: None = None) -> dict:
    """copy_rate of the generated images, with the held-out images of the scored classes as its reference."""
    fake, train = scoring.fake, scoring.train_images
    if train.shape[1:] != fake.shape[1:]:
        raise BenchError(f"copy_rate compares pixels: generated images are {fake.shape[1:]}, training images "
                         f"{train.shape[1:]}; generate at the data set's size")
    scorer = scoring.features(PRIVACY_NETWORK)
    train_f = reference_features(scorer.extractor, train, scoring.cache_dir, f"{scoring.reference_key}:train",
                                 scoring.device)
    features = {"pixel": (pixels(fake), pixels(scoring.real), pixels(train)),
                PRIVACY_NETWORK: (scorer.fake, scorer.real, train_f)}
    result = copy_scores(fake, scoring.fake_labels, train, features, scoring.name_of)
    return {**result, "provenance": {
        **scorer.provenance, "spaces": list(SPACES), "n_train": int(len(train)),
        "rule": f"a copy's distance to its nearest training image over its mean distance to the {NEIGHBOURS} "
                f"nearest is, in either space, at most the {COPY_QUANTILE:g} quantile of the same ratio over the "
                "real held-out images",
        "source": "normalised nearest distance as in Carlini et al. 2023 (Extracting training data from "
                  "diffusion models); threshold from a holdout (Platzer & Reutterer 2021), its 5th "
                  "percentile as in CTAB-GAN (Zhao et al. 2021)",
        "reference_note": "the same rule applied to the real held-out images"}}


register_metric(Metric("copy_rate", LOWER, copy_rate, needs_network=PRIVACY_NETWORK, reads_train=True))
