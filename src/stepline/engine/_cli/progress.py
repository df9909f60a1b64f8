"""Progress on the terminal for long CLI operations: a spinner line, rewritten in place.

Only a terminal gets the live line; piped output (a supervisor, a log file, a test)
gets nothing but the lines printed with ``line``, so logs stay clean. The text of each
frame is built by pure functions (``frame``, ``finished``). While the spinner is drawn, a
log record erases it before it is written (a filter on every logging handler), so a log
line never lands behind a spinner frame; the next frame redraws it below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeVar

T = TypeVar("T")

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_CLEAR = "\r\x1b[2K"


def frame(label: str, elapsed: float, tick: int, detail: str = "") -> str:
    """One spinner frame: ``⠙ Syncing apps 1/2 (3.4s)``."""
    spin = SPINNER[tick % len(SPINNER)]
    extra = f" {detail}" if detail else ""
    return f"{spin} {label}{extra} ({elapsed:.1f}s)"


def finished(label: str, elapsed: float, *, ok: bool = True) -> str:
    """The line left behind once an operation ends: ``✓ Opening the database (0.2s)``."""
    return f"{'✓' if ok else '✗'} {label} ({elapsed:.1f}s)"


class Progress:
    """Shows what a long operation is doing while it runs.

    Args:
        stream: where to write (the CLI's stdout).
        live: draw the spinner; defaults to whether ``stream`` is a terminal.
        interval: seconds between frames (and between checks of ``until``).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.live = _isatty(stream) if live is None else live
        self.interval = interval
        self._clock = clock
        self._drawn = False

    async def until(
        self,
        label: str,
        done: Callable[[], bool],
        *,
        detail: Callable[[], str] | None = None,
        keep: bool = True,
    ) -> float:
        """Spin until ``done()`` is true; returns the seconds it took.

        Args:
            label: what is happening.
            done: checked every ``interval``.
            detail: text after the label, read each frame (``1/3``).
            keep: leave a ``✓ label (time)`` line behind (live only).
        """
        started = self._clock()
        tick = 0
        if self.live:
            _guard_logs(self)
        while not done():
            if self.live:
                text = frame(label, self._clock() - started, tick, detail() if detail else "")
                self._draw(text)
                tick += 1
            await asyncio.sleep(self.interval)
        elapsed = self._clock() - started
        if self.live:
            self._erase()
            if keep:
                self._write(finished(label, elapsed) + "\n")
        return elapsed

    async def track(self, label: str, work: Awaitable[T], *, keep: bool = True) -> T:
        """Await ``work`` with a spinner; a failure leaves a ``✗`` line and re-raises."""
        if not self.live:
            return await work
        started = self._clock()
        task = asyncio.ensure_future(work)
        try:
            await self.until(label, task.done, keep=False)
        finally:
            if not task.done():
                task.cancel()
        elapsed = self._clock() - started
        try:
            result = task.result()
        except BaseException:
            self._write(finished(label, elapsed, ok=False) + "\n")
            raise
        if keep:
            self._write(finished(label, elapsed) + "\n")
        return result

    def line(self, text: str) -> None:
        """Print a line (above the spinner, which the next frame redraws)."""
        self._erase()
        self._write(text + "\n")

    def _draw(self, text: str) -> None:
        self._write(_CLEAR + text)
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._write(_CLEAR)
            self._drawn = False

    def _write(self, text: str) -> None:
        # flush: a terminal shows a partial line only once flushed
        self.stream.write(text)
        self.stream.flush()


class _EraseSpinner(logging.Filter):
    """Lets every record through, erasing the spinner line first."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress._erase()
        return True


def _guard_logs(progress: Progress) -> None:
    """Put the erasing filter on every handler of every logger (once per handler)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            mine = [f for f in handler.filters if isinstance(f, _EraseSpinner)]
            if not any(f.progress is progress for f in mine):
                for old in mine:  # an earlier Progress's: this one draws now
                    handler.removeFilter(old)
                handler.addFilter(_EraseSpinner(progress))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
