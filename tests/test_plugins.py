"""Third-party methods: the README's example file, loaded as a plug-in, runs like a built-in."""
import re
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.methods import REGISTRY, load_plugin, method_table, parse_variant
from method_conformance import MethodConformance

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
