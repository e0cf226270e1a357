"""User-facing errors: the CLI prints the message on one line and exits with code 2."""


class BenchError(Exception):
    """Bad input or usage. The message names the problem and the fix."""


class RunFailed(Exception):
    """A deterministic failure of one run (NaN loss, bad input): recorded, never retried."""


class StoreDamaged(BenchError):
    """A file of the store is unreadable or not what bench wrote (a torn or swapped checkpoint). The
    message names it and the fix; a task that meets one records no FAILED of its own, since the fix
    lies outside that task (e.g. retrain the run whose checkpoint it is)."""
