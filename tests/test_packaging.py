"""What an installed bench and its checkout offer around the engine: versions, ignored files."""
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).parents[1]


def test_version_names_bench_and_its_libraries_without_importing_them():
    script = ("import sys; sys.argv = ['bench', '--version']; from bench import cli\n"
              "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "heavy = [m for m in ('torch', 'diffusers', 'torch_fidelity', 'ray') if m in sys.modules]\n"
              "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"bench {bench.__version__}"] + [
        f"{name} {version(name)}" for name in ("torch", "diffusers", "torch-fidelity", "ray")]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_every_virtual_environment_folder_is_ignored():
    for venv in (".venv", ".venv-gpu", ".venv311"):
        done = subprocess.run(["git", "check-ignore", "-q", f"{venv}/bin/python"], cwd=ROOT)
        assert done.returncode == 0, f"{venv}/ is not git-ignored"
