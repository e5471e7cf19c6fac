"""The one stderr console: logs and progress bars go here, stdout stays machine-readable."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)  # one message = one line
_state = {"quiet": bool(os.environ.get("ESI_QUIET"))}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def log(message: str) -> None:
    """One human-readable line on stderr, unless --quiet."""
    if not _state["quiet"]:
        console.print(message)


def warn(message: str) -> None:
    """Warnings are shown even with --quiet."""
    console.print(f"[yellow]warning:[/] {message}")


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)


@contextmanager
def progress(description: str, total: int | None, unit: str = "records"):
    """A rich progress bar on stderr showing count, rate and ETA; silent with --quiet."""
    if _state["quiet"] or not total:
        yield _Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total, rate="")
        yield _RateBar(bar, task, unit)


class _RateBar(_Bar):
    def __init__(self, progress, task, unit):
        super().__init__(progress, task)
        self._unit = unit

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)
        speed = self._progress.tasks[self._task].speed
        if speed:
            self._progress.update(self._task, rate=f"{speed:,.0f} {self._unit}/s")
