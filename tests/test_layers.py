"""The floors of bench/ hold: import-linter's contracts in pyproject.toml, on the package as installed.

bench.methods and bench.datasets live in methods/ and datasets/ (pyproject's package-dir), where grimp,
which import-linter reads the imports with, does not look for sub-packages of bench: the check runs on
a copy of the installed layout."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE_DIRS = {"bench": ROOT / "bench", "bench/methods": ROOT / "methods", "bench/datasets": ROOT / "datasets"}


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    for target, source in PACKAGE_DIRS.items():
        shutil.copytree(source, tree / target, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True)


def test_imports_only_run_downward_and_never_in_a_circle(tmp_path):
    result = lint_imports(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
