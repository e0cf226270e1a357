"""Metrics of generated images: expert accuracy, SSIM diversity, FID/KID/precision/recall."""
from bench.metrics.evaluate import METRIC_NAMES, check_metric_names, evaluate_samples

__all__ = ["METRIC_NAMES", "check_metric_names", "evaluate_samples"]
