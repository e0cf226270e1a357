"""Feature-aligned diffusion (Nair et al., arXiv 2410.00731), Eq. 4-5:

    L = w1 * L_noise + w2 * L_align,   L_align = mean(1 - cos(W_p f_e(x), avgpool(f_d(x_t))))

f_e  the frozen expert classifier's pooled penultimate features (no_grad, eval mode) of the noisy
     input x_t (`aligned`, the paper's default and finding) or of the clean x0 (`aligned-clean`)
f_d  U-Net features at `hook` (default: the end of the down path), adaptive-average-pooled
W_p  a trainable Linear E_e -> E_d, trained with the U-Net
Sampling is the baseline's: the alignment only shapes training. The authors' per-class brightness
rejection filter is not part of the method and is not applied.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import ConditioningMethod
from bench.models.unet import unet_forward


@dataclass(frozen=True)
class AlignedParams:
    w1: float = 1.0                 # weight of the denoising loss (paper: 1)
    w2: float = 1.0                 # weight of the alignment loss (paper: 1)
    hook: str = "down_blocks.-1"    # U-Net module whose output is f_d; the authors' code hooks
    #                                 "down_blocks.2.resnets.0.conv_shortcut"


def resolve_module(root: nn.Module, path: str) -> nn.Module:
    """`down_blocks.-1.resnets.0` -> the module, negative indices counting from the end."""
    module = root
    for part in path.split("."):
        try:
            module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
        except (AttributeError, IndexError, TypeError):
            raise ValueError(f"no U-Net module at {path!r} (failed at {part!r})") from None
    return module


class Aligned(ConditioningMethod):
    """Align pooled U-Net down-path features of x_t with the expert's features of x_t."""

    name = "aligned"
    paper = "Nair et al. 2024, Feature-aligned diffusion, arXiv 2410.00731 (Eq. 4-5)"
    Params = AlignedParams
    expert_sees_clean = False

    def build_modules(self, unet):
        modules = super().build_modules(unet)
        modules["projection"] = nn.Linear(self.ctx.expert().feature_dim, self._hook_channels(unet))  # W_p
        return modules

    def _hook_channels(self, unet) -> int:
        """Channels of f_d, read off one probe forward pass."""
        captured = []
        handle = resolve_module(unet, self.params.hook).register_forward_hook(
            lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
        x = torch.zeros(1, self.ctx.channels, self.ctx.image_size, self.ctx.image_size)
        with torch.no_grad():
            unet_forward(unet, x, torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, self.ctx.token_dim))
        handle.remove()
        return captured[0].shape[1]

    def prepare(self, model):
        self._captured = None
        resolve_module(model.unet, self.params.hook).register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self._captured = output[0] if isinstance(output, tuple) else output

    def loss(self, model, schedule, x0, labels, generator):
        denoised = self.denoising_pass(model, schedule, x0, labels, generator)
        f_d = F.adaptive_avg_pool2d(self._captured, 1).flatten(1)
        expert = self.ctx.expert()
        with torch.no_grad():
            f_e = expert.features(x0 if self.expert_sees_clean else denoised.xt)
        loss_align = (1 - F.cosine_similarity(model.modules_["projection"](f_e.float()), f_d.float(), dim=1)).mean()
        return {"loss": self.params.w1 * denoised.loss + self.params.w2 * loss_align,
                "loss_noise": denoised.loss.detach(), "loss_align": loss_align.detach()}


class AlignedClean(Aligned):
    """The clean variant: the expert sees x0 instead of x_t."""

    name = "aligned-clean"
    expert_sees_clean = True

