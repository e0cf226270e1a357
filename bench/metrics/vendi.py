"""vendi[<network>]: the Vendi score (Friedman & Dieng 2023, TMLR, "The Vendi Score: A Diversity Evaluation
Metric for Machine Learning"), the effective number of distinct images of a set: exp of the Shannon entropy
of the eigenvalues of K / n, K the n x n cosine similarities of the images' features in a network (any
registered extractor: vendi[scorer], vendi[inception], ...). n identical images score 1, n images of
orthogonal features n. As the authors' `vendi_score` package's `embedding_vendi_score` computes it: features
L2-normalised, K = X X^T, or where n > d the eigenvalues of X^T X / n (the same nonzero ones, a d x d
problem), and the entropy over the positive eigenvalues (0 log 0 = 0).

Judged as ssim, by its distance to the real images' own value: noise is the most diverse set of all. The
value is the score of every generated image of the scored classes; per class, the score within the class
(the diversity mode collapse lowers). The reference is the score of as many real images per class as were
generated (the first n_c of each class, as ssim takes them): the score grows with n and with the classes
mixed, so generated and real sets are compared at the same n and class mix.
"""
from __future__ import annotations

import numpy as np

from bench.metrics.extractors import extractor_names
from bench.metrics.registry import CLOSEST_TO_REAL, Metric, Scoring, register_metric

MIN_IMAGES = 2   # one image scores 1 whatever it shows


def vendi_score(features: np.ndarray) -> float:
    """exp(-sum p log p) over the eigenvalues p of K / n, K the cosine similarities of `features` (n, d)."""
    x = np.asarray(features, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1, norms)   # a zero vector stays zero, as the authors' normalisation leaves it
    n, d = x.shape
    eigenvalues = np.linalg.eigvalsh((x @ x.T if n <= d else x.T @ x) / n)
    p = eigenvalues[eigenvalues > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def vendi(scoring: Scoring, network: str) -> dict:
    f, name_of = scoring.features(network), scoring.name_of
    counts = {c: int(np.sum(scoring.fake_labels == c)) for c in scoring.scored}
    per_class = {name_of[c]: vendi_score(f.fake[scoring.fake_labels == c]) if n >= MIN_IMAGES else None
                 for c, n in counts.items()}
    real_rows = {c: np.flatnonzero(scoring.real_labels == c)[:n] for c, n in counts.items()}
    return {"value": vendi_score(f.fake), "per_class": per_class,
            "reference": vendi_score(f.real[np.concatenate(list(real_rows.values()))]), "provenance": {
                **f.provenance, "kernel": "cosine similarity of the features",
                "statistic": "exp(Shannon entropy of the eigenvalues of K / n), every generated image; per class "
                             "within the class",
                "implementation": "numpy eigvalsh, as vendi_score's embedding_vendi_score (score_X, score_dual)",
                "source": "Friedman & Dieng 2023, The Vendi Score: A Diversity Evaluation Metric for Machine "
                          "Learning (TMLR)",
                "min_images_per_class": MIN_IMAGES, "n_per_class": {name_of[c]: n for c, n in counts.items()},
                "reference_n_per_class": {name_of[c]: len(r) for c, r in real_rows.items()}}}


# Its best value is the real images' own (its reference): higher is not better, or noise would win.
register_metric(Metric("vendi", CLOSEST_TO_REAL, vendi, networks=extractor_names, min_images=MIN_IMAGES))
