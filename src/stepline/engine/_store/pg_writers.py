"""Group commit for the Postgres store: write transactions queued meanwhile commit as one.

A write transaction on its own costs a thread hand-off each way, a pooled connection's
checkout, ``BEGIN`` and ``COMMIT`` (two round trips), a WAL flush and, with several runs in
flight, a thread of its own waiting for the GIL after each statement: with 8 runs in
flight one step's transaction took ~7 ms of wall time for ~1.4 ms alone, and the engine's
process spent 2.1 ms of CPU a step. So at most ``writers`` threads run write transactions;
each takes everything queued while it was busy and runs it in one transaction, each
``work`` on a ``PostgresTx`` of its own (its own ``queued``, ``claimed``, ``streamed``).

No savepoints (two more round trips a ``work``): when a ``work`` of a group raises, the
group rolls back and each ``work`` runs again alone, so one caller's error (a lapsed call,
a run not found) never fails another caller's transaction. A ``work`` may so run more than
once, as on a deadlock retry: the ``Store`` contract already asks that it only touch the
transaction. A database fault (``faults.classify``: unreachable, a ``COMMIT`` whose
outcome is unknown, a lock timeout, a full disk) is every caller's: each gets it and
nothing runs again, so a cut database answers within the pool's checkout timeout, not
once per ``work`` of the group.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stepline.engine._store.faults import classify
from stepline.engine._store.outcomes import Slot, Waiter, deliver_all

T = TypeVar("T")
#: The most transactions one group commit covers: a group holds its rows' locks until
#: its commit, and the last caller of a long group waits for the others' work too.
GROUP_MAX = 16


#: Attempts of a group on a new connection, each after the last one was lost before COMMIT.
RECONNECTS = 8

Work = Callable[[Any], Any]


class Reconnect(Exception):
    """The connection was lost before ``COMMIT``: nothing was written, and the
    transaction can run again on a new connection (``cause``: the driver's error)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


#: Runs works in one transaction on a connection and returns their results.
Transaction = Callable[[Any, Sequence[Work]], list[Any]]


class Writers:
    """The queue of write transactions and the threads that commit it in groups.

    A writer takes what is queued once it holds a connection: what queues while it waits
    for one joins its group (and with the database gone, gets its error as soon).

    Args:
        transaction: runs works in one transaction on a connection and returns their
            results (retrying the whole on deadlock); ``Reconnect`` when the connection
            was lost before ``COMMIT``.
        checkout: a connection from the pool, as a context manager.
        threads: the executor the writers run on (the store's pool threads).
        writers: the most threads running write transactions at once.
    """

    def __init__(
        self,
        transaction: Transaction,
        checkout: Callable[[], contextlib.AbstractContextManager[Any]],
        threads: concurrent.futures.ThreadPoolExecutor,
        writers: int,
    ) -> None:
        if writers < 1:
            raise ValueError(f"writers must be at least 1, not {writers}")
        self._transaction = transaction
        self._checkout = checkout
        self._threads = threads
        self._limit = writers
        self._queue: list[tuple[Work, Waiter]] = []
        self._lock = threading.Lock()
        self._running = 0  # writer threads taking from the queue

    async def run(self, work: Callable[[Any], T]) -> T:
        """Queue ``work``; its result once the group it joined committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._join(work, future):
            self._threads.submit(self._drain)
        return await future

    def run_blocking(self, work: Callable[[Any], T]) -> T:
        """``run`` from a thread that may block (never the event loop's). With a writer's
        place free, this thread takes it for the group its work joins (no hand-off to a
        pool thread and back: the embedded client's start, a step's checkpoint)."""
        slot = Slot()
        if self._join(work, slot):
            self._drain(slot)
        result: T = slot.result()
        return result

    def _join(self, work: Work, waiter: Waiter) -> bool:
        """Queue ``work``; True when the caller takes a free writer's place to drain."""
        with self._lock:
            self._queue.append((work, waiter))
            start = self._running < self._limit
            if start:
                self._running += 1
        return start

    def _drain(self, mine: Slot | None = None) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running -= 1
                    return
                handing = mine is not None and mine.done
            if handing:  # the caller's work is done: a pool thread takes the rest
                self._threads.submit(self._drain)
                return
            batch: list[tuple[Work, Waiter]] = []
            outcomes: list[tuple[bool, Any]] | None = None
            failure: BaseException | None = None
            for _ in range(RECONNECTS):
                try:
                    with self._checkout() as conn:
                        batch = batch or self._take()
                        if batch:
                            outcomes = self._outcomes(conn, [work for work, _ in batch])
                            # the callers go on while the connection goes back to the pool
                            deliver_all(batch, outcomes)
                    break
                except Reconnect as lost:  # on a new connection, as it was
                    failure = lost.cause
                except BaseException as exc:  # no connection: what is queued shares it
                    failure = exc
                    break
            if outcomes is None:
                batch = batch or self._take()
                deliver_all(batch, [(False, failure)] * len(batch))

    def _take(self) -> list[tuple[Work, Waiter]]:
        with self._lock:
            batch = self._queue[:GROUP_MAX]
            del self._queue[:GROUP_MAX]
        return batch

    def _outcomes(self, conn: Any, works: list[Work]) -> list[tuple[bool, Any]]:
        """Each work's (ok, result or exception): in one transaction, else each alone."""
        try:
            return [(True, result) for result in self._transaction(conn, works)]
        except Reconnect:
            raise
        except BaseException as exc:
            if len(works) == 1 or classify(exc) is not None:
                return [(False, exc)] * len(works)
        return [self._alone(conn, work) for work in works]

    def _alone(self, conn: Any, work: Work) -> tuple[bool, Any]:
        try:
            return True, self._transaction(conn, [work])[0]
        except Reconnect as lost:
            return False, lost.cause
        except BaseException as exc:
            return False, exc
