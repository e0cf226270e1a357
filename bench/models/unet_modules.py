"""The U-Net's modules by path, as methods hook them: `down_blocks.-1`, `mid_block`, `up_blocks.0.resnets.1`."""
from __future__ import annotations

import hashlib
import re
from functools import partial

import torch
from torch import nn

from bench.models.unet import unet_forward


def resolve_module(root: nn.Module, path: str) -> nn.Module:
    """`down_blocks.-1.resnets.0` -> the module, negative indices counting from the end. Only
    sub-modules are followed, never other attributes (`__class__`, `config`)."""
    module = root
    for part in path.split("."):
        children = dict(module.named_children())
        if re.fullmatch(r"-?\d+", part) and isinstance(module, (nn.ModuleList, nn.Sequential)) \
                and -len(module) <= int(part) < len(module):
            module = module[int(part)]
        elif part in children:
            module = children[part]
        else:
            raise ValueError(f"no U-Net module at {path!r} (failed at {part!r}; there: "
                             f"{', '.join(children) or 'no sub-modules'})")
    return module


def output_shapes(unet: nn.Module, paths: list[str]) -> list[torch.Size | None]:
    """The output shape of the module at each path in one forward pass of a one-image batch
    (None: the module is not called); on the meta device it costs nothing."""
    shapes: dict[str, torch.Size] = {}

    def record(path, module, inputs, output):  # returns None: the output is left as it is
        shapes.setdefault(path, (output[0] if isinstance(output, tuple) else output).shape)

    handles = [resolve_module(unet, p).register_forward_hook(partial(record, p)) for p in paths]
    cfg, device = unet.config, next(unet.parameters()).device
    try:
        with torch.no_grad():
            unet_forward(unet, torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=device),
                         torch.zeros(1, dtype=torch.long, device=device),
                         torch.zeros(1, 1, cfg.cross_attention_dim, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return [shapes.get(p) for p in paths]


def check_feature_maps(unet: nn.Module, paths: list[str], parameter: str) -> None:
    """ValueError unless every module at `paths` outputs a feature map (B, C, H, W)."""
    for path, shape in zip(paths, output_shapes(unet, paths)):
        if shape is None or len(shape) != 4:
            got = "is not called in the forward pass" if shape is None else f"outputs shape {tuple(shape)}"
            raise ValueError(f"{parameter}: U-Net module {path!r} {got}; choose one whose output is a "
                             "feature map (B, C, H, W), e.g. down_blocks.-1 or mid_block")


def weights_digest(model: nn.Module, context: str) -> str:
    """20 hex digits naming `model`'s weights (every tensor of its state, by name) and `context` (what
    else a cached result of them depends on): the key of a cache of what these weights compute."""
    h = hashlib.sha256(context.encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]
