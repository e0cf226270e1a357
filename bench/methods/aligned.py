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
input. Both cost the same: one VAE decoder pass (no gradient) per training step, nearly all of a latent
step with a Stable-Diffusion-sized VAE (README, "What the methods' settings rest on").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import ConditioningMethod
from bench.methods.claims import HIGHER, LOWER, Claim
from bench.models.unet_modules import check_feature_maps, output_shapes, resolve_module

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

    name = f"{Aligned.name}-clean"   # the paper's ablation of `aligned`, named after it
    expert_sees_clean = True
    # The paper's finding is about the noisy input: the clean one is its ablation, worse than it.
    claims = (Claim("the expert seeing the noisy x_t beats it seeing the clean x0 (clean: lower "
                    "expert accuracy)", "acc[expert]", LOWER, None, PAPER_REGIME, PAPER_CITATION,
                    reference=Aligned.name),)

