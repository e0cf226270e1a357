"""Learned representation-guided diffusion (Graikos et al., CVPR 2024): condition on a frozen
encoder's embedding z of the image itself instead of its label.

Training   cond = W z / ||z||  (one cross-attention token; W = `projection`, trainable)
           with probability p_uncond (the suite's, [train] p_uncond), z := 0, so cond = W 0 = the
           learned null token (the authors' code zeroes z before the Linear; 0.1 in their configs)
Sampling   z ~ p(z | c): an embedding of a real train image of class c drawn uniformly (`bank =
           "images"`, the default), or a draw from N(mu_c, Sigma_c) fitted to the class's
           L2-normalised embeddings (`bank = "gaussian"`); the suite's classifier-free guidance
           eps_hat = eps_u + g (eps_c - eps_u),  eps_c = eps_theta(x_t, t, W z),  eps_u = eps_theta(x_t, t, W 0)
The encoder (bench/models/encoders.py) is a parameter; it is never trained nor checkpointed, and is
rebuilt identically on load. The default is the in-project SimCLR encoder, which no metric uses;
`encoder=expert` (the guide expert's features) is an explicit variant. The encoder sees images: in latent
mode ([model] vae) the VAE's decodes of the latents (MethodContext.images), in training and in the bank
alike, so z at sampling is drawn from embeddings of the kind of image the network was conditioned on in
training (the decoded train latents: the VAE's reconstructions of the train images). The paper's large-image
patch-grid sampling (bench/engine/large_image.py) conditions each window on an embedding interpolated from a
grid of them (`spatial_condition`); it is not part of the leaderboard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import ConditioningMethod
from bench.methods.claims import HIGHER, Claim
from bench.models.encoders import EncoderSpec, check_encoder, load_encoder


@dataclass(frozen=True)
class SSLParams:
    encoder: str = "simclr"         # simclr | expert | effnet | timm:<model> | open_clip:<model>
    weights: str = ""               # local weights file for timm:/open_clip: encoders
    input_size: int = 64            # side the ImageNet encoders (effnet, timm) see; tiles are upsampled
    bank: Literal["images", "gaussian"] = "images"  # p(z | c): class-c train embeddings, or a Gaussian fit
    simclr_steps: int = 300         # optimizer steps of the in-project SimCLR encoder

    def __post_init__(self):
        if not 8 <= self.input_size <= 1024:
            raise ValueError(f"input_size must be from 8 to 1024, got {self.input_size}")
        if self.simclr_steps < 0:
            raise ValueError(f"simclr_steps must be >= 0, got {self.simclr_steps}")

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.encoder, self.weights, self.input_size, self.simclr_steps)


class SSL(ConditioningMethod):
    """Condition on a frozen encoder's embedding; sample with embeddings of the target class."""

    name = "ssl"
    paper = "Graikos et al. 2024, Learned representation-guided diffusion models for large-image generation, CVPR"
    claims = (Claim("synthetic images conditioned on SSL embeddings help a classifier more as augmentation",
                    "aug_gain", HIGHER, None, "an ImageNet-pretrained latent diffusion model fine-tuned on "
                    "histopathology patches, SSL-encoder embeddings", "Graikos et al. 2024, CVPR"),)
    Params = SSLParams
    spatial_condition = True  # the paper's large images: a grid of tile embeddings (bench/engine/large_image.py)

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self._encoder: nn.Module | None = None
        self._bank: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def needs_expert(cls, params) -> bool:
        return params.encoder == "expert"

    @classmethod
    def check(cls, params, unet):
        check_encoder(params.encoder_spec)

    @property
    def encoder(self) -> nn.Module:
        """The frozen encoder, built on first use (not a submodule: never trained, never saved)."""
        if self._encoder is None:
            self._encoder = load_encoder(self.params.encoder_spec, self.ctx.data, self.ctx.device,
                                         self.ctx.cache_dir, self.ctx.expert)
        return self._encoder

    def build_modules(self, unet):
        # an exported model has the bank, not the encoder: the bank's width is the encoder's
        dim = self.encoder.dim if self._bank is None else self._bank[0].shape[1]
        return {"projection": nn.Linear(dim, self.ctx.token_dim)}  # W

    def embed(self, images):
        return self.encoder(images)

    def embedding_tokens(self, model, z: torch.Tensor) -> torch.Tensor:
        """z -> z / ||z|| -> W -> one token (B, 1, D); z = 0 stays 0 and gives the null token."""
        return model.modules_["projection"](F.normalize(z.float(), dim=-1))[:, None, :]

    def train_condition(self, model, x0, labels, generator):
        return self.embedding_tokens(model, self.embed(self.ctx.images(x0)))

    def null_condition(self, model, n):
        """W 0: the token of a zero embedding."""
        projection = model.modules_["projection"]
        return self.embedding_tokens(model, projection.weight.new_zeros(n, projection.in_features))

    # ---- sampling ------------------------------------------------------------------------------
    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, E) and labels (N,) of the train split, computed once per method object."""
        if self._bank is None:
            x, y = self.ctx.train_images()
            self._bank = torch.cat([self.embed(self.ctx.images(chunk)) for chunk in x.split(256)]), y
        return self._bank

    def draw_embeddings(self, labels: torch.Tensor, generator) -> torch.Tensor:
        """z ~ p(z | c) for every target label, from the condition stream `generator`."""
        z, y = self.bank()
        labels = labels.to(y.device)
        if self.params.bank == "images":  # uniform over the class's train images
            same_class = (labels[:, None] == y[None, :]).float()
            return z[torch.multinomial(same_class, 1, generator=generator).squeeze(1)]
        # Gaussian with the class's empirical mean and covariance, sampled without factorising it:
        # mu + (Z_c - mu)^T w / sqrt(n - 1), w ~ N(0, I_n), has covariance (Z_c - mu)^T (Z_c - mu) / (n - 1).
        out = torch.empty(len(labels), z.shape[1], device=z.device)
        for c in labels.unique().tolist():
            rows = labels == c
            members = F.normalize(z[y == c], dim=-1)
            mu = members.mean(0)
            w = torch.randn(int(rows.sum()), len(members), generator=generator, device=z.device)
            out[rows] = mu + w @ (members - mu) / max(len(members) - 1, 1) ** 0.5
        return out

    def sample_condition(self, model, labels, generator):
        return self.embedding_tokens(model, self.draw_embeddings(labels, generator))

    def export_state(self, model, sampler):
        z, y = self.bank()
        return {"bank.z": z, "bank.y": y}

    def load_export_state(self, state, weights):
        self._bank = state["bank.z"].to(self.ctx.device), state["bank.y"].to(self.ctx.device)
