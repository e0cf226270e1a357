"""`bench pretrain` and [model] init = "pretrain": trained once, cached by recipe, every method starts from it."""
import json
from pathlib import Path

import torch
from cli_runner import assert_refused, run_cli
from diffusers import UNet2DConditionModel

from bench.core.store import INIT_FILE

WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"


def suite(tmp_path: Path, **pretrain) -> Path:
    """A tiny suite starting from the pretrain artefact, scored by SSIM only (no classifiers to train)."""
    path = tmp_path / f"suite{len(pretrain)}.toml"
    path.write_text('[suite]\nmethods = ["baseline", "drift"]\nseeds = 1\n[metrics]\nnames = ["ssim"]\n'
                    '[model]\ninit = "pretrain"\n[pretrain]\n' + "".join(f"{k} = {v!r}\n" for k, v in pretrain.items()))
    return path


def pretrain(monkeypatch, capsys, config: Path, results: Path) -> Path:
    code, out, err = run_cli(monkeypatch, capsys, "pretrain", "--preset", "tiny", "--config", str(config),
                             "--results", str(results))
    assert code == 0, err
    return Path(out.strip())


def test_the_artefact_is_trained_once_and_every_method_starts_from_it(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    folder = pretrain(monkeypatch, capsys, suite(tmp_path), results)
    stamp = (folder / WEIGHTS).stat().st_mtime_ns
    recipe = json.loads((folder / "recipe.json").read_text())
    assert folder.name == f"pretrain-{recipe['key']}" and recipe["source"] == "synth-tissue-ihc"
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
    assert unet.config.in_channels == 3

    assert pretrain(monkeypatch, capsys, suite(tmp_path), results) == folder  # cached: not trained again
    code, _, err = run_cli(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local",
                           "--config", str(suite(tmp_path)), "--results", str(results))
    assert code == 0, err
    assert (folder / WEIGHTS).stat().st_mtime_ns == stamp
    runs = sorted(results.rglob(INIT_FILE))
    assert len(runs) == 2
    for init_file in runs:
        provenance = json.loads(init_file.read_text())
        assert provenance["folder"] == str(folder) and provenance["kind"] == "bench-pretrain"
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results", str(results), "--format", "md")
    assert code == 0, err
    setup = (results / "default" / "report" / "leaderboard.md").read_text()
    assert 'pretrained by \\`bench pretrain\\` on synth-tissue-ihc' in setup and 'model.init = "pretrain"' in setup
    other = pretrain(monkeypatch, capsys, suite(tmp_path, seed=1), results)  # another recipe, another artefact
    assert other != folder
    weights = [UNet2DConditionModel.from_pretrained(f, subfolder="unet").conv_in.weight for f in (folder, other)]
    assert not torch.equal(*weights)


def test_a_pretrain_source_that_does_not_exist_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    for command in ("pretrain", "run"):
        config = suite(tmp_path, data="no-such-set")
        assert_refused(monkeypatch, capsys, command, "--preset", "tiny", "--config", str(config),
                       "--results", str(tmp_path / "results"), store=tmp_path / "results",
                       says="pretrain.data: unknown data set 'no-such-set'")
