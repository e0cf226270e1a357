"""Samplers by name, from diffusers: DDIM matches bench's former hand-written update (the oracle below),
DDPM is DDIM with eta = 1 over every step, drift's noise levels chain, every sampler runs a tiny suite,
and bad sampler input is one line, exit 2."""
import pytest
import torch

from bench.diffusion import SAMPLERS, Sampler, Schedule
from cli_runner import assert_refused, run_cli

VP_SAMPLERS = [name for name, kind in SAMPLERS.items() if kind.vp_samples]


class DDIMOracle:
    """bench's former hand-written sampler: DDIM (Song et al. 2021, Eq. 12) with leading spacing, x0
    clipped and eps re-derived from it, sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) *
    sqrt(1 - abar_t / abar_prev), mean = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat."""

    def __init__(self, schedule: Schedule, steps: int, eta: float, clip_x0: bool):
        n = schedule.num_train_timesteps
        self.timesteps = (torch.arange(steps - 1, -1, -1) * (n // steps)).long()
        self.alphas_cumprod, self.eta, self.clip_x0 = schedule.alphas_cumprod, eta, clip_x0

    def step(self, xt, eps_hat, i, noise):
        abar_t = self.alphas_cumprod[self.timesteps[i]]
        abar_prev = self.alphas_cumprod[self.timesteps[i + 1]] if i + 1 < len(self.timesteps) else torch.tensor(1.0)
        x0_hat = (xt - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()
        if self.clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
            eps_hat = (xt - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
        sigma = self.eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()
        mean = abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
        return mean + sigma * noise


def _eps_model(x, t):
    """A fixed stand-in for a denoiser: smooth in x, different at every t."""
    return torch.tanh(x) * 0.8 + 0.01 * float(t) ** 0.5


def _run(update, timesteps, x):
    for i, t in enumerate(timesteps):
        x = update(x, _eps_model(x, t), i)
    return x


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("eta, clip_x0", [(0.0, True), (0.5, True), (1.0, False), (0.0, False)])
def test_ddim_through_diffusers_matches_the_hand_written_update(beta_schedule, eta, clip_x0):
    schedule = Schedule(1000, beta_schedule)
    oracle = DDIMOracle(schedule, 10, eta, clip_x0)
    sampler = Sampler(schedule, "ddim", 10, eta, spacing="leading", clip_x0=clip_x0)
    assert torch.equal(sampler.timesteps, oracle.timesteps)
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    g_oracle, g_sampler = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    want = _run(lambda x, e, i: oracle.step(x, e, i, torch.randn(x.shape, generator=g_oracle)), oracle.timesteps, x_T)
    got = _run(lambda x, e, i: sampler.step(x, e, i, g_sampler), sampler.timesteps, x_T)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_ddpm_through_diffusers_is_ddim_with_eta_one_over_every_step():
    """The DDPM posterior (Ho et al. 2020, Eq. 7) is DDIM's update with eta = 1 between consecutive steps."""
    schedule = Schedule(100)
    oracle = DDIMOracle(schedule, 100, 1.0, clip_x0=True)
    sampler = Sampler(schedule, "ddpm", 100, spacing="leading", clip_x0=True)
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    g_oracle, g_sampler = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    want = _run(lambda x, e, i: oracle.step(x, e, i, torch.randn(x.shape, generator=g_oracle)), oracle.timesteps, x_T)
    got = _run(lambda x, e, i: sampler.step(x, e, i, g_sampler), sampler.timesteps, x_T)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("name", VP_SAMPLERS)
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_noise_levels_chain_from_step_to_step_and_end_clean(name, spacing):
    sampler = Sampler(Schedule(1000, "squaredcos_cap_v2"), name, 10, spacing=spacing)
    levels = [sampler.noise_scales(i) for i in range(len(sampler))]
    for (_, s_prev), (s_next, _) in zip(levels, levels[1:]):
        assert torch.allclose(s_prev, s_next, atol=1e-6)
    assert levels[0][0] > 0.95 and levels[-1][1] < 1e-3


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_tiny_suite_runs_with_every_sampler(monkeypatch, capsys, tmp_path, name):
    monkeypatch.chdir(tmp_path)
    method = "drift" if SAMPLERS[name].vp_samples else "baseline"
    clip = "true" if SAMPLERS[name].clip is not None else "false"
    (tmp_path / "bench.toml").write_text(f'[suite]\nname = "s"\nseeds = 1\nmethods = ["{method}"]\n'
                                         f'[sample]\nsampler = "{name}"\nclip_x0 = {clip}\n'
                                         '[metrics]\nnames = ["ssim"]\n')
    code, out, err = run_cli(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local",
                             "--results", "results")
    assert code in (0, None), out + err
    assert len(list((tmp_path / "results" / "s").glob("runs/*/*/*/*/eval/seed=0/samples.npz"))) == 1


@pytest.mark.parametrize("toml, fragment", [
    ('[sample]\nsampler = "plms"\n',
     "sample.sampler in bench.toml + preset tiny + command-line flags must be one of 'ddim', 'ddpm'"),
    ('[suite]\nmethods = ["baseline", "drift"]\n[sample]\nsampler = "euler"\nclip_x0 = false\n',
     "method drift cannot sample with sampler 'euler': its reverse shifts samples x_t = a_t x0 + s_t eps"),
    ('[sample]\nsampler = "euler"\n', "sampler 'euler' cannot clip x0; set [sample] clip_x0 = false"),
])
def test_bad_sampler_input_is_one_line_exit_2(monkeypatch, capsys, tmp_path, toml, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml)
    assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--results", "results",
                   store=tmp_path / "results", says=fragment)


@pytest.mark.parametrize("name", VP_SAMPLERS + ["euler"])
def test_a_centred_diffusion_samples_back_to_its_data(name):
    """[train] center_data: with the true noise as eps_hat, every sampler walks x_T back to the x0 that
    the schedule noised, mean included (a sampler that ignored mu would land mu away)."""
    mean = (0.6, -0.2, 0.3)
    schedule = Schedule(1000, "squaredcos_cap_v2", mean=mean)
    sampler = Sampler(schedule, name, steps=10, clip_x0=False)
    x0 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    mu = torch.tensor(mean).view(1, 3, 1, 1)
    x = sampler.start(eps)
    gen = torch.Generator().manual_seed(2)
    for i, t in enumerate(sampler.timesteps):
        abar = schedule.alphas_cumprod[int(t)]
        model_in = sampler.model_input(x, i)
        eps_hat = (model_in - mu - abar.sqrt() * (x0 - mu)) / (1 - abar).sqrt()   # the oracle denoiser
        x = sampler.step(x, eps_hat, i, gen)
    assert torch.allclose(x, x0, atol=1e-3), (x - x0).abs().max()
    t_max = torch.full((2,), 999)
    assert torch.allclose(schedule.add_noise(x0, eps, t_max), eps + mu, atol=1e-3)   # x_T ~ N(mu, I)
