"""benchmarks/gpu_throughput.py runs where there is no GPU (`--device cpu`, a tiny U-Net), so that a change
that breaks it is caught here, not on the next person's GPU hour."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_throughput.py"


@pytest.mark.timeout(600)
def test_the_gpu_throughput_benchmark_runs_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--size", "tiny", "--image-size", "16",
                           "--batches", "2", "--steps", "1", "--sample-images", "2", "--no-compile", "--no-packing"],
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    for table in ("### Training step, `tiny` U-Net", "### Sampling", "### Nair 2024 protocol"):
        assert table in done.stdout, done.stdout[-3000:]
    assert "| bf16+channels_last | 2 |" in done.stdout
