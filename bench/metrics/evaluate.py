"""One evaluation: every requested metric of one generated sample set against the real images.

`bench run` (one call per trained model x generation seed) and `bench eval` both come here, so a
number means the same thing wherever it was computed. Metric names: acc[<classifier>], ssim, and
<kind>[<network>] with kind in fid, kid, precision, recall, density, coverage and network in scorer,
expert, inception, effnet (see DESIGN.md "Metrics"); tstr_acc, aug_gain (bench/metrics/utility.py) and
copy_rate (bench/metrics/privacy.py), which also read the real train split. Per class: acc[<classifier>]
(the classifier's recall of each class), fid[<network>] and kid[<network>] (intra-class), ssim. A
metric's network is its bracket (`metric_network`; copy_rate's is the scorer): what the runner prepares
before the evaluation. Features of the real images are cached per (reference key, real images,
extractor, weights, resizer), so the reference side is computed once per suite.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.store import SHORT_LOCK_TIMEOUT_S, FileLock, atomic_write_bytes
from bench.metrics.extractors import EXTRACTORS, RESIZER, FeatureExtractor, build_extractor
from bench.metrics.fidkid import (DENSITY_OF_ONE_DISTRIBUTION, KID_SEED, KID_SUBSETS, MANIFOLD_KINDS, MIN_IMAGES,
                                  class_counts, fid, fid_min_images, kid, manifold_metrics, manifold_provenance,
                                  per_class)
from bench.metrics.privacy import PRIVACY_METRICS, PRIVACY_NETWORK, privacy_scores
from bench.metrics.ssim import K1, K2, SIGMA, TRUNCATE, class_ssim, pairwise_ssim
from bench.metrics.utility import UTILITY_METRICS, utility_scores
from bench.models.expert import ROLES

FEATURE_KINDS = ("fid", "kid", *MANIFOLD_KINDS)
METRIC_NAMES = (*(f"acc[{role}]" for role in ROLES), "ssim",
                *(f"{k}[{e}]" for e in EXTRACTORS for k in FEATURE_KINDS), *UTILITY_METRICS, *PRIVACY_METRICS)
_METRIC = re.compile(r"^(\w+)\[(\w+)\]$")


def metric_network(name: str) -> str | None:
    """The network a metric needs (the bracket of its name); None for ssim, which needs none."""
    match = _METRIC.match(name)
    return match.group(2) if match else None


def classifiers_needed(names) -> list[str]:
    """The suite classifiers (scorer, expert) that metrics `names` need, in ROLES order."""
    networks = {metric_network(n) for n in names} | {PRIVACY_NETWORK for n in names if n in PRIVACY_METRICS}
    return [role for role in ROLES if role in networks]
_LIBRARIES = ("torch", "torch-fidelity", "timm", "numpy", "scipy", "pillow", "scikit-image")


def check_metric_names(names) -> list[str]:
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise BenchError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    return list(dict.fromkeys(names))


def check_set_sizes(metrics, n_gen: int, n_real: int, fix: str) -> None:
    """BenchError (ending with `fix`) unless n_gen generated and n_real real images of the scored
    classes are enough for every metric: checked before work starts, not found by a LinAlgError."""
    short = [m for m in metrics if min(n_gen, n_real) < MIN_IMAGES.get(m.partition("[")[0], 0)]
    if short:
        need = max(MIN_IMAGES[m.partition("[")[0]] for m in short)
        raise BenchError(f"{', '.join(short)} need at least {need} generated and {need} real images of the "
                         f"scored classes, got {n_gen} and {n_real}; {fix}")


def _libraries() -> dict[str, str]:
    return {lib: version(lib) for lib in _LIBRARIES}


def _check_images(name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[-1] in (1, 3)):
        raise BenchError(f"{name} images must be uint8 arrays (N, H, W, C) with C = 1 or 3, got "
                         f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}")
    if len(labels) != len(images):
        raise BenchError(f"{name}: {len(images)} images but {len(labels)} labels")


def _reference_features(extractor: FeatureExtractor, real: np.ndarray, cache_dir: Path, reference_key: str,
                        device) -> np.ndarray:
    """Features of the real images, computed once and cached (real images hashed into the key)."""
    key = hashlib.sha256(json.dumps([reference_key, extractor.name, extractor.provenance, RESIZER],
                                    sort_keys=True, default=str).encode())
    key.update(np.ascontiguousarray(real).tobytes())
    path = Path(cache_dir) / "reference" / f"{extractor.name}-{key.hexdigest()[:16]}.npy"
    if not path.exists():
        with FileLock(path.with_suffix(".lock"), SHORT_LOCK_TIMEOUT_S):
            if not path.exists():
                buf = _npy_bytes(extractor.features(real, device))
                atomic_write_bytes(path, buf)
    return np.load(path)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _classifier_scores(classifier, features: np.ndarray, labels: np.ndarray, scored: list[int], device) -> dict:
    """Accuracy against the conditioning labels, per-class recall and the confusion matrix."""
    with torch.no_grad():
        pred = classifier.head(torch.from_numpy(features).float().to(device)).argmax(1).cpu().numpy()
    k = len(classifier.class_names)
    # rows = target (scored classes, in order), cols = predicted (all classes: a scored image may be
    # called a class left out of scoring, e.g. "empty")
    confusion = np.stack([np.bincount(pred[labels == c], minlength=k) for c in scored])
    recall = {c: float(np.mean(pred[labels == c] == c)) for c in scored if np.any(labels == c)}
    return {"accuracy": float(np.mean(pred == labels)), "recall": recall, "confusion": confusion}


def _ssim(fake, fake_labels, real, real_labels, scored: list[int], name_of: dict, common: dict, device) -> dict:
    """Mean pairwise SSIM per class of the generated images, and of as many real images per class."""
    per = class_ssim(fake, fake_labels, [c for c in scored if np.sum(fake_labels == c) >= 2], device)
    if not per:
        raise BenchError("ssim needs at least 2 generated images of one scored class")
    counts = {c: int(np.sum(fake_labels == c)) for c in per}
    reals = {c: real[real_labels == c][:n] for c, n in counts.items()}   # the first n_c real images
    reference = [pairwise_ssim(images, device=device).mean() for images in reals.values() if len(images) >= 2]
    return {"value": float(np.mean(list(per.values()))), "per_class": {name_of[c]: v for c, v in per.items()},
            "reference": float(np.mean(reference)) if reference else float("nan"), "provenance": {
                **common, "network": "none (SSIM of pixels)",
                "statistic": "mean pairwise SSIM within a class, averaged over classes",
                "implementation": "torch, equal to skimage.metrics.structural_similarity",
                "gaussian_sigma": SIGMA, "truncate": TRUNCATE, "K1": K1, "K2": K2, "data_range": 255,
                "use_sample_covariance": False, "n_per_class": {name_of[c]: n for c, n in counts.items()},
                "reference_n_per_class": {name_of[c]: len(x) for c, x in reals.items() if len(x) >= 2}}}


def _per_class_provenance(fake_labels, real_labels, scored: list[int], name_of: dict, need: int, why: str) -> dict:
    """N per class behind a per-class FID/KID, and the N below which a class has no value (null), and why."""
    return {"n_gen": {name_of[c]: n for c, n in class_counts(fake_labels, scored).items()},
            "n_ref": {name_of[c]: n for c, n in class_counts(real_labels, scored).items()},
            "min_images": need, "min_images_rule": why}


def evaluate_samples(fake: np.ndarray, fake_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray, *,
                     class_names, scored_classes, classifiers: dict, metrics, cache_dir: Path, reference_key: str,
                     kid_subset_size: int = 1000, device="cpu", inception_weights: str = "",
                     train_images: np.ndarray | None = None, train_labels: np.ndarray | None = None) -> dict:
    """Score generated uint8 images (N, H, W, C) with conditioning labels against real ones.

    `classifiers`: role (scorer, expert) -> Classifier, for the metrics that name one (and copy_rate).
    `train_images`, `train_labels`: the real train split (all classes), for aug_gain and copy_rate.
    Returns {"metrics", "per_class", "confusion", "reference", "provenance"} as in bench/core/store.py,
    plus "nearest" (the closest generated/training pairs, bench.metrics.privacy) when copy_rate is asked;
    "confusion" is the first measured acc[...]'s (the scorer's when acc[scorer] is measured);
    only images of `scored_classes` count, on both sides. Provenance holds settings only, nothing
    that varies between evaluations of one suite: the report refuses to compare differing settings.
    """
    metrics = check_metric_names(metrics)
    fake_labels, real_labels = np.asarray(fake_labels, np.int64), np.asarray(real_labels, np.int64)
    _check_images("generated", fake, fake_labels)
    _check_images("real", real, real_labels)
    if fake.shape[-1] != real.shape[-1]:
        raise BenchError(f"generated images have {fake.shape[-1]} channel(s), real ones {real.shape[-1]}; "
                         "generate with the data set's channels (data.grayscale)")
    scored = [int(c) for c in scored_classes]
    fake, fake_labels = fake[np.isin(fake_labels, scored)], fake_labels[np.isin(fake_labels, scored)]
    real, real_labels = real[np.isin(real_labels, scored)], real_labels[np.isin(real_labels, scored)]
    check_set_sizes(metrics, len(fake), len(real), "give more images")
    name_of = {c: class_names[c] for c in scored}
    common = {"n_gen": len(fake), "n_ref": len(real), "reference": reference_key, "libraries": _libraries()}
    out = {"metrics": {}, "per_class": {}, "confusion": [], "reference": {}, "provenance": {}}

    wanted = {}  # network -> metric kinds (acc, fid, ...)
    for m in metrics:
        if network := metric_network(m):
            wanted.setdefault(network, []).append(m.partition("[")[0])

    for name, kinds in sorted(wanted.items(), key=lambda item: item[0] != "scorer"):  # its confusion first
        extractor = build_extractor(name, classifiers=classifiers, cache_dir=cache_dir, device=device,
                                    inception_weights=inception_weights)
        fake_f = extractor.features(fake, device)
        real_f = _reference_features(extractor, real, cache_dir, reference_key, device)
        prov = {**common, **extractor.provenance, "extractor": name, "resizer": RESIZER}
        manifold = {}   # every k-NN metric of this network, from one call
        for kind in kinds:
            metric = f"{kind}[{name}]"
            if kind == "acc":
                classifier = classifiers[name]
                scores = _classifier_scores(classifier, fake_f, fake_labels, scored, device)
                ceiling = _classifier_scores(classifier, real_f, real_labels, scored, device)
                out["metrics"][metric] = scores["accuracy"]
                out["per_class"][metric] = {name_of[c]: v for c, v in scores["recall"].items()}
                out["confusion"] = out["confusion"] or scores["confusion"].tolist()
                out["reference"][metric] = ceiling["accuracy"]
                # no test-split figure here: a val suite must not carry one (the reference row is the ceiling)
                out["provenance"][metric] = {
                    **prov, "reference_note": f"{name} accuracy on the real images of the scored classes"}
            elif kind == "fid":
                out["metrics"][metric] = fid(fake_f, real_f)
                need = fid_min_images(fake_f.shape[1])
                by_class = per_class(fid, fake_f, fake_labels, real_f, real_labels, scored, need)
                out["per_class"][metric] = {name_of[c]: v for c, v in by_class.items()}
                out["provenance"][metric] = {**prov, "per_class": _per_class_provenance(
                    fake_labels, real_labels, scored, name_of, need, "feature dimension + 1: full-rank covariances")}
            elif kind == "kid":
                mean, _, size = kid(fake_f, real_f, kid_subset_size)
                out["metrics"][metric] = mean
                by_class = per_class(lambda f, r: kid(f, r, kid_subset_size)[0], fake_f, fake_labels, real_f,
                                     real_labels, scored, MIN_IMAGES["kid"])
                out["per_class"][metric] = {name_of[c]: v for c, v in by_class.items()}
                out["provenance"][metric] = {**prov, "kid_subset_size": size, "kid_subsets": KID_SUBSETS,
                                             "kid_rng_seed": KID_SEED, "kernel": "cubic polynomial",
                                             "per_class": _per_class_provenance(
                                                 fake_labels, real_labels, scored, name_of, MIN_IMAGES["kid"],
                                                 "the unbiased MMD estimator needs pairs")}
            else:
                manifold = manifold or manifold_metrics(fake_f, real_f, [k for k in kinds if k in MANIFOLD_KINDS])
                out["metrics"][metric] = manifold[kind]
                out["provenance"][metric] = {**prov, **manifold_provenance(kind)}
                if kind == "density":   # judged by its distance to this value, as SSIM to the real one
                    out["reference"][metric] = DENSITY_OF_ONE_DISTRIBUTION
                    out["provenance"][metric]["reference_note"] = ("density's expectation when generated and "
                                                                   "real images share one distribution")

    if "ssim" in metrics:
        result = _ssim(fake, fake_labels, real, real_labels, scored, name_of, common, device)
        out["metrics"]["ssim"], out["per_class"]["ssim"] = result["value"], result["per_class"]
        out["reference"]["ssim"], out["provenance"]["ssim"] = result["reference"], result["provenance"]

    parts = []  # the metrics that read the train split, each {"metrics", "reference", "provenance", ...}
    if utility := [m for m in metrics if m in UTILITY_METRICS]:
        parts.append(utility_scores(fake, fake_labels, real, real_labels, train_images, train_labels, class_names,
                                    utility, cache_dir, device))
    if "copy_rate" in metrics:
        extractor = build_extractor(PRIVACY_NETWORK, classifiers=classifiers, cache_dir=cache_dir, device=device)
        parts.append(privacy_scores(fake, fake_labels, real, real_labels, train_images, extractor, name_of, device,
                                    lambda images, key: _reference_features(extractor, images, cache_dir,
                                                                            f"{reference_key}{key}", device)))
    for part in parts:
        for key in ("metrics", "per_class", "reference"):
            out[key].update(part.get(key, {}))
        out["provenance"].update({m: {**common, **prov} for m, prov in part["provenance"].items()})
        if "nearest" in part:
            out["nearest"] = part["nearest"]
    return out
