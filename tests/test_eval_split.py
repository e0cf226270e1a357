"""`--eval-split val`: a suite of its own, scored on the validation split, that never touches the
test suite; its report says so, and its samples figure shows real images of that split first."""
import hashlib
import io
import json

import numpy as np
import pytest
from cli_runner import assert_refused, run_cli
from PIL import Image

from bench.config import load_config
from bench.core.errors import BenchError
from bench.core.store import MAX_NAME_BYTES, PLAN_FILE, SuiteStore, folder_split, is_suite_name, suite_folder
from bench.datasets.base import PreparedData
from bench.report.collect import collect
from bench.report.figures import real_images, sample_grids
from bench.report.tables import dataset_tables

# The tiny preset with fewer val than test images, so the scored split shows in every count.
VAL_PER_CLASS, TEST_PER_CLASS = 3, 5
TINY = f"""
[suite]
name = "s"
methods = ["baseline", "fgscore"]
seeds = 1
[data]
image_size = 16
train_per_class = 16
val_per_class = {VAL_PER_CLASS}
test_per_class = {TEST_PER_CLASS}
[model]
size = "tiny"
[train]
steps = 2
batch_size = 8
warmup_steps = 1
checkpoint_every = 2
log_every = 1
[sample]
steps = 2
samples_per_class = 2
[expert]
backbone = "tiny"
epochs = 1
[metrics]
kid_subset_size = 4
[execution]
executor = "local"
"""


@pytest.mark.parametrize("name", ["s", "a@b", "a.b-c", "x@va", "val", "s@val@x", "é", "n" * MAX_NAME_BYTES])
def test_a_val_suite_folder_is_never_a_test_suite_folder(tmp_path, name):
    assert suite_folder(name, "test") == name
    val = suite_folder(name, "val")
    assert not is_suite_name(val) and folder_split(val) == "val" and folder_split(name) == "test"
    assert not is_suite_name(val.upper())   # a case-insensitive filesystem merges those folders
    assert SuiteStore.of(tmp_path, name, "val").root == SuiteStore(tmp_path, val).root == tmp_path / val


@pytest.mark.parametrize("name", ["s@val", "S@VAL", "a@Val"])
def test_a_suite_name_that_looks_like_a_val_folder_is_refused(name):
    with pytest.raises(BenchError, match=f"is the folder of suite '{name[:-4]}' scored on the val split"):
        suite_folder(name, "test")
    with pytest.raises(BenchError, match="must be .*not ending in '@val'"):
        load_config(None, overrides={"suite": {"name": name}})


def _tree_digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _metrics(root) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("runs/*/*/*/*/eval/seed=*/metrics.json"))]


def test_val_suite_scores_on_val_beside_an_untouched_test_suite(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(TINY)
    code, out, err = run_cli(monkeypatch, capsys, "run", "--results", "results")
    assert code in (0, None), err
    test_root, val_root = tmp_path / "results" / "s", tmp_path / "results" / "s@val"
    before = _tree_digest(test_root)

    code, out, err = run_cli(monkeypatch, capsys, "run", "--results", "results", "--eval-split", "val")
    assert code in (0, None), err
    assert _tree_digest(test_root) == before
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["s", "s@val"]

    for root, split, per_class in ((test_root, "test", TEST_PER_CLASS), (val_root, "val", VAL_PER_CLASS)):
        evaluations = _metrics(root)
        assert len(evaluations) == 2
        for m in evaluations:
            n_real = per_class * len(m["scored_classes"])
            references = {p.get("reference") for p in m["provenance"].values()} - {None}
            assert references and all(r.endswith(f"-{split}") for r in references)
            assert {p.get("n_ref") for p in m["provenance"].values()} - {None} == {n_real}
        features = next(root.glob("runs/*/fgscore/*/*/eval/seed=0/features.npz"))
        with np.load(features) as npz:   # the held-out images of the clustering figure
            assert len(npz["labels"]) == n_real

    code, out, err = run_cli(monkeypatch, capsys, "report", "--results", "results", "--suite", "s",
                             "--eval-split", "val")
    assert code in (0, None), err
    assert not (test_root / "report").exists()
    board = (val_root / "report" / "leaderboard.md").read_text().splitlines()
    assert board[2] == ("**Scored against the validation split: numbers for choosing settings, not test "
                        "results (bench run --eval-split test scores the test split, in a suite of its own).**")
    assert "Scored against the validation split" in (val_root / "report" / "report.html").read_text()
    code, out, err = run_cli(monkeypatch, capsys, "report", "--results", "results", "--eval-split", "test")
    assert code in (0, None), err
    assert (test_root / "report" / "leaderboard.md").read_text().splitlines()[2] == \
        "**Scored against the test split.**"

    # the samples figure: the real panel comes first and holds the scored split's images
    data = collect(val_root)
    t = dataset_tables(data, next(iter(data.methods)))
    plan = json.loads((val_root / PLAN_FILE).read_text())
    prepared = PreparedData.load(val_root / "cache" / plan["prepared_data"][t.dataset])
    x, y = real_images(data, t.dataset)
    assert np.array_equal(x, prepared.val_x) and np.array_equal(y, prepared.val_y)
    with_real = Image.open(io.BytesIO(sample_grids(data, t))).convert("RGB")
    del data.plan["prepared_data"]   # a store written before plan.json named its data: no real panel
    without_real = Image.open(io.BytesIO(sample_grids(data, t)))
    panel = with_real.width - without_real.width       # one more panel in the row of two methods
    label_w = without_real.width - 2 * panel
    assert with_real.height == without_real.height and 0 < label_w < panel
    first = np.flatnonzero(y == min(prepared.scored_classes))[0]
    size, title_h = 64, 34                             # 16 px tiles drawn at 4x under a two-line title
    tile = with_real.crop((label_w, title_h, label_w + size, title_h + size))
    assert np.array_equal(np.asarray(tile), np.asarray(Image.fromarray(x[first]).convert("RGB")
                                                       .resize((size, size), Image.NEAREST)))


@pytest.mark.parametrize("args, suite_line, fragment", [
    (["run", "--eval-split", "train"], "", "--eval-split must be 'test' or 'val', got 'train'"),
    (["run", "--eval-split", "VAL"], "", "--eval-split must be 'test' or 'val', got 'VAL'"),
    (["run"], 'eval_split = "train"', "suite.eval_split in bench.toml must be 'test' or 'val', got 'train'"),
    (["run"], 'name = "x@VAL"', "suite.name in bench.toml must be"),
    (["report", "--eval-split", "train"], "", "--eval-split must be 'test' or 'val', got 'train'"),
    (["report", "--suite", "x@val"], "", "'x@val' is the folder of suite 'x' scored on the val split; name "
     "the suite 'x' and the split val (bench report --suite x --eval-split val)"),
])
def test_bad_eval_split_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, args,
                                                              suite_line, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(TINY.replace('name = "s"', suite_line or 'name = "s"'))
    assert_refused(monkeypatch, capsys, *args, "--results", "results", store=tmp_path / "results", says=fragment)
