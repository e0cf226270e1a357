"""The `bench` command run in this process, as a user's shell would run it: argv in, exit code and
both streams out (bench.cli.main, so bad input is seen exactly as the one-line error it prints).

`assert_refused` is the one check every bad-input test goes through (DESIGN.md, "Command line and
outputs": exit 2, one line on stderr, nothing written)."""
import sys
from pathlib import Path

import pytest

from bench import cli


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def snapshot(*roots: Path) -> dict[Path, bytes | None]:
    """Every file under `roots` with its bytes, every folder with None (a created empty folder is a
    change too); a root that does not exist contributes nothing."""
    state: dict[Path, bytes | None] = {}
    for root in map(Path, roots):
        for path in sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []:
            state[path] = path.read_bytes() if path.is_file() else None
    return state


def assert_refused(monkeypatch, capsys, *args, store: Path | tuple[Path, ...], says: str | tuple[str, ...] = ()
                   ) -> str:
    """Run `bench *args` as bad input: exit 2, exactly one line on stderr ("error: ..."), no traceback,
    every fragment of `says` in that line, and `store` (a results folder, a cache, an output folder:
    whatever the command could write) byte for byte as before. Returns the line."""
    stores = store if isinstance(store, tuple) else (store,)
    before = snapshot(*stores)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err, err
    for fragment in (says,) if isinstance(says, str) else says:
        assert fragment in err, err
    after = snapshot(*stores)
    assert after == before, f"the store changed: {sorted(set(after) ^ set(before)) or 'file contents'}"
    return err.rstrip("\n")
