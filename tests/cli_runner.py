"""The `bench` command run in this process, as a user's shell would run it: argv in, exit code and
both streams out (bench.cli.main, so bad input is seen exactly as the one-line error it prints)."""
import sys

import pytest

from bench import cli


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
