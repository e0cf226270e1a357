"""acc[<classifier>]: the share of generated images a suite classifier (the scorer, or the methods' expert)
assigns to the class they were generated for; per class, its recall of that class. Its reference is the
same classifier's accuracy on the real images of the scored classes: the ceiling a generator could reach.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.metrics.registry import HIGHER, Metric, Scoring, register_metric
from bench.models.expert import ROLES


def classifier_scores(classifier, features: np.ndarray, labels: np.ndarray, scored: list[int], device) -> dict:
    """Accuracy against the conditioning labels, per-class recall and the confusion matrix."""
    with torch.no_grad():
        pred = classifier.head(torch.from_numpy(features).float().to(device)).argmax(1).cpu().numpy()
    k = len(classifier.class_names)
    # rows = target (scored classes, in order), cols = predicted (all classes: a scored image may be
    # called a class left out of scoring, e.g. "empty")
    confusion = np.stack([np.bincount(pred[labels == c], minlength=k) for c in scored])
    recall = {c: float(np.mean(pred[labels == c] == c)) for c in scored if np.any(labels == c)}
    return {"accuracy": float(np.mean(pred == labels)), "recall": recall, "confusion": confusion}


def accuracy(scoring: Scoring, network: str) -> dict:
    features, classifier = scoring.features(network), scoring.classifiers[network]
    scores = classifier_scores(classifier, features.fake, scoring.fake_labels, scoring.scored, scoring.device)
    ceiling = classifier_scores(classifier, features.real, scoring.real_labels, scoring.scored, scoring.device)
    # no test-split figure here: a val suite must not carry one (the reference row is the ceiling)
    return {"value": scores["accuracy"], "per_class": {scoring.name_of[c]: v for c, v in scores["recall"].items()},
            "confusion": scores["confusion"].tolist(), "reference": ceiling["accuracy"],
            "provenance": {**features.provenance,
                           "reference_note": f"{network} accuracy on the real images of the scored classes"}}


register_metric(Metric("acc", HIGHER, accuracy, networks=ROLES))
