"""Training one model: seeded data order and noise, EMA, warm-up, resumable checkpoints.

A run folder gets `train_state.pt` every `checkpoint_every` steps (model, EMA, optimizer and RNG
state: a retried task continues bitwise where it stopped), the method's loss on a fixed val subset at
each of these checkpoints and at the end (`val/loss` in the train log and curves), and, at the end,
`checkpoint.safetensors` (the EMA weights used for sampling) and `train_log.jsonl`; a run started from a
pretrained U-Net ([model] init) also gets `init.json`, its provenance.
"""
from __future__ import annotations

import io
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from bench.config import Config
from bench.core.errors import RunFailed, StoreDamaged
from bench.core.pixels import model_space
from bench.core.seeds import VAL_LOSS_SEED, epoch_order_seed, train_step_seed
from bench.core.store import CHECKPOINT_FILE, INIT_FILE, LOG_FILE, STATE_FILE, atomic_write_bytes, atomic_write_json
from bench.datasets.base import PreparedData
from bench.engine.curves import LOSS_EMA_DECAY, write_curves
from bench.diffusion import Schedule
from bench.methods import ConditioningMethod, Denoiser, MethodContext, parse_variant
from bench.models.init import init_structure, load_init_unet, token_width
from bench.models.latent import Latents
from bench.models.unet import SIZES, build_unet

# Val images of the loss at each checkpoint. On the default suite (small U-Net, 16 px, batch 32, one CPU
# thread; benchmarks/train_step.py) it costs 0.70-0.86 of a training step across the built-in methods
# (144 ms against 206 ms for the baseline, 322 against 391 for the costliest): at its 4 checkpoints,
# 0.7-0.9% of the 400 steps' time.
VAL_LOSS_IMAGES = 64


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunFailed(f"device {name!r} requested but CUDA is not available; set execution.device = \"cpu\"")
    return torch.device(name)


def autocast(cfg: Config, device: torch.device):
    if device.type == "cuda" and cfg.execution.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Built:
    method: ConditioningMethod
    model: Denoiser
    schedule: Schedule
    init: dict | None = None    # where the U-Net's weights came from ([model] init), None = from scratch


def build(cfg: Config, variant: str, data: PreparedData, device: torch.device,
          expert_loader: Callable | None = None, cache_dir: Path | None = None,
          latents: Latents | None = None, init_weights: bool = True) -> Built:
    """The method, the U-Net with the method's modules, and the schedule, on `device`; with `latents`
    (latent mode) the U-Net's channels and size are the latents'. `init_weights` False: a [model] init
    U-Net's architecture only, for a caller that loads the run's own checkpoint into it."""
    if cfg.model.vae and latents is None:
        raise ValueError("latent mode ([model] vae) builds on the suite's latents: pass engine.data.latents_of(...)")
    mean = channel_mean(data) if latents is None else latents.channel_mean()
    channels, size = (data.channels, data.image_size) if latents is None else (latents.channels, latents.size)
    token_dim = token_width(cfg.model.init) if cfg.model.init else SIZES[cfg.model.size].cross_attention_dim
    method = new_method(cfg, variant, data, mean if cfg.train.center_data else (0.0,), channels=channels,
                        image_size=size, token_dim=token_dim, device=device,
                        expert_loader=expert_loader, cache_dir=cache_dir, latents=latents)
    if cfg.model.init and not init_weights:
        unet, init = init_structure(cfg.model.init, channels, size, cfg.model.condition_path), None
    elif cfg.model.init:
        unet, init = load_init_unet(cfg.model.init, channels, size, cfg.model.condition_path)
    else:
        unet, init = build_unet(cfg.model.size, channels, size, cfg.model.condition_path), None
    model = Denoiser(unet, method.build_modules(unet), method.ctx.schedule).to(device)
    if device.type == "cuda" and cfg.execution.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method.prepare(model)
    return Built(method, model, method.ctx.schedule, init)


def new_method(cfg: Config, variant: str, data: PreparedData, mean: tuple[float, ...], *, channels: int,
               image_size: int, token_dim: int, device: torch.device, expert_loader: Callable | None = None,
               cache_dir: Path | None = None, latents: Latents | None = None) -> ConditioningMethod:
    """The method `variant`, its modules not yet built, in its MethodContext: the schedule of [train] centred
    on `mean` (the schedule's mu), the U-Net's `channels`, `image_size` and `token_dim`, [train] p_uncond and
    [sample] guidance. `build` and an exported model's rebuild (bench/engine/pipeline.py) both make it here."""
    cls, params = parse_variant(variant)
    schedule = Schedule(cfg.train.num_train_timesteps, cfg.train.beta_schedule, cfg.train.min_snr_gamma, mean,
                        cfg.train.prediction)
    ctx = MethodContext(num_classes=data.num_classes, channels=channels, image_size=image_size, token_dim=token_dim,
                        device=device, data=data, schedule=schedule, expert_loader=expert_loader, cache_dir=cache_dir,
                        p_uncond=cfg.train.p_uncond, guidance=cfg.sample.guidance, latents=latents)
    return cls(params, ctx)


def channel_mean(data: PreparedData) -> tuple[float, ...]:
    """The train split's per-channel mean in model space ([-1, 1])."""
    return tuple(model_space(float(m)) for m in data.train_x.reshape(-1, data.channels).mean(0, dtype=np.float64))


class EMA:
    """Exponential moving average of the trainable weights, with the usual warm-up of the decay
    ((1 + n) / (10 + n)) so a few-hundred-step CPU run is not dominated by its random init."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        floating = [k for k, v in current.items() if v.dtype.is_floating_point]
        # one foreach call for every weight: on a GPU a loop of small lerps is launch-bound
        torch._foreach_lerp_([self.shadow[k] for k in floating], [current[k].detach() for k in floating], 1 - d)
        for k, v in current.items():
            if not v.dtype.is_floating_point:
                self.shadow[k].copy_(v)


class BatchStream:
    """Batch `step` of a run is a pure function of (seed, step): seeded epoch permutations, drop-last.
    A resumed run therefore sees exactly the batches an uninterrupted one would."""

    def __init__(self, data: PreparedData, batch_size: int, seed: int, device, latents: Latents | None = None):
        # on the device once: a batch is then an index on the device, not a host-to-device copy a step
        x = torch.from_numpy(data.train_x).permute(0, 3, 1, 2).contiguous() if latents is None else latents.train
        self.x, self.y = x.to(device), torch.from_numpy(data.train_y).long().to(device)
        self.batch_size = min(batch_size, len(self.y))
        self.per_epoch = len(self.y) // self.batch_size
        self.seed, self.device = seed, device
        self._epoch, self._order = -1, None

    def __call__(self, step: int):
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(epoch_order_seed(self.seed, epoch))
            self._epoch, self._order = epoch, torch.randperm(len(self.y), generator=g).to(self.device)
        idx = self._order[k * self.batch_size:(k + 1) * self.batch_size]
        x = self.x[idx]
        if not x.is_floating_point():  # uint8 images; latents are model space already
            x = model_space(x)
        return x, self.y[idx]


def val_subset(data: PreparedData, device, latents: Latents | None = None):
    """At most VAL_LOSS_IMAGES val images in model space (latents in latent mode) and their labels, evenly
    spaced through the split: every class in proportion where the split is ordered by class, and no draw."""
    n, k = len(data.val_y), min(len(data.val_y), VAL_LOSS_IMAGES)
    rows = torch.arange(k) * n // k
    x = model_space(torch.from_numpy(data.val_x).permute(0, 3, 1, 2)[rows]) if latents is None else latents.val[rows]
    return x.to(device), torch.from_numpy(data.val_y)[rows].long().to(device)


def augment(x, generator):
    """A random element of the dihedral group per batch, for data sets that declare no up or left."""
    k = int(torch.randint(0, 4, (1,), generator=generator, device=generator.device))
    x = torch.rot90(x, k, (2, 3))
    return x.flip(3) if bool(torch.randint(0, 2, (1,), generator=generator, device=generator.device)) else x


def _lr_at(cfg: Config, step: int) -> float:
    train = cfg.train
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    if train.lr_schedule == "cosine":
        progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
        return train.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return train.lr


class Trainer:
    """One model's optimiser, EMA and batches; `step(k)` is training step k. Nothing in a step waits for the
    device (a GPU step is then bound by the GPU, not by the kernel launches): a non-finite loss is noted on
    the device and raised by `check_finite`, which the loop calls when it logs, checkpoints and ends."""

    def __init__(self, cfg: Config, built: Built, data: PreparedData, train_seed: int, device: torch.device,
                 latents: Latents | None = None):
        self.cfg, self.built, self.seed, self.device = cfg, built, train_seed, device
        self.params = [p for p in built.model.parameters() if p.requires_grad]
        # fused: one kernel for the whole update on CUDA; the CPU keeps its reference implementation
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                           fused=device.type == "cuda" or None)
        self.ema = EMA(built.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.batches = BatchStream(data, cfg.train.batch_size, train_seed, device, latents)
        self.dihedral = data.meta.get("augment") == "dihedral"   # declared by the data source (or data.augment)
        self.val_x, self.val_y = val_subset(data, device, latents)
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite loss's step
        self._bad_loss = torch.zeros((), device=device)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """Training step `step` (0-based); returns the method's loss terms (on the device)."""
        method, model = self.built.method, self.built.model
        generator = torch.Generator(self.device).manual_seed(train_step_seed(self.seed, step))
        x0, labels = self.batches(step)
        if self.dihedral:
            x0 = augment(x0, generator)
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(self.cfg, step)
        with autocast(self.cfg, self.device):
            terms = method.loss(model, self.built.schedule, x0, labels, generator)
        loss = terms["loss"]
        first = ~torch.isfinite(loss.detach()) & (self._bad_step < 0)
        self._bad_step = torch.where(first, step, self._bad_step)
        self._bad_loss = torch.where(first, loss.detach().float(), self._bad_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip > 0:   # the norm before clipping
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(model)
        return {**terms, "grad_norm": grad_norm}

    @torch.no_grad()
    def val_loss(self) -> dict[str, float]:
        """`val/<term>` of the method's loss terms on the val subset, under the weights sampling uses (the
        EMA's where on) in eval mode, with the timesteps and noise of VAL_LOSS_SEED's stream, in batches of
        the training's size (no more memory than a step). The training's weights, mode and random streams
        are left as they were: its checkpoints are bitwise those of a training without it."""
        model, method = self.built.model, self.built.method
        live = {k: v.clone() for k, v in model.state_dict().items()} if self.ema is not None else None
        if live is not None:
            model.load_state_dict(self.ema.shadow)
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        # its own generator; fork_rng keeps a plug-in loss that draws from the global stream off the training's
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            generator = torch.Generator(self.device).manual_seed(VAL_LOSS_SEED)
            size = self.batches.batch_size
            for x0, labels in zip(self.val_x.split(size), self.val_y.split(size)):
                with autocast(self.cfg, self.device):
                    terms = method.loss(model, self.built.schedule, x0, labels, generator)
                for k, v in terms.items():   # each term a batch mean: weighted by the batch, the subset's mean
                    sums[k] = sums.get(k, 0) + v.double() * len(labels)
        model.train()
        if live is not None:
            model.load_state_dict(live)
        return {f"val/{k}": float(v) / len(self.val_y) for k, v in sums.items()}

    def check_finite(self, variant: str) -> None:
        """RunFailed naming the first step whose loss was not finite, if one was."""
        if int(self._bad_step) >= 0:
            raise RunFailed(f"loss became {self._bad_loss.item()} at step {int(self._bad_step)} ({variant}, "
                            f"train seed {self.seed})")


def train_model(cfg: Config, variant: str, train_seed: int, data: PreparedData, run_dir: Path,
                expert_loader: Callable | None = None, cache_dir: Path | None = None,
                on_step: Callable[[int, int], None] | None = None, latents: Latents | None = None) -> None:
    """Train (or resume) one model into `run_dir` (on `latents` in latent mode); raise RunFailed on a
    deterministic failure."""
    device = resolve_device(cfg.execution.device)
    torch.manual_seed(train_seed)  # module initialisation
    built = build(cfg, variant, data, device, expert_loader, cache_dir, latents)
    if built.init is not None:
        atomic_write_json(run_dir / INIT_FILE, built.init)
    trainer = Trainer(cfg, built, data, train_seed, device, latents)
    model, optimizer, ema = built.model, trainer.optimizer, trainer.ema
    state_path, log_path = run_dir / STATE_FILE, run_dir / LOG_FILE
    start = 0
    if state_path.exists():
        try:
            start = _restore_state(state_path, device, model, optimizer, ema)
        except torch.cuda.OutOfMemoryError:  # the state is fine, the device is full
            raise
        except Exception as err:  # torn or foreign: this run cannot continue from it, but can restart
            _set_aside(state_path, err)
            return train_model(cfg, variant, train_seed, data, run_dir, expert_loader, cache_dir, on_step, latents)
    log_lines = _read_log(log_path, upto=start)
    rows: list[dict] = []   # logged since the last checkpoint: its curves are written with the next one
    loss_ema = json.loads(log_lines[-1]).get("loss_ema") if log_lines else None
    model.train()
    t_start = time.time()
    for step in range(start, cfg.train.steps):
        terms = trainer.step(step)
        done = step + 1
        saves = done % cfg.train.checkpoint_every == 0
        checkpoints = saves or done == cfg.train.steps   # a resumable state, or the final weights
        logs = done % cfg.train.log_every == 0 or checkpoints   # a checkpoint's val loss goes in its log line
        if logs:
            trainer.check_finite(variant)
            values = {k: float(v.detach()) for k, v in terms.items()}
            loss_ema = values["loss"] if loss_ema is None else (
                LOSS_EMA_DECAY * loss_ema + (1 - LOSS_EMA_DECAY) * values["loss"])
            rows.append({"step": done, "lr": _lr_at(cfg, step), "time_s": round(time.time() - t_start, 3),
                         **values, "loss_ema": loss_ema, **(trainer.val_loss() if checkpoints else {})})
            log_lines.append(json.dumps(rows[-1]))
        if saves and done < cfg.train.steps:
            _save_state(state_path, model, optimizer, ema, done)
            atomic_write_bytes(log_path, ("\n".join(log_lines) + "\n").encode())
            write_curves(run_dir, rows)
            rows = []
        if on_step:
            on_step(done, cfg.train.steps)
    weights = ema.shadow if ema is not None else model.state_dict()
    _save_weights(run_dir / CHECKPOINT_FILE, weights, variant)
    atomic_write_bytes(log_path, ("\n".join(log_lines) + "\n").encode())
    write_curves(run_dir, rows)
    state_path.unlink(missing_ok=True)


def _read_log(path: Path, upto: int) -> list[str]:
    if not path.exists() or upto == 0:
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= upto]


def _restore_state(path: Path, device, model, optimizer, ema) -> int:
    """Load a `_save_state` file into the modules; return its step."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        ema.shadow, ema.updates = state["ema"], state["ema_updates"]
    return state["step"]


def _set_aside(path: Path, err: Exception) -> None:
    """Rename an unusable train state (kept for inspection, never unpickled further) and say so in one
    line; the caller retrains from step 0 with fresh modules."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    path.replace(aside)
    logging.getLogger(__name__).warning(
        "%s is unreadable (%s); set aside as %s, training restarts from step 0",
        path, type(err).__name__, aside.name)


def _save_state(path, model, optimizer, ema, step) -> None:
    buf = io.BytesIO()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    if ema is not None:
        state["ema"], state["ema_updates"] = ema.shadow, ema.updates
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _save_weights(path: Path, weights: dict, variant: str) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    atomic_write_bytes(path, save(tensors, metadata={"variant": variant}))


def load_model(cfg: Config, variant: str, data: PreparedData, run_dir: Path, device: torch.device,
               expert_loader: Callable | None = None, cache_dir: Path | None = None,
               latents: Latents | None = None) -> Built:
    """The trained model of `run_dir`: its checkpoint holds every weight, so a [model] init's are not read."""
    built = build(cfg, variant, data, device, expert_loader, cache_dir, latents, init_weights=False)
    checkpoint = run_dir / CHECKPOINT_FILE
    if checkpoint.is_symlink():  # bench writes its checkpoints as files: a link points at weights of another run
        raise StoreDamaged(f"{checkpoint} is a link to {checkpoint.resolve()}, not the checkpoint this run wrote; "
                           f"delete the run folder {run_dir} and run `bench run` again to retrain it")
    try:
        built.model.load_state_dict(load_file(str(checkpoint), device=str(device)))
    except torch.OutOfMemoryError:  # the checkpoint is fine, the device is full
        raise
    except (SafetensorError, OSError, RuntimeError) as err:  # torn, missing, or another model's weights
        raise StoreDamaged(f"{checkpoint} is unreadable or holds other weights than {variant}'s model "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); delete the run folder "
                           f"{run_dir} and run `bench run` again to retrain it") from None
    built.model.eval()
    return built
