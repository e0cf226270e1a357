"""[model] init: a pretrained diffusers U-Net from a folder or the Hugging Face cache, fine-tuned."""
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from cli_runner import assert_refused, run_cli

from bench.core.seeds import train_step_seed
from bench.core.store import INIT_FILE, LOG_FILE
from bench.datasets.base import PreparedData
from bench.engine.plan import run_id
from bench.engine.train import BatchStream, augment, build, load_model, train_model
from bench.models.init import load_init_unet
from bench.models.unet import build_unet
from bench.testing import tiny_config

CPU = torch.device("cpu")


def save_unet(folder: Path, condition_path="attention+time", channels=3, seed=123) -> dict:
    """A tiny random U-Net written by save_pretrained; its weights."""
    torch.manual_seed(seed)
    unet = build_unet("tiny", channels, 16, condition_path)
    unet.save_pretrained(folder)
    return unet.state_dict()


def with_init(cfg, init: str, **pretrain):
    return replace(cfg, model=replace(cfg.model, init=init), pretrain=replace(cfg.pretrain, **pretrain))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def suite_toml(tmp_path: Path, init: str, **tables) -> Path:
    """A tiny one-method suite scored by SSIM only (no classifiers to train), starting from `init`."""
    lines = ['[suite]\nmethods = ["baseline"]\nseeds = 1\n[metrics]\nnames = ["ssim"]\n',
             f"[model]\ninit = {json.dumps(init)}\n"]
    lines += [f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
              for name, table in tables.items()]
    path = tmp_path / "suite.toml"
    path.write_text("".join(lines))
    return path


def step0_loss(cfg, data: PreparedData) -> float:
    """The loss that train_model computes on its first batch, for the model `build` gives under `cfg`."""
    torch.manual_seed(0)  # train seed 0: what train_model seeds before building
    built = build(cfg, "baseline", data, CPU)
    x0, labels = BatchStream(data, cfg.train.batch_size, 0, CPU)(0)
    generator = torch.Generator(CPU).manual_seed(train_step_seed(0, 0))
    if data.meta.get("augment") == "dihedral":
        x0 = augment(x0, generator)
    with torch.no_grad():
        return float(built.method.loss(built.model, built.schedule, x0, labels, generator)["loss"]), built


def test_bench_run_fine_tunes_the_folder_weights(tmp_path, monkeypatch, capsys):
    saved = save_unet(tmp_path / "pipe" / "unet")
    config = suite_toml(tmp_path, str(tmp_path / "pipe"))
    code, _, err = run_cli(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local",
                           "--config", str(config), "--results", str(tmp_path / "results"))
    assert code == 0, err
    run_dir = next((tmp_path / "results").rglob(INIT_FILE)).parent
    logged = json.loads((run_dir / LOG_FILE).read_text().splitlines()[0])
    assert logged["step"] == 1  # the loss of step 0's batch, before any update

    cfg = with_init(tiny_config(), str(tmp_path / "pipe"))
    data = PreparedData.load(next((tmp_path / "results").rglob("data-synth-tissue-*.npz")))
    loaded_loss, built = step0_loss(cfg, data)
    assert same_weights(built.model.unet.state_dict(), saved)
    assert logged["loss"] == loaded_loss
    assert step0_loss(with_init(cfg, ""), data)[0] != loaded_loss
    assert json.loads((run_dir / INIT_FILE).read_text())["initialised"] == []


def test_a_pipeline_folder_its_unet_folder_and_a_hugging_face_cache_id_load_alike(tmp_path, monkeypatch):
    import huggingface_hub.constants
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-unet"
    saved = save_unet(repo / "snapshots" / commit / "unet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = repo / "snapshots" / commit
    for spec, kind in ((str(snapshot), "folder"), (str(snapshot / "unet"), "folder"), ("acme/tiny-unet", "hf-cache")):
        unet, provenance = load_init_unet(spec, 3, 16, "attention+time")
        assert same_weights(unet.state_dict(), saved), spec
        assert provenance["kind"] == kind and provenance["cross_attention_dim"] == 32


def test_layers_the_checkpoint_lacks_are_initialised_and_listed(tmp_path):
    saved = save_unet(tmp_path / "sd-like", condition_path="attention")  # no class projection, like SD 1.x
    unet, provenance = load_init_unet(str(tmp_path / "sd-like"), 3, 16, "attention+time")
    assert provenance["initialised"] == ["class_embedding.linear_1", "class_embedding.linear_2"]
    weights = unet.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in saved.items())
    assert 0 < weights["class_embedding.linear_1.weight"].abs().max() < 1  # initialised, not left as raw memory

    _, provenance = load_init_unet(str(tmp_path / "sd-like"), 3, 16, "attention")
    assert provenance["initialised"] == [] and provenance["unused"] == []
    save_unet(tmp_path / "adm-like", condition_path="attention+time")
    _, provenance = load_init_unet(str(tmp_path / "adm-like"), 3, 16, "attention")
    assert provenance["unused"] == ["class_embedding.linear_1", "class_embedding.linear_2"]


def test_the_run_lists_the_initialised_layers(tmp_path, toy_data):
    save_unet(tmp_path / "sd-like", condition_path="attention")
    cfg = with_init(tiny_config(), str(tmp_path / "sd-like"))
    cfg = replace(cfg, train=replace(cfg.train, steps=1))
    train_model(cfg, "baseline", 0, toy_data, tmp_path)
    assert json.loads((tmp_path / INIT_FILE).read_text())["initialised"] == ["class_embedding.linear_1",
                                                                           "class_embedding.linear_2"]


def test_a_changed_init_changes_the_run_id(tmp_path):
    save_unet(tmp_path / "a")
    scratch = tiny_config()
    ids = {run_id(scratch, "baseline", 0)}
    cfg = with_init(scratch, str(tmp_path / "a"))
    ids.add(run_id(cfg, "baseline", 0))
    weights = tmp_path / "a" / "diffusion_pytorch_model.safetensors"
    save_unet(tmp_path / "a", seed=7)  # other weights, same path
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))
    ids.add(run_id(cfg, "baseline", 0))
    assert len(ids) == 3
    ids |= {run_id(with_init(scratch, "pretrain", seed=seed), "baseline", 0) for seed in (0, 1)}
    assert len(ids) == 5  # another pretrain recipe is another backbone; one no run starts from changes nothing:
    assert run_id(with_init(scratch, "", seed=1), "baseline", 0) == run_id(scratch, "baseline", 0)


@pytest.mark.parametrize("make, init, message", [
    (None, "{tmp}/nowhere", "model.init folder {tmp}/nowhere does not exist"),
    ("empty", "{tmp}/empty", "holds no diffusers U-Net"),
    ("gray", "{tmp}/gray", "has in_channels = 1 but the data set has 3 channel(s)"),
    (None, "acme/not-cached", "'acme/not-cached' is not in the local Hugging Face cache"),
    ("torn", "{tmp}/torn", "diffusion_pytorch_model.safetensors is not a valid safetensors file"),
    ("no-weights", "{tmp}/no-weights", "holds no U-Net weights in safetensors"),
    ("pickle", "{tmp}/pickle", "bench never unpickles a .bin file"),
    ("misshapen", "{tmp}/misshapen", "the folder's config.json and weights disagree"),
    ({"json": []}, "{tmp}/json", "json/config.json is not of the shape bench reads: the file is a list, not an object"),
    ({"block_out_channels": 64}, "{tmp}/json", "block_out_channels is an integer, not a list"),
    ({"cross_attention_dim": "abc"}, "{tmp}/json", "cross_attention_dim is 'abc', not an integer or a list"),
    ({"down_block_types": ["NoSuchBlock2D"] * 2}, "{tmp}/json", "its U-Net config.json does not build a U-Net"),
    ("epsilon-pipeline", "{tmp}/pipe", "predicts 'epsilon' ({tmp}/pipe/scheduler/scheduler_config.json) but [train] "
                                       "prediction is 'v'; set [train] prediction = \"epsilon\""),
])
def test_an_unusable_init_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, make, init, message):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    if make == "empty":
        (tmp_path / "empty").mkdir()
    elif make == "gray":
        save_unet(tmp_path / "gray", channels=1)
    elif make == "torn":
        save_unet(tmp_path / "torn")
        (tmp_path / "torn" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    elif make in ("no-weights", "pickle"):
        save_unet(tmp_path / make)
        (tmp_path / make / "diffusion_pytorch_model.safetensors").unlink()
        if make == "pickle":  # a torch file holding a pickle that would run code when loaded
            torch.save({"conv_in.weight": torch.zeros(1)}, tmp_path / make / "diffusion_pytorch_model.bin")
    elif make == "misshapen":
        save_unet(tmp_path / "misshapen")
        config = json.loads((tmp_path / "misshapen" / "config.json").read_text())
        (tmp_path / "misshapen" / "config.json").write_text(json.dumps({**config, "block_out_channels": [8, 32]}))
    elif make == "epsilon-pipeline":  # a pipeline trained to predict eps, fine-tuned by a v suite
        save_unet(tmp_path / "pipe" / "unet")
        (tmp_path / "pipe" / "scheduler").mkdir()
        (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text('{"prediction_type": "epsilon"}')
    elif isinstance(make, dict):  # a config.json of wrong types (issue 34, item 2)
        save_unet(tmp_path / "json")
        config = json.loads((tmp_path / "json" / "config.json").read_text())
        (tmp_path / "json" / "config.json").write_text(json.dumps(make.get("json", {**config, **make})))
    config = suite_toml(tmp_path, init.format(tmp=tmp_path))
    assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--config", str(config),
                   "--results", str(tmp_path / "results"), store=tmp_path / "results", says=message.format(tmp=tmp_path))


def test_a_trained_run_loads_without_reading_the_init_weights_again(tmp_path, toy_data):
    """Evaluating reads the run's checkpoint only: with the init folder's weights file torn after
    training, the run still loads, to the same weights."""
    save_unet(tmp_path / "init")
    cfg = with_init(tiny_config(), str(tmp_path / "init"))
    cfg = replace(cfg, train=replace(cfg.train, steps=1))
    run = tmp_path / "run"
    run.mkdir()
    train_model(cfg, "baseline", 0, toy_data, run)
    before = load_model(cfg, "baseline", toy_data, run, CPU).model.state_dict()
    weights = tmp_path / "init" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert same_weights(load_model(cfg, "baseline", toy_data, run, CPU).model.state_dict(), before)
