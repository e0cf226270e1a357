"""The DDPM training schedule and the DDIM/DDPM sampler shared by every method.

Notation (Ho et al. 2020; Song et al. 2021, DDIM Eq. 12):
  abar_t   alphas_cumprod[t]                    snr_t = abar_t / (1 - abar_t)
  x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
  sigma  = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)
  mean   = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat
DDIM with eta = 1 over all training steps is DDPM's ancestral sampler (sigma^2 = posterior variance),
so one update serves both samplers.
"""
from __future__ import annotations

import torch
from diffusers import DDPMScheduler


class Schedule:
    """Forward process and loss weighting over `num_train_timesteps` steps."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 min_snr_gamma: float = 0.0):
        betas = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule).betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas.double(), 0).float()
        self.num_train_timesteps = num_train_timesteps
        self.min_snr_gamma = min_snr_gamma

    def _abar(self, t, like):
        return self.alphas_cumprod.to(like.device)[t].view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0, eps, t):
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def sample_timesteps(self, n: int, generator, device):
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=device)

    def weighted_mse(self, eps_hat, target, t):
        """Per-sample MSE, min-SNR-gamma weighted for epsilon prediction (Hang et al. 2023, Eq. 9):
        w_t = min(snr_t, gamma) / snr_t. Early convergence per FLOP is what the CPU budget needs."""
        per_sample = (eps_hat.float() - target.float()).pow(2).flatten(1).mean(1)
        if self.min_snr_gamma > 0:
            abar = self.alphas_cumprod.to(t.device)[t]
            snr = abar / (1 - abar)
            per_sample = per_sample * torch.clamp(snr, max=self.min_snr_gamma) / snr
        return per_sample.mean()


class Sampler:
    """Timesteps and the update of one reverse step; `step()` of a method combines them."""

    def __init__(self, schedule: Schedule, steps: int, eta: float, clip_x0: bool = True):
        n = schedule.num_train_timesteps
        steps = min(steps, n)
        # Evenly spaced, ending at t = 0 ("trailing" spacing would skip t = 0's refinement).
        self.timesteps = (torch.arange(steps - 1, -1, -1) * (n // steps)).long()
        self.alphas_cumprod = schedule.alphas_cumprod
        self.eta = eta
        self.clip_x0 = clip_x0

    @classmethod
    def from_config(cls, schedule: Schedule, sampler: str, steps: int, eta: float) -> "Sampler":
        if sampler == "ddpm":
            return cls(schedule, schedule.num_train_timesteps, eta=1.0)
        return cls(schedule, steps, eta)

    def __len__(self):
        return len(self.timesteps)

    def abar_pair(self, i: int):
        t = self.timesteps[i]
        abar_t = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[self.timesteps[i + 1]] if i + 1 < len(self) else torch.tensor(1.0)
        return abar_t, abar_prev

    def noise_scales(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_t, s_prev) = sqrt(1 - abar) at step i's level and at the level its update lands on."""
        abar_t, abar_prev = self.abar_pair(i)
        return (1 - abar_t).sqrt(), (1 - abar_prev).sqrt()

    def posterior(self, xt, eps_hat, i: int):
        """(mean, sigma) of x_{t_prev} given x_t and eps_hat, DDIM Eq. 12."""
        abar_t, abar_prev = (a.to(xt.device) for a in self.abar_pair(i))
        # 1. predicted clean image
        x0_hat = (xt - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()
        if self.clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
            # keep eps consistent with the clipped x0 so the direction term points at it
            eps_hat = (xt - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
        # 2. noise scale of this step
        sigma = self.eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()
        # 3. mean: re-noise x0_hat to the previous level along eps_hat
        mean = abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
        return mean, sigma
