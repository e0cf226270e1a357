"""The one maker of bench's rich consoles.

What bench prints holds the user's text: paths (`--results`), data-set specs, method, plug-in and class
names, failure reasons. Any of them may contain `[/]` or `[red]`, which rich would read as markup and
either restyle or crash on (MarkupError). So markup is off on every console, text prints as given, and
bench's own styles are rich `Text` styles (`Text.assemble`, `style=`), never markup in a string."""
from __future__ import annotations

from rich.console import Console


def make_console(stderr: bool = False, **options) -> Console:
    """A rich Console that prints strings literally; `options` are Console's (file, width, record, ...)."""
    return Console(stderr=stderr, markup=False, **options)
