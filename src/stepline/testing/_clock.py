"""``VirtualClock``: the engine's time in tests, and a way to tell when the engine waits for it."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time

from stepline.engine._clock import ManualClock


class VirtualClock(ManualClock):
    """A ``ManualClock`` that knows who waits on it.

    The engine's worker is the only caller of ``sleep_until``; while it is parked there
    (and nothing is in flight) the engine can do nothing more until time moves. That is
    what ``parked`` and ``cycles`` tell the time keeper, without guessing from timing.

    Every method but ``now`` must be called on the engine's event loop.

    Args:
        start: the initial time, seconds since the epoch (default: the real time now,
            to the whole second).
    """

    def __init__(self, start: float | None = None) -> None:
        super().__init__(float(int(time.time())) if start is None else start)
        #: Sleepers parked right now (0 or 1: the engine has one worker loop).
        self.parked = 0
        #: How many times a sleeper has parked: a change means the worker went round.
        self.cycles = 0
        self.on_park = asyncio.Event()

    def utcnow(self) -> _dt.datetime:
        """The current virtual time as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self._now, _dt.timezone.utc)

    def _parking(self) -> None:
        self.parked += 1
        self.cycles += 1
        self.on_park.set()

    def _unparked(self) -> None:
        self.parked -= 1
