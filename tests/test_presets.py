"""The papers' presets: each resolves to a plannable suite, `paper` stays an alias, and a preset whose
weights are not on this machine stops with one line naming them."""
import pytest
from cli_runner import assert_refused

from bench.config import load_config
from bench.config.presets import ALIASES, DELTA_SWEEP, PRESETS, STABLE_DIFFUSION
from bench.engine.plan import build_plan
from bench.methods import canonical_variant, parse_variant


def test_paper_is_an_alias_of_nair2024():
    assert ALIASES["paper"] == "nair2024"
    assert load_config(None, "paper") == load_config(None, "nair2024")


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "tiny"])
def test_each_papers_preset_names_its_suite(preset):
    assert load_config(None, preset).suite.name == preset


def test_the_cpu_latent_drifting_protocol_fine_tunes_every_variant_from_the_source_backbone():
    cfg = load_config(None, "yeganeh2024-cpu")
    assert cfg.model.init == "pretrain" and cfg.pretrain.data == "synth-tissue-ihc" and cfg.data.name == "synth-tissue"
    assert [spec.variant for spec in build_plan(cfg)] == ["baseline", *(canonical_variant("drift", parse_variant(v)[1])
                                                                         for v in DELTA_SWEEP)]


@pytest.mark.parametrize("preset", ["yeganeh2024", "graikos2024"])
def test_a_preset_whose_weights_are_missing_names_them_in_one_line(preset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text("")
    assert_refused(monkeypatch, capsys, "run", "--preset", preset, "--executor", "local", store=tmp_path / "results",
                   says=f"is not in the local Hugging Face cache and bench does not download; fetch it once "
                        f"(huggingface-cli download {STABLE_DIFFUSION})")


def test_the_powered_preset_trains_enough_paired_models_of_every_built_in_method_for_holm():
    from bench.methods import REGISTRY
    from bench.report.stats import ALPHA, holm, smallest_exact_p
    cfg = load_config(None, "powered")
    built_in = {n for n, c in REGISTRY.items() if c.__module__.startswith("bench.methods.")}
    assert set(cfg.suite.methods) == built_in
    # every method against the baseline, all models favouring each: Holm must still reach significance
    compared = len(built_in) - 1
    assert max(holm([smallest_exact_p(cfg.suite.train_seeds)] * compared)) < ALPHA
    plan = build_plan(cfg)
    assert len(plan) == len(built_in) * cfg.suite.train_seeds
    assert {s.train_seed for s in plan if s.variant == "baseline"} == {s.train_seed for s in plan if s.variant == "drift"}
