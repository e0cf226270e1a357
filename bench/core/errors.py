"""User-facing errors: the CLI prints the message on one line and exits with code 2."""


class BenchError(Exception):
    """Bad input or usage. The message names the problem and the fix."""


class RunFailed(Exception):
    """A deterministic failure of one run (NaN loss, OOM, bad input): recorded, never retried."""
