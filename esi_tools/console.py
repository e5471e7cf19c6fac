"""The one stderr console: logs and progress bars go here, stdout stays machine-readable.

Messages carry user text (paths, record ids, header comments), so nothing is ever read as rich markup or
emoji codes: a path like `runs/a[/x]` prints as it is. Styling is applied to our own prefixes only.
"""

from __future__ import annotations

import os
import sys
import time
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
from rich.text import Text

console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)  # one message = one line
_state = {"quiet": bool(os.environ.get("ESI_QUIET"))}


def set_quiet(quiet: bool) -> None:
    """--quiet: no log lines or bars of ours, nor the Hugging Face libraries' own (transformers' "Loading weights")."""
    _state["quiet"] = quiet
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub and transformers when imported
        if "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def log(message: str) -> None:
    """One human-readable line on stderr, unless --quiet."""
    if not _state["quiet"]:
        console.print(message)


def warn(message: str) -> None:
    """Warnings are shown even with --quiet."""
    console.print(styled("warning:", "yellow", message))


def styled(prefix: str, style: str, message: str) -> Text:
    """`prefix` in `style`, then the message verbatim (never parsed as markup)."""
    return Text.assemble((prefix, style), " ", message)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress(description: str, total: int | None, unit: str = "records"):
    """A rich progress bar on stderr showing count, rate and ETA; silent with --quiet."""
    if _state["quiet"] or not total:
        yield _Bar(None, None)
        return
    if not console.is_terminal:  # logs and CI: a plain line every LINE_EVERY_S instead of a redrawn bar
        bar = _LineBar(description, total, unit)
        yield bar
        bar.finish()
        return
    columns = [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", style="cyan", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total, rate="")
        yield _RateBar(bar, task, unit)


LINE_EVERY_S = 20.0


class _LineBar(_Bar):
    """Progress as occasional log lines (done/total, rate, ETA) when stderr is not a terminal."""

    def __init__(self, description: str, total: int, unit: str):
        super().__init__(None, None)
        self.description, self.total, self.unit = description, total, unit
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LINE_EVERY_S and self.done < self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate else float("nan")
        console.print(f"  {self.description}: {self.done:,}/{self.total:,} {self.unit} ({self.done / self.total:.0%}), "
                      f"{rate:,.1f} {self.unit}/s, ETA {eta:,.0f} s")

    def finish(self) -> None:
        if time.monotonic() - self.start >= LINE_EVERY_S:
            self._line(time.monotonic())


class _RateBar(_Bar):
    def __init__(self, progress, task, unit):
        super().__init__(progress, task)
        self._unit = unit

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)
        speed = self._progress.tasks[self._task].speed
        if speed:
            self._progress.update(self._task, rate=f"{speed:,.0f} {self._unit}/s")
