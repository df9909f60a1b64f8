"""The sweeper: applies the retention setting now and then, a small batch at a time.

Each batch is one short write transaction (``retention.sweep_batch``); between batches
the sweeper pauses three times as long as the batch took, so that clearing a backlog (an
engine started on months of expired history) takes at most a quarter of the store's time
from the calls being recorded: on SQLite's single writer, back-to-back batches cut the
steps' throughput by up to 5x while they lasted (``bench/large_tables.py``). On Postgres
only one node sweeps at a time: a batch that finds the advisory lock taken ends the pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from stepline.engine._store import Store, faults
from stepline.engine._store import retention as _retention

logger = logging.getLogger("stepline.engine")

#: bounds of the time between two passes (seconds)
MIN_INTERVAL = 1.0
MAX_INTERVAL = 3600.0
#: the pause after a batch, as a multiple of the time the batch took (and at least 10 ms)
PAUSE_FACTOR = 3.0


class _Clock(Protocol):
    def now(self) -> float: ...
    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None: ...


class _Engine(Protocol):
    store: Store
    clock: Any
    settings: Any
    observer: Any


def interval_for(retention: float) -> float:
    """Seconds between passes: a quarter of the retention, within 1 s and 1 h."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, retention / 4))


class Sweeper:
    """Deletes ended runs and unreferenced events past ``retention``, and expired keys.

    Args:
        store: the engine's store.
        clock: the engine's clock (cutoffs and the wait between passes use it).
        retention: seconds to keep ended runs and events; 0 turns the sweeper off.
        batch: rows removed per transaction at most (about).
        on_removed: told the rows each batch removed, per table (the metric).
    """

    def __init__(
        self,
        store: Store,
        clock: _Clock,
        retention: float,
        *,
        batch: int = _retention.BATCH,
        on_removed: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self.batch = batch
        self.on_removed = on_removed
        self.wake = asyncio.Event()

    @classmethod
    def of(cls, engine: _Engine) -> Sweeper:
        """The sweeper of an engine: its store, clock, retention setting and metrics."""
        metrics = None if engine.observer is None else engine.observer.metrics
        return cls(
            engine.store,
            engine.clock,
            float(engine.settings.retention),
            on_removed=None if metrics is None else metrics.record_removed,
        )

    @property
    def enabled(self) -> bool:
        """Whether anything is ever removed (retention is not ``off``)."""
        return self.retention > 0

    async def sweep(self) -> dict[str, int]:
        """One pass: batches until nothing is left; returns rows removed per table."""
        total: dict[str, int] = {}
        if not self.enabled:
            return total
        now = self.clock.now()
        cutoff = now - self.retention
        while True:
            started = time.monotonic()
            done = await self.store.atomic(
                lambda tx: _retention.sweep_batch(tx, now, cutoff, self.batch)
            )
            took = time.monotonic() - started
            if done is None:  # another node holds the sweep lock
                return total
            removed, more = done
            for table, rows in removed.items():
                total[table] = total.get(table, 0) + rows
            if removed and self.on_removed is not None:
                self.on_removed(removed)
            if not more:
                return total
            await asyncio.sleep(max(0.01, PAUSE_FACTOR * took))  # the worker's commits first

    async def run(self) -> None:
        """Sweep every ``interval_for(retention)`` seconds until cancelled."""
        if not self.enabled:
            return
        every = interval_for(self.retention)
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    logger.info("retention: removed %s", removed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy or unreachable database: try again next time
                known = isinstance(exc, faults.StoreUnavailable)  # logged once by the guard
                logger.warning("retention sweep failed; retrying later", exc_info=not known)
            self.wake.clear()
            await self.clock.sleep_until(self.clock.now() + every, self.wake)
