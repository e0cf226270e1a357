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
    assert out.splitlines()[-1] == f"2 of {len(CHECKS)} checks passed"
    for bad, message in (("missing.py", "not found"), ("empty.py", "defines no method")):
        assert_refused(monkeypatch, capsys, "check-method", str(tmp_path / bad), store=tmp_path, says=message)
