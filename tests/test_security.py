"""Hostile input: weights files that would run code, names that would leave the store, a plug-in that
would stand in for a built-in, a lock held forever. Each is refused with one line (exit 2)."""
from pathlib import Path

import pytest
import torch
from cli_runner import assert_refused, run_cli

from bench.core.errors import BenchError
from bench.core.store import FileLock, SuiteStore, folder_name
from bench.methods import REGISTRY, ConditioningMethod, load_plugin

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


class _RunsCode:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def plant_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_RunsCode(marker), path)
    return path


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ---- 1. weights files are read, never unpickled --------------------------------------------------
@pytest.mark.parametrize("route", ["argument", "environment"])
def test_a_pickle_given_as_inception_weights_runs_no_code(tmp_path, monkeypatch, route):
    from bench.metrics.inception import WEIGHTS_ENV, load_inception
    marker = tmp_path / "marker"
    evil = plant_pickle(tmp_path / "weights-inception.pth", marker)
    if route == "environment":
        monkeypatch.setenv(WEIGHTS_ENV, str(evil))
    with pytest.raises(BenchError, match="is not a valid weights file") as refused:
        load_inception(tmp_path / "cache", str(evil) if route == "argument" else "")
    assert not marker.exists()
    assert str(evil) in str(refused.value) and WEIGHTS_ENV in str(refused.value)


def test_a_pickle_planted_in_the_cache_runs_no_code(tmp_path):
    """The converted weights' cache name, under the old (.pth) and the current (.safetensors) suffix."""
    from bench.metrics.inception import load_inception, torchscript_path
    from bench.models.pretrained import file_sha256
    marker, cache = tmp_path / "marker", tmp_path / "store" / "cache"
    stem = f"inception-{file_sha256(torchscript_path())[:16]}"
    plant_pickle(cache / f"{stem}.pth", marker)
    planted = plant_pickle(cache / f"{stem}.safetensors", marker)
    with pytest.raises(BenchError, match="delete it") as refused:
        load_inception(cache)
    assert not marker.exists()
    assert str(planted) in str(refused.value) and "\n" not in str(refused.value)


def test_a_weights_file_of_another_network_is_refused(tmp_path):
    from safetensors.torch import save_file

    from bench.metrics.inception import load_inception
    save_file({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(BenchError, match="holds no Inception v3 weights"):
        load_inception(tmp_path / "cache", str(tmp_path / "other.safetensors"))


def test_a_pickle_given_as_backbone_weights_runs_no_code(tmp_path):
    """expert.weights and ssl timm: weights go through the same reader (timm 1.0.9-1.0.25 would unpickle)."""
    from bench.models.pretrained import create_backbone
    marker = tmp_path / "marker"
    evil = plant_pickle(tmp_path / "w.pth", marker)
    with pytest.raises(BenchError, match="is not a valid weights file"):
        create_backbone("test_resnet", num_classes=2, in_chans=1, weights=str(evil))
    assert not marker.exists()


def test_a_pickle_given_as_open_clip_weights_runs_no_code(tmp_path):
    import json

    import open_clip
    from safetensors.torch import save_file

    from bench.models.encoders import open_clip_encoder
    config = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "bench-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "bench-tiny-clip.json")
    marker = tmp_path / "marker"
    with pytest.raises(BenchError, match="is not a valid weights file"):
        open_clip_encoder("bench-tiny-clip", plant_pickle(tmp_path / "clip.pth", marker))
    assert not marker.exists()
    save_file(open_clip.create_model("bench-tiny-clip").state_dict(), tmp_path / "clip.safetensors")
    assert open_clip_encoder("bench-tiny-clip", tmp_path / "clip.safetensors").dim == 16


def test_a_torch_state_dict_file_still_initialises_a_backbone(tmp_path):
    import timm

    from bench.models.pretrained import create_backbone
    source = timm.create_model("test_resnet", num_classes=5)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model, init = create_backbone("test_resnet", num_classes=5, in_chans=3, weights=str(tmp_path / "w.pth"))
    assert init["init"] == "file"
    head = model.pretrained_cfg["classifier"]  # timm re-initialises a head whose size is not its config's
    for name, tensor in source.state_dict().items():
        if not name.startswith(head):
            torch.testing.assert_close(model.state_dict()[name], tensor)


# ---- 3. nothing is written outside the results store ----------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "{absolute}", "", ".", "..", "a/b", "a:b"])
def test_a_suite_name_that_is_no_plain_folder_is_refused(monkeypatch, capsys, tmp_path, name):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    name = name.format(absolute=tmp_path / "x")  # like /tmp/x, but where this test can see it
    (work / "bench.toml").write_text(f"[suite]\nname = {name!r}\n".replace("'", '"'))
    assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--results", "results",
                   store=tmp_path, says=("suite.name", "plain folder name"))


def test_report_refuses_a_suite_outside_the_store(monkeypatch, capsys, tmp_path):
    assert_refused(monkeypatch, capsys, "report", "--results", str(tmp_path / "results"), "--suite", "../elsewhere",
                   store=tmp_path, says="plain folder name")


def test_a_data_set_path_that_climbs_out_writes_only_under_the_results(monkeypatch, capsys, tmp_path):
    """folder:../../../../../x is a data source like any other; its folder in the store is a plain name."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "x" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "x" / name / f"{i}.png")
    work = tmp_path / "w1" / "w2" / "w3" / "w4" / "w5"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (work / "bench.toml").write_text('[suite]\nname = "s"\nseeds = 1\n[data]\nexclude_classes = []\n'
                                     '[metrics]\nnames = ["ssim"]\n')
    before = files_under(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local",
                             "--results", "results", "--dataset", "folder:../../../../../x")
    assert code == 0, err
    written = files_under(tmp_path) - before
    results = work / "results"
    assert written and all(p == results or p.is_relative_to(results) for p in written), \
        sorted(str(p) for p in written if not p.is_relative_to(results))
    (run_dir,) = {p.parent for p in results.glob("s/runs/*/*/train-seed=0/*/DONE")}
    assert run_dir.parts[-4] == folder_name("folder:../../../../../x") == "folder@.._.._.._.._.._x"


@pytest.mark.parametrize("text, folder", [
    ("drift:delta=-0.05,target=shifted", "drift@delta=-0.05+target=shifted"),   # unchanged mapping
    ("folder:/abs/path", "folder@_abs_path"), ("..", "_.."), (".", "_."), ("", "_"), ("a\\b", "a_b"),
])
def test_folder_names_are_one_plain_component(text, folder):
    assert folder_name(text) == folder


def test_long_names_are_shortened_and_kept_apart():
    a, b = folder_name("x" * 300 + "a"), folder_name("x" * 300 + "b")
    assert a != b and len(a.encode()) <= 200 and "/" not in a


def test_the_store_refuses_run_folders_outside_it(tmp_path):
    """Names read back from a tampered plan.json cannot lead out of the store either."""
    store = SuiteStore(tmp_path / "results", "s")
    assert store.run_dir("folder:../../../../x", "ssl:encoder=timm:../../etc/passwd", 0, "ab12").is_relative_to(store.root)
    with pytest.raises(BenchError, match="outside the results store"):
        store.run_dir("synth", "baseline", "0/../../../../../../elsewhere", "ab12")
    with pytest.raises(BenchError, match="plain folder name"):
        SuiteStore(tmp_path / "results", "../elsewhere")


# ---- 4. a plug-in cannot stand in for a registered method -------------------------------------------
def test_a_plugin_taking_a_built_in_name_is_refused_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.py").write_text("from bench.methods import ConditioningMethod\n\n\n"
                                      "class Evil(ConditioningMethod):\n    name = \"baseline\"\n")
    builtin = REGISTRY["baseline"]
    err = assert_refused(monkeypatch, capsys, "run", "--plugin", "evil.py", "--preset", "tiny", "--executor", "local",
                         "--results", "results", store=tmp_path / "results",
                         says=("evil.py", "'baseline'", "already registered by bench.methods.baseline.Baseline"))
    assert "failed to import" not in err
    assert REGISTRY["baseline"] is builtin


def test_the_same_plugin_loaded_again_is_not_refused(tmp_path):
    """A Ray worker (or a test) importing the same plug-in file again registers the same class again."""
    plugin = tmp_path / "twice.py"
    plugin.write_text("from bench.methods import ConditioningMethod\n\n\n"
                      "class Twice(ConditioningMethod):\n    name = \"twice\"\n")
    try:
        load_plugin(str(plugin))
        load_plugin(str(plugin))
        assert REGISTRY["twice"].__module__ == "bench_plugin_twice"
    finally:
        REGISTRY.pop("twice", None)


def test_run_id_tells_method_classes_apart(tiny_config):
    from bench.engine.plan import run_id

    def register(module: str):
        return type("Twin", (ConditioningMethod,), {"name": "twin", "__module__": module})

    try:
        register("plugin_a")
        first = run_id(tiny_config, "twin", 0)
        register("plugin_a")  # the same class again: the same id
        assert run_id(tiny_config, "twin", 0) == first
        REGISTRY.pop("twin")
        register("plugin_b")  # same name, same parameters, another class
        assert run_id(tiny_config, "twin", 0) != first
    finally:
        REGISTRY.pop("twin", None)


# ---- 14. a lock held too long ends in one line naming the lock file ----------------------------------
def test_a_lock_wait_that_times_out_names_the_lock_file(tmp_path):
    path = tmp_path / "store" / "cache" / "expert-x.lock"
    with FileLock(path):
        with pytest.raises(BenchError) as refused:
            with FileLock(path, timeout_s=0.05):
                pass
    message = str(refused.value)
    assert str(path) in message and "another bench process" in message and "delete" in message
    with FileLock(path, timeout_s=0.05):  # released: the next process gets it at once
        pass
