"""Validation acc[scorer] against training CPU-minutes, for today's recipe and candidate recipes, side by side
in one run (a benchmark, not a test; issue 28: choose the recipe on the validation split only).

Each candidate is the suite's config plus overrides. The baseline method trains with it on one core; at each
checkpoint its EMA weights sample `--samples-per-class` images per scored class (generation seed 0, the
suite's sampler and guidance) and the suite's scorer (trained on the train split, cached) labels them:
acc[scorer] against the targets, and the per-channel mean of the samples minus the real val images'
(class-balanced, grey levels 0-255). CPU time is the training process's own (time.process_time), so a
busy machine slows the run but not the numbers; sampling time is reported apart, per checkpoint.

A recipe whose learning rate decays to 0 at `train.steps` (lr_schedule = "cosine") is a different run per
horizon: it is trained once per checkpoint, each to its own end. A constant-rate recipe is one run read at
every checkpoint. Candidates that differ only in [sample] (guidance, sampler) share one training.

    python benchmarks/learning_curve.py [--config FILE] [--checkpoints 135,270,405,540] [--jobs 2]
        [--candidates suite,before,...] [--samples-per-class 60] [--cache results/.learning-curve]
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from bench.config import DEFAULT_SUITE, Config, load_config
from bench.datasets.base import PreparedData
from bench.engine.data import prepare_data
from bench.engine.sample import generation_labels, sample_images
from bench.engine.tasks import classifier_loader
from bench.engine.train import Trainer, build
from bench.core.pixels import to_model_space

# name -> (what it changes, override tables on top of the suite's config)
CANDIDATES: dict[str, tuple[str, dict]] = {
    "suite": ("the default suite's recipe", {}),
    "before": ("eps prediction, guidance 2 (before issue 28)",
               {"train": {"prediction": "epsilon"}, "sample": {"guidance": 2.0}}),
    "eps": ("eps prediction", {"train": {"prediction": "epsilon"}}),
    "cosine": ("cosine lr decay to 0 at the last step", {"train": {"lr_schedule": "cosine"}}),
    "g2": ("guidance 2", {"sample": {"guidance": 2.0}}),
    "g1": ("guidance 1 (conditional only)", {"sample": {"guidance": 1.0}}),
    "g2.5": ("guidance 2.5", {"sample": {"guidance": 2.5}}),
    "g3": ("guidance 3", {"sample": {"guidance": 3.0}}),
    "eta0": ("deterministic DDIM", {"sample": {"eta": 0.0}}),
    "dpm20": ("DPM-Solver++, 20 steps", {"sample": {"sampler": "dpmsolver++", "eta": 0.0}}),
    "ddpm50": ("50 DDPM steps", {"sample": {"sampler": "ddpm", "steps": 50}}),
    "lr3e-3": ("peak lr 3e-3", {"train": {"lr": 3e-3}}),
    "batch16": ("batch 16", {"train": {"batch_size": 16}}),
    "batch64": ("batch 64, peak lr 2e-3", {"train": {"batch_size": 64, "lr": 2e-3}}),
    "snr0": ("unweighted eps loss (min-SNR off)", {"train": {"min_snr_gamma": 0.0}}),
    "snr1": ("min-SNR gamma 1", {"train": {"min_snr_gamma": 1.0}}),
    "puncond0.2": ("label dropout 0.2", {"train": {"p_uncond": 0.2}}),
    "ema0": ("no EMA", {"train": {"ema_decay": 0.0}}),
    "tiny": ("tiny U-Net", {"model": {"size": "tiny"}}),
}


def _scorer_and_data(cfg: Config, cache: Path):
    data = PreparedData.load(prepare_data(cfg, cache))
    return data, classifier_loader(cfg, "scorer", data, cache, torch.device("cpu"))()


def _score(cfg: Config, built, data: PreparedData, scorer, samples_per_class: int) -> dict:
    """acc[scorer] of the samples of `built` on the scored classes, and their colour offset from real val."""
    labels = generation_labels(data.scored_classes, samples_per_class)
    t0 = time.process_time()
    images = sample_images(built, cfg, labels, gen_seed=0, device=torch.device("cpu"))
    sample_s = time.process_time() - t0
    with torch.no_grad():
        pred = scorer(to_model_space(images)).argmax(1).numpy()
    real_x, real_y = data.split("val")
    offset = (np.mean([images[labels == c].reshape(-1, images.shape[-1]).mean(0) for c in data.scored_classes], 0)
              - np.mean([real_x[real_y == c].reshape(-1, real_x.shape[-1]).mean(0) for c in data.scored_classes], 0))
    return {"acc": float(np.mean(pred == labels)), "offset": offset.round(1).tolist(), "sample_s": sample_s}


def _train_and_score(job) -> list[dict]:
    """One training to its last checkpoint, scored at each of `checkpoints` by every candidate that shares it
    (candidates that differ only in [sample] share one training)."""
    variants, checkpoints, samples_per_class, cache = job
    torch.set_num_threads(1)
    cfg = variants[0][1]
    data, scorer = _scorer_and_data(cfg, cache)
    torch.manual_seed(0)
    device = torch.device("cpu")
    built = build(cfg, "baseline", data, device)
    readers = [(name, vcfg, build(vcfg, "baseline", data, device)) for name, vcfg in variants]  # EMA weights
    trainer = Trainer(cfg, built, data, 0, device)
    built.model.train()
    rows, cpu = [], 0.0
    for step in range(max(checkpoints)):
        t0 = time.process_time()
        trainer.step(step)
        cpu += time.process_time() - t0
        if step + 1 in checkpoints:
            trainer.check_finite("baseline")
            for name, vcfg, reader in readers:
                reader.model.load_state_dict(trainer.ema.shadow if trainer.ema else built.model.state_dict())
                reader.model.eval()
                rows.append({"candidate": name, "steps": step + 1, "cpu_min": cpu / 60,
                             **_score(vcfg, reader, data, scorer, samples_per_class)})
    return rows


def _jobs(names, base_path, checkpoints, samples_per_class, cache):
    """One job per distinct training: constant-rate recipes once to the last checkpoint, decaying ones once
    per horizon."""
    trainings: dict[tuple, list] = {}
    for name in names:
        overrides = CANDIDATES[name][1]
        cfg = load_config(base_path, overrides={"suite": {"eval_split": "val"}, **overrides})
        horizons = [(max(checkpoints), checkpoints)] if cfg.train.lr_schedule == "constant" else \
            [(k, (k,)) for k in checkpoints]
        training = {k: v for k, v in overrides.items() if k != "sample"}
        for steps, scored_at in horizons:
            variant = load_config(base_path, overrides={"suite": {"eval_split": "val"},
                                                        **_with_steps(overrides, steps)})
            trainings.setdefault((repr(sorted(training.items())), steps, scored_at), []).append((name, variant))
    for (_, _, scored_at), variants in trainings.items():
        yield variants, scored_at, samples_per_class, cache


def _with_steps(overrides: dict, steps: int) -> dict:
    return {**overrides, "train": {**overrides.get("train", {}), "steps": steps}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_SUITE))
    ap.add_argument("--candidates", default="suite,before,eps,cosine,g1,g2,g2.5",
                    help=f"comma-separated, of: {', '.join(CANDIDATES)}")
    ap.add_argument("--checkpoints", default="135,270,405,540", help="training steps at which to score")
    ap.add_argument("--samples-per-class", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2, help="trainings side by side, one core each")
    ap.add_argument("--cache", default="results/.learning-curve")
    args = ap.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate {unknown[0]!r}; known: {', '.join(CANDIDATES)}")
    checkpoints = tuple(sorted(int(k) for k in args.checkpoints.split(",")))
    cache = Path(args.cache)
    base = load_config(args.config, overrides={"suite": {"eval_split": "val"}})
    data, _ = _scorer_and_data(base, cache)   # the data and the scorer, once, before the workers share the cache
    jobs = list(_jobs(names, args.config, checkpoints, args.samples_per_class, cache))
    wall = time.time()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = [r for job_rows in pool.imap(_train_and_score, jobs) for r in job_rows]
    print(f"val acc[scorer] (chance {1 / len(data.scored_classes):.3f}), "
          f"{args.samples_per_class} samples per scored class, generation seed 0; wall {time.time() - wall:.0f} s")
    print(f"{'candidate':<16} {'what it changes':<44} {'steps':>5} {'CPU-min':>7} {'acc':>6}  "
          f"{'colour offset (grey levels)':<26} {'sample CPU-s':>12}")
    for r in rows:
        print(f"{r['candidate']:<16} {CANDIDATES[r['candidate']][0]:<44} {r['steps']:>5} {r['cpu_min']:>7.2f} "
              f"{r['acc']:>6.3f}  {str(r['offset']):<26} {r['sample_s']:>12.1f}")


if __name__ == "__main__":
    main()
