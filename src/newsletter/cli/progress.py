"""Progress on long work, for the CLI: one line with an ETA on a terminal's stderr, nothing elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

REDRAW_SECONDS = 0.1


class ProgressLine:
    """``progress(done, total)`` drawn as one line with an ETA on a terminal's stderr; silent otherwise."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.started = time.monotonic()
        self.total = 0
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if total != self.total:  # a new phase of the work (e.g. parsing, then writing): its own ETA
            self.total, self.started, self.last = total, now, 0.0
        if done < total and now - self.last < REDRAW_SECONDS:
            return  # a terminal line redrawn ten times a second is enough, even for 10,000 steps
        self.last = now
        elapsed = now - self.started
        left = elapsed / done * (total - done) if done else 0.0
        width = 24
        filled = width * done // total
        line = f"{self.label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total}  ETA {clock_time(left)}"
        click.echo(f"\r{line}", err=True, nl=False)
        self.drawn = True

    def clear(self) -> None:
        """Wipe the line before a result is printed."""
        if self.drawn:
            click.echo("\r\033[K", err=True, nl=False)
            self.drawn = False


@contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[ProgressLine]:
    """A progress line for long work: only on a terminal (never in cron or CI) and never with --quiet."""
    line = ProgressLine(label, enabled=not quiet and sys.stderr.isatty())
    try:
        yield line
    finally:
        line.clear()


def clock_time(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


def elapsed(started: float) -> str:
    seconds = time.monotonic() - started
    return f"{seconds:.1f} s" if seconds < 60 else clock_time(seconds)
