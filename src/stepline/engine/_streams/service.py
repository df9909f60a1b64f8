"""``StreamService``: publish to a run's stream, and read it a page at a time.

One per engine (``StreamService.of``), so every reader of a run in this process is
woken by every publish here; readers of other nodes' publishes are woken through the
store's notifications (Postgres ``LISTEN``), the end of a run through
``Engine.wait_for_run``, and, as the fallback when neither can tell (SQLite files shared
by processes), a re-read every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import TYPE_CHECKING

from stepline._status import RunStatus
from stepline.engine._errors import NotFoundError
from stepline.engine._store import Tx
from stepline.engine._store.messages import NewMessage, StoredMessage
from stepline.engine._streams import wire
from stepline.engine._streams.hub import StreamHub
from stepline.engine._streams.readers import Readers

if TYPE_CHECKING:
    from stepline.engine._engine import Engine

_SERVICES: weakref.WeakKeyDictionary[Engine, StreamService] = weakref.WeakKeyDictionary()
#: the most message data (its JSON's bytes) one page holds: a page stops before the message
#: that would take it past this, its first message always included
PAGE_BYTES = 1024 * 1024


class RunEndedError(Exception):
    """A publish to a run that has ended (the API answers 409)."""


@dataclasses.dataclass(frozen=True, slots=True)
class MessagePage:
    """Messages of a run after some seq.

    Attributes:
        messages: in seq order.
        status: the run's status when the page was read.
        ended: the run has ended and nothing (of the topic) follows ``messages``.
        next: the seq to read after next time.
    """

    messages: list[StoredMessage]
    status: RunStatus
    ended: bool
    next: int


class StreamService:
    """Run streams of one engine.

    Args:
        engine: the engine whose store, clock, settings and run waiters it uses.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.hub = StreamHub()
        settings = engine.settings
        self.readers = Readers(
            settings.max_stream_readers_per_run, settings.max_stream_readers_per_caller
        )
        self._subscribed = False

    @classmethod
    def of(cls, engine: Engine) -> StreamService:
        """The stream service of ``engine`` (made on first use)."""
        service = _SERVICES.get(engine)
        if service is None:
            service = _SERVICES[engine] = cls(engine)
        return service

    def _subscribe(self) -> None:
        # on first use, when the engine (and its store) has started
        if not self._subscribed:
            self._subscribed = True
            self._engine.store.subscribe_streams(self.hub.published_elsewhere)

    async def publish(self, run_id: str, body: object) -> list[int]:
        """Append a publish body's messages to a run's stream.

        Args:
            run_id: the run.
            body: ``{"messages": [{"topic", "data", "id"}, ...]}``.

        Returns:
            Each message's seq; a durable id already published gets its first seq again
            and is not stored twice.

        Raises:
            PublishError: the body is malformed (400) or a message too large (413).
            NotFoundError: no such run.
            RunEndedError: the run has ended and there is something new to store.
        """
        self._subscribe()
        found = wire.messages(body, self._engine.settings.max_stream_message_bytes)
        now = self._engine.clock.now()
        seqs, function_id, stored = await self._engine.store.atomic(
            lambda tx: _append(tx, run_id, found, now)
        )
        if stored:
            self.hub.published(run_id)
            observer = self._engine.observer
            if observer is not None and observer.metrics is not None:
                observer.metrics.record_published(function_id, stored)
        return seqs

    async def page(
        self, run_id: str, after: int, topic: str | None, limit: int, max_bytes: int = PAGE_BYTES
    ) -> MessagePage:
        """The messages after ``after`` (of ``topic``), as stored now.

        At most ``limit`` of them, and at most ``max_bytes`` of their data but for a first
        message larger than that, which comes alone.

        Raises:
            NotFoundError: no such run.
        """

        def read(tx: Tx) -> tuple[RunStatus, tuple[list[StoredMessage], bool]]:
            # the status first: a run seen ended takes no more messages, so a page read
            # after it is complete (Postgres reads each statement at its own snapshot)
            run = tx.get_run(run_id)
            if run is None:
                raise NotFoundError(f"run {run_id!r} not found")
            return run.status, tx.messages.read_messages(run_id, after, topic, limit, max_bytes)

        status, (rows, more) = await self._engine.store.read(read)
        ended = status.terminal and not more
        return MessagePage(rows, status, ended, rows[-1].seq if rows else after)

    async def next_page(
        self, run_id: str, after: int, topic: str | None, limit: int, wait: float
    ) -> MessagePage:
        """Like ``page``, but waits up to ``wait`` seconds for a message or the run's end.

        Raises:
            NotFoundError: no such run.
        """
        self._subscribe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            with self.hub.listen(run_id) as woken:  # before the read: nothing slips by
                page = await self.page(run_id, after, topic, limit)
                left = deadline - loop.time()
                if page.messages or page.ended or left <= 0:
                    return page
                await self._sleep(run_id, woken, left)

    async def _sleep(self, run_id: str, woken: asyncio.Event, timeout: float) -> None:
        """Until ``run_id`` publishes or ends, ``timeout`` passes or it is time to re-read."""
        ender = asyncio.ensure_future(self._engine.wait_for_run(run_id, timeout))
        waker = asyncio.ensure_future(woken.wait())
        fallback = min(timeout, max(self._engine.settings.poll_interval, 0.05))
        try:
            await asyncio.wait({ender, waker}, timeout=fallback, return_when="FIRST_COMPLETED")
        finally:
            for task in (ender, waker):
                task.cancel()
            await asyncio.gather(ender, waker, return_exceptions=True)


def _append(tx: Tx, run_id: str, found: list[NewMessage], now: float) -> tuple[list[int], str, int]:
    """Store the messages not stored yet; returns every message's seq, the function, a count."""
    run = tx.get_run(run_id)  # a write transaction's read locks the row: publishers take turns
    if run is None:
        raise NotFoundError(f"run {run_id!r} not found")
    known = tx.messages.durable_seqs(run_id, wire.durable_ids(found))
    fresh: list[NewMessage] = []
    slots: list[int] = []  # >= 0: a known seq; < 0: -(1 + index into fresh)
    for message in found:
        key = message.durable_id
        if key is not None and key in known:
            slots.append(known[key])
            continue
        if key is not None:
            known[key] = -(1 + len(fresh))  # the same id twice in one body: stored once
        slots.append(-(1 + len(fresh)))
        fresh.append(message)
    if fresh and run.status.terminal:
        raise RunEndedError(
            f"run {run_id!r} has ended ({run.status.value}); its stream takes no more messages"
        )
    first = tx.messages.append_messages(run_id, fresh, now) if fresh else 0
    seqs = [slot if slot >= 0 else first + (-slot - 1) for slot in slots]
    return seqs, run.function_id, len(fresh)
