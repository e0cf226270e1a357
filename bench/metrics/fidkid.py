"""FID, KID and the k-NN manifold metrics of two feature sets, through kept libraries' own functions.

FID: Heusel et al. 2017, ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
KID: Binkowski et al. 2018, unbiased MMD^2 with the cubic polynomial kernel, averaged over random
subsets of `subset_size` images of each set; the subset size is capped at the smaller set (a KID
of N samples uses subsets of at most N). Both estimators can dip slightly below zero when the
sets come from one distribution: that is sampling noise and is stored as is, never clipped.
Precision/recall: Kynkaanniemi et al. 2019, k-NN manifolds with k = 3, by torch-fidelity.
Density/coverage: Naeem et al. 2020, k = 5 (their choice), by the authors' `prdc` package; torch-fidelity
has no density or coverage. (prdc counts a point in a ball when strictly closer than its radius,
torch-fidelity when not farther: the same on continuous features.)
Per class (intra-class FID/KID): generated images of class c against real images of class c.
"""
from __future__ import annotations

import contextlib
import io
from importlib.metadata import version

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kernel_poly, mmd2
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from bench.core.errors import BenchError

KID_SUBSETS = 100        # torch-fidelity's default
KID_SEED = 2020          # torch-fidelity's default rng_seed: subsets are reproducible
# k of each k-NN manifold metric: torch-fidelity's default for precision/recall (Kynkaanniemi et al.),
# Naeem et al.'s k = 5 for density/coverage (an expected coverage of 1 - 2^-5 for identical sets).
NEIGHBORHOOD = {"precision": 3, "recall": 3, "density": 5, "coverage": 5}
MANIFOLD_KINDS = tuple(NEIGHBORHOOD)
# Density's expectation when generated and real images come from one distribution (Naeem et al. 2020):
# the value to be closest to. Above it, generated images crowd around a few real ones.
DENSITY_OF_ONE_DISTRIBUTION = 1.0
# Images each set needs at least, per metric kind: a covariance needs 2, a k-NN manifold k + 1, and
# prdc k + 2 (it partitions at index k + 1, which must lie inside each set).
MIN_IMAGES = {"fid": 2, "kid": 2, "precision": NEIGHBORHOOD["precision"] + 1, "recall": NEIGHBORHOOD["recall"] + 1,
              "density": NEIGHBORHOOD["density"] + 2, "coverage": NEIGHBORHOOD["coverage"] + 2}


def _check(fake: np.ndarray, real: np.ndarray, kind: str) -> None:
    need = MIN_IMAGES[kind]
    if len(fake) < need or len(real) < need:
        raise BenchError(f"{kind} needs at least {need} generated and {need} real images, "
                         f"got {len(fake)} and {len(real)}")


def fid_statistics(features: np.ndarray) -> dict[str, np.ndarray]:
    return fid_features_to_statistics(torch.from_numpy(np.asarray(features, dtype=np.float64)))


def fid(fake: np.ndarray, real_stats: dict | np.ndarray) -> float:
    """FID between generated features (N, D) and real features or their {mu, sigma} statistics."""
    real_stats = real_stats if isinstance(real_stats, dict) else fid_statistics(real_stats)
    if len(fake) < 2:
        raise BenchError(f"FID needs at least 2 generated images, got {len(fake)}")
    return float(fid_statistics_to_metric(fid_statistics(fake), real_stats, verbose=False)[KEY_METRIC_FID])


def kid(fake: np.ndarray, real: np.ndarray, subset_size: int = 1000) -> tuple[float, float, int]:
    """(mean, std over subsets, the subset size used) of KID between two feature sets.

    Exactly torch-fidelity's `kid_features_to_metric` (same kernel, estimator, seed and subset
    draws), with the kernel matrices computed once on the full sets and each subset's blocks read
    from them, instead of three kernel products per subset: 100 subsets cost one product.
    """
    _check(fake, real, "kid")
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    size = min(subset_size, len(fake), len(real))
    k_ff, k_rr, k_fr = kernel_poly(fake, fake), kernel_poly(real, real), kernel_poly(fake, real)
    rng = np.random.RandomState(KID_SEED)
    mmds = np.empty(KID_SUBSETS)
    for s in range(KID_SUBSETS):
        f = rng.choice(len(fake), size, replace=False)
        r = rng.choice(len(real), size, replace=False)
        mmds[s] = mmd2(k_ff[np.ix_(f, f)], k_fr[np.ix_(f, r)], k_rr[np.ix_(r, r)])
    return float(mmds.mean()), float(mmds.std()), size


def manifold_metrics(fake: np.ndarray, real: np.ndarray, kinds) -> dict[str, float]:
    """The requested MANIFOLD_KINDS of generated features against real ones, each with NEIGHBORHOOD's k."""
    out = {}
    for kind in kinds:
        _check(fake, real, kind)
    if {"precision", "recall"} & set(kinds):
        prc = prc_features_to_metric(torch.from_numpy(np.asarray(fake, np.float32)),
                                     torch.from_numpy(np.asarray(real, np.float32)),
                                     prc_neighborhood=NEIGHBORHOOD["precision"], save_cpu_ram=False, verbose=False)
        out.update(precision=float(prc[KEY_METRIC_PRECISION]), recall=float(prc[KEY_METRIC_RECALL]))
    if {"density", "coverage"} & set(kinds):
        from prdc import compute_prdc  # imports scikit-learn: only where these metrics are measured
        with contextlib.redirect_stdout(io.StringIO()):   # compute_prdc prints the set sizes
            dc = compute_prdc(np.asarray(real, np.float32), np.asarray(fake, np.float32), NEIGHBORHOOD["density"])
        out.update(density=float(dc["density"]), coverage=float(dc["coverage"]))
    return {kind: out[kind] for kind in kinds}


def manifold_provenance(kind: str) -> dict:
    library = ("torch-fidelity prc_features_to_metric" if kind in ("precision", "recall")
               else f"prdc {version('prdc')} compute_prdc (scikit-learn {version('scikit-learn')})")
    return {"neighborhood_k": NEIGHBORHOOD[kind], "implementation": library}


def fid_min_images(dim: int) -> int:
    """Images each side of a FID needs for full-rank covariances of `dim`-d features. With fewer, the
    covariances are singular and FID mostly measures N (pytorch-fid asks for at least 2048 images
    for its 2048-d features): a class below this gets no per-class FID."""
    return dim + 1


def class_counts(labels: np.ndarray, classes) -> dict[int, int]:
    return {c: int(np.sum(labels == c)) for c in classes}


def per_class(metric, fake, fake_labels, real, real_labels, classes, need: int) -> dict[int, float | None]:
    """metric(generated of class c, real of class c) per class c (intra-class); None where a side has
    fewer than `need` images, so a class too small for the metric shows no number."""
    out = {}
    for c in classes:
        f, r = fake[fake_labels == c], real[real_labels == c]
        out[c] = metric(f, r) if min(len(f), len(r)) >= need else None
    return out
