"""Every metric bench computes, by name, as torch-fidelity's registry holds its feature extractors.

A metric is one `Metric` entry: its kind (the name, or the part before `[network]`), which way is better,
the feature networks it is computed in, the images it needs, and `compute`, which scores one evaluation
(`Scoring`) and returns its value, per-class values, reference and provenance. Adding one is one file
that calls `register_metric` at import: the built-in ones register from bench/metrics/*.py (imported by
bench/metrics/__init__.py, in the report's column order), a plug-in from its own module. The engine,
`bench eval` and the report look metrics up here and keep no lists of names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.errors import BenchError
from bench.metrics.extractors import RESIZER, build_extractor, reference_features

HIGHER, LOWER, CLOSEST_TO_REAL = "higher", "lower", "closest to real"
_NAME = re.compile(r"^(\w+)\[(\w+)\]$")


@dataclass
class Features:
    fake: np.ndarray        # float64 (N_gen, D)
    real: np.ndarray        # float64 (N_real, D), cached per suite
    extractor: object       # bench.metrics.extractors.FeatureExtractor
    provenance: dict        # the network's, with the extractor's name and the resizer


@dataclass
class Scoring:
    """One evaluation, as every metric sees it: the generated and real images of the scored classes
    (uint8 (N, H, W, C), conditioning labels), and what the suite provides besides. `once` shares work
    between the metrics of this evaluation (one network's features, a computation that yields several
    metrics at once)."""

    fake: np.ndarray
    fake_labels: np.ndarray
    real: np.ndarray
    real_labels: np.ndarray
    scored: list[int]                   # the scored classes' labels
    name_of: dict[int, str]             # label -> class name, for the scored classes
    class_names: tuple[str, ...]
    metrics: list[str]                  # every metric asked of this evaluation
    classifiers: dict                   # role (scorer, expert) -> the suite's Classifier
    cache_dir: Path
    reference_key: str                  # names the real images in the feature cache
    device: object = "cpu"
    kid_subset_size: int = 1000
    inception_weights: str = ""
    train_images: np.ndarray | None = None   # the real train split (all classes), for metrics that read it
    train_labels: np.ndarray | None = None
    _memo: dict = field(default_factory=dict, repr=False)

    def once(self, key, compute: Callable[[], object]):
        """compute(), computed once per evaluation under `key`."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def features(self, network: str) -> Features:
        """Features of the generated images and (cached per suite) of the real ones in `network`."""
        def compute() -> Features:
            extractor = build_extractor(network, classifiers=self.classifiers, cache_dir=self.cache_dir,
                                        device=self.device, inception_weights=self.inception_weights)
            return Features(extractor.features(self.fake, self.device),
                            reference_features(extractor, self.real, self.cache_dir, self.reference_key, self.device),
                            extractor, {**extractor.provenance, "extractor": network, "resizer": RESIZER})
        return self.once(("features", network), compute)


@dataclass(frozen=True)
class Metric:
    kind: str                       # the name, or the part before [network]
    direction: str                  # HIGHER, LOWER or CLOSEST_TO_REAL (to its reference): how the report judges it
    # scoring, network (None for a bare name) -> {"value", and optionally "per_class" (class name -> value),
    # "reference", "provenance" (settings only), "confusion", "nearest"}
    compute: Callable[[Scoring, str | None], dict]
    # the feature networks it is computed in, as kind[network] (or a function giving them, e.g. every
    # registered extractor's name); () = a bare name
    networks: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    needs_network: str | None = None   # a bare name's suite classifier all the same (copy_rate: the scorer)
    min_images: int = 0             # generated and real images of the scored classes it needs, checked first
    reads_train: bool = False       # reads the real train split (bench eval needs a data set name for it)

    def network_names(self) -> tuple[str, ...]:
        return self.networks() if callable(self.networks) else self.networks

    def names(self) -> list[str]:
        return [f"{self.kind}[{n}]" for n in self.network_names()] or [self.kind]


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make `metric` available by name to bench run, bench eval and the report; returns it."""
    if metric.direction not in (HIGHER, LOWER, CLOSEST_TO_REAL):
        raise ValueError(f"metric {metric.kind}: direction must be {HIGHER!r}, {LOWER!r} or {CLOSEST_TO_REAL!r}")
    METRICS[metric.kind] = metric
    return metric


def split_name(name: str) -> tuple[str, str | None]:
    """`fid[scorer]` -> ("fid", "scorer"); `ssim` -> ("ssim", None)."""
    match = _NAME.match(name)
    return (match.group(1), match.group(2)) if match else (name, None)


def metric_names() -> list[str]:
    return [name for metric in METRICS.values() for name in metric.names()]


def lookup(name: str) -> Metric:
    kind, network = split_name(name)
    metric = METRICS.get(kind)
    if metric is None or (network or None) not in (metric.network_names() or (None,)):
        raise BenchError(f"unknown metric {name}; choose from {', '.join(metric_names())}")
    return metric


def metric_network(name: str) -> str | None:
    """The network metric `name` needs prepared before it is computed: its bracket, or a bare metric's
    declared one; None if none (ssim)."""
    kind, network = split_name(name)
    return network or (METRICS[kind].needs_network if kind in METRICS else None)


def direction_of(name: str) -> str:
    """HIGHER, LOWER, CLOSEST_TO_REAL, or "" for a metric not registered in this process."""
    metric = METRICS.get(split_name(name)[0])
    return metric.direction if metric else ""


def registered_kinds() -> list[str]:
    """The registered kinds, in registration order: the report's column order."""
    return list(METRICS)
