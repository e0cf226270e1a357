"""Metrics of generated images: classifier accuracy, SSIM and Vendi diversity, FID/KID/precision/recall, utility
and privacy, each a registered entry (bench/metrics/registry.py). The built-in ones register here, in the
report's column order."""
from bench.metrics import accuracy, ssim, vendi, feature_metrics, utility, privacy, modern_features  # noqa: F401  (they register)
from bench.metrics.evaluate import check_metric_names, check_set_sizes, classifiers_needed, evaluate_samples
from bench.metrics.registry import Metric, Scoring, metric_names, metric_network, register_metric

__all__ = ["Metric", "Scoring", "check_metric_names", "check_set_sizes", "classifiers_needed", "evaluate_samples",
           "metric_names", "metric_network", "register_metric"]
