"""``VirtualClock``: the engine's time in tests, and a way to tell when the engine waits for it."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time


class VirtualClock:
    """A ``stepline.engine.Clock`` that moves only when told to, and knows who waits on it.

    The engine's worker is the only caller of ``sleep_until``; while it is parked there
    (and nothing is in flight) the engine can do nothing more until time moves. That is
    what ``parked`` and ``cycles`` tell the time keeper, without guessing from timing.

    Every method but ``now`` must be called on the engine's event loop.

    Args:
        start: the initial time, seconds since the epoch (default: the real time now,
            to the whole second).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = float(int(time.time())) if start is None else start
        self._moved = asyncio.Event()
        #: Sleepers parked right now (0 or 1: the engine has one worker loop).
        self.parked = 0
        #: How many times a sleeper has parked: a change means the worker went round.
        self.cycles = 0
        self.on_park = asyncio.Event()

    def now(self) -> float:
        """The current virtual time, seconds since the epoch (safe from any thread)."""
        return self._now

    def utcnow(self) -> _dt.datetime:
        """The current virtual time as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self._now, _dt.timezone.utc)

    def set(self, when: float) -> None:
        """Jump to ``when`` (never backwards) and wake every sleeper to re-check."""
        self._now = max(self._now, when)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Return when virtual time reaches ``deadline`` or ``wake`` is set."""
        while self._now < deadline and not wake.is_set():
            moved = self._moved
            waiter = asyncio.ensure_future(wake.wait())
            mover = asyncio.ensure_future(moved.wait())
            self.parked += 1
            self.cycles += 1
            self.on_park.set()
            try:
                await asyncio.wait({waiter, mover}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.parked -= 1
                waiter.cancel()
                mover.cancel()
