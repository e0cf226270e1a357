"""The scorer is independent of every method: unreachable from method hooks, its needs and the
expert's scheduled as declared (plug-ins alike), and stores from before it still report."""
import dataclasses
import json
import os
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import load_config
from bench.core.console import make_console
from bench.core.pixels import to_model_space
from bench.core.store import DONE, METRICS_FILE, RUN_CONFIG_FILE, SuiteStore, atomic_write_bytes, atomic_write_json
from bench.engine.runner import UNRECORDED, run_suite
from bench.engine.sample import generation_labels, sample_images
from bench.engine.tasks import method_resources
from bench.engine.train import build
from bench.methods import REGISTRY, ConditioningMethod, method_name
from bench.methods.context import MethodContext
from bench.models.expert import Classifier, load_classifier, train_classifier
from bench.report import build_report
from bench.report.collect import collect
from bench.testing import CPU, tiny_config, toy_data

_LEAVES = (types.ModuleType, type, str, bytes, int, float, bool, type(None), torch.Tensor, np.ndarray,
           torch.device, torch.dtype, Path)


def reachable(*roots) -> list:
    """Every object reachable from `roots` through attributes, containers, bound methods and closures
    (not through modules or classes: those are code, shared by everything)."""
    seen, stack, found = set(), list(roots), []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        found.append(obj)
        if isinstance(obj, _LEAVES):
            continue
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        elif isinstance(obj, types.MethodType):
            stack += [obj.__self__, obj.__func__]
        elif isinstance(obj, types.FunctionType):
            stack += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
            stack += [cell.cell_contents for cell in obj.__closure__ or () if cell.cell_contents is not None]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        if hasattr(obj, "__dict__") and not isinstance(obj, (types.FunctionType, types.MethodType)):
            stack += list(vars(obj).values())
    return found


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Toy data, the tiny config, and a suite store whose cache holds both classifiers."""
    store, data, cfg = SuiteStore(tmp_path_factory.mktemp("results"), "s"), toy_data(), tiny_config()
    scorer_folder = train_classifier("scorer", data, cfg.scorer, store.cache, CPU)
    return data, cfg, store, load_classifier(scorer_folder, CPU), scorer_folder


@pytest.mark.parametrize("variant", ["baseline", "aligned", "aligned-clean", "drift", "ssl:encoder=expert",
                                     "fgscore:n_refs=4,n_draws=1"])
def test_no_method_hook_can_reach_the_scorer(suite, variant):
    data, cfg, store, scorer, scorer_folder = suite  # the scorer is loaded in this process, as in an evaluation
    torch.manual_seed(0)
    built = build(cfg, variant, data, CPU, *method_resources(cfg, variant, data, store, CPU))  # as the tasks do
    x0 = to_model_space(data.train_x[:4])
    built.method.loss(built.model, built.schedule, x0, torch.from_numpy(data.train_y[:4]),
                      torch.Generator().manual_seed(0))
    sample_images(built, cfg, generation_labels(data.scored_classes, 2), 0, CPU)  # every lazy helper built

    objects = reachable(built.method, built.model)
    classifiers = [o for o in objects if isinstance(o, Classifier)]
    assert scorer not in classifiers and all(c.role == "expert" for c in classifiers)
    if REGISTRY[method_name(variant)].needs_expert(built.method.params):
        assert classifiers  # the walk does find a classifier a method holds: the expert
    # No path to the scorer's folder, nor to the suite cache that holds it and the prepared data.
    paths = [Path(o) for o in objects if isinstance(o, (str, Path)) and str(store.cache) in str(o)]
    assert not [p for p in paths if p == store.cache or scorer_folder in (p, *p.parents)], paths
    # The held-out splits (what scores) are nowhere: not in the context, not in a loader's closure.
    held_out = (data.val_x, data.val_y, data.test_x, data.test_y)
    assert not [o for o in objects if isinstance(o, np.ndarray) and o.size
                and any(np.shares_memory(o, h) for h in held_out)]
    assert not hasattr(built.method.ctx, "split_images")
    assert not [f.name for f in dataclasses.fields(MethodContext) if "scorer" in f.name]


@dataclass(frozen=True)
class NeedyParams:
    uses_expert: bool = True


@pytest.fixture
def needy_plugin():
    """A plug-in method (not in bench's packages) that declares the expert as a need of its params."""
    class Needy(ConditioningMethod):
        name = "test-needy"
        Params = NeedyParams

        @classmethod
        def needs_expert(cls, params) -> bool:
            return params.uses_expert

    yield Needy
    REGISTRY.pop("test-needy", None)


def _run(tmp_path, monkeypatch, methods, metrics, broken_role):
    prepared = []

    def prepare(cfg, role, data_path, cache):
        prepared.append(role)
        if role == broken_role:
            raise RuntimeError(f"no {role} today")
        return {"test_accuracy": 1.0}
    monkeypatch.setattr("bench.engine.runner.prepare_classifier", prepare)
    cfg = load_config(None, "tiny", {"suite": {"methods": methods, "seeds": 1}, "metrics": {"names": metrics},
                                     "execution": {"executor": "local", "device": "cpu"}})
    return run_suite(cfg, tmp_path, make_console(file=open(os.devnull, "w"))), prepared


def test_a_plugin_that_declares_the_expert_waits_for_it(tmp_path, monkeypatch, needy_plugin):
    summary, prepared = _run(tmp_path, monkeypatch, ["baseline", "test-needy", "test-needy:uses_expert=false"],
                             ["ssim"], broken_role="expert")
    assert prepared == ["expert"]  # ssim needs no network: only the plug-in's declaration asks for one
    assert summary.trained == 2 and summary.evaluated == 2  # baseline and the variant without the need
    assert summary.failed == [f"expert: RuntimeError: no expert today ({UNRECORDED})",
                              "test-needy (train seed 0): the expert is unavailable (RuntimeError: no expert today)"]


def test_scorer_metrics_hold_back_evaluations_only(tmp_path, monkeypatch):
    summary, prepared = _run(tmp_path, monkeypatch, ["baseline"], ["acc[scorer]", "ssim"], broken_role="scorer")
    assert prepared == ["scorer"]  # no method and no metric needs the expert: it is not trained
    assert summary.trained == 1 and summary.evaluated == 0
    assert summary.failed == [f"scorer: RuntimeError: no scorer today ({UNRECORDED})",
                              "baseline (train seed 0, gen seed 0): the scorer is unavailable "
                              "(RuntimeError: no scorer today)"]


def test_a_store_written_before_the_scorer_still_reports(tmp_path):
    """Old names: expert_acc and per-class expert_recall are read as acc[expert] and per-class acc[expert]."""
    store = SuiteStore(tmp_path / "results", "old")
    runs = []
    for method in ("baseline", "drift"):
        runs.append({"run_id": f"id-{method}", "dataset": "toy", "variant": method, "train_seed": 0,
                     "gen_seeds": [0, 1]})
        run_dir = store.run_dir("toy", method, 0, f"id-{method}")
        atomic_write_json(run_dir / RUN_CONFIG_FILE, {"run_id": f"id-{method}", "dataset": "toy", "method": method,
                                                    "train_seed": 0, "code_version": "0.1.0", "config": {}})
        atomic_write_bytes(run_dir / DONE, b"")
        for g in (0, 1):
            prov = {"n_gen": 4, "n_ref": 4, "extractor": "expert", "weights_sha256": "abc"}
            atomic_write_json(store.eval_dir(run_dir, g) / METRICS_FILE, {
                "schema": 1, "dataset": "toy", "method": method, "run_id": f"id-{method}", "train_seed": 0,
                "gen_seed": g, "code_version": "0.1.0", "class_names": ["a", "b"], "scored_classes": [0, 1],
                "metrics": {"expert_acc": 0.6 + 0.1 * g, "fid[expert]": 3.0 - g},
                "per_class": {"expert_recall": {"a": 0.5, "b": 0.7 + 0.1 * g}},
                "confusion": [[2, 0], [1, 1]], "reference": {"expert_acc": 0.97},
                "provenance": {"expert_acc": prov, "fid[expert]": prov}})
    atomic_write_json(store.plan_path, {"suite": "old", "config": {}, "runs": runs, "baseline": "baseline"})
    records = [e.record for e in collect(store.root).evaluations]
    assert len(records) == 4 and all("acc[expert]" in r["metrics"] and "expert_acc" not in r["metrics"]
                                     and r["reference"] == {"acc[expert]": 0.97}
                                     and "acc[expert]" in r["per_class"] for r in records)
    build_report(store.root)
    csv = (store.root / "report" / "leaderboard.csv").read_text()
    html = (store.root / "report" / "report.html").read_text()
    assert "acc[expert]_mean" in csv and "expert_acc" not in csv + html
    metrics = json.loads((store.eval_dir(store.run_dir("toy", "baseline", 0, "id-baseline"), 0)
                          / METRICS_FILE).read_text())
    assert "expert_acc" in metrics["metrics"]  # the store itself is read, never rewritten
