"""`bench eval`: folders and .npz files of generated images against a folder or a data set."""
import json

import numpy as np
import pytest
import typer
from conftest import make_data
from PIL import Image
from typer.testing import CliRunner

from bench.cli.eval import eval_command
from bench.core.errors import BenchError

app = typer.Typer()
app.command()(eval_command)
app.command("unused")(lambda: None)  # two commands: typer keeps `eval` options at the top level


def _write_tree(root, images, labels, names):
    for i, (im, y) in enumerate(zip(images, labels)):
        folder = root / names[y] if names else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i}.png")


def _invoke(*args):
    result = CliRunner().invoke(app, ["eval-command", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_folders_with_class_subfolders(tmp_path):
    data = make_data(num_classes=2, per_class=8, size=16)
    _write_tree(tmp_path / "real", data.test_x, data.test_y, data.class_names)
    _write_tree(tmp_path / "fake", data.val_x, data.val_y, data.class_names)
    out = tmp_path / "m.json"
    result = _invoke("--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                     "--metrics", "ssim,kid[effnet]", "--out", str(out), "--cache", str(tmp_path / "c"))
    written = json.loads(out.read_text())
    assert set(written) == {"metrics", "provenance"}
    assert set(written["metrics"]) == {"ssim", "kid[effnet]"}
    assert written["provenance"]["ssim"]["n_gen"] == 8 and "kid[effnet]" in result.output  # not eaten as markup


def test_npz_against_a_data_set_with_the_scorer_and_the_expert(tmp_path):
    data = make_data(num_classes=3, per_class=16, size=16)
    real = tmp_path / "real.npz"
    np.savez(real, images=np.concatenate([data.train_x, data.test_x]),
             labels=np.concatenate([data.train_y, data.test_y]))
    np.savez(tmp_path / "fake.npz", images=data.val_x, labels=data.val_y)
    out = tmp_path / "m.json"
    _invoke("--real", f"npz:{real}", "--fake", str(tmp_path / "fake.npz"), "--metrics",
            "acc[scorer],acc[expert],fid[scorer]", "--expert-backbone", "tiny", "--scorer-backbone", "tiny-effnet",
            "--out", str(out), "--cache", str(tmp_path / "c"))
    written = json.loads(out.read_text())
    assert 0 <= written["metrics"]["acc[scorer]"] <= 1 and 0 <= written["metrics"]["acc[expert]"] <= 1
    prov = written["provenance"]
    assert prov["fid[scorer]"]["network"].startswith("scorer tiny-effnet")
    assert prov["acc[expert]"]["network"].startswith("expert tiny")
    assert prov["acc[scorer]"]["weights_sha256"] != prov["acc[expert]"]["weights_sha256"]


def test_flat_folder_is_one_class_and_cannot_give_an_accuracy(tmp_path):
    data = make_data(num_classes=2, per_class=8, size=16, channels=1)
    _write_tree(tmp_path / "real", data.test_x, data.test_y, None)
    _write_tree(tmp_path / "fake", data.val_x, data.val_y, None)
    out = tmp_path / "m.json"
    _invoke("--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "ssim",
            "--out", str(out), "--cache", str(tmp_path / "c"))
    assert json.loads(out.read_text())["provenance"]["ssim"]["n_per_class"] == {"all": 8}
    with pytest.raises(BenchError, match="need --real to be a data set"):
        _invoke("--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "fid[scorer]")
    real = tmp_path / "real.npz"
    np.savez(real, images=np.concatenate([data.train_x, data.test_x]),
             labels=np.concatenate([data.train_y, data.test_y]))
    with pytest.raises(BenchError, match="class labels"):
        _invoke("--real", f"npz:{real}", "--fake", str(tmp_path / "fake"), "--metrics", "acc[scorer]")
