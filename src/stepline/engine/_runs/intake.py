"""What a send stored, and the first calls of the runs it started, held for after the answer.

The transaction that stores events and starts runs also leases those runs' first calls
for this node's worker (``QueueWorker.adopt``), so a run starts without a trip through the
queue. The event API sends its answer first and only then lets the calls go
(``Intake.start``): a sender always has its ids before its app sees the first call of
a run its events started, as with Inngest's server.

``Starter`` (a part of ``Engine``) starts a run of one function: ``start_function`` is the
REST API's ``POST /v1/functions/{id}/runs``; ``start_function_blocking`` is the same start
for a caller on another thread of the engine's process (the embedded engine's client, in
a web request's thread): it commits on that thread (``Store.atomic_blocking``) and only
tells the loop afterwards, to run the first call, instead of crossing to the loop, from
the loop to the store's writer and back twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepline._api import ownership
from stepline._protocol import event_names
from stepline.engine._errors import (
    EndpointOnlyError,
    EngineStopped,
    NotFoundError,
    SkippedError,
)
from stepline.engine._events import EventError
from stepline.engine._model import EventRecord, EventRunLink, Job, Run
from stepline.engine._runs import starts as _starts
from stepline.engine._runs.view import Snapshot
from stepline.engine._store import Store, Tx

if TYPE_CHECKING:
    from stepline.engine._apps.sync import Registered
    from stepline.engine._clock import Clock
    from stepline.engine._observe.observer import Observer
    from stepline.engine._runs.transitions import RunTransitions
    from stepline.engine._runs.waiters import RunWaiters
    from stepline.engine._worker.worker import QueueWorker

#: A leased first call and the run and steps it starts from.
Call = tuple[Job, Snapshot]

#: A send of at most this many events has its runs' first calls taken by this node at once.
ADOPT_MAX_EVENTS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Adopted:
    """The first calls a starting transaction leased for this node's worker (``adopt``)."""

    calls: list[Call]
    #: the transaction queued other jobs as well: the worker's loop must look
    wake: bool
    #: the runs it ended (a singleton start, an event's ``cancelOn`` cancels runs)
    ended: list[Run]


def adopted(tx: Tx, calls: list[Call]) -> Adopted:
    """``calls`` (``adopt`` marked them ``tx.claimed``), whether ``tx`` queued anything
    besides them, and the runs it ended."""
    wake = any(job_id not in tx.claimed for job_id in tx.queued)
    return Adopted(calls, wake=wake, ended=list(tx.ended_runs))


@dataclasses.dataclass(frozen=True, slots=True)
class Intake:
    """The outcome of ``Engine.accept``: stored, committed, first calls not yet sent.

    Attributes:
        ids: internal ids of the stored events, in input order (all of them, or the
            ones before ``error``).
        error: the first invalid event's error, or None; nothing after it was stored.
        start: sends the first calls the transaction leased; call it exactly once,
            after the answer has gone out (a lease left unsent is taken over by the
            queue only when it expires).
    """

    ids: list[str]
    error: EventError | None
    start: Callable[[], None]

    def result(self) -> list[str]:
        """``ids``, or raise ``error`` (carrying them) when an event was invalid."""
        if self.error is not None:
            raise EventError(str(self.error), self.ids)
        return self.ids


@dataclasses.dataclass(frozen=True)
class _Start:
    """One start: the event that records it and what its transaction needs."""

    function_id: str
    event: EventRecord
    now: float
    own_id: str | None
    run_id: str | None
    started_by: str | None
    attributes: Mapping[str, str] | None


class Starter:
    """Starts a run of one function: ``start_function`` and its blocking twin.

    Args:
        store: the engine's store.
        clock: the engine's clock.
        observer: the engine's observer (a start's ``traceparent``), if any.
        transitions: the run transitions (fan-out of the start's event).
        worker: this node's worker: it takes the run's first call at once.
        apps: the registry, in step with app changes.
        waiters: the callers waiting for runs to end.
        committed: told of each start's commit, on the engine's loop (whether it
            queued jobs, the runs it ended).
        aio: the engine's event loop once it runs (None before ``Engine.start``).
    """

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        observer: Observer | None,
        transitions: RunTransitions,
        worker: QueueWorker,
        apps: Registered,
        waiters: RunWaiters,
        committed: Callable[[bool, Sequence[Run] | None], None],
        aio: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.observer = observer
        self.transitions = transitions
        self.worker = worker
        self._apps = apps
        self._waiters = waiters
        self._committed = committed
        self._aio = aio

    async def start_function(
        self,
        function_id: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        started_by: str | None = None,
        run_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Start a run of one function; returns ``(run_id, created)``.

        ``headers`` are the starting request's: its W3C ``traceparent`` is kept (when
        tracing) so the run continues the caller's trace.

        With an ``idempotency_key``, a second start within 24 hours returns the first
        run (``created`` False) instead of starting another; concurrent starts with one
        key race safely (the per-function event-id claim decides). ``started_by`` (a
        principal) is recorded on the run, and scopes the key: another principal's key
        never returns this run (``stepline._api.ownership``). A proposed ``run_id`` (the outbox
        relay's) names the run; a second start with it returns that run (``created`` False).
        ``attributes`` (checked) are set on a run this start creates.

        Raises:
            NotFoundError: the function is not registered.
            EndpointOnlyError: it is a durable endpoint's function (its endpoint starts it).
            RunIdTakenError: ``run_id`` names a run of another function.
            SkippedError: flow control started no run (rate limit, singleton, debounce).
        """
        await self._apps.settled()  # an app change committing now is in the registry first
        start = self._start(
            function_id, data, idempotency_key=idempotency_key, headers=headers,
            started_by=started_by, run_id=run_id, attributes=attributes,
        )  # fmt: skip
        started, created, _ = await self._start_now(start, watch=False)
        return started, created

    async def start_watched(
        self, function_id: str, data: dict[str, Any], *, watch: bool = True, **options: Any
    ) -> tuple[str, bool, asyncio.Future[Run] | None]:
        """``start_function`` (same arguments, same errors), and (``watch``) a caller
        registered for the end of a run it created, from its commit on:
        ``long_poll(watched=)`` then waits without first reading the run. None for a run
        it did not create, or without ``watch``.
        """
        await self._apps.settled()
        start = self._start(function_id, data, **options)
        return await self._start_now(start, watch=watch)

    async def _start_now(
        self, start: _Start, *, watch: bool
    ) -> tuple[str, bool, asyncio.Future[Run] | None]:
        started, created, adopted = await self.store.atomic(self._start_work(start), small=True)
        # before the first call is dispatched: nothing can have ended the run yet
        watched = self._waiters.watch(started) if watch and started and created else None
        self._after_start(adopted)
        if started is None:
            links = await self.store.read(lambda tx: tx.event_links(start.event.internal_id))
            raise _skipped(start, links)
        return started, created, watched

    def start_function_blocking(
        self,
        function_id: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        started_by: str | None = None,
        run_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> tuple[str, bool]:
        """``start_function`` from a thread that may block (never the event loop's).

        Raises:
            NotFoundError: the function is not registered.
            EndpointOnlyError: it is a durable endpoint's function (its endpoint starts it).
            SkippedError: flow control started no run (rate limit, singleton, debounce).
            RunIdTakenError: ``run_id`` names a run of another function.
            EngineStopped: the engine is not running.
        """
        aio = self._aio()
        if aio is None or aio.is_closed():
            raise EngineStopped("the engine is not running")
        if self._apps.changing:  # as ``start_function``: after the app change
            asyncio.run_coroutine_threadsafe(self._apps.settled(), aio).result()
        start = self._start(
            function_id, data, idempotency_key=idempotency_key, headers=headers,
            started_by=started_by, run_id=run_id, attributes=attributes,
        )  # fmt: skip
        started, created, adopted = self.store.atomic_blocking(self._start_work(start))
        if started and created and any(job.run_id == started for job, _ in adopted.calls):
            # its first call is this node's and not dispatched yet: nothing ended it
            self._waiters.fresh(started)
        aio.call_soon_threadsafe(self._after_start, adopted)
        if started is None:
            links = self.store.read_blocking(lambda tx: tx.event_links(start.event.internal_id))
            raise _skipped(start, links)
        return started, created

    def _start(
        self,
        function_id: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None,
        headers: Mapping[str, str] | None,
        started_by: str | None,
        run_id: str | None,
        attributes: Mapping[str, str] | None,
    ) -> _Start:
        fn = self._apps.current.get(function_id)
        if fn is None:
            raise NotFoundError(f"function {function_id!r} is not registered")
        if fn.is_endpoint:  # its trigger data and caller come from its endpoint alone
            raise EndpointOnlyError(event_names.endpoint_only_problem(function_id))
        now = self.clock.now()
        own_id = ownership.start_event_id(idempotency_key, started_by)
        event = _starts.start_event(function_id, data, now, event_id=own_id, run_id=run_id)
        if headers and self.observer is not None:
            self.observer.received([event], headers)
        return _Start(function_id, event, now, own_id, run_id, started_by, attributes)

    def _start_work(self, start: _Start) -> Callable[[Tx], tuple[str | None, bool, Adopted]]:
        def work(tx: Tx) -> tuple[str | None, bool, Adopted]:
            self.worker.lease_as_queued(tx, None, start.now)
            started, created = _starts.start_direct(
                tx, self.transitions.fanout, start.event, start.now, function_id=start.function_id,
                own_id=start.own_id, run_id=start.run_id, started_by=start.started_by,
                attributes=start.attributes,
            )  # fmt: skip
            taken = self.worker.adopt(tx, [started], start.now) if started and created else []
            tx.queue.unlease_calls()  # adopt's or not: what it did not take is queued
            return started, created, adopted(tx, taken)

        return work

    def _after_start(self, adopted: Adopted) -> None:
        """On the loop, once the start committed: a singleton start may have cancelled a
        run, and the first calls it leased run now."""
        self._committed(adopted.wake, adopted.ended)
        self.worker.dispatch(adopted.calls)


def _skipped(start: _Start, links: Sequence[EventRunLink]) -> SkippedError:
    """Rate limited, singleton, debounced into a later run...: why no run started."""
    why = ", ".join(sorted({link.reason or "skipped" for link in links})) or "skipped"
    return SkippedError(f"{start.function_id!r} started no run: {why}", start.event.internal_id)
