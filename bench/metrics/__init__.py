"""Metrics of generated images: expert accuracy, SSIM diversity, FID/KID/precision/recall."""
from bench.metrics.evaluate import METRIC_NAMES, check_metric_names, check_set_sizes, evaluate_samples

__all__ = ["METRIC_NAMES", "check_metric_names", "check_set_sizes", "evaluate_samples"]
