"""Metrics of generated images: classifier accuracy, SSIM diversity, FID/KID/precision/recall."""
from bench.metrics.evaluate import (METRIC_NAMES, check_metric_names, check_set_sizes, classifiers_needed,
                                    evaluate_samples, metric_network)

__all__ = ["METRIC_NAMES", "check_metric_names", "check_set_sizes", "classifiers_needed", "evaluate_samples",
           "metric_network"]
