"""Wall time of the metric suite on CPU, and batched SSIM against a scikit-image loop.

    python benchmarks/bench_metrics.py [--n 1000] [--size 32] [--threads 2] [--cache DIR]

1. The default metric suite (bench.config.MetricsConfig) on N generated 32-px images of the 7 scored
   synth-tissue classes (target: < 10 s). The scorer and the expert are trained (or loaded) first,
   untimed. "cold" includes the one-off reference features of the real test and train splits and the
   real-only utility classifier, "warm" reads them from the cache, as every evaluation after the first
   does. Then what precision, recall, density and coverage add to a warm evaluation, the intra-class
   FID/KID inside fid/kid[scorer], and what tstr_acc, aug_gain and copy_rate add. The default suite's
   evaluations: --n 70 --size 16.
2. Mean pairwise SSIM of one class's images: bench.metrics.ssim (torch, all pairs batched) against
   skimage.metrics.structural_similarity called pair by pair (target speed-up >= 10x).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from bench.datasets import load_prepared
from bench.datasets.base import DataConfig
from bench.datasets.synth_tissue import generate
from bench.config import MetricsConfig
from bench.metrics import evaluate_samples, fidkid
from bench.metrics.extractors import build_extractor
from bench.metrics.privacy import PRIVACY_METRICS
from bench.metrics.utility import UTILITY_METRICS
from bench.metrics.ssim import pairwise_ssim
from bench.models.expert import ClassifierConfig, ScorerConfig, get_classifier

METRICS = list(MetricsConfig.names)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="generated images")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cache", type=Path, default=Path("results/cache-benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data, t_data = timed(lambda: load_prepared(DataConfig(image_size=args.size)))
    print(f"data {t_data:.1f} s")
    classifiers = {}
    for role, cfg in (("scorer", ScorerConfig()), ("expert", ClassifierConfig())):
        classifiers[role], seconds = timed(lambda: get_classifier(role, data, cfg, args.cache))
        print(f"{role} {cfg.backbone} ready in {seconds:.1f} s "
              f"(real test accuracy {classifiers[role].test_accuracy:.3f})")

    scored = list(data.scored_classes)
    labels = np.sort(np.arange(args.n) % len(scored))
    per_class = np.bincount(labels)
    # "Generated" images: fresh draws of the same generator (seed 12345, unused by the data splits).
    fake = np.concatenate([generate(scored[i], int(k), args.size, 12345) for i, k in enumerate(per_class)])
    fake_labels = np.asarray(scored)[labels]
    real_x, real_y = data.split("test")
    keep = np.isin(real_y, scored)
    with tempfile.TemporaryDirectory() as reference_cache:  # empty: the first run is truly cold
        def run(metrics=METRICS):
            return evaluate_samples(fake, fake_labels, real_x[keep], real_y[keep], class_names=data.class_names,
                                    scored_classes=scored, classifiers=classifiers, metrics=metrics,
                                    cache_dir=Path(reference_cache), reference_key=f"{data.fingerprint()}-test",
                                    kid_subset_size=1000, train_images=data.train_x, train_labels=data.train_y)

        _, cold = timed(run)
        result, warm = timed(run)
        alone = {m: timed(lambda: run([m]))[1] for m in METRICS}
        _, without_knn = timed(lambda: run([m for m in METRICS if m.partition("[")[0] not in fidkid.MANIFOLD_KINDS]))
        scorer = build_extractor("scorer", classifiers=classifiers, cache_dir=Path(reference_cache))
        fake_f, real_f = scorer.features(fake), scorer.features(real_x[keep])
        _, intra_class = timed(lambda: (
            fidkid.per_class(fidkid.fid, fake_f, fake_labels, real_f, real_y[keep], scored,
                             fidkid.fid_min_images(fake_f.shape[1])),
            fidkid.per_class(lambda f, r: fidkid.kid(f, r, 1000)[0], fake_f, fake_labels, real_f, real_y[keep],
                             scored, fidkid.MIN_IMAGES["kid"])))
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in result["metrics"].items())
    print(f"metric suite on {args.n} images of {args.size} px, {args.threads} thread(s): "
          f"cold {cold:.2f} s, warm {warm:.2f} s (target < 10 s)\n  {shown}\n  each alone (warm): "
          + ", ".join(f"{m} {t:.2f} s" for m, t in alone.items()))
    print(f"  precision/recall/density/coverage add {warm - without_knn:.2f} s to a warm evaluation "
          f"({warm / without_knn:.2f}x the suite without them); intra-class fid/kid[scorer] take {intra_class:.2f} s "
          f"({int(fidkid.fid_min_images(fake_f.shape[1]))} images a class needed for a FID, "
          f"{per_class.min()} given)")
    added = [m for m in (*UTILITY_METRICS, *PRIVACY_METRICS) if m in alone]
    print(f"  {', '.join(added)} add {sum(alone[m] for m in added):.2f} s per evaluation (warm, each alone)")

    images = fake[fake_labels == scored[0]]
    first, second = np.triu_indices(len(images), 1)
    ours, t_ours = timed(lambda: pairwise_ssim(images))
    channel_axis = -1 if images.shape[-1] == 3 else None
    squeeze = images if channel_axis is not None else images[..., 0]
    theirs, t_theirs = timed(lambda: np.array([
        structural_similarity(squeeze[i], squeeze[j], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255, channel_axis=channel_axis) for i, j in zip(first, second)]))
    print(f"SSIM over {len(first)} pairs ({len(images)} images): batched torch {t_ours:.3f} s, "
          f"skimage loop {t_theirs:.2f} s, speed-up {t_theirs / t_ours:.1f}x (target >= 10x), "
          f"max |difference| {np.abs(ours - theirs).max():.1e}")


if __name__ == "__main__":
    main()
