"""`bench export RUN_DIR OUT`: a finished run as a diffusers-format folder, sampled outside the benchmark
(no Ray, no results store) by `bench.pipeline.BenchPipeline`.

OUT/
  model_index.json                  BenchPipeline's diffusers components
  unet/                             the EMA U-Net sampling uses (save_pretrained): also a valid `[model] init`
  vae/                              latent mode ([model] vae) only: the run's AutoencoderKL (save_pretrained,
                                    safetensors), which the pipeline decodes with (bench/models/latent.py)
  scheduler/scheduler_config.json   the diffusers scheduler bench samples with (schedule, spacing, clipping)
  scheduler/bench_sampling.json     the run's [sample] settings (sampler, steps, eta, guidance, classes' image
                                    count, batch size) and the data-centring mean mu ([train] center_data; 0 off)
  conditioning/modules.safetensors  the method's modules besides the U-Net (EMA): class embeddings, projections
  conditioning/state.safetensors    the method's sampling state (`export_state`: ssl's embedding bank,
                                    fgscore's centroids at the sampler's timesteps)
  conditioning/bench.json           method variant, class names, scored classes, [train] settings, the source run
The folder is written under a temporary name beside OUT and renamed at the end: OUT is whole or absent.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bench import __version__
from bench.errors import BenchError
from bench.store import DONE, FAILED, SuiteStore, read_json

if TYPE_CHECKING:  # torch and the config are imported on use: `bench --help` stays fast
    import torch

    from bench.config import Config
    from bench.datasets.base import PreparedData
    from bench.diffusion import Sampler
    from bench.train import Built

SAMPLING_FILE = "scheduler/bench_sampling.json"
INFO_FILE = "conditioning/bench.json"
MODULES_FILE = "conditioning/modules.safetensors"
STATE_FILE = "conditioning/state.safetensors"
RUN_LAYOUT = "results/<suite>/runs/<dataset>/<method>/train-seed=<k>/<run_id>/"


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
        from safetensors.torch import save
        config = {"train": asdict(self.cfg.train), "execution": {"bf16": self.cfg.execution.bf16}}
        return {MODULES_FILE: save(self.weights), STATE_FILE: save(self.state),
                INFO_FILE: _json({**self.info, "config": config}),
                SAMPLING_FILE: _json({"sample": asdict(self.cfg.sample), "data_mean": list(self.data_mean)})}


def export_command(
    run_dir: Path = typer.Argument(..., help=f"a finished run folder: {RUN_LAYOUT}"),
    out: Path = typer.Argument(..., help="the folder to write (must not exist, or be empty)"),
    plugin: list[str] = typer.Option([], help="a .py file or module defining the run's method, if a plug-in"),
):
    """Export a finished run as a diffusers-format folder that bench.pipeline.BenchPipeline samples."""
    from bench.cli import _load_plugins
    _load_plugins(plugin)
    typer.echo(f"exported {run_dir} to {export_run(run_dir, out)}")


def export_run(run_dir: Path, out: Path) -> Path:
    """Write the export of `run_dir` to `out` (whole, or not at all); return `out`."""
    run_dir, out = Path(run_dir).resolve(), Path(out).resolve()
    store = _suite_store(run_dir)
    _check_out(out)
    pipeline, files = _contents(run_dir, store)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()
    try:
        pipeline.save_pretrained(tmp)
        for name, data in files.items():
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(data)
        os.replace(tmp, out)              # onto OUT if it is an empty folder (checked above)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _contents(run_dir: Path, store: SuiteStore):
    """The run's pipeline (U-Net with EMA weights, scheduler) and the other files of its export, by name."""
    from safetensors import SafetensorError

    from bench.config import build_config
    from bench.datasets.base import PreparedData
    from bench.diffusion import Sampler
    from bench.pipeline import BenchPipeline
    from bench.pretrain import with_init_resolved
    from bench.sample import sampler_settings
    from bench.tasks import check_reused_runs, latents_of, method_resources, prepare_data
    from bench.train import CHECKPOINT_FILE, load_model, resolve_device

    config = read_json(run_dir / "config.json")
    cfg = build_config(config["config"], str(run_dir / "config.json"))
    if cfg.model.vae:   # before prepare_data, which would encode the data with another VAE
        _check_vae(cfg.model.vae, config.get("vae_weights"), run_dir)
    data_path = prepare_data(cfg, store.cache)
    check_reused_runs([run_dir], data_path)
    data = PreparedData.load(data_path)
    device = resolve_device(cfg.execution.device)
    variant = config["method"]
    latents = latents_of(cfg, data_path, device)
    try:
        built = load_model(with_init_resolved(cfg, store.cache), variant, data, run_dir, device,
                           *method_resources(cfg, variant, data, store, device), latents)
    except SafetensorError as err:
        raise BenchError(f"{run_dir / CHECKPOINT_FILE} is unreadable ({err}); delete the run folder and run "
                         "`bench run` again to retrain it") from None
    source = {"run_dir": str(run_dir), "run_id": config["run_id"], "train_seed": config["train_seed"],
              "code_version": config["code_version"], "exported_by": __version__}
    sampler = Sampler.from_config(built.schedule, sampler_settings(cfg))
    exported = Exported.of(built, sampler, cfg, data, source)
    vae = None if latents is None else latents.vae.model
    return BenchPipeline(unet=built.model.unet, scheduler=sampler.scheduler, vae=vae), exported.files()


def _check_vae(spec: str, trained_with: str | None, run_dir: Path) -> None:
    """BenchError unless the VAE at `spec` has the weights (`weights_hash`) run_dir's model was trained on: with
    other weights its latents mean something else. A run that did not record them (written before
    config.json kept vae_weights) is taken on trust."""
    from bench.models.latent import weights_hash
    if trained_with is not None and weights_hash(spec) != trained_with:
        raise BenchError(f"model.vae {spec} holds other weights than the VAE run {run_dir} was trained with "
                         f"(sha256 {trained_with}...); put that VAE back at this path to export the run")


def _cpu(tensors: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def read_export(folder: Path) -> Exported:
    """The non-diffusers part of an exported folder; BenchError if it is not one."""
    from safetensors.torch import load_file

    from bench.config import build_config
    from bench.models.latent import VAE_SUBFOLDER
    folder = Path(folder)
    missing = [name for name in (SAMPLING_FILE, INFO_FILE, MODULES_FILE, STATE_FILE) if not (folder / name).is_file()]
    if missing:
        raise BenchError(f"{folder} is not a folder written by `bench export` (no {missing[0]}); export a run "
                         "with `bench export RUN_DIR OUT`")
    info, sampling = read_json(folder / INFO_FILE), read_json(folder / SAMPLING_FILE)
    vae = folder / VAE_SUBFOLDER
    model = {"vae": str(vae)} if vae.is_dir() else {}
    cfg = build_config({**info["config"], "sample": sampling["sample"], "model": model}, str(folder))
    return Exported(cfg, tuple(sampling["data_mean"]), info,
                    load_file(folder / MODULES_FILE), load_file(folder / STATE_FILE))


def _suite_store(run_dir: Path) -> SuiteStore:
    """The store holding `run_dir`, once it is a finished run folder of one."""
    from bench.train import CHECKPOINT_FILE
    root = run_dir.parents[4] if len(run_dir.parents) > 4 else None
    if not (run_dir / "config.json").is_file() or root is None or run_dir.parents[3].name != "runs" \
            or not (root / "plan.json").is_file():
        raise BenchError(f"{run_dir} is not a run folder of a results store ({RUN_LAYOUT} holding config.json); "
                         "pass one of those")
    if (run_dir / FAILED).exists():
        reason = (run_dir / FAILED).read_text().strip()
        raise BenchError(f"run {run_dir} failed ({reason}); there is no model to export")
    if not (run_dir / DONE).exists():
        raise BenchError(f"run {run_dir} is not finished (no {DONE} marker); finish it with `bench run` first")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise BenchError(f"run {run_dir} has no {CHECKPOINT_FILE}; delete the run folder and run `bench run` again "
                         "to retrain it")
    return SuiteStore(root.parent, root.name)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out} already exists and is not an empty folder; choose a new OUT or delete it")
