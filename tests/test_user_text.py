"""User text that looks like rich markup ('[/]' closes no tag, '[red]' opens one) is printed as given,
by every command (issue 34, item 1): every console bench prints through comes from
bench.core.console.make_console, which reads no markup. The store path case is the tiny suite of
tests/test_cli.py, run with --results 'r_[/]x'."""
from pathlib import Path

import numpy as np
from cli_runner import run_cli
from PIL import Image

from bench.methods import REGISTRY

ROOT = Path(__file__).parents[1]


def test_every_console_comes_from_the_one_maker():
    sources = sorted((ROOT / "bench").rglob("*.py"))
    makers = [p.relative_to(ROOT).as_posix() for p in sources if "Console(" in p.read_text()]
    assert makers == ["bench/core/console.py"]


def test_a_data_set_folder_named_with_markup_is_verified(monkeypatch, capsys, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "d_[/]x[red]"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    code, out, err = run_cli(monkeypatch, capsys, "data", "verify", f"folder:{folder}")
    assert code in (0, None), err
    assert out.startswith(f"OK folder:{folder}: 2 classes")


def test_a_plugin_method_named_with_markup_is_listed(monkeypatch, capsys, tmp_path):
    plugin = tmp_path / "markup.py"
    plugin.write_text("from bench.methods import ConditioningMethod\n\n\n"
                      "class Markup(ConditioningMethod):\n    name = 'rich[/]x[red]'\n    paper = '[bold]'\n")
    try:
        code, out, err = run_cli(monkeypatch, capsys, "methods", "--plugin", str(plugin))
    finally:
        REGISTRY.pop("rich[/]x[red]", None)
    assert code in (0, None), err
    assert "rich[/]x[red]" in out and "[bold]" in out
