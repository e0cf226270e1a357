"""The DDPM training schedule, and the diffusers schedulers that sample it, chosen by name.

Notation (Ho et al. 2020):  abar_t = alphas_cumprod[t],  a_t = sqrt(abar_t),  s_t = sqrt(1 - abar_t),
  x_t = a_t (x0 - mu) + s_t eps + mu,  snr_t = abar_t / (1 - abar_t),  v = a_t eps - s_t (x0 - mu).
The network predicts eps or v (`[train] prediction`; v: Salimans & Ho 2022, Sec. 4 and App. D); the
Schedule turns its output into eps_hat, so methods, losses and samplers all see eps_hat whichever it is.
mu is the data's per-channel mean (`[train] center_data`; 0 when off): the diffusion runs on x0 - mu, so
x_T ~ N(mu, I) and a model that shrinks its estimates towards the prior shrinks them towards the data's
mean colour, not towards mid-grey. Every sampler steps y = x - mu and returns y + mu.
A sampler is a diffusers scheduler (`[sample] sampler`) set to the training schedule, with the suite's
timestep spacing ("trailing" by default: the first step starts at t = T - 1, Lin et al. 2024, Sec. 3.3)
and x0 clipping. A method's `step` hook wraps `Sampler.step`; drift alone overrides it, and needs
`noise_scales`, which exists for the samplers whose samples are x_t itself (`vp_samples`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.core.errors import BenchError


class Schedule:
    """Forward process and loss weighting over `num_train_timesteps` steps."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 min_snr_gamma: float = 0.0, mean: tuple[float, ...] = (0.0,), prediction: str = "epsilon"):
        from diffusers import DDPMScheduler  # imported on use: the config reads SAMPLERS, and CLI start stays fast
        betas = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule).betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas.double(), 0).float()
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.min_snr_gamma = min_snr_gamma
        self.prediction = prediction
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)   # mu, model space

    def mu(self, like: torch.Tensor) -> torch.Tensor:
        return self.mean.to(like.device, like.dtype)

    def _abar(self, t, like):
        return self.alphas_cumprod.to(like.device)[t].view(-1, *([1] * (like.ndim - 1)))

    def _abar_between(self, t, like):
        """abar at timesteps that may lie between the table's (a sampler of sigmas, e.g. euler, steps at
        fractional t): sigma = sqrt((1 - abar) / abar) interpolated linearly in t, as diffusers does."""
        if not t.is_floating_point():
            return self._abar(t, like)
        sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt().to(like.device)
        t = t.to(like.device, torch.float32)
        lo = t.floor().long().clamp(0, len(sigmas) - 1)
        hi = (lo + 1).clamp(max=len(sigmas) - 1)
        sigma = torch.lerp(sigmas[lo], sigmas[hi], t - lo)
        return (1 / (1 + sigma**2)).view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0, eps, t):
        abar, mu = self._abar(t, x0), self.mu(x0)
        return abar.sqrt() * (x0 - mu) + (1 - abar).sqrt() * eps + mu

    def eps_from_output(self, out, xt, t):
        """eps_hat from the network's output: itself, or from v_hat: eps_hat = a_t v_hat + s_t (x_t - mu)
        (x_t - mu = a_t (x0 - mu) + s_t eps and a_t^2 + s_t^2 = 1)."""
        if self.prediction == "epsilon":
            return out
        abar = self._abar_between(t, xt).to(out.dtype)
        return abar.sqrt() * out + (1 - abar).sqrt() * (xt - self.mu(xt)).to(out.dtype)

    def x0_from_eps(self, xt, eps_hat, t):
        """x0_hat = mu + (x_t - mu - s_t eps_hat) / a_t: the forward process solved for x0."""
        abar, mu = self._abar_between(t, xt), self.mu(xt)
        return mu + (xt - mu - (1 - abar).sqrt() * eps_hat) / abar.sqrt()

    def eps_from_x0(self, xt, x0_hat, t):
        """eps_hat = (x_t - mu - a_t (x0_hat - mu)) / s_t: the forward process solved for eps."""
        abar, mu = self._abar_between(t, xt), self.mu(xt)
        return (xt - mu - abar.sqrt() * (x0_hat - mu)) / (1 - abar).sqrt()

    def sample_timesteps(self, n: int, generator, device):
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=device)

    def weighted_mse(self, eps_hat, target, t):
        """Per-sample MSE, min-SNR-gamma weighted for epsilon prediction (Hang et al. 2023, Eq. 9):
        w_t = min(snr_t, gamma) / snr_t. Early convergence per FLOP is what the CPU budget needs. It serves v
        prediction unchanged: eps_hat - eps = a_t (v_hat - v), so this is the paper's v weight
        min(snr_t, gamma) / (snr_t + 1) on the v error (Eq. 10), both min(snr_t, gamma) on the x0 error."""
        per_sample = (eps_hat.float() - target.float()).pow(2).flatten(1).mean(1)
        if self.min_snr_gamma > 0:
            abar = self.alphas_cumprod.to(t.device)[t]
            snr = abar / (1 - abar)
            per_sample = per_sample * torch.clamp(snr, max=self.min_snr_gamma) / snr
        return per_sample.mean()


@dataclass(frozen=True)
class SamplerKind:
    """How bench drives one diffusers scheduler."""
    scheduler: str                      # class name in diffusers
    options: dict = field(default_factory=dict)   # settings beyond the schedule, spacing and clipping
    clip: dict | None = None            # the settings that clip x0 to [-1, 1]; None: it cannot
    no_clip: dict = field(default_factory=dict)   # the settings that leave x0 alone
    noise: str = "none"                 # its step's noise: "eta" (DDIM's, drawn here), "generator", "none"
    vp_samples: bool = True             # its samples are x_t = a_t x0 + s_t eps (not x0 + sigma_t eps)


# Dynamic thresholding (Saharia et al. 2022) with its ceiling at 1 is plain clipping to [-1, 1].
_CLIP = {"clip": {"clip_sample": True, "clip_sample_range": 1.0}, "no_clip": {"clip_sample": False}}
_THRESHOLD_AT_1 = {"clip": {"thresholding": True, "sample_max_value": 1.0}, "no_clip": {"thresholding": False}}
SAMPLERS = {
    "ddim": SamplerKind("DDIMScheduler", {"set_alpha_to_one": True}, noise="eta", **_CLIP),
    "ddpm": SamplerKind("DDPMScheduler", {"variance_type": "fixed_small"}, noise="generator", **_CLIP),
    "dpmsolver++": SamplerKind("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                               **_THRESHOLD_AT_1),
    "unipc": SamplerKind("UniPCMultistepScheduler", {"solver_order": 2}, **_THRESHOLD_AT_1),
    "euler": SamplerKind("EulerDiscreteScheduler", noise="generator", vp_samples=False),
}


def sampler_kind(name: str, clip_x0: bool = False) -> SamplerKind:
    """The registered sampler `name` (the config checked the name); BenchError if it cannot clip x0 and
    is asked to."""
    kind = SAMPLERS[name]
    if clip_x0 and kind.clip is None:
        raise BenchError(f"sampler {name!r} cannot clip x0; set [sample] clip_x0 = false or use "
                         f"{', '.join(n for n, k in SAMPLERS.items() if k.clip is not None)}")
    return kind


class Sampler:
    """A diffusers scheduler on the training schedule: timesteps, one update, the noise levels."""

    def __init__(self, schedule: Schedule, name: str = "ddim", steps: int = 50, eta: float = 0.0,
                 spacing: str = "trailing", clip_x0: bool = True):
        import diffusers
        kind = sampler_kind(name, clip_x0)
        self.name, self.eta, self.steps = name, eta, min(steps, schedule.num_train_timesteps)
        self.scheduler = getattr(diffusers, kind.scheduler)(
            num_train_timesteps=schedule.num_train_timesteps, beta_schedule=schedule.beta_schedule,
            prediction_type="epsilon", timestep_spacing=spacing, steps_offset=0,
            **kind.options, **(kind.clip if clip_x0 else kind.no_clip))
        self.kind = kind
        self.mu = schedule.mu
        self.reset()

    @classmethod
    def from_config(cls, schedule: Schedule, sample_cfg) -> "Sampler":
        return cls(schedule, sample_cfg.sampler, sample_cfg.steps, sample_cfg.eta, sample_cfg.spacing,
                   sample_cfg.clip_x0)

    def reset(self) -> None:
        """Timesteps set afresh and a multistep scheduler's history cleared: call before each batch."""
        self.scheduler.set_timesteps(self.steps)
        self.timesteps = self.scheduler.timesteps

    def __len__(self):
        return len(self.timesteps)

    def start(self, noise: torch.Tensor) -> torch.Tensor:
        """x_T from standard-normal `noise` (a method's initial noise): scaled to the first level, plus mu."""
        return noise * float(self.scheduler.init_noise_sigma) + self.mu(noise)

    def model_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """What the denoiser sees at step i (x itself, except for samplers of x0 + sigma eps)."""
        mu = self.mu(x)
        return self.scheduler.scale_model_input(x - mu, self.timesteps[i]) + mu

    def step(self, xt: torch.Tensor, eps_hat: torch.Tensor, i: int, generator: torch.Generator) -> torch.Tensor:
        """x at the next level from x_t and eps_hat; the step's noise, if any, from `generator`. The
        scheduler steps y = x - mu, so its x0 clipping bounds x0 - mu to [-1, 1]."""
        t, sched, mu = self.timesteps[i], self.scheduler, self.mu(xt)
        y = xt - mu
        if self.kind.noise == "eta":
            # eps re-derived from the clipped x0 (use_clipped_model_output): the direction points at it
            noise = torch.randn(xt.shape, generator=generator).to(xt.device) if self.eta > 0 else None
            y_prev = sched.step(eps_hat, t, y, eta=self.eta, use_clipped_model_output=True,
                                variance_noise=noise).prev_sample
        elif self.kind.noise == "generator":
            y_prev = sched.step(eps_hat, t, y, generator=generator).prev_sample
        else:
            y_prev = sched.step(eps_hat, t, y).prev_sample
        return y_prev + mu

    def noise_scales(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_t, s_prev): sqrt(1 - abar) at step i's level and at the level its update lands on."""
        if not self.kind.vp_samples:
            raise ValueError(f"sampler {self.name!r} does not keep samples as x_t = a_t x0 + s_t eps")
        sched, t = self.scheduler, int(self.timesteps[i])
        if hasattr(sched, "sigmas"):        # multistep solvers: sigma = s / a per step, 0 at the end
            sigma_t, sigma_prev = sched.sigmas[i].double(), sched.sigmas[i + 1].double()
            return tuple((sg / (1 + sg**2).sqrt()).float() for sg in (sigma_t, sigma_prev))
        abar = sched.alphas_cumprod
        if hasattr(sched, "previous_timestep"):
            prev, final = int(sched.previous_timestep(t)), sched.one
        else:                               # DDIM's own rule: one stride back, whatever the spacing
            prev, final = t - sched.config.num_train_timesteps // sched.num_inference_steps, sched.final_alpha_cumprod
        abar_prev = abar[prev] if prev >= 0 else final
        return (1 - abar[t]).sqrt(), (1 - abar_prev).sqrt()
