"""The floors of bench/ hold: import-linter's contracts in pyproject.toml, as `lint-imports` checks them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_imports_only_run_downward_and_never_in_a_circle():
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    result = subprocess.run([sys.executable, "-c", command, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
