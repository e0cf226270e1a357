"""Feature-guided score diffusion (Kadkhodaie, Mallat & Simoncelli 2024, arXiv 2410.11646): one network
gives the score and the features that condition it.

phi(x_t)   the spatial means mean_hw(a_l) of the channel activations a_l (B, C_l, H_l, W_l) at the
           selected layers l of the same U-Net: the mid block and every decoder block except the last
           (the paper's phi, Sec. 3). The last decoder block's output feeds eps_hat directly: pinning its
           channel means fixes the colour of eps_hat, and x0_hat multiplies that error, so the authors
           never match it and neither may a variant here.
Matching   "additive mean matching" at every selected layer, via forward hooks replacing outputs:
               a_l <- a_l - mean_hw(a_l) + phi_l^target
           (`match_std`: a_l <- (a_l - mean_hw(a_l)) / std_hw(a_l) * std_l^target + phi_l^target)
           The same layers and mode at training and at sampling. (The authors train with mid-block
           matching and sample matching the mid block and the decoder; one network must be used the
           way it was trained, so here both passes match the same set: `layers = mid_block` is the
           authors' training set.)
Training   the conditioner of image x0 is another random train image x0' of the same class; pass 1
           computes phi of it with a plain forward, pass 2 denoises x_t with matching to it; L = the
           suite's (min-SNR weighted) epsilon MSE. Gradients flow through both passes: features and score
           are learned together.
           `conditioner` (a named deviation, default "clean"): "noisy" noises x0' to the input's level t
           (own noise), as the paper's sampler does (its `noisy_conditioner` switch); "clean" takes phi of
           x0' at t = 0. With 16 px tiles a noisy conditioner's phi carries little class information at the
           high levels where a sample's colour and class are decided, so the network learns to ignore the
           matching there; "clean" was chosen on the validation split (README, "What the methods' settings
           rest on").
Guidance   the suite's classifier-free guidance, as for every method, with the projection as the
           condition (not in the paper): in training, pass 2 is left unmatched (a plain forward) in a
           p_uncond fraction of rows; at sampling eps_u is the unmatched prediction and
               eps_hat = eps_u + g (eps_c - eps_u),  eps_c the prediction matched to the class centroid.
Sampling   phi^target for class c at level t = the centroid of phi over `n_refs` fixed class-c train
           images (the paper: at least 64), each noised to the conditioner's level (t, or 0 when clean)
           with `n_draws` noise draws; computed once per level for every class and cached (in the
           methods' cache, keyed by the weights, so the evaluations of one model at several seeds share
           them). The matching is applied at every step.
Report     evaluations store phi of the held-out real images of the scored split at a few noise levels
           and the accuracy of their nearest class centroid at that level (features.npz): the paper's
           clustering claim, measured.
The paper's network has no class input, so the cross-attention token is a fixed zero token.
The authors' coarse-to-fine stochastic sampler is not used: every method uses the suite's sampler.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load, save

from bench.core.pixels import pixel_values
from bench.core.seeds import reference_noise_seed
from bench.core.store import computed_once
from bench.methods.base import ConditioningMethod
from bench.methods.claims import HIGHER, Claim
from bench.models.unet_modules import check_feature_maps, resolve_module, weights_digest

STD_EPS = 1e-5
FEATURE_LEVELS = (0.0, 0.1, 0.5, 0.9)  # fractions of the schedule at which evaluations store phi of real
#                                        images (0: the level of a clean conditioner)


LAST_DECODER_BLOCK = "up_blocks.-1"


@dataclass(frozen=True)
class FGScoreParams:
    layers: tuple[str, ...] = ("mid_block", "up_blocks.:-1")  # U-Net modules whose outputs are matched;
    #                                  a slice of a ModuleList ("up_blocks.:-1") means each block in it
    match_std: bool = False         # also match channel std (authors' training default: off)
    n_refs: int = 64                # reference train images per class for the sampling centroids
    n_draws: int = 4                # noise draws per reference and level, averaged into the centroid
    ref_seed: int = 0               # picks the references and seeds their noise at each t
    conditioner: str = "clean"      # "clean": phi of the conditioner image at t = 0; "noisy": noised to the
    #                                  input's level t, as in the paper (see the module docstring)

    def __post_init__(self):
        if not self.layers or not all(self.layers):
            raise ValueError(f"layers needs U-Net module paths separated by '/', got {'/'.join(self.layers)!r}")
        if any(p == "up_blocks" or p.startswith(LAST_DECODER_BLOCK) for p in self.layers):
            raise ValueError("layers may not include the last decoder block (it feeds eps_hat directly); "
                             "use up_blocks.:-1 for every other decoder block")
        if self.conditioner not in ("noisy", "clean"):
            raise ValueError(f"conditioner must be 'noisy' or 'clean', got {self.conditioner!r}")
        if self.n_refs < 1 or self.n_draws < 1:
            raise ValueError(f"n_refs and n_draws must be >= 1, got {self.n_refs} and {self.n_draws}")


def layer_paths(unet, layers: tuple[str, ...]) -> list[str]:
    """Module paths of the matched layers; a ModuleList or a slice of one ("up_blocks.:-1") expands to
    each of its blocks. Refuses (ValueError) any layer in the last decoder block."""
    paths = []
    for path in layers:
        head, _, last = path.rpartition(".")
        if ":" in last:
            blocks = resolve_module(unet, head)
            picked = range(len(blocks))[slice(*(int(p) if p else None for p in last.split(":")))]
            paths += [f"{head}.{i}" for i in picked]
            continue
        module = resolve_module(unet, path)
        paths += [f"{path}.{i}" for i in range(len(module))] if isinstance(module, torch.nn.ModuleList) else [path]
    forbidden = {id(m) for m in resolve_module(unet, LAST_DECODER_BLOCK).modules()}
    for path in paths:
        if id(resolve_module(unet, path)) in forbidden:
            raise ValueError(f"fgscore layer {path} is in the last decoder block, whose output feeds eps_hat "
                             "directly; match the mid block and the other decoder blocks (up_blocks.:-1)")
    return paths


def channel_stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean_hw, std_hw) of activations (B, C, H, W), each (B, C), in float32."""
    a = a.float().flatten(2)
    return a.mean(2), a.std(2, unbiased=False)


def match(a: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
    """Replace the channel means (and stds, if `std` is given) of `a` by the targets (B, C)."""
    a_mean, a_std = channel_stats(a)
    centred = a.float() - a_mean[..., None, None]
    if std is not None:
        centred = centred / (a_std[..., None, None] + STD_EPS) * std[..., None, None]
    return (centred + mean[..., None, None]).to(a.dtype)


def pack_stats(stats: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-layer (mean, std) pairs as flat named CPU tensors ("0.mean", "0.std", ...), for safetensors."""
    return {f"{i}.{k}": v.contiguous().cpu() for i, pair in enumerate(stats) for k, v in zip(("mean", "std"), pair)}


def unpack_stats(saved: dict[str, torch.Tensor], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The inverse of `pack_stats`, on `device`."""
    return [(saved[f"{i}.mean"].to(device), saved[f"{i}.std"].to(device)) for i in range(len(saved) // 2)]


def image_keys(x: torch.Tensor) -> torch.Tensor:
    """An int64 key per image, equal for an image and its rotations/flips (the training
    augmentation): a fixed random projection of its per-channel uint8 histograms."""
    b, c = x.shape[:2]
    u = pixel_values(x).long().flatten(2)          # (B, C, HW)
    offsets = (torch.arange(b * c, device=x.device) * 256).view(b, c, 1)
    hist = torch.bincount((u + offsets).flatten(), minlength=b * c * 256).view(b, c * 256)
    weights = torch.randint(0, 2**31, (c * 256,), generator=torch.Generator().manual_seed(0)).to(x.device)
    return (hist * weights).sum(1)


class FGScore(ConditioningMethod):
    """Condition by projecting the U-Net's own channel means onto those of same-class images."""

    name = "fgscore"
    paper = ("Kadkhodaie, Mallat & Simoncelli 2024, Feature-guided score diffusion for sampling "
             "conditional densities, arXiv 2410.11646")
    Params = FGScoreParams
    # No leaderboard metric compares feature clustering with the baseline's (which has no phi); the
    # report's phi PCA figure and nearest-centroid table show it instead.
    claims = (Claim("the features phi cluster by class", "", HIGHER, None, "the authors' network and "
                    "stochastic coarse-to-fine sampler", "Kadkhodaie, Mallat & Simoncelli 2024, arXiv 2410.11646",
                    untestable="no method-vs-baseline metric measures clustering (the baseline has no phi); see "
                    "the phi PCA figure and the nearest-centroid accuracy table"),)

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self._captured: list | None = None     # set while phi() runs: the stats of each layer
        self._targets: list | None = None      # set while matched(): (mean, std) per layer
        self._unmatched: torch.Tensor | None = None  # set while matched(): rows left unmatched (B,)
        self._train_set = None                 # (x, y, keys) of the train split
        self._refs = None                      # (x, y) of the fixed sampling references
        self._centroids: dict[int, list] = {}  # level -> per layer (mean, std) centroids of every class
        self._weights_key: str | None = None   # names the centroids of these weights in the cache

    def build_modules(self, unet):
        return {}  # no class embedding: the network has no class input

    @classmethod
    def check(cls, params, unet):
        check_feature_maps(unet, layer_paths(unet, params.layers), "layers")

    def prepare(self, model):
        for index, path in enumerate(layer_paths(model.unet, self.params.layers)):
            resolve_module(model.unet, path).register_forward_hook(partial(self._hook, index))

    def _hook(self, index, module, inputs, output):
        if self._targets is not None:
            mean, std = self._targets[index]
            matched = match(output, mean, std if self.params.match_std else None)
            if self._unmatched is None:
                return matched
            return torch.where(self._unmatched[:, None, None, None], output, matched)
        if self._captured is not None:
            self._captured.append(channel_stats(output))
        return None

    def null_condition(self, model, n):
        """The fixed zero token: every condition of this method (the network has no class input)."""
        return torch.zeros(n, 1, self.ctx.token_dim, device=self.ctx.device)

    def train_condition(self, model, x0, labels, generator):
        return self.null_condition(model, len(x0))

    def sample_condition(self, model, labels, generator):
        return torch.zeros(len(labels), 1, self.ctx.token_dim, device=labels.device)

    # ---- the two passes ------------------------------------------------------------------------
    def phi(self, model, xt, t) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mean_hw, std_hw) at each selected layer from a plain forward pass (gradients kept)."""
        self._captured = []
        try:
            self.denoise(model, xt, t, self.null_condition(model, len(xt)))
            return self._captured
        finally:
            self._captured = None

    @contextmanager
    def _matching(self, targets, unmatched):
        self._targets, self._unmatched = targets, unmatched
        try:
            yield
        finally:
            self._targets = self._unmatched = None

    def matched_denoise(self, model, xt, t, targets, unmatched=None) -> torch.Tensor:
        """eps_hat with every selected layer's channel statistics replaced by `targets`, except in the
        rows where `unmatched` is True (a plain forward there)."""
        with self._matching(targets, unmatched):
            return self.denoise(model, xt, t, self.null_condition(model, len(xt)))

    # ---- training ------------------------------------------------------------------------------
    def conditioner_level(self, t: torch.Tensor) -> torch.Tensor:
        """The noise level at which the conditioner's phi is computed for inputs at level t."""
        return t if self.params.conditioner == "noisy" else torch.zeros_like(t)

    def train_set(self):
        if self._train_set is None:
            x, y = self.ctx.train_images()
            self._train_set = x, y, image_keys(x)
        return self._train_set

    def conditioners(self, x0, labels, generator) -> torch.Tensor:
        """For each image, another train image of its class, uniformly (itself only if it is alone)."""
        x, y, keys = self.train_set()
        same = labels.to(y.device)[:, None] == y[None, :]
        other = same & (image_keys(x0).to(y.device)[:, None] != keys[None, :])
        weights = torch.where(other.any(1, keepdim=True), other, same).float()
        return x[torch.multinomial(weights, 1, generator=generator).squeeze(1)].to(x0.device)

    def loss(self, model, schedule, x0, labels, generator):
        t = schedule.sample_timesteps(x0.shape[0], generator, x0.device)
        eps = self.train_noise(x0, generator)
        xt = self.add_noise(schedule, x0, eps, t)
        x0_cond = self.conditioners(x0, labels, generator)
        eps_cond = self.train_noise(x0_cond, generator)
        tc = self.conditioner_level(t)
        targets = self.phi(model, self.add_noise(schedule, x0_cond, eps_cond, tc), tc)  # pass 1
        unmatched = self.dropped_rows(len(x0), generator, x0.device)
        eps_hat = self.matched_denoise(model, xt, t, targets, unmatched)              # pass 2
        return {"loss": schedule.weighted_mse(eps_hat, self.target(schedule, x0, eps, t), t)}

    # ---- sampling ------------------------------------------------------------------------------
    def references(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`n_refs` train images per class (all of a smaller class), fixed by `ref_seed`."""
        if self._refs is None:
            x, y = self.ctx.train_images()
            g = torch.Generator().manual_seed(self.params.ref_seed)
            picks = []
            for c in range(self.ctx.num_classes):
                members = (y == c).nonzero().squeeze(1)
                picks.append(members[torch.randperm(len(members), generator=g)[:self.params.n_refs].to(y.device)])
            pick = torch.cat(picks)
            self._refs = x[pick], y[pick]
        return self._refs

    def reference_noise(self, x: torch.Tensor, t: int, draw: int) -> torch.Tensor:
        """The noise of draw `draw` for the references `x` at level t: fixed by (ref_seed, t, draw)."""
        g = torch.Generator().manual_seed(reference_noise_seed(self.params.ref_seed, int(t), draw))
        return torch.randn(x.shape, generator=g).to(x.device)

    def class_centroids(self, model, t: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the (mean, std) centroids (num_classes, C_l) of phi over every class's references,
        each noised to level t with `n_draws` draws. Computed once per t for these weights (they are
        fixed while sampling) and, with a cache folder, shared with the other evaluations of the model."""
        t = int(t)
        if t not in self._centroids:
            path = self._cache_file(model, t)
            if path is None:
                self._centroids[t] = self._compute_centroids(model, t)
            else:
                saved = load(computed_once(path, lambda: save(pack_stats(self._compute_centroids(model, t)))))
                self._centroids[t] = unpack_stats(saved, self.ctx.device)
        return self._centroids[t]

    def _cache_file(self, model, t: int) -> Path | None:
        """Where the centroids of these weights, data, schedule and parameters at level t are kept."""
        if self.ctx.cache_dir is None:
            return None
        if self._weights_key is None:
            self._weights_key = weights_digest(model, repr((
                dataclasses.asdict(self.params), self.ctx.data.fingerprint(), self.ctx.schedule.beta_schedule,
                self.ctx.schedule.num_train_timesteps)))
        return Path(self.ctx.cache_dir) / "fgscore-centroids" / self._weights_key / f"t{t:04d}.safetensors"

    @torch.no_grad()
    def _compute_centroids(self, model, t: int, batch_size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The class means of phi over the references and their noise draws at level t (zeros for a class
        without references)."""
        x, y = self.references()
        onehot = torch.nn.functional.one_hot(y, self.ctx.num_classes).float()
        weights = (onehot / onehot.sum(0).clamp(min=1)).T / self.params.n_draws     # (K, N_refs)
        sums = None
        for draw in range(self.params.n_draws):
            eps = self.reference_noise(x, t, draw)
            for rows in torch.arange(len(x), device=x.device).split(batch_size):
                tt = torch.full((len(rows),), t, device=x.device, dtype=torch.long)
                stats = self.phi(model, self.add_noise(self.ctx.schedule, x[rows], eps[rows], tt), tt)
                with torch.autocast(x.device.type, enabled=False):  # statistics stay float32 under bf16 autocast
                    part = [(weights[:, rows] @ m, weights[:, rows] @ s) for m, s in stats]
                sums = part if sums is None else [(a + m, b + s) for (a, b), (m, s) in zip(sums, part)]
        return sums

    def centroids(self, model, labels, t) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the (mean, std) centroid of phi for each target row's class at level t."""
        if not bool((t == t[0]).all()):
            raise ValueError("fgscore centroids need one noise level per batch")
        index = labels.to(self.ctx.device)
        level = int(self.conditioner_level(t)[0])
        return [(mean[index], std[index]) for mean, std in self.class_centroids(model, level)]

    def sampling_denoise(self, model, xt, t, cond, labels):
        targets = self.centroids(model, labels, t)
        if not self.guided():
            return self.matched_denoise(model, xt, t, targets)
        both = [(torch.cat([m, m]), torch.cat([s, s])) for m, s in targets]
        unmatched = torch.arange(2 * len(xt), device=xt.device) >= len(xt)   # the second half: the null prediction
        return self.guided_call(lambda x, tt: self.matched_denoise(model, x, tt, both, unmatched), xt, t)

    def export_state(self, model, sampler):
        """The centroids of the conditioner's levels at the sampler's timesteps (an exported model has no
        references to compute them)."""
        sampler.reset()
        levels = {int(level) for level in self.conditioner_level(torch.as_tensor(sampler.timesteps))}
        return {f"t{level}.{key}": v for level in sorted(levels)
                for key, v in pack_stats(self.class_centroids(model, level)).items()}

    def load_export_state(self, state, weights):
        levels: dict[int, dict] = {}
        for key, value in state.items():
            level, _, stat = key.partition(".")
            levels.setdefault(int(level[1:]), {})[stat] = value
        self._centroids = {t: unpack_stats(saved, self.ctx.device) for t, saved in levels.items()}

    def flat(self, stats: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """phi as one vector per row: the layers' channel means (and stds with `match_std`), concatenated."""
        return torch.cat([s for pair in stats for s in (pair if self.params.match_std else pair[:1])], 1)

    def features(self, model, x0, t: int, generator: torch.Generator | None = None,
                 batch_size: int = 256) -> torch.Tensor:
        """phi (N, D) of images x0 noised to level t (`flat`)."""
        generator = generator or torch.Generator().manual_seed(self.params.ref_seed)
        out = []
        with torch.no_grad():
            for chunk in x0.split(batch_size):
                eps = torch.randn(chunk.shape, generator=generator, device=generator.device).to(chunk.device)
                tt = torch.full((len(chunk),), int(t), device=chunk.device, dtype=torch.long)
                out.append(self.flat(self.phi(model, self.add_noise(self.ctx.schedule, chunk, eps, tt), tt)))
        return torch.cat(out)

    def evaluation_features(self, model, x0, labels):
        """phi of the held-out real images (of the scored split) of the scored classes at FEATURE_LEVELS of the schedule,
        and at each level the accuracy of assigning each image the class of its nearest centroid (all
        classes compete): the paper's claim that phi clusters by class, measured on this model."""
        levels = [round(f * (self.ctx.schedule.num_train_timesteps - 1)) for f in FEATURE_LEVELS]
        phis, accuracy = [], []
        for t in levels:
            phi = self.features(model, x0, t)
            nearest = torch.cdist(phi, self.flat(self.class_centroids(model, t))).argmin(1)
            phis.append(phi)
            accuracy.append(float((nearest == labels).float().mean()))
        return {"phi": torch.stack(phis).float().cpu().numpy(), "labels": labels.cpu().numpy(),
                "t": np.array(levels), "accuracy": np.array(accuracy)}
