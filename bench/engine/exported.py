"""The folder `bench export` writes (bench/engine/export.py) and `bench.pipeline.BenchPipeline` reads: what it
holds besides the diffusers components, and how that is read back.

OUT/
  model_index.json                  BenchPipeline's diffusers components
  unet/                             the EMA U-Net sampling uses (save_pretrained): also a valid `[model] init`
  vae/                              latent mode ([model] vae) only: the run's AutoencoderKL (save_pretrained,
                                    safetensors), which the pipeline decodes with (bench/models/latent.py)
  scheduler/scheduler_config.json   the diffusers scheduler bench samples with (schedule, spacing, clipping)
  scheduler/bench_sampling.json     the run's [sample] settings (sampler, steps, eta, guidance, classes' image
                                    count, batch size) and the data-centring mean mu ([train] center_data; 0 off)
  conditioning/modules.safetensors  the method's modules besides the U-Net (EMA): class embeddings, projections
  conditioning/state.safetensors    the method's sampling state (`export_state`: e.g. an embedding bank,
                                    or class centroids at the sampler's timesteps)
  conditioning/bench.json           method variant, class names, scored classes, [train] settings, the source run
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from bench.config import Config, build_config
from bench.core.errors import BenchError
from bench.core.shapes import NUMBER, ListOf, MapOf, Obj, checked
from bench.core.store import read_json
from bench.datasets.base import PreparedData
from bench.diffusion import Sampler
from bench.engine.train import Built
from bench.models.latent import VAE_SUBFOLDER

SAMPLING_FILE = "scheduler/bench_sampling.json"
INFO_FILE = "conditioning/bench.json"
MODULES_FILE = "conditioning/modules.safetensors"
STATE_FILE = "conditioning/state.safetensors"
REEXPORT = "export the run again with `bench export RUN_DIR OUT`"
INFO_SHAPE = Obj({"method": str, "class_names": ListOf(str), "scored_classes": ListOf(int), "config": MapOf(MapOf())},
                 required=("method", "class_names", "scored_classes", "config"))
SAMPLING_SHAPE = Obj({"sample": MapOf(), "data_mean": ListOf(NUMBER)}, required=("sample", "data_mean"))


@dataclass
class Exported:
    """What an exported folder holds besides the diffusers components (the U-Net and the scheduler)."""
    cfg: Config                         # the run's (read back from a folder: [train], [sample], bf16, [model] vae
    #                                     = the folder's vae/ in latent mode; the rest default)
    data_mean: tuple[float, ...]        # mu of the schedule
    info: dict                          # method variant, class names, scored classes, data set, source run
    weights: dict[str, torch.Tensor]    # the method's modules
    state: dict[str, torch.Tensor]      # the method's sampling state (`export_state`)

    @classmethod
    def of(cls, built: Built, sampler: Sampler, cfg: Config, data: PreparedData, source: dict) -> "Exported":
        """The export of a loaded model that samples with `sampler`: its method computes its sampling state now."""
        state = built.method.export_state(built.model, sampler)
        info = {"method": built.method.variant, "class_names": list(data.class_names),
                "scored_classes": list(data.scored_classes), "dataset": data.name, "source": source}
        return cls(cfg, tuple(built.schedule.mean.flatten().tolist()), info,
                   _cpu(built.model.modules_.state_dict()), _cpu(state))

    def files(self) -> dict[str, bytes]:
        config = {"train": asdict(self.cfg.train), "execution": {"bf16": self.cfg.execution.bf16}}
        return {MODULES_FILE: save(self.weights), STATE_FILE: save(self.state),
                INFO_FILE: _json({**self.info, "config": config}),
                SAMPLING_FILE: _json({"sample": asdict(self.cfg.sample), "data_mean": list(self.data_mean)})}


def read_export(folder: Path) -> Exported:
    """The non-diffusers part of an exported folder; BenchError if it is not one."""
    folder = Path(folder)
    missing = [name for name in (SAMPLING_FILE, INFO_FILE, MODULES_FILE, STATE_FILE) if not (folder / name).is_file()]
    if missing:
        raise BenchError(f"{folder} is not a folder written by `bench export` (no {missing[0]}); export a run "
                         "with `bench export RUN_DIR OUT`")
    info = checked(read_json(folder / INFO_FILE), INFO_SHAPE, folder / INFO_FILE, REEXPORT)
    sampling = checked(read_json(folder / SAMPLING_FILE), SAMPLING_SHAPE, folder / SAMPLING_FILE, REEXPORT)
    vae = folder / VAE_SUBFOLDER
    model = {"vae": str(vae)} if vae.is_dir() else {}
    cfg = build_config({**info["config"], "sample": sampling["sample"], "model": model}, str(folder))
    return Exported(cfg, tuple(sampling["data_mean"]), info, _tensors(folder / MODULES_FILE),
                    _tensors(folder / STATE_FILE))


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise BenchError(f"{path} is unreadable ({type(err).__name__}: {err}); {REEXPORT}") from None


def _cpu(tensors: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
