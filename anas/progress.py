"""Progress bars (rich) on standard error, for work that takes more than a few seconds.

Library functions take a ``progress`` flag and show a bar only when it is set; the
command line turns it off with ``--quiet`` and ``--json`` (whose output stays clean on
standard output).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Bar:
    """One bar; ``advance`` moves it, ``note`` sets the text shown after it."""

    def __init__(self, progress: Progress | None, description: str, total: int | None, completed: int = 0):
        self._progress = progress
        self._task = progress.add_task(description, total=total, completed=completed, info="") if progress else None

    def advance(self, steps: int = 1, note: str | None = None) -> None:
        if self._progress is not None:
            fields = {} if note is None else {"info": note}
            self._progress.update(self._task, advance=steps, **fields)


class Bars:
    """Bars shown together while the ``progress_bars`` block runs (none when disabled)."""

    def __init__(self, progress: Progress | None):
        self._progress = progress

    def add(self, description: str, total: int | None, completed: int = 0) -> Bar:
        return Bar(self._progress, description, total, completed)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Bars]:
    if not enabled:
        yield Bars(None)
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), console=Console(stderr=True))
    with progress:
        yield Bars(progress)
