"""How much of a GPU each network task reserves when `execution.num_gpus = "auto"`.

Small models leave most of a GPU idle, and their training steps are bound by kernel launches, not by the
GPU: several of them on one GPU run nearly as fast as one. So with GPUs in the Ray cluster and
`execution.device` "auto" or "cuda", every network task (classifiers, pretraining, training, evaluation)
reserves 1/k of a GPU, where k tasks fit in one GPU's memory, at most `execution.gpu_tasks_max`.

A task's GPU memory is measured, on the CPU, before any GPU is touched: one training step of the suite's
U-Net at its batch size and image size, under the autocast the GPU would use, counting

1. the fp32 state: weights, gradients, AdamW's two moments and the EMA copy (5 x the weights' bytes);
2. every activation autograd saves for the backward pass (`torch.autograd.graph.saved_tensors_hooks`),
   which is what a training step's peak holds beyond its state, measured at two small batches
   (PROBE_BATCHES) and read at the training batch off the line through them;

then scaled by ALLOCATOR_SLACK and given CONTEXT_BYTES for the process's CUDA context (the `paper`
U-Net at 64 px, batch 256, bf16: 30.7 GiB here, 28 GiB measured on an H200). A training step
is the largest of a suite's tasks: sampling keeps no activations and the classifiers are smaller. The
GPU's memory comes from a probe task that reserves one GPU (Ray does not report it). Ray does not enforce
a fractional reservation: a method whose modules grow the step far beyond the U-Net's (none built in
does) would need `execution.num_gpus` set by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.config import Config
from bench.datasets.base import PreparedData
from bench.models.init import init_structure, token_width
from bench.models.unet import SIZES, build_unet, unet_forward

STATE_COPIES = 5                # fp32 weights, gradients, AdamW exp_avg and exp_avg_sq, EMA shadow
ALLOCATOR_SLACK = 1.5           # the caching allocator's fragmentation and the temporaries no one saves
CONTEXT_BYTES = 1 << 30         # a process's CUDA context, cuBLAS/cuDNN workspaces
USABLE = 0.9                    # of a GPU's memory, the share packed tasks may plan to fill
PROBE_BATCHES = (1, 3)          # images in the two measured forward passes (a second on a CPU for `paper`)


@dataclass(frozen=True)
class GpuShare:
    num_gpus: float         # what each network task reserves
    task_bytes: int         # a training step's measured GPU memory (0: not measured)
    gpu_bytes: int          # one GPU's memory (0: unknown)
    reason: str             # how it was decided, for `bench run`'s first line


def training_step_bytes(cfg: Config, channels: int, bf16: bool) -> int:
    """The GPU memory one training step of the suite's U-Net needs (see the module's docstring)."""
    size = cfg.data.image_size
    if cfg.model.init:
        with torch.device("meta"):  # only the architecture: its config, no weights read
            unet = init_structure(cfg.model.init, channels, size, cfg.model.condition_path)
        unet = unet.to_empty(device="cpu")
        token_dim = token_width(cfg.model.init)
    else:
        unet = build_unet(cfg.model.size, channels, size, cfg.model.condition_path)
        token_dim = SIZES[cfg.model.size].cross_attention_dim
    state = STATE_COPIES * sum(p.numel() * 4 for p in unet.parameters())

    def saved_bytes(batch: int) -> int:
        saved = 0

        def keep(t: torch.Tensor):
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        xt = torch.randn(batch, channels, size, size)
        t = torch.randint(0, cfg.train.num_train_timesteps, (batch,))
        cond = torch.randn(batch, 1, token_dim)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), \
                torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            unet_forward(unet, xt, t, cond).float().pow(2).mean()
        return saved

    # Saved bytes are a fixed part (autocast's bf16 weight copies) plus a part per image: a line through
    # two small batches, read at the training batch.
    small, large = saved_bytes(PROBE_BATCHES[0]), saved_bytes(PROBE_BATCHES[1])
    per_image = (large - small) / (PROBE_BATCHES[1] - PROBE_BATCHES[0])
    saved = small + per_image * (cfg.train.batch_size - PROBE_BATCHES[0])
    return int(ALLOCATOR_SLACK * (state + saved)) + CONTEXT_BYTES


def tasks_per_gpu(task_bytes: int, gpu_bytes: int, most: int) -> int:
    """How many tasks of `task_bytes` fit in a GPU of `gpu_bytes`: at least 1, at most `most`."""
    return max(1, min(most, math.floor(USABLE * gpu_bytes / task_bytes)))


def decide_share(cfg: Config, cluster_gpus: float, gpu_bytes: Callable[[], int], data_path: Path) -> GpuShare:
    """`execution.num_gpus` as given, or, for "auto", the share of a GPU each network task reserves in a
    cluster of `cluster_gpus` GPUs whose memory `gpu_bytes()` probes, for the suite `cfg` on its prepared
    data at `data_path` (both read only when a share is measured)."""
    ex = cfg.execution
    if ex.num_gpus != "auto":
        return GpuShare(float(ex.num_gpus), 0, 0, "execution.num_gpus")
    if not cluster_gpus:
        return GpuShare(0.0, 0, 0, "auto: no GPU in the cluster")
    if ex.device == "cpu":
        return GpuShare(0.0, 0, 0, "auto: execution.device = \"cpu\"")
    if cfg.model.vae:
        return GpuShare(1.0, 0, 0, "auto: one task per GPU (latent mode's VAE is not measured)")
    memory = gpu_bytes()
    if not memory:
        return GpuShare(1.0, 0, 0, "auto: one task per GPU (the GPU's memory could not be read)")
    need = training_step_bytes(cfg, PreparedData.load(data_path).channels, ex.bf16)
    k = tasks_per_gpu(need, memory, ex.gpu_tasks_max)
    return GpuShare(1.0 / k, need, memory, f"auto: {k} task(s) per GPU, a training step measured at "
                                           f"{need / 2**30:.1f} GiB of {memory / 2**30:.0f} GiB")
