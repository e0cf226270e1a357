from pathlib import Path

import pytest

from bench.config import DEFAULT_SUITE, build_config, load_config, suite_file
from bench.core.errors import BenchError
from bench.engine.plan import build_plan, run_id
from bench.methods import REGISTRY

README = Path(__file__).parents[1] / "README.md"


def write(tmp_path, text):
    p = tmp_path / "bench.toml"
    p.write_text(text)
    return p


def test_without_a_bench_toml_bench_run_runs_the_default_suite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert suite_file(None) == DEFAULT_SUITE and DEFAULT_SUITE.is_file()
    (tmp_path / "bench.toml").write_text('[suite]\nname = "mine"\n')    # one in the working directory wins
    assert load_config(suite_file(None)).suite.name == "mine"
    assert suite_file(Path("elsewhere.toml")) == Path("elsewhere.toml")   # --config wins over both
    built_in = sorted(name for name, cls in REGISTRY.items() if cls.__module__.startswith("bench.methods."))
    assert sorted(load_config(DEFAULT_SUITE).suite.methods) == built_in   # every built-in method


def test_the_readme_describes_the_default_suite_its_file_defines():
    cfg = load_config(DEFAULT_SUITE)
    section = README.read_text().split("## What the default suite is")[1].split("\n## ")[0]
    text = " ".join(section.split())
    for fact in (f"{cfg.data.image_size}-px tiles", f"{cfg.train.steps} training steps",
                 f"{cfg.suite.seeds} generation seeds × {cfg.sample.samples_per_class} images per class",
                 f"stochastic DDIM with {cfg.sample.steps} steps", f"g = {cfg.sample.guidance:g}",
                 f"`{cfg.data.name}`", *(f"`{m}`" for m in cfg.suite.methods)):
        assert fact in text, fact
    assert cfg.sample.sampler == "ddim" and cfg.sample.eta == 1 and cfg.train.prediction == "v"   # as it says


@pytest.mark.parametrize("text, fragment", [
    ("[suite]\nseedz = 3\n", "unknown key suite.seedz"),
    ("[sute]\n", "unknown section [sute]"),
    ("[suite]\nseeds = 'three'\n", "suite.seeds"),
    ("[suite]\nseeds = 0\n", "suite.seeds"),
    ("[train]\nlr = -1.0\n", "train.lr"),
    ("[sample]\nsampler = 'plms'\n", "must be one of 'ddim', 'ddpm'"),
    ("[data]\nsplit = [0.5, 0.5, 0.5]\n", "data.split"),
    ("[data]\ngrayscale = 1\n", "must be true or false"),
    ("[suite\n", "is not valid TOML"),
])
def test_bad_config_names_the_key_and_the_file(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(BenchError) as err:
        load_config(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_and_presets_apply_in_order(tmp_path):
    cfg = load_config(write(tmp_path, "[suite]\nseeds = 5\n"), "tiny", {"suite": {"seeds": 2}})
    assert cfg.suite.seeds == 2 and cfg.model.size == "tiny"
    with pytest.raises(BenchError, match="unknown preset"):
        load_config(None, "huge")


def test_unknown_method_and_bad_parameter_are_clear():
    with pytest.raises(BenchError, match="unknown method 'nope'"):
        build_plan(load_config(None, overrides={"suite": {"methods": ["nope"]}}))
    with pytest.raises(BenchError, match="unknown parameter 'x' for method baseline"):
        build_plan(load_config(None, overrides={"suite": {"methods": ["baseline:x=1"]}}))


def test_run_id_ignores_seed_count_and_executor_but_not_training():
    a = load_config(None, "tiny")
    b = load_config(None, "tiny", {"suite": {"seeds": 9}, "execution": {"executor": "local"}})
    c = load_config(None, "tiny", {"train": {"steps": 7}})
    assert run_id(a, "baseline", 0) == run_id(b, "baseline", 0) != run_id(c, "baseline", 0)
    assert run_id(a, "baseline", 0) != run_id(a, "baseline", 1)


def test_plan_puts_the_baseline_first_and_refuses_duplicates():
    plan = build_plan(load_config(None, "tiny", {"suite": {"methods": ["baseline"], "train_seeds": 2}}))
    assert [(s.variant, s.train_seed) for s in plan] == [("baseline", 0), ("baseline", 1)]
    with pytest.raises(BenchError, match="listed twice"):
        build_plan(load_config(None, "tiny", {"suite": {"methods": ["baseline", "baseline"]}}))


def test_a_config_that_is_no_table_is_refused_by_name():
    """A run's config.json with "config": "oops" was read section by section, letter by letter ([o])."""
    with pytest.raises(BenchError, match=r"^run/config.json holds 'oops' as its config, not a table of sections"):
        build_config("oops", "run/config.json")
