"""Third-party methods: the README's example file, loaded as a plug-in, runs like a built-in."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import assert_refused, run_cli

from bench.core.errors import BenchError
from bench.methods import REGISTRY, load_plugin, method_table, parse_variant
from bench.testing import CHECKS, MethodConformance

README = Path(__file__).parents[1] / "README.md"


def readme_plugin_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "ConditioningMethod" in b]
    return block


@pytest.fixture(scope="module", autouse=True)
def offset_noise_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "offset_noise.py"
    path.write_text(readme_plugin_source())
    load_plugin(str(path))
    yield
    REGISTRY.pop("offset-noise", None)


class TestReadmePlugin(MethodConformance):
    variant = "offset-noise:strength=0.2"


def test_plugin_is_registered_listed_and_validated():
    assert "offset-noise" in {row["name"] for row in method_table()}
    cls, params = parse_variant("offset-noise:strength=0.3")
    assert params.strength == 0.3
    with pytest.raises(BenchError, match="valid parameters: strength"):
        parse_variant("offset-noise:strenght=0.3")


def test_bad_plugin_paths_are_clear(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        load_plugin(str(tmp_path / "missing.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BenchError, match="failed to import: RuntimeError: boom"):
        load_plugin(str(broken))
    with pytest.raises(BenchError, match="cannot be imported"):
        load_plugin("no_such_module_anywhere")


def test_check_method_passes_the_readme_plugin_without_pytest(tmp_path):
    plugin = tmp_path / "offset_noise.py"
    plugin.write_text(readme_plugin_source())
    script = ("import sys; from bench import cli; sys.argv = ['bench', 'check-method', sys.argv[1]]\n"
              "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
              "assert 'pytest' not in sys.modules, 'bench.testing must work without pytest'\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, str(plugin)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["pass offset-noise"] * len(CHECKS)
    assert lines[-1] == f"{len(CHECKS)} of {len(CHECKS)} checks passed"


BROKEN_PLUGIN = '''
import torch

from bench.methods import ConditioningMethod


class GlobalNoise(ConditioningMethod):
    name = "global-noise"

    def initial_noise(self, shape, generator, device):
        return torch.randn(shape, device=device)  # the global RNG: not reproducible per seed
'''


def test_check_method_fails_a_broken_plugin_and_refuses_bad_input(monkeypatch, capsys, tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN_PLUGIN)
    (tmp_path / "empty.py").write_text("x = 1\n")
    try:
        code, out, err = run_cli(monkeypatch, capsys, "check-method", str(tmp_path / "broken.py"))
    finally:
        REGISTRY.pop("global-noise", None)
    assert code == 1, out + err
    assert "pass global-noise: loss is finite and falls on a fixed batch" in out
    assert "FAIL global-noise: same seed gives identical samples: generation seed 3 gave different" in out
    # the loss, shape, bf16 and large-image (no spatial condition declared) checks pass
    assert out.splitlines()[-1] == f"4 of {len(CHECKS)} checks passed"
    for bad, message in (("missing.py", "not found"), ("empty.py", "defines no method")):
        assert_refused(monkeypatch, capsys, "check-method", str(tmp_path / bad), store=tmp_path, says=message)


HEAD = "from dataclasses import dataclass\n\nfrom bench.methods import ConditioningMethod\n\n\n"
RAISING_PARAMS = HEAD + ("@dataclass(frozen=True)\nclass Params:\n    a: int = 1\n\n"
                         "    def __post_init__(self):\n        raise {error}\n\n\n"
                         "class Hostile(ConditioningMethod):\n    name = 'hostile'\n    Params = Params\n")
RAISING_CHECK = HEAD + ("class Hostile(ConditioningMethod):\n    name = 'hostile'\n\n"
                        "    @classmethod\n    def check(cls, params, unet):\n        raise {error}\n")


def declaring(line: str) -> str:
    return HEAD + f"class Hostile(ConditioningMethod):\n    name = 'hostile'\n    {line}\n"


@pytest.fixture
def registry_kept():
    """What a hostile plug-in registered is gone after the test."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


@pytest.mark.parametrize("source, fragment", [
    (declaring("name = 123"), "method name 123 of bench_plugin_hostile.Hostile must be a non-empty string"),
    (declaring("name = 'a:b'"), "method name 'a:b' of bench_plugin_hostile.Hostile must be a non-empty string "
                                "without surrounding spaces or any of : , ="),
    (declaring("name = ' a'"), "method name ' a' of"),
    (declaring("paper = 2024"), "paper of method 'hostile' (bench_plugin_hostile.Hostile) must be a string"),
    (declaring("Params = dict"), "Params of method 'hostile' (bench_plugin_hostile.Hostile) must be a dataclass"),
    ("raise KeyboardInterrupt\n", "hostile.py failed to import: it was interrupted (KeyboardInterrupt)"),
    (RAISING_PARAMS.format(error="RuntimeError('boom')"),
     "Params of method 'hostile' (bench_plugin_hostile.Hostile) raised RuntimeError: boom (a method refuses a bad "
     "value with ValueError); fix that code or leave the method out"),
    (RAISING_PARAMS.format(error="SystemExit(4)"), "Params of method 'hostile' (bench_plugin_hostile.Hostile) raised "
                                                   "SystemExit: 4"),
    (RAISING_PARAMS.format(error="ValueError('a must be odd')"), "bad parameters for method hostile: a must be odd"),
])
@pytest.mark.parametrize("command", ["check-method", "run"])
def test_a_hostile_plugin_is_one_line_exit_2(monkeypatch, capsys, tmp_path, registry_kept, command, source,
                                             fragment):
    """Whatever a plug-in declares or raises before its method runs is bad input, by `check-method` and by
    `run --plugin` alike (issue 34, item 4)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.py").write_text(source)
    (tmp_path / "bench.toml").write_text("")
    args = (("check-method", "hostile.py") if command == "check-method" else
            ("run", "--plugin", "hostile.py", "--methods", "hostile", "--preset", "tiny", "--executor", "local"))
    assert_refused(monkeypatch, capsys, *args, store=tmp_path, says=fragment)


def test_a_check_raising_anything_is_refused_at_planning(monkeypatch, capsys, tmp_path, registry_kept):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.py").write_text(RAISING_CHECK.format(error="KeyError('layer')"))
    (tmp_path / "bench.toml").write_text("")
    assert_refused(monkeypatch, capsys, "run", "--plugin", "hostile.py", "--methods", "hostile", "--preset", "tiny",
                   "--executor", "local", store=tmp_path,
                   says="check of method 'hostile' (bench_plugin_hostile.Hostile) raised KeyError: 'layer'")
