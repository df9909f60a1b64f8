"""Time as an object, so tests (and ``stepline.testing``) can move it by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """Where the engine reads the time and waits for it."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Return at ``deadline`` or as soon as ``wake`` is set, whichever is first."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Wait on ``wake`` with a timeout."""
        delay = deadline - time.time()
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class ManualClock:
    """A clock that moves only when told to (``advance`` / ``set``).

    Args:
        start: the initial time, seconds since the epoch (default: the real time now,
            so durations SDKs compute from their own clock line up).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._moved = asyncio.Event()

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper so it re-checks its deadline."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        """Jump to ``when`` (never backwards)."""
        self._now = max(self._now, when)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Return when virtual time reaches ``deadline`` or ``wake`` is set."""
        while self._now < deadline and not wake.is_set():
            moved = self._moved
            waiter = asyncio.ensure_future(wake.wait())
            mover = asyncio.ensure_future(moved.wait())
            self._parking()
            try:
                await asyncio.wait({waiter, mover}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._unparked()
                waiter.cancel()
                mover.cancel()

    def _parking(self) -> None:
        """A sleeper is about to wait for time to move (a hook for subclasses)."""

    def _unparked(self) -> None:
        """A sleeper stopped waiting (a hook for subclasses)."""
