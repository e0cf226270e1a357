"""One evaluation: every requested metric of one generated sample set against the real images.

`bench run` (one call per trained model x generation seed) and `bench eval` both come here, so a
number means the same thing wherever it was computed. The metrics are the registry's
(bench/metrics/registry.py): acc[<classifier>], ssim, <kind>[<network>] with kind in fid, kid,
precision, recall, density, coverage and network in scorer, expert, inception, effnet (see DESIGN.md
"Metrics"); tstr_acc, aug_gain and copy_rate, which also read the real train split; and any a plug-in
registers. A metric's network (`metric_network`; copy_rate's is the scorer) is what the runner prepares
before the evaluation. Features of the real images are cached per (reference key, real images,
extractor, weights, resizer), so the reference side is computed once per suite.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.metrics.extractors import check_extractor
from bench.metrics.registry import Scoring, lookup, metric_names, metric_network, split_name
from bench.models.expert import ROLES

_LIBRARIES = ("torch", "torch-fidelity", "timm", "numpy", "scipy", "pillow", "scikit-image")


def classifiers_needed(names) -> list[str]:
    """The suite classifiers (scorer, expert) that metrics `names` need, in ROLES order."""
    networks = {metric_network(n) for n in names}
    return [role for role in ROLES if role in networks]


def check_metric_names(names) -> list[str]:
    """The metrics `names`, once each; BenchError for an unknown one or one whose network cannot be built."""
    unknown = [n for n in names if n not in metric_names()]
    if unknown:
        raise BenchError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(metric_names())}")
    for network in dict.fromkeys(split_name(n)[1] for n in names if split_name(n)[1]):
        check_extractor(network)
    return list(dict.fromkeys(names))


def check_set_sizes(metrics, n_gen: int, n_real: int, fix: str) -> None:
    """BenchError (ending with `fix`) unless n_gen generated and n_real real images of the scored
    classes are enough for every metric: checked before work starts, not found by a LinAlgError."""
    short = [m for m in metrics if min(n_gen, n_real) < lookup(m).min_images]
    if short:
        need = max(lookup(m).min_images for m in short)
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


def _computing_order(metrics: list[str]) -> list[str]:
    """The metrics of a network together (its features once), the scorer's first (its confusion matrix
    is the evaluation's), then the bare ones."""
    networks = list(dict.fromkeys(split_name(m)[1] for m in metrics if split_name(m)[1]))
    rank = {n: i for i, n in enumerate(sorted(networks, key=lambda n: n != "scorer"))}
    return sorted(metrics, key=lambda m: rank.get(split_name(m)[1], len(rank)))


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
    if train_images is None and (reads := [m for m in metrics if lookup(m).reads_train]):
        raise BenchError(f"{reads[0]} needs the real train split: bench run passes it; for bench eval give --real "
                         "a data set name")
    scored = [int(c) for c in scored_classes]
    fake, fake_labels = fake[np.isin(fake_labels, scored)], fake_labels[np.isin(fake_labels, scored)]
    real, real_labels = real[np.isin(real_labels, scored)], real_labels[np.isin(real_labels, scored)]
    check_set_sizes(metrics, len(fake), len(real), "give more images")
    scoring = Scoring(fake, fake_labels, real, real_labels, scored, name_of={c: class_names[c] for c in scored},
                      class_names=tuple(class_names), metrics=metrics, classifiers=classifiers,
                      cache_dir=Path(cache_dir), reference_key=reference_key, device=device,
                      kid_subset_size=kid_subset_size, inception_weights=inception_weights,
                      train_images=train_images, train_labels=train_labels)
    common = {"n_gen": len(fake), "n_ref": len(real), "reference": reference_key, "libraries": _libraries()}
    out = {"metrics": {}, "per_class": {}, "confusion": [], "reference": {}, "provenance": {}}
    for name in _computing_order(metrics):
        result = lookup(name).compute(scoring, split_name(name)[1])
        out["metrics"][name] = result["value"]
        if "per_class" in result:
            out["per_class"][name] = result["per_class"]
        if "reference" in result:
            out["reference"][name] = result["reference"]
        out["provenance"][name] = {**common, **result.get("provenance", {})}
        if "confusion" in result:
            out["confusion"] = out["confusion"] or result["confusion"]
        if "nearest" in result:
            out["nearest"] = result["nearest"]
    return out
