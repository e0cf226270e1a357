"""Training step time, measured side by side in one process (a benchmark, not a test).

1. bench's training loop (`bench.engine.train.train_model`: EMA, min-SNR weighting, warm-up, clipping,
   augmentation, checkpoints, logging) vs a bare diffusers loop on the same U-Net, batch and data
   (DDPMScheduler.add_noise, MSE, AdamW). Target: ratio <= 1.05.
2. Every method's step time relative to baseline on the same config. Target: aligned <= 1.5x.
3. The val loss at a checkpoint (`Trainer.val_loss`) against a training step, per method, and its share
   of the config's training (its checkpoints' val losses over its steps). Target: <= 1%.

Blocks of steps alternate between the contenders and the median per-step time is reported, so
drift in machine load hits both alike.

    python benchmarks/train_step.py [--config FILE] [--steps 20] [--rounds 3] [--methods ...]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from bench.config import DEFAULT_SUITE, load_config
from bench.datasets import load_prepared
from bench.engine.tasks import expert_loader
from bench.engine.train import BatchStream, Trainer, build, train_model


def bare_diffusers_steps(cfg, data, steps: int) -> list[float]:
    """The loop of diffusers' training examples, nothing else."""
    torch.manual_seed(0)
    built = build(cfg, "baseline", data, torch.device("cpu"))
    model = built.model
    scheduler = DDPMScheduler(num_train_timesteps=cfg.train.num_train_timesteps, beta_schedule=cfg.train.beta_schedule)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    batches = BatchStream(data, cfg.train.batch_size, 0, "cpu")
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        x0, labels = batches(step)
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg.train.num_train_timesteps, (x0.shape[0],))
        xt = scheduler.add_noise(x0, noise, t)
        cond = model.modules_["class_embedding"](labels)[:, None, :]
        loss = F.mse_loss(model.unet(xt, t, encoder_hidden_states=cond, class_labels=cond.mean(1)).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def bench_steps(cfg, data, variant: str, steps: int, cache: Path) -> list[float]:
    """Per-step times of bench's own loop, read from its on_step callback."""
    stamps = []
    with tempfile.TemporaryDirectory() as tmp:
        load_expert = expert_loader(cfg, data, cache, torch.device("cpu"))
        t_first = time.perf_counter()
        train_model(replace(cfg, train=replace(cfg.train, steps=steps, checkpoint_every=10**9)), variant, 0,
                    data, Path(tmp), load_expert, cache, on_step=lambda s, n: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip([t_first] + stamps[:-1], stamps)][1:]  # first step includes set-up


def val_loss_times(cfg, data, variant: str, steps: int, rounds: int, cache: Path) -> tuple[list[float], list[float]]:
    """Per-step times and per-call times of the val loss of one trainer: `steps` steps, then a val loss, `rounds`
    times (the first step of all, set-up included, left out)."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    built = build(cfg, variant, data, device, expert_loader(cfg, data, cache, device), cache)
    trainer, step_s, val_s = Trainer(cfg, built, data, 0, device), [], []
    built.model.train()
    for r in range(rounds):
        for k in range(r * steps, (r + 1) * steps):
            t0 = time.perf_counter()
            trainer.step(k)
            step_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        trainer.val_loss()
        val_s.append(time.perf_counter() - t0)
    return step_s[1:], val_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_SUITE))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default="baseline,aligned,aligned-clean,drift,ssl,fgscore")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, overrides={"execution": {"device": "cpu"}})
    data = load_prepared(cfg.data)
    cache = Path(tempfile.mkdtemp(prefix="bench-train-step-"))
    print(f"U-Net {cfg.model.size}, {data.image_size} px, batch {cfg.train.batch_size}, 1 thread, "
          f"{args.rounds} rounds x {args.steps} steps")
    loop = {"bare diffusers": [], "bench": []}
    for _ in range(args.rounds):
        loop["bare diffusers"] += bare_diffusers_steps(cfg, data, args.steps)
        loop["bench"] += bench_steps(cfg, data, "baseline", args.steps, cache)
    med = {k: statistics.median(v) for k, v in loop.items()}
    print(f"  bare diffusers loop  {med['bare diffusers'] * 1e3:8.1f} ms/step")
    print(f"  bench loop           {med['bench'] * 1e3:8.1f} ms/step")
    print(f"  ratio bench / bare   {med['bench'] / med['bare diffusers']:8.3f}   (target <= 1.05)")
    methods = [m for m in args.methods.split(",") if m]
    per_method = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            per_method[m] += bench_steps(cfg, data, m, args.steps, cache)
    base = statistics.median(per_method.get("baseline") or loop["bench"])
    print("method step time relative to baseline (target: aligned <= 1.5)")
    for m in methods:
        t = statistics.median(per_method[m])
        print(f"  {m:<16} {t * 1e3:8.1f} ms/step   {t / base:6.2f}x")
    train = cfg.train
    checkpoints = train.steps // train.checkpoint_every + (train.steps % train.checkpoint_every != 0)
    print(f"val loss at a checkpoint ({checkpoints} in {train.steps} steps) against a step (target: share <= 1%)")
    for m in methods:
        step_s, val_s = map(statistics.median, val_loss_times(cfg, data, m, args.steps, args.rounds, cache))
        print(f"  {m:<16} {val_s * 1e3:8.1f} ms = {val_s / step_s:5.2f} steps   "
              f"share {100 * checkpoints * val_s / (train.steps * step_s):5.2f}%")


if __name__ == "__main__":
    main()
