"""Feature spaces beyond Inception, and the metrics their authors recommend in them.

fd[dinov2]   Fréchet distance in DINOv2 space: Stein et al. 2023 (NeurIPS, "Exposing flaws of generative
             model evaluation metrics", dgm-eval) found it ranks generators as people do where Inception
             FID does not. The CLS token of a DINOv2 ViT (transformers Dinov2Model's pooled output) of
             each image resized to 224 px (the resizer every extractor shares) and ImageNet-normalised, as
             dgm-eval feeds it; the statistic is bench's FID (torch-fidelity's), so fid[dinov2] is the same
             number, and kid, precision, recall, density and coverage are computed in it too.
cmmd[clip]   CMMD (Jayasumana et al. 2024, CVPR, "Rethinking FID"): the MMD between the L2-normalised
             CLIP image embeddings of generated and real images, with a Gaussian RBF kernel of bandwidth
             sigma = 10, times 1000, as the authors' reference code (google-research/cmmd, distance.py)
             computes it: a V-statistic over all pairs, no normality assumption. CLIP ViT-L/14 at 336 px
             (CLIPVisionModelWithProjection), images resized to its size and CLIP-normalised.

Weights are never downloaded: each network loads from the folder or Hugging Face id its environment
variable names (default: the model the paper used), from the local cache only. Where they are missing,
a suite that asks for the metric stops before anything is written, with one line saying how to get them.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.metrics.extractors import FeatureExtractor, register_extractor
from bench.metrics.feature_metrics import frechet_distance
from bench.metrics.registry import LOWER, Metric, Scoring, register_metric
from bench.models.local import local_folder
from bench.models.pretrained import file_sha256

DINOV2_ENV, DINOV2_DEFAULT = "BENCH_DINOV2_WEIGHTS", "facebook/dinov2-large"   # dgm-eval's ViT-L/14
CLIP_ENV, CLIP_DEFAULT = "BENCH_CLIP_WEIGHTS", "openai/clip-vit-large-patch14-336"   # CMMD's
DINOV2_INPUT = 224                       # dgm-eval's input size (DINOv2 interpolates its position embeddings)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
CMMD_SIGMA, CMMD_SCALE = 10.0, 1000.0    # the reference code's bandwidth and scale


def weights_folder(env: str, default: str, metric: str):
    """The local folder of the network `env` names (a folder, or a Hugging Face id in the local cache)."""
    return local_folder(os.environ.get(env, default), f"{metric}'s network (${env})",
                        f"set {env} to a local transformers model folder (config.json + model.safetensors)")[0]


def _weights_hash(folder) -> str:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BenchError(f"{folder} holds no .safetensors weights; bench loads transformers models from safetensors "
                         "only (convert it with save_pretrained(..., safe_serialization=True))")
    return file_sha256(files[0]) if len(files) == 1 else "+".join(file_sha256(f) for f in files)


def _normalised(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel normalised."""
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - m) / s


def dinov2_extractor(device="cpu", **_) -> FeatureExtractor:
    from transformers import Dinov2Model
    folder = weights_folder(DINOV2_ENV, DINOV2_DEFAULT, "fd[dinov2]")
    sha = _weights_hash(folder)
    net = Dinov2Model.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval().to(device)
    return FeatureExtractor("dinov2", DINOV2_INPUT, True,
                            lambda x: net(pixel_values=_normalised(x, IMAGENET_MEAN, IMAGENET_STD)).pooler_output, {
        "network": f"DINOv2 (transformers Dinov2Model, {folder.name})", "layer": "CLS token after the final norm",
        "weights_sha256": sha, "input": f"{DINOV2_INPUT} px RGB, ImageNet-normalised"})


def clip_extractor(device="cpu", **_) -> FeatureExtractor:
    from transformers import CLIPVisionModelWithProjection
    folder = weights_folder(CLIP_ENV, CLIP_DEFAULT, "cmmd[clip]")
    sha = _weights_hash(folder)
    net = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True,
                                                        use_safetensors=True).eval().to(device)
    size = net.config.image_size

    def embed(x):
        e = net(pixel_values=_normalised(x, CLIP_MEAN, CLIP_STD)).image_embeds
        return e / e.norm(dim=-1, keepdim=True)
    return FeatureExtractor("clip", size, True, embed, {
        "network": f"CLIP vision tower (transformers CLIPVisionModelWithProjection, {folder.name})",
        "layer": "projected image embedding, L2-normalised", "weights_sha256": sha, "input": f"{size} px RGB, "
        "CLIP-normalised"})


def mmd_rbf(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """scale x MMD^2 of x (N, D) and y (M, D) with k(a, b) = exp(-||a - b||^2 / (2 sigma^2)), every pair
    averaged, the diagonal included (the reference code's estimator)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gamma = 1 / (2 * sigma**2)
    xx, yy = (x * x).sum(1), (y * y).sum(1)
    k_xx = np.exp(-gamma * (xx[:, None] + xx[None, :] - 2 * x @ x.T)).mean()
    k_yy = np.exp(-gamma * (yy[:, None] + yy[None, :] - 2 * y @ y.T)).mean()
    k_xy = np.exp(-gamma * (xx[:, None] + yy[None, :] - 2 * x @ y.T)).mean()
    return float(scale * (k_xx + k_yy - 2 * k_xy))


def cmmd(scoring: Scoring, network: str) -> dict:
    f = scoring.features(network)
    return {"value": mmd_rbf(f.fake, f.real), "provenance": {
        **f.provenance, "kernel": f"Gaussian RBF, sigma {CMMD_SIGMA:g}", "scale": CMMD_SCALE,
        "estimator": "V-statistic over all pairs (google-research/cmmd distance.py)",
        "source": "Jayasumana et al. 2024, Rethinking FID: Towards a Better Evaluation Metric for Image Generation"}}


def fd(scoring: Scoring, network: str) -> dict:
    out = frechet_distance(scoring, network)
    out["provenance"] = {**out["provenance"], "source": "Stein et al. 2023 (dgm-eval): FD in DINOv2 space"}
    return out


register_extractor("dinov2", dinov2_extractor, check=lambda: weights_folder(DINOV2_ENV, DINOV2_DEFAULT, "fd[dinov2]"))
register_extractor("clip", clip_extractor, check=lambda: weights_folder(CLIP_ENV, CLIP_DEFAULT, "cmmd[clip]"))
register_metric(Metric("fd", LOWER, fd, networks=("dinov2",), min_images=2))
register_metric(Metric("cmmd", LOWER, cmmd, networks=("clip",), min_images=2))
