"""The outbox relay: moves committed ``stepline_outbox`` rows to the engine, exactly once.

Exactly once by construction, not by bookkeeping: a row is delivered, then marked. A
relay that dies in between delivers the row again after a restart, and the engine answers
the same event ids (the row's seed) and the same run (the row's proposed run id) without
storing or starting anything twice.

The loop (``Relay.run``) takes pending rows in ``id`` order, in batches
(``OutboxDb.claim``), and posts them one by one (``HttpDeliverer``):

- the engine is unreachable or refuses the relay itself (5xx, 401...): the batch stops
  where it is, what was delivered is marked, and the relay backs off (exponentially, up to
  ``max_backoff``) and starts again from the first undelivered row: nothing is lost and
  nothing overtakes;
- a row the engine rejects (a function it does not know, a bad body) gets ``attempts``
  and ``last_error`` and is retried on its own backoff (``row_backoff`` doubling up to
  ``max_row_backoff``; an app deployed after its writer often registers the function
  later), while the rows after it go on. It never blocks the outbox; it may arrive after
  rows written later than it. The retry times live in the relay's memory: a restarted
  relay tries each such row once more at once.

Delivered rows older than ``retention`` (24 h) are deleted. Postgres writers ``NOTIFY``
the relay at commit, so it wakes at once; elsewhere it polls every ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from stepline.outbox import _relay_db, _relay_deliver
from stepline.outbox._relay_deliver import DeliveryOutcome

__all__ = ["Relay", "RelaySettings", "RelayStats"]

logger = logging.getLogger("stepline.outbox.relay")


@dataclasses.dataclass(frozen=True, slots=True)
class RelaySettings:
    """How a relay works (resolved once by its runner).

    Attributes:
        batch_size: rows claimed per batch.
        poll_interval: seconds between looks at an idle outbox (a NOTIFY wakes it sooner).
        retention: seconds a delivered row is kept before it is deleted.
        purge_interval: seconds between purges.
        backoff: the first wait after the engine was unavailable; doubles per failure.
        max_backoff: the longest such wait.
        row_backoff: the first wait before a rejected row is tried again.
        max_row_backoff: the longest such wait.
        pause_after_delivery: a test hook: after delivering a batch and before marking it,
            create this file and wait forever (a test SIGKILLs the relay there).
    """

    batch_size: int = 100
    poll_interval: float = 1.0
    retention: float = 86_400.0
    purge_interval: float = 60.0
    backoff: float = 0.1
    max_backoff: float = 10.0
    row_backoff: float = 1.0
    max_row_backoff: float = 300.0
    pause_after_delivery: str | None = None


@dataclasses.dataclass(slots=True)
class RelayStats:
    """What a relay has done, for ``stepline_outbox_*`` metrics and tests."""

    delivered: int = 0
    rejected: int = 0
    unavailable: int = 0
    backlog: int = 0
    batches: int = 0

    def prometheus(self) -> str:
        """The Prometheus text exposition of these counters."""
        lines = [
            "# HELP stepline_outbox_backlog Committed outbox rows not yet delivered.",
            "# TYPE stepline_outbox_backlog gauge",
            f"stepline_outbox_backlog {self.backlog}",
            "# HELP stepline_outbox_delivered_total Outbox rows delivered to the engine.",
            "# TYPE stepline_outbox_delivered_total counter",
            f"stepline_outbox_delivered_total {self.delivered}",
            "# HELP stepline_outbox_rejected_total Deliveries the engine rejected (retried).",
            "# TYPE stepline_outbox_rejected_total counter",
            f"stepline_outbox_rejected_total {self.rejected}",
            "# HELP stepline_outbox_unavailable_total Deliveries that found no engine.",
            "# TYPE stepline_outbox_unavailable_total counter",
            f"stepline_outbox_unavailable_total {self.unavailable}",
        ]
        return "\n".join(lines) + "\n"


class Relay:
    """Moves one outbox to one engine.

    Args:
        db: the outbox's database.
        deliver: posts one row (``HttpDeliverer.deliver``, or an in-process equivalent);
            returns its outcome.
        settings: how to work.
        clock: where time comes from (``time.time`` by default).
        on_batch: called after each batch with the stats (an engine's metrics).
        deliver_batch: posts several rows at once (``HttpDeliverer.deliver_batch``); returns
            one outcome per row tried, stopping after the first ``UNAVAILABLE``. Without
            it, ``deliver`` is called row by row.
    """

    def __init__(
        self,
        db: _relay_db.OutboxDb,
        deliver: Callable[[str, str], _relay_deliver.Delivered],
        settings: RelaySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[RelayStats], None] | None = None,
        deliver_batch: Callable[[list[_relay_db.Pending]], list[_relay_deliver.Delivered]]
        | None = None,
    ) -> None:
        self.db = db
        self.deliver = deliver
        self.settings = settings or RelaySettings()
        self.clock = clock
        self.stats = RelayStats()
        self.on_batch = on_batch
        self.deliver_batch = deliver_batch or self._one_by_one
        self._retry_at: dict[int, float] = {}  # rejected rows: not before this time
        self._wake = threading.Event()
        self._stopping = False
        self._last_purge = 0.0

    def _one_by_one(self, rows: list[_relay_db.Pending]) -> list[_relay_deliver.Delivered]:
        results = []
        for row in rows:
            results.append(self.deliver(row.kind, row.body))
            if results[-1].outcome is DeliveryOutcome.UNAVAILABLE:
                break
        return results

    def wake(self) -> None:
        """Look at the outbox now (a NOTIFY arrived)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in flight."""
        self._stopping = True
        self._wake.set()

    def step(self) -> tuple[int, bool]:
        """One batch: returns ``(rows delivered, engine available)``."""
        settings = self.settings
        now = self.clock()
        waiting = {i for i, at in self._retry_at.items() if at > now}
        rows = self.db.claim(settings.batch_size + len(waiting))
        if rows is None:  # another relay is delivering: stand by
            return 0, True
        delivered: list[int] = []
        failed: list[tuple[int, str]] = []
        available = True
        try:
            todo = [row for row in rows if row.id not in waiting][: settings.batch_size]
            results = self.deliver_batch(todo)
            if len(results) < len(todo) and (
                not results or results[-1].outcome is not DeliveryOutcome.UNAVAILABLE
            ):
                raise RuntimeError("a batch delivery stopped short without saying why")
            for row, result in zip(todo, results, strict=False):
                if result.outcome is DeliveryOutcome.UNAVAILABLE:
                    available = False
                    self.stats.unavailable += 1
                    logger.warning("outbox row %d: engine unavailable: %s", row.id, result.note)
                    break
                if result.outcome is DeliveryOutcome.DELIVERED:
                    delivered.append(row.id)
                    self._retry_at.pop(row.id, None)
                    if result.note:
                        failed.append((row.id, result.note))
                    continue
                self.stats.rejected += 1
                failed.append((row.id, result.note or "rejected"))
                wait = settings.row_backoff * 2 ** min(row.attempts, 20)
                self._retry_at[row.id] = now + min(wait, settings.max_row_backoff)
                logger.warning("outbox row %d rejected (retried later): %s", row.id, result.note)
            if delivered and settings.pause_after_delivery:
                _pause_forever(settings.pause_after_delivery)
        except BaseException:
            self.db.abandon()
            raise
        self.db.finish(delivered, failed, self.clock())
        self.stats.delivered += len(delivered)
        self.stats.batches += 1
        return len(delivered), available

    def housekeeping(self) -> None:
        """Purge old delivered rows (every ``purge_interval``) and count the backlog."""
        now = self.clock()
        if now - self._last_purge >= self.settings.purge_interval:
            self._last_purge = now
            purged = self.db.purge(now - self.settings.retention)
            if purged:
                logger.info("outbox: deleted %d rows delivered over %ss ago", purged, "24h")
        self.stats.backlog = self.db.backlog()

    def run(self) -> None:
        """Relay until ``stop``; database errors are logged and retried after a backoff."""
        backoff = self.settings.backoff
        while not self._stopping:
            self._wake.clear()
            try:
                count, available = self.step()
                self.housekeeping()
                if self.on_batch is not None:
                    self.on_batch(self.stats)
            except Exception:
                logger.exception("outbox relay: database error; retrying")
                with contextlib.suppress(Exception):  # still down: the next round says so
                    self.db.reset()
                count, available = 0, False
            if not available:
                self._wake.wait(backoff * (0.5 + random.random()))  # jittered
                backoff = min(backoff * 2, self.settings.max_backoff)
                continue
            backoff = self.settings.backoff
            if count < self.settings.batch_size:  # caught up: wait for a NOTIFY or a poll
                self._wake.wait(self.settings.poll_interval)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()


def _pause_forever(marker: str) -> None:
    pathlib.Path(marker).write_text("delivered, not marked\n")
    while True:  # pragma: no cover - the test SIGKILLs the process here
        time.sleep(3600)


def listen(connect: Callable[[], Any], relay: Relay, stop: threading.Event) -> threading.Thread:
    """A daemon thread waking ``relay`` on each Postgres ``NOTIFY stepline_outbox``.

    Args:
        connect: opens a new psycopg connection in autocommit mode (closed by the thread).
        relay: the relay to wake.
        stop: set to end the thread (it notices within a second).
    """
    from stepline.outbox import _schema

    def loop() -> None:
        while not stop.is_set():
            try:
                conn = connect()
                try:
                    conn.execute(f"LISTEN {_schema.CHANNEL}")
                    relay.wake()  # rows committed while not listening
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            relay.wake()
                finally:
                    conn.close()
            except Exception:  # a dropped connection: listen again shortly
                logger.warning("outbox relay: LISTEN connection lost; reconnecting")
                stop.wait(1.0)

    thread = threading.Thread(target=loop, name="stepline-outbox-listen", daemon=True)
    thread.start()
    return thread


def postgres_listener(url: str) -> Callable[[], Any]:
    """``listen``'s ``connect`` for a Postgres URL."""

    def connect() -> Any:
        import psycopg

        parts = urllib.parse.urlsplit(url)
        return psycopg.connect(urllib.parse.urlunsplit(("postgresql", *parts[1:])), autocommit=True)

    return connect
