"""Named overrides (`--preset NAME`), applied on top of the suite file (bench.toml, or else the default
suite) and before command-line flags.

Three presets follow a paper's own regime. Where that regime starts from weights bench cannot ship
(Stable Diffusion), the preset names the Hugging Face id it loads from the local cache; while they
are missing, the suite stops before anything is written, with one line naming the id and the
command that fetches it. Point `[model] init` / `[model] vae` at another folder in a bench.toml to
use a copy elsewhere.
"""
from __future__ import annotations

from bench.core.errors import BenchError

# Latent Drifting's sweep of the noise-mean shift delta (drift = Yeganeh et al. 2024), around delta = 0
# (the baseline: same backbone, same fine-tuning, no shift).
DELTA_SWEEP = ["drift:delta=-0.1", "drift:delta=-0.05", "drift:delta=0.05", "drift:delta=0.1"]
# Stable Diffusion 2.1, the model of the Latent Drifting code (shayandesu/Latent-Drifting); the 512-px
# "base" model, which predicts epsilon as bench trains (2.1-768 predicts v).
STABLE_DIFFUSION = "stabilityai/stable-diffusion-2-1-base"

PRESETS: dict[str, dict] = {
    # A seconds-long suite for tests and smoke runs.
    "tiny": {
        "data": {"image_size": 16, "train_per_class": 16, "val_per_class": 8, "test_per_class": 8},
        "model": {"size": "tiny"},
        "train": {"steps": 4, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
        "sample": {"steps": 3, "samples_per_class": 2},
        "expert": {"backbone": "tiny", "epochs": 1},
        "scorer": {"backbone": "tiny-effnet", "epochs": 1},   # another family than the tiny expert
        "metrics": {"kid_subset_size": 8},
        "pretrain": {"steps": 4, "batch_size": 8},
    },
    # The default suite with enough independently trained models per method (paired across methods) for
    # model-level tests that can reach significance after Holm's correction: over 8 models the exact
    # sign-flip test's smallest p is 2 / 2**8 = 0.0078, x 5 methods against the baseline = 0.039 < 0.05
    # (over 6 models 0.031 x 5 = 0.16: no Δ could ever be significant). Every built-in method, whatever
    # the suite file lists. One generation seed of 90 images per class instead of 3 seeds of 10: a model's
    # acc[scorer] noise is mostly its samples' (binomial over 210 images: sd 0.03, as large as the
    # per-model differences of the first powered run), and one large evaluation costs less than three
    # small ones (each pays the metrics' fixed cost). Same samples, sampler and seeds for every method.
    "powered": {
        "suite": {"name": "powered", "train_seeds": 8, "seeds": 1,
                  "methods": ["baseline", "aligned", "aligned-clean", "drift", "ssl", "fgscore"]},
        "sample": {"samples_per_class": 90},
    },
    # Feature alignment (Nair 2024): pixel space, Kather 2016 in grayscale at 64 px without "empty",
    # the tiny-sd U-Net's layout, 10 images per class, 15 generation seeds.
    "nair2024": {
        "suite": {"name": "nair2024", "seeds": 15},
        "data": {"name": "kather2016", "image_size": 64, "grayscale": True, "exclude_classes": ["empty"]},
        "model": {"size": "paper"},
        "sample": {"samples_per_class": 10},
        "expert": {"backbone": "resnet50"},
    },
    # Latent Drifting (Yeganeh et al. 2024): Stable Diffusion's U-Net and VAE, fine-tuned in its latent
    # space on a medical target (Kather 2016 tiles at 128 px: 16 x 16 latents) with and without delta.
    # The U-Net keeps Stable Diffusion's layout (cross-attention only); fine-tuning rate as usual for it.
    "yeganeh2024": {
        "suite": {"name": "yeganeh2024", "methods": ["baseline", *DELTA_SWEEP]},
        "data": {"name": "kather2016", "image_size": 128, "exclude_classes": ["empty"]},
        "model": {"init": STABLE_DIFFUSION, "vae": STABLE_DIFFUSION, "condition_path": "attention"},
        "train": {"steps": 3000, "batch_size": 16, "lr": 1e-5, "warmup_steps": 100, "prediction": "epsilon"},
    },
    # The same protocol on the embedded data, on a CPU: a backbone pretrained (bench pretrain) on the
    # source domain, synth-tissue in IHC stain, then fine-tuned on the H&E target with and without delta.
    "yeganeh2024-cpu": {
        "suite": {"name": "yeganeh2024-cpu", "methods": ["baseline", *DELTA_SWEEP]},
        "model": {"init": "pretrain"},
        "pretrain": {"data": "synth-tissue-ihc"},
    },
    # Representation-guided LDM (Graikos et al. 2024): latent space, conditioned on self-supervised
    # embeddings (ssl) against the class-conditional baseline. The paper starts from an ImageNet LDM,
    # which diffusers does not ship as a UNet2DConditionModel: here the U-Net is trained in the latent
    # space of Stable Diffusion's VAE; set [model] init to a converted LDM folder to start from one.
    "graikos2024": {
        "suite": {"name": "graikos2024", "methods": ["baseline", "ssl"]},
        "data": {"name": "kather2016", "image_size": 128, "exclude_classes": ["empty"]},
        "model": {"size": "paper", "vae": STABLE_DIFFUSION},
    },
}
ALIASES = {"paper": "nair2024"}   # the name nair2024 had before the papers' presets


def preset_tables(name: str) -> dict:
    """The overrides of preset `name` (or of the preset it is an alias of); BenchError if unknown."""
    name = ALIASES.get(name, name)
    if name not in PRESETS:
        raise BenchError(f"unknown preset {name!r}; valid presets: {', '.join([*PRESETS, *ALIASES])}")
    return PRESETS[name]
