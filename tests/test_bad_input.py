"""Bad input of every kind through the real command line (issue 15): one line on stderr, exit 2,
no traceback, nothing written in the results store. Every case fails before any work starts."""
import json
import os

import numpy as np
import pytest
from cli_runner import assert_refused, run_cli
from PIL import Image

from bench.config import load_config
from bench.core.store import METRICS_FILE, PLAN_FILE, RUN_CONFIG_FILE, SuiteStore
from bench.engine.data import prepare_data
from bench.engine.plan import build_plan

# The tiny preset written out as a file (so [expert] / [scorer] keys are not overridden by the preset).
TINY = {
    "suite": {"name": "t", "seeds": 1, "methods": ["baseline"]},
    "data": {"image_size": 16, "train_per_class": 16, "val_per_class": 8, "test_per_class": 8,
             "exclude_classes": []},
    "model": {"size": "tiny"},
    "train": {"steps": 2, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
    "sample": {"steps": 2, "samples_per_class": 2},
    "expert": {"backbone": "tiny", "epochs": 1},
    "scorer": {"backbone": "tiny-effnet", "epochs": 1},
    "metrics": {"names": ["ssim"], "kid_subset_size": 8},
    "execution": {"executor": "local", "device": "cpu"},
}


def toml(**changes) -> str:
    """TINY with `changes` ({section: {key: value}}) as TOML text."""
    def value(v):  # floats as Python writes them: nan, inf and 1e+300 are TOML too
        if isinstance(v, list):
            return "[" + ", ".join(map(value, v)) + "]"
        return repr(v) if isinstance(v, float) else json.dumps(v)

    tables = {s: {**t, **changes.get(s, {})} for s, t in TINY.items()}
    return "".join(f"[{s}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in t.items()) for s, t in tables.items())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Bad data on disk (read only by the tests): a decompression bomb, a class too small to score,
    splits that disagree, object arrays, a plug-in that exits."""
    tmp_path = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)

    def tile():
        return Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))

    for name, count in (("bomb/a", 10), ("bomb/b", 10), ("few", 8), ("tiles/a", 10), ("tiles/b", 10)):
        (tmp_path / name).mkdir(parents=True)
        for i in range(count):
            tile().save(tmp_path / name / f"{i}.png")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb/a/big.png")   # 48 kB on disk, 400 Mpx
    x = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "disagree.npz", train_images=x, train_labels=np.repeat(np.arange(50, 60), 4),
             val_images=x, val_labels=np.repeat(np.arange(10), 4),
             test_images=x, test_labels=np.repeat(np.arange(10), 4))
    np.savez(tmp_path / "fake.npz", images=x, labels=np.arange(40) % 2)
    np.savez(tmp_path / "same.npz", images=x, labels=np.arange(40) % 3, class_names=np.array(["same", "same", "other"]))
    np.savez(tmp_path / "none.npz", images=x[:0], labels=np.zeros(0, np.int64))
    np.savez(tmp_path / "objects.npz", images=np.array([object(), 1], dtype=object))
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    return tmp_path


RUN = ("run", "--results", "results")


@pytest.mark.parametrize("changes, args, fragment", [
    ({"train": {"lr": float("inf")}}, (), "train.lr in bench.toml must be a finite number"),
    ({"train": {"grad_clip": float("nan")}}, (), "train.grad_clip in bench.toml must be a finite number"),
    ({"train": {"lr": 1e300}}, (), "train.lr in bench.toml must be a finite number"),
    ({"data": {"split": [0.5, 0.5, float("nan")]}}, (), "data.split in bench.toml[2] must be a finite"),
    ({"expert": {"batch_size": 0}}, (), "expert.batch_size in bench.toml must be an integer from 2"),
    ({"expert": {"epochs": 0}}, (), "expert.epochs in bench.toml must be an integer from 1"),
    ({"expert": {"backbone": "resnet-nope"}}, (), "expert.backbone in bench.toml must be a timm model name"),
    ({"scorer": {"epochs": 0}}, (), "scorer.epochs in bench.toml must be an integer from 1"),
    ({"expert": {"patience": 0}}, (), "expert.patience in bench.toml must be an integer from 1"),
    ({"scorer": {"class_balance": "oversample"}}, (),
     "scorer.class_balance in bench.toml must be one of 'sampler', 'loss', 'none', got 'oversample'"),
    ({"scorer": {"backbone": "test_resnet", "seed": 0}}, (), "[scorer] in bench.toml is identical to [expert]"),
    ({"execution": {"device": "gpu"}}, (), "execution.device in bench.toml must be auto, cpu, cuda or cuda:N"),
    ({"execution": {"device": "cuda:x"}}, (), "execution.device"),
    ({"execution": {"device": "cuda:99"}}, (), "execution.device = 'cuda:99', but this machine has"),
    ({"execution": {"executor": "ray", "address": "ray://head:10001", "num_gpus": 1, "device": "cuda:1"}}, (),
     "execution.device = 'cuda:1', but a Ray task sees only the 1 GPU(s) it reserves (execution.num_gpus), as cuda:0"),
    # a private Ray instance has this machine's resources: refused before Ray starts, not after plan.json
    ({"execution": {"executor": "ray", "num_cpus": 1000}}, (),
     "execution.num_cpus = 1000 but this machine (bench starts a private Ray instance on it) has"),
    ({"execution": {"executor": "ray", "num_gpus": 10**3, "device": "cpu"}}, (),
     "execution.num_gpus = 1000 but this machine (bench starts a private Ray instance on it) has"),
    ({"execution": {"num_gpus": "all"}}, (), "execution.num_gpus in bench.toml must be a number or 'auto', got 'all'"),
    ({"execution": {"executor": "ray", "device": "cuda"}}, (), "execution.device = 'cuda' but this machine"),
    ({}, ("--seeds", str(10**9)), "suite.seeds in bench.toml + command-line flags must be an integer from 1 to"),
    ({"sample": {"samples_per_class": 10**9}}, (), "sample.samples_per_class"),
    ({}, ("--methods", "drift:delta=nan"), "bad value 'nan' for drift:delta; expected a finite number"),
    ({}, ("--methods", "drift:delta=1e300"), "bad value '1e300' for drift:delta; expected a finite number"),
    ({"sample": {"guidance": float("inf")}}, (), "sample.guidance in bench.toml must be a finite number"),
    ({}, ("--methods", "aligned:w1=-1"), "bad parameters for method aligned: w1 and w2"),
    ({"sample": {"guidance": -1}}, (), "sample.guidance in bench.toml must be a number >= 0"),
    ({"train": {"p_uncond": 1.5}}, (), "train.p_uncond in bench.toml must be in [0, 1)"),
    ({"train": {"p_uncond": 1}}, (), "train.p_uncond in bench.toml must be in [0, 1)"),
    ({"train": {"p_uncond": 0}}, (), "method baseline would sample with sample.guidance = 1.5 from an untrained null"),
    ({"model": {"condition_path": "time"}}, (), "model.condition_path in bench.toml must be one of 'attention+time'"),
    ({}, ("--methods", "ssl:guidance=2"), "unknown parameter 'guidance' for method ssl"),
    ({}, ("--methods", "aligned:hook=__class__"), "method variant aligned:hook=__class__: no U-Net module"),
    ({}, ("--methods", "aligned:hook=time_embedding"), "hook: U-Net module 'time_embedding' outputs shape"),
    ({}, ("--methods", "fgscore:layers="), "bad parameters for method fgscore: layers needs"),
    ({}, ("--methods", "fgscore:layers=mid_block/nope"), "no U-Net module at 'nope'"),
    ({}, ("--methods", "ssl:encoder=timm:../../etc/passwd"), "'../../etc/passwd' is not a timm model name"),
    ({}, ("--methods", "ssl:encoder=timm:resnet18"), "ssl encoder timm:resnet18 needs local weights"),
    ({}, ("--methods", "ssl:encoder=nope"), "unknown ssl encoder 'nope'"),
    ({}, ("--methods", "ssl:encoder=scorer"), "ssl encoder 'scorer' is refused"),
    # 3 scored classes x 2 images: fewer generated images than density's k-NN needs (the real side has 24)
    ({"data": {"exclude_classes": ["tumor", "stroma", "complex", "lympho", "debris"]},
      "metrics": {"names": ["density[scorer]"]}}, (),
     "density[scorer] need at least 7 generated and 7 real images of the scored classes, got 6 and 24; "
     "raise sample.samples_per_class"),
])
def test_bad_suite_is_refused_at_planning(monkeypatch, capsys, tmp_path, changes, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml(**changes))
    assert_refused(monkeypatch, capsys, *RUN, *args, store=tmp_path / "results", says=fragment)


@pytest.mark.parametrize("dataset, changes, fragment", [
    ("folder:bomb", {}, "exceeds limit of 178956970 pixels"),
    # one class of 8 images: 1 test image, and FID needs 2 (a LinAlgError inside FID before)
    ("folder:few", {"metrics": {"names": ["fid[inception]"]}},
     "fid[inception] need at least 2 generated and 2 real images of the scored classes, got 2 and 1"),
    ("npz:disagree.npz", {}, "every scored class needs train, val and test images, but train lacks 50 classes"),
    ("npz:objects.npz", {}, "objects.npz: truncated or not an .npz of plain arrays"),
    ("npz:same.npz", {}, "same.npz names several classes 'same'; give every class its own name"),
    ("npz:none.npz", {}, "none.npz: holds no images; save the images and their labels into it"),
])
def test_bad_data_is_refused_before_the_cache_or_plan_is_written(monkeypatch, capsys, tmp_path, inputs,
                                                                 dataset, changes, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml(**changes))
    kind, _, name = dataset.partition(":")
    assert_refused(monkeypatch, capsys, *RUN, "--dataset", f"{kind}:{inputs / name}", store=tmp_path / "results",
                   says=fragment)


def test_splits_that_disagree_name_the_classes_missing_from_each(monkeypatch, capsys, inputs):
    assert_refused(monkeypatch, capsys, "data", "verify", f"npz:{inputs / 'disagree.npz'}", store=inputs,
                   says=("train lacks 50 classes ('0', '1', '2', '3', '4', '5', '6', '7', ...); "
                         "val lacks 50 classes ('10', '11',", "test lacks 50 classes"))


def test_plugin_calling_sys_exit(monkeypatch, capsys, tmp_path, inputs):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml())
    assert_refused(monkeypatch, capsys, *RUN, "--plugin", str(inputs / "exits.py"), store=tmp_path / "results",
                   says="exits.py failed to import: it called sys.exit(3)")


@pytest.mark.parametrize("args, fragment", [
    (("--fake", "objects.npz"), "objects.npz: truncated or not an .npz of plain arrays"),
    (("--fake", "tiles", "--kid-subset-size", "0"), "--kid-subset-size must be an integer >= 2, got 0"),
    (("--fake", "tiles", "--device", "gpu"), "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (("--fake", "tiles", "--expert-backbone", "nope"), "--expert-backbone must be a timm model name"),
])
def test_bad_eval_input(monkeypatch, capsys, tmp_path, inputs, args, fragment):
    monkeypatch.chdir(inputs)  # the inputs by name, the cache in this test's folder
    assert_refused(monkeypatch, capsys, "eval", "--real", "tiles", "--metrics", "ssim,kid[inception]",
                   "--cache", str(tmp_path / "cache"), *args, store=(tmp_path / "cache", inputs), says=fragment)


def test_a_file_where_the_store_should_be(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml())
    (tmp_path / "results").write_text("not a folder")
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results",
                   says=f"Not a directory: {tmp_path / 'results' / 't' / 'cache'}; fix that path")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml())
    (tmp_path / "results").mkdir(mode=0o555)
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results",
                   says=f"Permission denied: {tmp_path / 'results'}")


def test_corrupt_plan_json_and_config_json(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml())
    cfg = load_config(tmp_path / "bench.toml")
    store = SuiteStore(tmp_path / "results", "t")
    prepare_data(cfg, store.cache)                      # what the earlier run left, besides:
    (spec,) = build_plan(cfg)
    config = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id) / RUN_CONFIG_FILE
    config.parent.mkdir(parents=True)
    config.write_text('{"run_id": "torn')
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results",
                   says=f"{config} is corrupt (Unterminated string")
    config.write_text("[]")
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results",
                   says=f"{config} is not of the shape bench reads: the file is a list, not an object; delete the "
                        "run folder")

    store.plan_path.write_text("{nope")
    assert_refused(monkeypatch, capsys, "report", "--results", "results", store=tmp_path / "results",
                   says="results/t/plan.json is corrupt (Expecting property name")


def test_dollar_signs_in_class_names_are_drawn_as_text(monkeypatch, capsys, tmp_path):
    """'$x^$' as a class name crashed matplotlib's mathtext in the confusion-matrix figure."""
    from test_report import make_store
    root = make_store(tmp_path, methods=("baseline", "drift:delta=-0.05"))
    names = {"tumor": "$x^$", "stroma": "$\\frac{a}{$"}

    def rename(obj):
        if isinstance(obj, dict):
            return {names.get(k, k): rename(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [rename(v) for v in obj]
        return names.get(obj, obj) if isinstance(obj, str) else obj

    for path in root.rglob(METRICS_FILE):
        path.write_text(json.dumps(rename(json.loads(path.read_text()))))
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results", str(tmp_path / "results"))
    assert code in (0, None), err
    assert (root / "report" / "figures" / "synth-tissue_confusion.png").is_file()


def test_one_grammar_for_data_set_specs(monkeypatch, capsys, tmp_path, inputs):
    """What `bench data verify` prints, every command accepts (`data verify`, `eval --real`,
    `run --dataset` through the same parser)."""
    monkeypatch.chdir(inputs)
    printed = []
    for given in ("tiles", "fake.npz", "synth-tissue"):
        code, out, err = run_cli(monkeypatch, capsys, "data", "verify", given)
        assert code in (0, None), err
        printed.append(out.split()[1].rstrip(":"))          # "OK <spec>: ..."
        code, again, err = run_cli(monkeypatch, capsys, "data", "verify", printed[-1])
        assert code in (0, None) and again == out, err
    assert printed == ["folder:tiles", "npz:fake.npz", "synth-tissue"]
    from bench.datasets import parse_spec
    assert [parse_spec(p).name for p in printed] == printed
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--real", "npz:fake.npz", "--fake", "fake.npz",
                           "--metrics", "ssim", "--cache", str(tmp_path / "cache"))
    assert code in (0, None), err


@pytest.mark.parametrize("file, change, fragment", [
    ("plan.json", lambda plan: {**plan, "runs": {"a": 1}}, "plan.json is not of the shape bench reads: runs is "
                                                         "an object, not a list; delete it and run the suite's"),
    ("plan.json", lambda plan: [plan], "plan.json is not of the shape bench reads: the file is a list, not an "
                                       "object"),
    ("plan.json", lambda plan: {**plan, "runs": [{**plan["runs"][0], "gen_seeds": "0,1"}]},
     "runs[0].gen_seeds is a string, not a list"),
    ("plan.json", lambda plan: {**plan, "runs": [{"dataset": "d", "train_seed": 0, "run_id": "r"}]},
     "runs[0] lacks variant or method"),
    ("plan.json", lambda plan: {**plan, "config": {"sample": 3}}, "config.sample is an integer, not an object"),
    ("metrics.json", lambda record: {**record, "metrics": [1, 2]}, "metrics.json is not of the shape bench "
     "reads: metrics is a list, not an object; delete it and re-run `bench run` to redo that evaluation"),
    ("metrics.json", lambda record: {**record, "per_class": {"ssim": 0.5}}, "per_class.ssim is a number, not an object"),
    ("metrics.json", lambda record: {**record, "confusion": [[1, "x"]]}, "confusion[0][1] is 'x', not an integer "
                                                                         "or a number"),
    ("metrics.json", lambda record: {**record, "metrics": {"ssim": "high"}}, "metrics['ssim'] is 'high', not a "
                                                                             "number"),
    ("config.json", lambda config: {**config, "class_names": "tumor"}, "config.json is not of the shape bench "
     "reads: class_names is a string, not a list; delete the run folder"),
])
def test_report_refuses_store_json_of_another_shape(monkeypatch, capsys, tmp_path, file, change, fragment):
    """Store files edited by hand or written by another tool: named with the field and the fix (issue 34)."""
    from test_report import make_store
    root = make_store(tmp_path, methods=("baseline", "drift:delta=-0.05"))
    path = root / PLAN_FILE if file == "plan.json" else sorted(root.rglob(file))[0]
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert_refused(monkeypatch, capsys, "report", "--results", str(tmp_path / "results"), store=tmp_path,
                   says=(str(path), fragment))


@pytest.mark.parametrize("role, weights, fragment", [
    ("expert", "text.pt", "text.pt is not a valid weights file"),
    ("scorer", "torn.safetensors", "torn.safetensors is not a valid weights file"),
])
def test_bad_classifier_weights_are_refused_before_anything_is_written(monkeypatch, capsys, tmp_path, role, weights,
                                                                       fragment):
    """They were refused by the classifier's task, after plan.json and the data cache (issue 34, item 8)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.pt").write_text("not weights")
    (tmp_path / "torn.safetensors").write_bytes(b"\x00" * 7)
    (tmp_path / "bench.toml").write_text(toml(**{role: {"weights": weights}}))
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results", says=fragment)
