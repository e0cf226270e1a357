"""The metrics of a feature space, kind[network] with network any registered extractor
(bench/metrics/extractors.py, a plug-in's included):
fid and kid (overall and intra-class), and the k-NN manifold metrics precision, recall, density and
coverage. The statistics themselves are bench/metrics/fidkid.py's; this file registers them.
"""
from __future__ import annotations

from bench.metrics.extractors import extractor_names
from bench.metrics.fidkid import (DENSITY_OF_ONE_DISTRIBUTION, KID_SEED, KID_SUBSETS, MANIFOLD_KINDS, MIN_IMAGES,
                                  class_counts, fid, fid_min_images, kid, manifold_metrics, manifold_provenance,
                                  per_class)
from bench.metrics.registry import CLOSEST_TO_REAL, HIGHER, LOWER, Metric, Scoring, register_metric


def _per_class_provenance(scoring: Scoring, need: int, why: str) -> dict:
    """N per class behind a per-class FID/KID, and the N below which a class has no value (null), and why."""
    name_of = scoring.name_of
    return {"n_gen": {name_of[c]: n for c, n in class_counts(scoring.fake_labels, scoring.scored).items()},
            "n_ref": {name_of[c]: n for c, n in class_counts(scoring.real_labels, scoring.scored).items()},
            "min_images": need, "min_images_rule": why}


def _by_class(scoring: Scoring, metric, fake_f, real_f, need: int) -> dict:
    values = per_class(metric, fake_f, scoring.fake_labels, real_f, scoring.real_labels, scoring.scored, need)
    return {scoring.name_of[c]: v for c, v in values.items()}


def frechet_distance(scoring: Scoring, network: str) -> dict:
    f = scoring.features(network)
    value = fid(f.fake, f.real)
    need = fid_min_images(f.fake.shape[1])
    return {"value": value, "per_class": _by_class(scoring, fid, f.fake, f.real, need),
            "provenance": {**f.provenance, "per_class": _per_class_provenance(
                scoring, need, "feature dimension + 1: full-rank covariances")}}


def kernel_distance(scoring: Scoring, network: str) -> dict:
    f, size_cap = scoring.features(network), scoring.kid_subset_size
    mean, _, size = kid(f.fake, f.real, size_cap)
    by_class = _by_class(scoring, lambda a, b: kid(a, b, size_cap)[0], f.fake, f.real, MIN_IMAGES["kid"])
    return {"value": mean, "per_class": by_class, "provenance": {
        **f.provenance, "kid_subset_size": size, "kid_subsets": KID_SUBSETS, "kid_rng_seed": KID_SEED,
        "kernel": "cubic polynomial",
        "per_class": _per_class_provenance(scoring, MIN_IMAGES["kid"], "the unbiased MMD estimator needs pairs")}}


def manifold(kind: str):
    """The k-NN manifold metric `kind`: every one asked of a network comes from one call."""
    def compute(scoring: Scoring, network: str) -> dict:
        f = scoring.features(network)
        asked = [k for k in MANIFOLD_KINDS if f"{k}[{network}]" in scoring.metrics]
        values = scoring.once(("manifold", network), lambda: manifold_metrics(f.fake, f.real, asked))
        out = {"value": values[kind], "provenance": {**f.provenance, **manifold_provenance(kind)}}
        if kind == "density":   # judged by its distance to this value, as SSIM to the real one
            out["reference"] = DENSITY_OF_ONE_DISTRIBUTION
            out["provenance"]["reference_note"] = ("density's expectation when generated and real images share "
                                                   "one distribution")
        return out
    return compute


register_metric(Metric("fid", LOWER, frechet_distance, networks=extractor_names, min_images=MIN_IMAGES["fid"]))
register_metric(Metric("kid", LOWER, kernel_distance, networks=extractor_names, min_images=MIN_IMAGES["kid"]))
# Density (Naeem et al. 2020) is 1 in expectation for identical distributions and exceeds 1 where generated
# images crowd around a few real ones: its best value is its reference, as SSIM's.
for _kind, _direction in {"precision": HIGHER, "recall": HIGHER, "density": CLOSEST_TO_REAL,
                          "coverage": HIGHER}.items():
    register_metric(Metric(_kind, _direction, manifold(_kind), networks=extractor_names, min_images=MIN_IMAGES[_kind]))
del _kind, _direction
