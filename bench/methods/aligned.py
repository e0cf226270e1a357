"""Feature-aligned diffusion (Nair et al., arXiv 2410.00731), Eq. 4-5:

    L = w1 * L_noise + w2 * L_align,   L_align = mean(1 - cos(W_p f_e(x), avgpool(f_d(x_t))))

f_e  the frozen expert classifier's pooled penultimate features (no_grad, eval mode) of the noisy
     input x_t (`aligned`, the paper's default and finding) or of the clean x0 (`aligned-clean`)
f_d  U-Net features at `hook` (default: the end of the down path), adaptive-average-pooled
W_p  a trainable Linear E_e -> E_d, trained with the U-Net
Sampling is the baseline's: the alignment only shapes training. The authors' per-class brightness
rejection filter is not part of the method and is not applied.

Latent mode ([model] vae): the expert is an image classifier, so it sees the VAE's decode of what it
sees in pixel space: decoded x_t (decoded x0 for `aligned-clean`; MethodContext.images). Decoded x_t, not
a decoded x0_hat, because it keeps what defines the paper's f_e: a fixed function of the noisy training
input, independent of the network being trained (x0_hat is the U-Net's own estimate, noise early in
training, so the alignment target would chase the model), and the paper's finding is about the noisy
input. Both cost the same: one VAE decoder pass (no gradient) per training step. Measured (2 shared CPU
cores under load from other jobs, 1 torch thread, tiny U-Net, batch 8, median of 20 steps): with a tiny
2-block VAE at 16 px, aligned 128 ms/step in pixel space and 93 ms/step in latent space (baseline 82); with
a Stable-Diffusion-shaped VAE (128-256-512-512, random weights) at 32 px, 749 ms/step in pixel space and
2231 ms/step in latent space (baseline 105): the decoder pass is nearly all of a latent step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import ConditioningMethod
from bench.methods.claims import HIGHER, LOWER, Claim
from bench.models.unet import unet_forward

# The paper's protocol (METHODS.md): expert accuracy averaged over 15 seeds, +9 points against the
# baseline; mean pairwise SSIM about 0.12 lower.
PAPER_REGIME = "Kather 2016, 64 px grayscale, 20 epochs, pretrained; 15 seeds x 10 images per class"
PAPER_CITATION = "Nair et al. 2024, arXiv 2410.00731"


@dataclass(frozen=True)
class AlignedParams:
    w1: float = 1.0                 # weight of the denoising loss (paper: 1)
    w2: float = 1.0                 # weight of the alignment loss (paper: 1)
    hook: str = "down_blocks.-1"    # U-Net module whose output is f_d; the authors' code hooks
    #                                 "down_blocks.2.resnets.0.conv_shortcut"

    def __post_init__(self):
        if self.w1 < 0 or self.w2 < 0 or self.w1 + self.w2 == 0:
            raise ValueError(f"w1 and w2 weigh two losses: both must be >= 0 and not both 0, "
                             f"got w1={self.w1}, w2={self.w2}")


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


class Aligned(ConditioningMethod):
    """Align pooled U-Net down-path features of x_t with the expert's features of x_t."""

    name = "aligned"
    paper = "Nair et al. 2024, Feature-aligned diffusion, arXiv 2410.00731 (Eq. 4-5)"
    claims = (Claim("feature alignment raises the expert's accuracy on generated images", "acc[expert]",
                    HIGHER, 0.09, PAPER_REGIME, PAPER_CITATION),
              Claim("feature alignment makes samples more diverse: lower mean pairwise SSIM", "ssim",
                    LOWER, 0.12, PAPER_REGIME, PAPER_CITATION))
    Params = AlignedParams
    expert_sees_clean = False
    _expert_dim: int | None = None      # f_e's width in an exported model, which has no expert

    @classmethod
    def needs_expert(cls, params) -> bool:
        return True

    def build_modules(self, unet):
        modules = super().build_modules(unet)
        modules["projection"] = nn.Linear(self._expert_dim or self.ctx.expert().feature_dim,
                                          self._hook_channels(unet))  # W_p
        return modules

    @classmethod
    def check(cls, params, unet):
        check_feature_maps(unet, [params.hook], "hook")

    def load_export_state(self, state, weights):
        self._expert_dim = weights["projection.weight"].shape[1]

    def _hook_channels(self, unet) -> int:
        """Channels of f_d, read off one probe forward pass."""
        return output_shapes(unet, [self.params.hook])[0][1]

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
            f_e = expert.features(self.ctx.images(x0 if self.expert_sees_clean else denoised.xt))
        loss_align = (1 - F.cosine_similarity(model.modules_["projection"](f_e.float()), f_d.float(), dim=1)).mean()
        return {"loss": self.params.w1 * denoised.loss + self.params.w2 * loss_align,
                "loss_noise": denoised.loss.detach(), "loss_align": loss_align.detach()}


class AlignedClean(Aligned):
    """The clean variant: the expert sees x0 instead of x_t."""

    name = "aligned-clean"
    expert_sees_clean = True
    # The paper's finding is about the noisy input: the clean one is its ablation, worse than it.
    claims = (Claim("the expert seeing the noisy x_t beats it seeing the clean x0 (clean: lower "
                    "expert accuracy)", "acc[expert]", LOWER, None, PAPER_REGIME, PAPER_CITATION,
                    reference="aligned"),)

