"""Latent Drifting (Yeganeh et al., arXiv 2412.20651): a signed shift delta of the noise mean.

Forward:  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) (eps + delta),   eps ~ N(0, I)   (noise ~ N(delta, I))
Reverse:  z_T ~ N(delta, I);  p(x_{t-1} | x_t) = N(mu_theta(x_t, t) + delta, Sigma)
No official training code exists: whether eps_hat regresses onto eps or eps + delta is the
`target` parameter ("eps" default, "shifted"). Sampling follows the unofficial inference code:
initial noise randn + delta, and delta added after every sampler update, before its added noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from bench.methods.base import ConditioningMethod


@dataclass(frozen=True)
class DriftParams:
    delta: tuple[float, ...] = (0.05,)   # one value, or one per image channel
    target: Literal["eps", "shifted"] = "eps"

    def __post_init__(self):
        if not self.delta:
            raise ValueError("delta needs at least one value")


class Drift(ConditioningMethod):
    """Shift the mean of the forward and reverse noise by delta."""

    name = "drift"
    paper = "Yeganeh et al. 2024, Latent Drifting in Diffusion Models, arXiv 2412.20651"
    Params = DriftParams

    def _delta(self, like: torch.Tensor) -> torch.Tensor:
        delta = torch.tensor(self.params.delta, dtype=like.dtype, device=like.device)
        if len(delta) not in (1, like.shape[1]):
            raise ValueError(f"drift delta has {len(delta)} values; the images have {like.shape[1]} channels")
        return delta.view(1, -1, 1, 1)

    def add_noise(self, schedule, x0, eps, t):
        return schedule.add_noise(x0, eps + self._delta(x0), t)

    def target(self, schedule, x0, eps, t):
        return eps + self._delta(eps) if self.params.target == "shifted" else eps

    def initial_noise(self, shape, generator, device):
        noise = super().initial_noise(shape, generator, device)
        return noise + self._delta(noise)

    def step(self, sampler, xt, eps_hat, i, noise):
        mean, sigma = sampler.posterior(xt, eps_hat, i)
        return mean + self._delta(mean) + sigma * noise
