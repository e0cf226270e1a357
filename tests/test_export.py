"""`bench export` and `bench.engine.pipeline.BenchPipeline`: a tiny run leaves the benchmark and samples the same
images in a fresh Python process; bad input is one line, exit 2, nothing written."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import assert_refused, run_cli
from safetensors.torch import save_file
from tiny_vae import save_vae

from bench.config import load_config
from bench.core.errors import BenchError
from bench.core.store import CHECKPOINT_FILE, DONE, FAILED, RUN_CONFIG_FILE, folder_name
from bench.engine.runner import run_suite
from bench.models.init import check_prediction

# the sampling states that differ: none, an embedding bank, centroids, a module only training uses
METHODS = ("baseline", "ssl:simclr_steps=10", "fgscore", "aligned")
# in latent mode: a bank of the VAE's decodes, centroids of latents
LATENT_METHODS = ("ssl:simclr_steps=2", "fgscore:n_refs=2")


def finished_suite(results: Path, methods, overrides: dict | None = None) -> Path:
    """The store of a finished tiny suite of `methods`, one generation seed."""
    cfg = load_config(None, "tiny", {"suite": {"name": "x", "methods": list(methods), "seeds": 1},
                                     "execution": {"executor": "local", "device": "cpu"}, **(overrides or {})})
    summary = run_suite(cfg, results)
    assert not summary.failed, summary.failed
    return summary.root


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return finished_suite(tmp_path_factory.mktemp("store") / "results", METHODS)


@pytest.fixture(scope="module")
def latent_store(tmp_path_factory):
    """A finished tiny suite in latent mode ([model] vae: a tiny random AutoencoderKL)."""
    vae = save_vae(tmp_path_factory.mktemp("vae") / "vae")
    return finished_suite(tmp_path_factory.mktemp("latent") / "results", LATENT_METHODS, {"model": {"vae": vae}})


def run_dir(store, method: str) -> Path:
    (folder,) = (store / "runs" / "synth-tissue" / folder_name(method) / "train-seed=0").iterdir()
    return folder


def test_exports_reproduce_the_stores_samples_in_a_fresh_process(monkeypatch, capsys, store, tmp_path):
    outs = {}
    for method in METHODS:
        outs[method] = tmp_path / folder_name(method)
        if method == "baseline":
            outs[method].mkdir()        # an empty OUT is fine
        code, out, err = run_cli(monkeypatch, capsys, "export", str(run_dir(store, method)), str(outs[method]))
        assert code in (0, None), err
    report = sample_in_a_fresh_process([(m, str(outs[m]), str(run_dir(store, m))) for m in METHODS])
    for method in METHODS:
        assert report[method]["same"], method        # bit for bit
        assert report[method]["dtype"] == "uint8" and report[method]["tumor"] == [[16, 16]] * 3
        assert report[method]["vae"] is None
    assert all(r["lonely"] for r in report.values())  # no Ray
    for out in outs.values():   # the saved scheduler says what the U-Net predicts: the folder is a v suite's init
        assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
        check_prediction(str(out), "v")


def test_latent_exports_carry_their_vae_and_reproduce_the_stores_samples(monkeypatch, capsys, latent_store,
                                                                          tmp_path):
    outs = {method: tmp_path / folder_name(method) for method in LATENT_METHODS}
    for method, out in outs.items():
        code, _, err = run_cli(monkeypatch, capsys, "export", str(run_dir(latent_store, method)), str(out))
        assert code in (0, None), err
        assert json.loads((out / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderKL"]
        assert (out / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    report = sample_in_a_fresh_process([(m, str(outs[m]), str(run_dir(latent_store, m))) for m in LATENT_METHODS])
    for method in LATENT_METHODS:
        assert report[method]["same"], method        # bit for bit: decoded by the exported VAE
        assert report[method]["vae"] == "AutoencoderKL" and report[method]["tumor"] == [[16, 16]] * 3


@pytest.mark.parametrize("case, fragment", [
    ("other-weights", "holds other weights than the VAE run"),
    ("missing", "does not exist; point it at a VAE saved with save_pretrained"),
])
def test_a_latent_run_whose_vae_is_gone_or_changed_is_refused_and_nothing_written(monkeypatch, capsys, latent_store,
                                                                                  tmp_path, case, fragment):
    source = run_dir(latent_store, LATENT_METHODS[0])
    vae = Path(json.loads((source / RUN_CONFIG_FILE).read_text())["config"]["model"]["vae"])
    kept = vae.with_name("kept")
    vae.rename(kept)
    if case == "other-weights":
        save_vae(vae, seed=1)
    try:  # no export, and no latents of the changed VAE in the cache
        assert_refused(monkeypatch, capsys, "export", str(source), str(tmp_path / "out"),
                       store=(tmp_path, latent_store), says=fragment)
    finally:
        shutil.rmtree(vae, ignore_errors=True)
        kept.rename(vae)


FRESH_PROCESS = """
import json, os, sys
import numpy as np, torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from bench.engine.pipeline import BenchPipeline
report = {}
for method, out, run in json.loads(sys.argv[1]):
    UNet2DConditionModel.from_pretrained(out, subfolder="unet", local_files_only=True)   # a valid [model] init
    if os.path.isdir(out + "/vae"):
        AutoencoderKL.from_pretrained(out, subfolder="vae", local_files_only=True)   # plain diffusers reads it
    pipe = BenchPipeline.from_pretrained(out)
    stored = np.load(run + "/eval/seed=0/samples.npz")
    images = pipe(generator=torch.Generator().manual_seed(0)).images
    tumor = pipe(class_name="tumor", num_images=3, generator=torch.Generator().manual_seed(0), output_type="pil")
    report[method] = {"same": bool(np.array_equal(images, stored["images"])), "dtype": str(images.dtype),
                      "tumor": [im.size for im in tumor.images], "lonely": "ray" not in sys.modules,
                      "vae": type(pipe.vae).__name__ if pipe.vae is not None else None}
print(json.dumps(report))
"""


def sample_in_a_fresh_process(jobs: list[tuple[str, str, str]]) -> dict:
    """Per (method, exported folder, run folder): the pipeline's samples of generation seed 0 against the
    run's, and 3 tumor images, from a Python process that imports only diffusers and bench.engine.pipeline."""
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_run_fine_tuned_from_the_suites_pretrain_exports_and_reproduces_its_samples(monkeypatch, capsys,
                                                                                       tmp_path):
    """init = "pretrain" names the suite's artefact, resolved in the store's cache: export finds it there."""
    store = finished_suite(tmp_path / "results", ("baseline",), {"model": {"init": "pretrain"}})
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "export", str(run_dir(store, "baseline")), str(out))
    assert code in (0, None), err
    assert sample_in_a_fresh_process([("baseline", str(out), str(run_dir(store, "baseline")))])["baseline"]["same"]


def test_a_plugin_method_that_cannot_export_is_refused(monkeypatch, capsys, store, tmp_path):
    from bench.methods.baseline import Baseline

    def needs_the_run(self, model, sampler):
        raise BenchError(f"{self.name} samples from its train split, which an export does not carry")
    monkeypatch.setattr(Baseline, "export_state", needs_the_run)
    assert_refused(monkeypatch, capsys, "export", str(run_dir(store, "baseline")), str(tmp_path / "out"),
                   store=tmp_path, says="samples from its train split")


def test_a_failed_write_leaves_nothing(monkeypatch, store, tmp_path):
    from bench.engine.export import export_run
    from bench.engine.pipeline import BenchPipeline

    def disk_full(self, folder, **kwargs):
        (Path(folder) / "half").write_bytes(b"x")
        raise OSError(28, "No space left on device", str(folder))
    monkeypatch.setattr(BenchPipeline, "save_pretrained", disk_full)
    with pytest.raises(OSError):
        export_run(run_dir(store, "baseline"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case, fragment", [
    ("missing", "is not a run folder of a results store"),
    ("outside", "is not a run folder of a results store"),
    ("suite", "is not a run folder of a results store"),
    ("unfinished", "is not finished (no DONE marker)"),
    ("failed", "failed (loss became nan at step 3); there is no model to export"),
    ("no-checkpoint", "has no checkpoint.safetensors"),
    ("torn-checkpoint", "checkpoint.safetensors is unreadable"),
    ("other-weights", "checkpoint.safetensors is unreadable or holds other weights than baseline's model "
                      "(RuntimeError: Error(s) in loading state_dict"),
    ("linked-checkpoint", "checkpoint.safetensors is a link to"),
    ("empty-config", "config.json is not of the shape bench reads: the file lacks config, method, run_id, "
                     "train_seed; delete the run folder"),
    ("config-oops", "config.json is not of the shape bench reads: config is a string, not an object"),
    ("out-not-empty", "already exists and is not an empty folder"),
    ("out-is-a-file", "already exists and is not an empty folder"),
])
def test_bad_export_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, store, tmp_path, case, fragment):
    source, out = run_dir(store, "baseline"), tmp_path / "out" / "export"
    broken = source.parent / f"broken-{case}"  # a copy of the run, in the store, spoiled
    if case in ("unfinished", "failed", "no-checkpoint", "torn-checkpoint", "other-weights", "linked-checkpoint",
                "empty-config", "config-oops"):
        shutil.copytree(source, broken)
    if case == "unfinished":
        (broken / DONE).unlink()
    elif case == "failed":
        (broken / DONE).unlink()
        (broken / FAILED).write_text("loss became nan at step 3\n")
    elif case == "no-checkpoint":
        (broken / CHECKPOINT_FILE).unlink()
    elif case == "torn-checkpoint":
        (broken / CHECKPOINT_FILE).write_bytes(b"\x00" * 7)
    elif case == "other-weights":
        save_file({"conv.weight": torch.zeros(2, 2)}, broken / CHECKPOINT_FILE)
    elif case == "linked-checkpoint":  # another run's weights, here the run's own: a link bench never writes
        (broken / CHECKPOINT_FILE).unlink()
        (broken / CHECKPOINT_FILE).symlink_to(source / CHECKPOINT_FILE)
    elif case == "empty-config":
        (broken / RUN_CONFIG_FILE).write_text("{}")
    elif case == "config-oops":
        config = json.loads((broken / RUN_CONFIG_FILE).read_text())
        (broken / RUN_CONFIG_FILE).write_text(json.dumps({**config, "config": "oops"}))
    elif case == "out-not-empty":
        out.mkdir(parents=True)
        (out / "mine.txt").write_text("keep")
    elif case == "out-is-a-file":
        out.parent.mkdir()
        out.write_text("keep")
    given = {"missing": tmp_path / "nope", "outside": tmp_path, "suite": store}.get(case, broken)
    if case.startswith("out-"):
        given = source
    try:
        assert_refused(monkeypatch, capsys, "export", str(given), str(out), store=(tmp_path, store), says=fragment)
    finally:
        shutil.rmtree(broken, ignore_errors=True)


def test_the_pipeline_refuses_unknown_classes_and_foreign_folders(monkeypatch, capsys, store, tmp_path):
    from bench.engine.pipeline import BenchPipeline
    code, _, err = run_cli(monkeypatch, capsys, "export", str(run_dir(store, "baseline")), str(tmp_path / "out"))
    assert code in (0, None), err
    pipe = BenchPipeline.from_pretrained(tmp_path / "out")
    with pytest.raises(BenchError, match="unknown class 'tumour'; this model's classes: tumor, stroma"):
        pipe(class_name="tumour", generator=torch.Generator().manual_seed(0))
    with pytest.raises(BenchError, match="num_images must be a positive integer, got 0"):
        pipe(class_name="tumor", num_images=0)
    info = json.loads((tmp_path / "out" / "conditioning" / "bench.json").read_text())
    (tmp_path / "out" / "conditioning" / "bench.json").write_text(json.dumps({**info, "method": "offset-noise"}))
    with pytest.raises(BenchError, match="method 'offset-noise' is not registered: load its plug-in first"):
        BenchPipeline.from_pretrained(tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "conditioning")
    with pytest.raises(BenchError, match="is not a folder written by `bench export`"):
        BenchPipeline.from_pretrained(tmp_path / "out")


@pytest.mark.parametrize("file, spoil, fragment", [
    ("conditioning/bench.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "class_names": "x"})),
     "bench.json is not of the shape bench reads: class_names is a string, not a list; export the run again"),
    ("scheduler/bench_sampling.json", lambda p: p.write_text("{}"),
     "bench_sampling.json is not of the shape bench reads: the file lacks sample, data_mean"),
    ("conditioning/modules.safetensors", lambda p: p.write_bytes(b"\x00" * 7),
     "modules.safetensors is unreadable (SafetensorError"),
    ("conditioning/modules.safetensors", lambda p: save_file({"x": torch.zeros(1)}, p),
     "does not load as the model `bench export` wrote (RuntimeError: Error(s) in loading state_dict"),
    ("unet/diffusion_pytorch_model.safetensors", lambda p: p.write_bytes(b"\x00" * 7),
     "does not load as the model `bench export` wrote"),
])
def test_a_tampered_export_is_refused_naming_the_file(monkeypatch, capsys, store, tmp_path, file, spoil, fragment):
    """BenchPipeline.from_pretrained raised KeyError, ValueError or SafetensorError (issue 34, item 3)."""
    from bench.engine.pipeline import BenchPipeline
    code, _, err = run_cli(monkeypatch, capsys, "export", str(run_dir(store, "baseline")), str(tmp_path / "out"))
    assert code in (0, None), err
    spoil(tmp_path / "out" / file)
    with pytest.raises(BenchError) as refused:
        BenchPipeline.from_pretrained(tmp_path / "out")
    assert fragment in str(refused.value) and str(tmp_path / "out") in str(refused.value)
    assert "\n" not in str(refused.value) and "export the run again with `bench export RUN_DIR OUT`" in str(refused.value)
