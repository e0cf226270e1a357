"""Latent Drifting (Yeganeh et al. 2024, arXiv 2412.20651): a signed shift delta of the mean
of the noise distribution, in the forward and the reverse process.

Paper:    noise ~ N(delta, I);  z_T ~ N(delta, I);  p(x_{t-1} | x_t) = N(mu_theta(x_t, t) + delta, Sigma)
Forward:  x_t = a_t x0 + s_t (eps + delta),   a_t = sqrt(abar_t), s_t = sqrt(1 - abar_t), eps ~ N(0, I)
          so q(x_t | x0) = N(a_t x0 + s_t delta, s_t^2 I)
Target:   eps_theta regresses onto eps (`target = "eps"`) or onto the drawn noise eps + delta
          (`"shifted"`); no official training code exists, so it is a parameter.
          (With the suite's `center_data`, x0 stands for x0 - mu throughout: the schedule and the
          sampler add the data mean mu around everything written here, bench/diffusion.py.)
Reverse:  `consistent` (default): y_t = x_t - s_t delta is an ordinary diffusion (q(y_t | x0) =
          N(a_t x0, s_t^2 I)), whose noise the network estimates as eps_hat (eps_hat - delta under
          "shifted"). Each update removes s_t delta, takes the sampler's standard step on y, and adds
          s_prev delta back: the mean shift runs from delta at z_T to about 0 at x_0 and never
          accumulates, so sampling matches training under every sampler whose samples are x_t
          (ddim, ddpm, dpmsolver++, unipc; a multistep solver's history is all in y). Samplers of
          x0 + sigma_t eps (euler) are refused.
          `literal`: the unofficial inference code's reading of mu_theta + delta, the network's output
          used as it is and a shift added after every update, with delta the *total* shift spread
          over the N steps (delta / N each), so a result does not depend on the step count. (Adding
          the full delta at each of N steps shifts the image by N delta, 1.0 in [-1, 1] units at 20
          steps and delta = 0.05: every sample saturates.)
Notation: delta = `delta` (one value, or one per channel), s_t, s_prev = sampler.noise_scales(i).

Default target: "eps". Under the consistent reverse the two targets give the same sampler (eps_hat
and eps_hat - delta are the one noise estimate of y); they differ only in what the network regresses,
and on the validation splits they reach the same error (README, "What the methods' settings rest on").
With nothing to choose on error, "eps" keeps the regression target N(0, I) whatever delta is, the loss
on the baseline's scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from bench.diffusion import SAMPLERS
from bench.methods.base import ConditioningMethod
from bench.methods.claims import LOWER, Claim


@dataclass(frozen=True)
class DriftParams:
    delta: tuple[float, ...] = (0.05,)   # one value, or one per image channel
    target: Literal["eps", "shifted"] = "eps"   # eps_theta regresses onto eps, or onto eps + delta
    reverse: Literal["consistent", "literal"] = "consistent"  # see the module docstring

    def __post_init__(self):
        if not self.delta:
            raise ValueError("delta needs at least one value")


class Drift(ConditioningMethod):
    """Shift the mean of the forward and reverse noise by delta."""

    name = "drift"
    paper = "Yeganeh et al. 2024, Latent Drifting in Diffusion Models, arXiv 2412.20651"
    Params = DriftParams
    # The paper reports FID/KID (Inception) of a shifted model against the unshifted one; bench's
    # FID/KID in the scorer's feature space is the one every suite computes.
    claims = tuple(Claim(f"a noise-mean shift delta != 0 lowers {kind.upper()}", f"{kind}[scorer]", LOWER,
                         None, "Stable Diffusion 2.1 fine-tuned in its latent space to a medical domain, "
                         "delta in {+-0.05, +-0.1}", "Yeganeh et al. 2024, arXiv 2412.20651")
                   for kind in ("fid", "kid"))

    @classmethod
    def claims_for(cls, params):
        return cls.claims if any(params.delta) else ()   # delta = 0 is the baseline itself

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

    @classmethod
    def check_sampler(cls, params, kind):
        if not kind.vp_samples:
            raise ValueError("its reverse shifts samples x_t = a_t x0 + s_t eps; use one of "
                             + ", ".join(name for name, k in SAMPLERS.items() if k.vp_samples))

    def step(self, sampler, xt, eps_hat, i, generator):
        delta = self._delta(xt)
        if self.params.reverse == "literal":
            return super().step(sampler, xt, eps_hat, i, generator) + delta / len(sampler)
        # 1. the noise estimate of y: the network's output, less delta if it learnt eps + delta
        eps_y = eps_hat - delta if self.params.target == "shifted" else eps_hat
        # 2. y_t = x_t - s_t delta, one standard step on y, then x_prev = y_prev + s_prev delta
        s_t, s_prev = (s.to(xt.device, xt.dtype) for s in sampler.noise_scales(i))
        return super().step(sampler, xt - s_t * delta, eps_y, i, generator) + s_prev * delta
