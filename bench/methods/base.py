"""The conditioning-method interface: one class, a few hooks, one vocabulary.

Notation shared by every hook (DDPM, Ho et al. 2020):
  x0      clean images, model space (B, C, H, W) in [-1, 1]
  xt      noised images  x_t = sqrt(abar_t) (x0 - mu) + sqrt(1 - abar_t) eps + mu, mu the data's
          per-channel mean ([train] center_data, else 0; Schedule.add_noise)
  t       integer timesteps (B,)
  eps     the Gaussian noise; eps_hat the denoiser's estimate of it
  labels  class indices (B,)
  cond    the cross-attention tokens handed to the U-Net (B, L, D)
  sampler the suite's diffusers scheduler (bench.diffusion.Sampler); `step` wraps its update

Classifier-free guidance (Ho & Salimans 2022) is the suite's, for every method alike: in training
the condition becomes `null_condition` with probability p_uncond ([train] p_uncond); at sampling
  eps_hat = eps_u + g (eps_c - eps_u),  eps_c = eps_theta(x_t, t, cond),  eps_u = eps_theta(x_t, t, null)
with g = [sample] guidance (g = 1: one conditional call). A method without a condition to drop sets
`classifier_free_guidance = False`; the report names it.

The plain class-conditional baseline is this class itself; a method subclass sets `name`,
`paper`, a frozen `Params` dataclass, its paper's `claims` (bench.methods.claims), and overrides
only the hooks where it differs.
Defining a subclass registers it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.methods.claims import Claim
from bench.models.unet import unet_forward

if TYPE_CHECKING:
    from bench.diffusion import Sampler, SamplerKind, Schedule
    from bench.methods.context import MethodContext

REGISTRY: dict[str, type["ConditioningMethod"]] = {}


class DenoisingPass(NamedTuple):
    loss: torch.Tensor      # weighted epsilon-MSE
    xt: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor


@dataclass(frozen=True)
class NoParams:
    pass


class ConditioningMethod:
    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    classifier_free_guidance: ClassVar[bool] = True  # False: the suite's p_uncond and guidance do not apply
    claims: ClassVar[tuple[Claim, ...]] = ()  # the paper's findings, checked by the report's claims section
    spatial_condition: ClassVar[bool] = False  # True: it conditions on an embedding of the image itself (`embed`,
    #   `embedding_tokens`), so a grid of embeddings conditions a large image (bench/engine/large_image.py)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name", "") != "":  # "" or no name of its own: a base for other methods
            _check_declaration(cls)
            taken = REGISTRY.get(cls.name)
            # The same class imported again (a Ray worker loading a plug-in, a test re-import) replaces
            # itself; another class under a taken name would silently stand in for that method.
            if taken is not None and method_class_path(taken) != method_class_path(cls):
                raise BenchError(f"method name {cls.name!r} of {method_class_path(cls)} is already registered by "
                                 f"{method_class_path(taken)}; give the plug-in class another `name`")
            REGISTRY[cls.name] = cls

    @classmethod
    def needs_expert(cls, params) -> bool:
        """Whether training or sampling with `params` uses the expert (`ctx.expert()`): the runner
        then trains it first and holds this method's jobs back until it exists. Default: no."""
        return False

    @classmethod
    def claims_for(cls, params) -> tuple[Claim, ...]:
        """The claims a variant with `params` is held to. Default: all of `claims`; a method whose
        paper claims nothing for some settings (drift at delta = 0) narrows them."""
        return cls.claims

    @classmethod
    def check(cls, params, unet: nn.Module) -> None:
        """Plan-time dry run: that `params` resolve on this U-Net architecture (module paths, an
        encoder's name and weights file), before any data or weights are loaded. `unet` lives on
        the meta device: its forward passes cost nothing. Raise ValueError (or BenchError) saying
        which parameter is wrong. Default: nothing to check."""

    def __init__(self, params, ctx: "MethodContext"):
        self.params = params
        self.ctx = ctx

    # ---- modules -----------------------------------------------------------------------
    def build_modules(self, unet: nn.Module) -> dict[str, nn.Module]:
        """Trainable modules besides `unet`, checkpointed with it. Default: a class-embedding
        table, one token per class, the last row the null (unconditional) token."""
        return {"class_embedding": nn.Embedding(self.ctx.num_classes + 1, self.ctx.token_dim)}

    def prepare(self, model: "Denoiser") -> None:
        """One-off set-up after the modules exist (hooks, frozen helpers). Default: nothing."""

    # ---- training ----------------------------------------------------------------------
    def train_condition(self, model: "Denoiser", x0, labels, generator) -> torch.Tensor:
        """Cross-attention tokens for a training batch (label dropout is applied to them afterwards)."""
        return model.modules_["class_embedding"](labels)[:, None, :]

    def null_condition(self, model: "Denoiser", n: int) -> torch.Tensor:
        """The unconditional tokens (n, L, D) of classifier-free guidance. Default: the class table's
        last row, trained only by label dropout."""
        if "class_embedding" not in model.modules_:
            raise NotImplementedError(f"method {self.name} has no class_embedding table: override "
                                      "null_condition, or set classifier_free_guidance = False")
        return model.modules_["class_embedding"].weight[-1].expand(n, 1, -1)

    def drop_condition(self, model: "Denoiser", cond, generator) -> torch.Tensor:
        """Label dropout: each row of `cond` becomes the null condition with probability p_uncond. At
        p_uncond = 0 nothing is drawn, so the training stream is the one without guidance."""
        drop = self.dropped_rows(len(cond), generator, cond.device)
        if drop is None:
            return cond
        return torch.where(drop[:, None, None], self.null_condition(model, len(cond)).to(cond.dtype), cond)

    def dropped_rows(self, n: int, generator, device) -> torch.Tensor | None:
        """Label dropout's rows: each of n is dropped with probability p_uncond (None, and nothing drawn,
        when no condition is ever dropped)."""
        if self.ctx.p_uncond == 0 or not self.classifier_free_guidance:
            return None
        return torch.rand(n, generator=generator, device=device) < self.ctx.p_uncond

    def add_noise(self, schedule: "Schedule", x0, eps, t) -> torch.Tensor:
        return schedule.add_noise(x0, eps, t)

    def target(self, schedule: "Schedule", x0, eps, t) -> torch.Tensor:
        """What eps_hat regresses onto."""
        return eps

    def train_noise(self, x0, generator) -> torch.Tensor:
        """eps of the forward process."""
        return torch.randn(x0.shape, generator=generator, device=x0.device)

    def denoising_pass(self, model: "Denoiser", schedule: "Schedule", x0, labels, generator) -> "DenoisingPass":
        """One noising + denoising of a batch, and its weighted epsilon-MSE."""
        t = schedule.sample_timesteps(x0.shape[0], generator, x0.device)
        eps = self.train_noise(x0, generator)
        xt = self.add_noise(schedule, x0, eps, t)
        cond = self.drop_condition(model, self.train_condition(model, x0, labels, generator), generator)
        eps_hat = self.denoise(model, xt, t, cond)
        return DenoisingPass(schedule.weighted_mse(eps_hat, self.target(schedule, x0, eps, t), t), xt, t, eps)

    def loss(self, model: "Denoiser", schedule: "Schedule", x0, labels, generator) -> dict[str, torch.Tensor]:
        """The training objective; must hold `loss` (other terms are logged)."""
        return {"loss": self.denoising_pass(model, schedule, x0, labels, generator).loss}

    # ---- sampling ----------------------------------------------------------------------
    def sample_condition(self, model: "Denoiser", labels, generator) -> torch.Tensor:
        """Cross-attention tokens for target labels at sampling time."""
        return model.modules_["class_embedding"](labels)[:, None, :]

    def initial_noise(self, shape, generator, device) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device)

    def denoise(self, model: "Denoiser", xt, t, cond) -> torch.Tensor:
        """eps_hat = eps_theta(x_t, t, cond); guidance or feature projection go here."""
        return model(xt, t, cond)

    def sampling_denoise(self, model: "Denoiser", xt, t, cond, labels) -> torch.Tensor:
        """The denoiser call at sampling time (labels are the targets): `denoise`, guided when g != 1,
        the conditional and null rows stacked into one U-Net call."""
        if not self.guided():
            return self.denoise(model, xt, t, cond)
        null = self.null_condition(model, len(cond)).to(cond.dtype)
        return self.guided_call(lambda x, tt: self.denoise(model, x, tt, torch.cat([cond, null])), xt, t)

    def guided_call(self, denoise_pair, xt, t) -> torch.Tensor:
        """Classifier-free guidance from one U-Net call on the batch stacked twice: `denoise_pair(x, t)`
        predicts the first half conditionally and the second half with the null condition."""
        eps_c, eps_u = denoise_pair(torch.cat([xt, xt]), torch.cat([t, t])).chunk(2)
        return self.guide(eps_c, eps_u)

    def guided(self) -> bool:
        """Whether sampling contrasts the condition with the null one (g != 1 and a condition to drop)."""
        return self.ctx.guidance != 1 and self.classifier_free_guidance

    def guide(self, eps_c, eps_u) -> torch.Tensor:
        """Classifier-free guidance's combination of the conditional and the null prediction."""
        return eps_u + self.ctx.guidance * (eps_c - eps_u)

    def step(self, sampler: "Sampler", xt, eps_hat, i: int, generator) -> torch.Tensor:
        """x at the next level from x_t: the sampler's step (its noise, if any, drawn from `generator`)."""
        return sampler.step(xt, eps_hat, i, generator)

    @classmethod
    def check_sampler(cls, params, kind: "SamplerKind") -> None:
        """Raise ValueError naming what is missing if this method cannot sample with `kind`."""

    # ---- large images (spatial_condition methods only) ----------------------------------------
    def embed(self, images) -> torch.Tensor:
        """Embeddings z (B, E) of images (B, C, H, W) in [-1, 1] at the data set's size, pixels in latent mode
        too: a grid of them, one per tile of a real large image, conditions a large one."""
        raise NotImplementedError(f"method {self.name} sets spatial_condition but does not override embed")

    def embedding_tokens(self, model: "Denoiser", z) -> torch.Tensor:
        """The cross-attention tokens (B, L, D) of embeddings z (B, E), as training made them."""
        raise NotImplementedError(f"method {self.name} sets spatial_condition but does not override "
                                  "embedding_tokens")

    # ---- export ------------------------------------------------------------------------------
    def export_state(self, model: "Denoiser", sampler: "Sampler") -> dict[str, torch.Tensor]:
        """What sampling with `sampler` needs besides the weights, computed now from what only a run has
        (the train split, an encoder, the expert), so an exported model samples without them (`bench
        export`, bench/engine/pipeline.py). Raise BenchError saying why if the method cannot do without them.
        Default: nothing."""
        return {}

    def load_export_state(self, state: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        """Take back `export_state` in a method built without data, before `build_modules`; `weights`
        are the saved modules' tensors (their shapes size modules whose width came from the run).
        Default: nothing."""

    # ---- evaluation --------------------------------------------------------------------------
    def evaluation_features(self, model: "Denoiser", x0, labels) -> dict | None:
        """Arrays an evaluation stores as features.npz, e.g. the method's own features of `x0`: the
        held-out real images of the scored classes (model space) the engine hands over, with their
        `labels`, for the report. Default: none."""
        return None

    # ---- names ---------------------------------------------------------------------------
    @property
    def variant(self) -> str:
        return canonical_variant(self.name, self.params)


NAME_RESERVED = ":,="  # the variant syntax `name:key=value,...` splits on these


def _check_declaration(cls: type) -> None:
    """What bench reads from a method class before running any of it: a `name` the variant syntax can
    hold, `paper` text, `Params` a dataclass and `claims` a tuple of Claim (BenchError naming the class and the fix)."""
    name = cls.__dict__["name"]
    if not isinstance(name, str) or name != name.strip() or any(c in name for c in NAME_RESERVED):
        raise BenchError(f"method name {name!r} of {method_class_path(cls)} must be a non-empty string without "
                         f"surrounding spaces or any of {' '.join(NAME_RESERVED)}; set e.g. name = \"my-method\"")
    if not isinstance(cls.paper, str):
        raise BenchError(f"paper of method {name!r} ({method_class_path(cls)}) must be a string, got {cls.paper!r}")
    if not (isinstance(cls.Params, type) and dataclasses.is_dataclass(cls.Params)):
        raise BenchError(f"Params of method {name!r} ({method_class_path(cls)}) must be a dataclass, got "
                         f"{cls.Params!r}; decorate it with @dataclass(frozen=True)")
    if not (isinstance(cls.claims, tuple) and all(isinstance(c, Claim) for c in cls.claims)):
        raise BenchError(f"claims of method {name!r} ({method_class_path(cls)}) must be a tuple of "
                         f"bench.methods.claims.Claim, got {cls.claims!r}")


def method_class_path(cls: type) -> str:
    """`module.QualName` of a method class: what tells two classes of the same `name` apart."""
    return f"{cls.__module__}.{cls.__qualname__}"


def canonical_variant(name: str, params) -> str:
    """`name` when every parameter is at its default, else `name:k=v,...` of the changed ones."""
    default = type(params)()
    changed = [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)
               if getattr(params, f.name) != getattr(default, f.name)]
    if not changed:
        return name
    return name + ":" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(changed))


def format_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "/".join(format_value(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


class Denoiser(nn.Module):
    """The U-Net plus a method's trainable modules: what is trained, EMA-averaged and saved. Its output is
    eps_hat, whatever the U-Net predicts ([train] prediction: the schedule converts)."""

    def __init__(self, unet: nn.Module, modules: dict[str, nn.Module], schedule: "Schedule"):
        super().__init__()
        self.unet = unet
        self.modules_ = nn.ModuleDict(modules)
        self.schedule = schedule

    def forward(self, xt, t, cond):
        return self.schedule.eps_from_output(unet_forward(self.unet, xt, t, cond), xt, t)
