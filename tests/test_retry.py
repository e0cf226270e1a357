"""Which failures a re-run retries (issue 34, item 7): the method's own, deterministic failure is recorded
as FAILED and stays; a failure of the machine (a full disk, memory) is not recorded, so the same command
runs the task again once it is cleared; a damaged checkpoint names itself and the fix (retrain the run),
and is not recorded against the evaluation either."""
import errno

from cli_runner import run_cli

from bench.core.store import CHECKPOINT_FILE, FAILED, METRICS_FILE
from bench.engine import tasks
from bench.engine.tasks import environment_failure

RUN = ("run", "--preset", "tiny", "--executor", "local", "--results", "results")


def test_the_machines_failures_are_told_apart_from_the_methods():
    import torch
    assert environment_failure(OSError(errno.ENOSPC, "No space left on device")) == "the disk is full"
    assert environment_failure(torch.OutOfMemoryError("CUDA out of memory")) == "out of memory"
    assert environment_failure(MemoryError()) == "out of memory"
    assert environment_failure(OSError(errno.EACCES, "Permission denied")) is None
    assert environment_failure(ValueError("loss became nan")) is None


def test_a_full_disk_is_retried_and_a_torn_checkpoint_names_the_fix(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[suite]\nname = "t"\nseeds = 2\nmethods = ["baseline"]\n'
                                         '[metrics]\nnames = ["ssim"]\n')

    def disk_full(images, labels, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(tasks, "save_grid", disk_full)
        code, out, err = run_cli(monkeypatch, capsys, *RUN)
    assert code == 1 and "2 failed" in out, out + err
    assert "No space left on device" in out and "the disk is full: not the method's failure, so not recorded" in out
    root = tmp_path / "results" / "t"
    assert not list(root.rglob(FAILED))

    code, out, err = run_cli(monkeypatch, capsys, *RUN)  # the disk freed: the same command finishes the suite
    assert code in (0, None) and "0 trained, 2 evaluated" in out, out + err

    (run_dir,) = {p.parents[2] for p in root.glob("runs/*/*/*/*/eval/seed=1/metrics.json")}
    (run_dir / CHECKPOINT_FILE).write_bytes(b"\x00" * 7)
    (run_dir / "eval" / "seed=1" / METRICS_FILE).unlink()
    code, out, err = run_cli(monkeypatch, capsys, *RUN)
    assert code == 1 and f"{run_dir / 'checkpoint.safetensors'} is unreadable" in out, out + err
    assert f"delete the run folder {run_dir} and run `bench run` again to retrain it" in out
    assert not list(root.rglob(FAILED))  # nothing recorded against the evaluation: its fix is elsewhere
