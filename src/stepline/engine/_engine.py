"""``Engine``: the store, the worker and the run transitions behind one object.

The HTTP API, the CLI and ``stepline.testing`` drive an ``Engine``; it knows no HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from stepline._protocol import event_names
from stepline.engine import _events, _ids, _relay
from stepline.engine._apps import registry as _registry
from stepline.engine._apps import sync as _appsync
from stepline.engine._apps.registry import Registry
from stepline.engine._apps.sync import SyncResult
from stepline.engine._backoff import Backoff
from stepline.engine._clock import Clock, SystemClock
from stepline.engine._config import EngineSettings
from stepline.engine._connect import hub as _connect
from stepline.engine._control.pause import CronPolicy, FunctionPause, PauseControl
from stepline.engine._driver import Driver, InProcessDriver, Router, default_driver
from stepline.engine._driver import local as _local
from stepline.engine._errors import EndpointOnlyError, NotFoundError
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Run,
    StepRecord,
    stored_text,
)
from stepline.engine._observe.observer import Observer
from stepline.engine._reads import Reads, whole_runs
from stepline.engine._runs import intake as _intake
from stepline.engine._runs import starts as _starts
from stepline.engine._runs.transitions import RunTransitions
from stepline.engine._runs.waiters import RunWaiters
from stepline.engine._store import (
    EventFilter,
    RunFilter,
    Store,
    Tx,
    dsn,
    guard,
    is_postgres,
    known_schema,
    store_for,
    sweeper,
)
from stepline.engine._store.attempts import StepAttempt
from stepline.engine._trust import apps as _apptrust
from stepline.engine._wire import response
from stepline.engine._worker import schema_watch
from stepline.engine._worker.worker import QueueWorker

__all__ = ["Engine"]

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

logger = logging.getLogger("stepline.engine")
T = TypeVar("T")


class Engine:
    """A durable-execution engine.

    A facade over its parts: the store, the run transitions, the worker, the reads
    (``reads``), the starts of one function (``starter``) and function pauses
    (``pausing``); the REST API, the CLI, ``stepline.testing`` and the embedded engine
    call it.

    Args:
        settings: resolved settings (``stepline.engine.resolve``); defaults to dev mode
            on ``.stepline/stepline.db``.
        store: the database; defaults to SQLite at ``settings.database_url``.
        clock: where time comes from; tests pass a ``ManualClock``.
        http: the HTTP driver (a pooled ``httpx`` client by default).
        tracer_provider: an OpenTelemetry ``TracerProvider`` for the engine's spans
            (``stepline[otel]``); ``settings.tracing`` uses the global one.
    """

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        http: Driver | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.health = guard.StoreHealth(self._scrub)
        self.store: Store = guard.GuardedStore(store or store_for(self.settings), self.health)
        #: metrics, spans and log fields; None when all are off
        self.observer = Observer.build(self.settings, tracer_provider)
        if self.observer is not None:
            self.store = self.observer.wrap(self.store)
        self.clock: Clock = clock or SystemClock()
        self.local = InProcessDriver(_local.LocalCheckpoints(self))  # checkpoints, no HTTP
        http = http or default_driver(max_bytes=self.settings.max_body_bytes)  # capped reads
        self.connect = _connect.Hub(self.settings)  # the Connect gateway's workers
        self.driver = Router(http, self.local, self.connect)
        self._apps = _appsync.Registered()  # the registry, in step with app changes
        #: who may register where: origin moves, the trust probe, deploy tickets
        self.app_trust = _apptrust.AppGuard(self.settings, self.driver)
        backoff = Backoff.named(
            self.settings.retry_backoff,
            jitter=self.settings.retry_jitter,
            scale=self.settings.retry_scale,
        )
        tracing = self.observer is not None and self.observer.tracer is not None
        self.transitions = RunTransitions(
            lambda: self._apps.current, backoff, trace_invokes=tracing
        )
        self._waiters = RunWaiters(self._read_runs)
        self.worker = QueueWorker(
            store=self.store,
            transitions=self.transitions,
            driver=self.driver,
            clock=self.clock,
            settings=self.settings,
            registry=lambda: self._apps.current,
            on_commit=self.committed,
            on_ended=self._waiters.ended_blocking,
            observer=self.observer,
            reload=self.reload,
            local=self.local,
        )
        self.reads = Reads(self.store)
        self.starter = _intake.Starter(
            store=self.store,
            clock=self.clock,
            observer=self.observer,
            transitions=self.transitions,
            worker=self.worker,
            apps=self._apps,
            waiters=self._waiters,
            committed=self.committed,
            aio=lambda: self._aio,
        )
        self.pausing = PauseControl(
            store=self.store,
            clock=self.clock,
            apps=self._apps,
            reload=self.reload,
            committed=self.committed,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.sync_errors: dict[str, str] = {}
        #: told of each ``-u`` app as it settles (the CLI's progress display)
        self.on_sync: Callable[[SyncResult], None] | None = None
        self._started = False
        self._aio: asyncio.AbstractEventLoop | None = None

    @property
    def registry(self) -> Registry:
        """The functions currently registered."""
        return self._apps.current

    # -- life cycle -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """A driver's message without the database URLs or their passwords."""
        text = dsn.scrub(text, self.settings.database_url)
        direct = self.settings.database_direct_url
        return text if direct is None else dsn.scrub(text, direct)

    async def start(self, *, worker: bool = True, sync: bool = True) -> None:
        """Open the store, load functions, start the worker and sync ``-u`` apps.

        Args:
            worker: run the worker in this process.
            sync: sync ``settings.app_urls`` now; an HTTP server passes False and calls
                ``sync_apps`` once it listens (apps answer a sync by calling it back).

        Raises:
            SchemaTooNewError: the database's schema is newer than this engine knows (a
                newer release migrated it); nothing was started.
        """
        if self._started:
            return
        self._started = True
        self._waiters.open()
        try:
            await self.store.open()  # SchemaTooNewError: a newer release migrated it
        except BaseException:
            with contextlib.suppress(Exception):  # what was opened (its threads, the driver)
                await self.stop()
            raise
        await self.reload()
        self._aio = asyncio.get_running_loop()
        self.store.subscribe(self._notified)
        if worker:
            self.start_worker()
        if sync:
            await self.sync_apps()

    def start_worker(self) -> None:
        """Start leasing jobs (``start(worker=False)`` defers it, e.g. until apps are served)."""
        if not self._tasks:
            self._tasks = [
                self.worker.start(),
                asyncio.create_task(self.worker.heartbeat(), name="stepline-heartbeat"),
                asyncio.create_task(sweeper.Sweeper.of(self).run(), name="stepline-retention"),
                asyncio.create_task(self._schema_watch().run(), name="stepline-schema-watch"),
                *_relay.tasks(self),  # relay_outbox: this engine moves an outbox's rows
            ]

    def _schema_watch(self) -> schema_watch.SchemaWatch:
        metrics = None if self.observer is None else self.observer.metrics
        return schema_watch.SchemaWatch(
            self.store,
            known=known_schema(self.settings),
            postgres=is_postgres(self.settings.database_url),
            interval=self.settings.schema_check_interval,
            refuse=self._refuse,
            on_refused=None if metrics is None else metrics.record_schema_too_new,
        )

    def _refuse(self, reason: str) -> None:
        """The schema moved past this engine: no more leases, and no retention deletes
        either (a newer release may keep rows this one would remove)."""
        self.worker.refuse(reason)
        for task in self._tasks:
            if task.get_name() == "stepline-retention":
                task.cancel()

    async def sync_apps(self) -> list[SyncResult]:
        """Sync every ``-u`` app (``settings.app_urls``); failures are logged, not raised."""
        results = []
        for url in self.settings.app_urls:
            result = await self.sync_url(url)
            if not result.ok:
                logger.warning("could not sync %s: %s", url, result.error)
            results.append(result)
            if self.on_sync is not None:
                self.on_sync(result)
        return results

    async def stop(self, grace: float | None = None) -> None:
        """Stop leasing; calls in flight get ``grace`` s (``shutdown_grace``), then go back."""
        if not self._started:
            return
        self._started = False
        self._waiters.close()  # callers blocked on other threads: no run ends from here on
        await self.worker.stop(self.settings.shutdown_grace if grace is None else grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.driver.close()
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _notified(self, what: str) -> None:
        """Another node committed something (called from the store's listener thread)."""
        loop = self._aio
        if loop is None or loop.is_closed():
            return
        if what == "apps":
            asyncio.run_coroutine_threadsafe(self.reload(), loop)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.committed)

    def committed(self, wake: bool = True, ended: Sequence[Run] | None = None) -> None:
        """Something was committed: wake the worker (new jobs) and callers waiting for runs.

        On the engine's loop; ``committed_threadsafe`` from another thread.

        Args:
            wake: the commit may have queued jobs (the worker's own commits know).
            ended: the runs the commit ended, when known exactly; None: check every
                waited-for run.
        """
        if wake:
            self.worker.wake.set()
        if ended is None:
            self._waiters.changed()
        else:
            for run in ended:
                self._waiters.ended(run)

    def committed_threadsafe(self, wake: bool, ended: Sequence[Run] | None) -> None:
        """``committed``, from a thread other than the engine's loop (a commit made there:
        an in-process checkpoint); nothing before the engine has started, nor when there
        is no one to tell: no jobs to wake the worker for and no caller waiting for the
        runs (``Direct`` applies the same test to a durable endpoint's commits). A post
        wakes the loop's thread, which takes the GIL from the committing thread and then
        gives it back: two thread switches in the middle of, say, a web request running a
        durable endpoint's steps."""
        if self._aio is not None and (wake or self.concerned(ended)):
            self._aio.call_soon_threadsafe(self.committed, wake, ended)

    def concerned(self, ended: Sequence[Run] | None) -> bool:
        """Whether a caller waits for one of the runs a commit on another thread ended
        (None: any run); a caller that starts waiting later reads its run itself."""
        return self._waiters.concern(ended)

    async def _read_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs of ``run_ids`` that have ended, each as ``get_run`` reads it (its
        ``stack`` and attributes too): what a waiter the recheck answers is given."""

        def read(tx: Tx) -> list[Run]:
            return whole_runs(tx, tx.ended(run_ids))

        return await self.store.read(read)

    # -- registration ---------------------------------------------------------------------

    async def reload(self) -> None:
        """Rebuild the registry from the store (another node's app change, or at start)."""
        await self._apps.reload(self.store)

    async def change_apps(self, work: Callable[[Tx], T]) -> T:
        """Commit a change to the registered apps; this node matches by it from then on."""
        result = await self._apps.change(self.store, work)
        self.committed()
        return result

    async def register(
        self, body: object, *, deploy_url: str | None = None, deploy_id: str | None = None
    ) -> dict[str, Any]:
        """Accept a ``POST /fn/register`` body.

        ``deploy_id`` is the request's ``?deployId=``: one this engine put on its own
        signed sync PUT lets the app move to that origin without a trust probe.

        Raises:
            RegistrationError: the body is invalid (the API answers 400).
            RegistrationRefusedError: the app would move to an origin that failed the
                trust probe (403), or it names another app's function ids (409).
        """
        app = _registry.parse_app(body, deploy_url=deploy_url, deploy_id=deploy_id)
        now = self.clock.now()
        await self.app_trust.check_move(self.store, app, deploy_id, now)
        mode = self.settings.server_kind
        modified = await self.change_apps(lambda tx: _appsync.store_app(tx, app, now, mode))
        self.sync_errors.pop(app.url, None)
        logger.info("synced app %s (%d functions) from %s", app.app_id, len(app.functions), app.url)
        return {
            "ok": True,
            "modified": modified,
            "app_id": app.app_id,
            "sync_id": _ids.ulid(int(now * 1000)),
        }

    async def sync_url(self, url: str, *, vouch: bool = True) -> SyncResult:
        """Ask the app at ``url`` to register itself (an out-of-band PUT, signed with a key).

        Args:
            url: the app's URL.
            vouch: put a ``deployId`` on the PUT that lets the registration answering it
                move an app to ``url``'s origin without a trust probe; False for a sync
                the signing key did not ask for (a dashboard session's).
        """
        now = self.clock.now()
        result = await _appsync.ask(self.driver, self.app_trust, url, now, self.store, vouch=vouch)
        if result.ok or result.error is None:
            return result
        error = stored_text(result.error)  # an app's answer may hold NUL, which Postgres refuses
        self.sync_errors[url] = error
        await self.store.atomic(lambda tx: tx.apps.set_app_error(url, error, self.clock.now()))
        return dataclasses.replace(result, error=error)

    async def resync(self, *, vouch: bool = True) -> list[SyncResult]:
        """Sync every known app again (``vouch`` as ``sync_url``'s)."""
        apps = await self.list_apps()
        urls = sorted({a.url for a in apps} | set(self.settings.app_urls))
        wanted = [u for u in urls if not u.startswith(_connect.NOT_SYNCED)]
        return [await self.sync_url(u, vouch=vouch) for u in wanted]

    async def serve(self, client: Client, functions: Sequence[Function]) -> None:
        """Serve an app's functions in this process: no HTTP between engine and app."""
        from stepline._comm import app_sync
        from stepline._comm.handler import CommHandler

        handler = CommHandler(client=client, functions=functions, framework="inprocess")
        url = self.local.add(client.app_id, handler)
        await self.register(app_sync.register_payload(handler.endpoint, url))

    async def reregister(self, app_id: str) -> None:
        """Register an app served here again: its functions grew (a late durable endpoint)."""
        from stepline._comm import app_sync

        handler = self.local.handler(app_id)
        if handler is not None:
            await self.register(app_sync.register_payload(handler.endpoint, self.local.url(app_id)))

    # -- events ---------------------------------------------------------------------------

    async def send(
        self, raw: object, *, seed: str | None = None, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """Store events (one object or a list) and start what they trigger; see ``accept``.

        Returns:
            internal event ids, in input order.

        Raises:
            EventError: an invalid event (its ``ids``: those of the events stored before it).
        """
        intake = await self.accept(raw, seed=seed, headers=headers)
        intake.start()
        return intake.result()

    async def accept(
        self, raw: object, *, seed: str | None = None, headers: Mapping[str, str] | None = None
    ) -> _intake.Intake:
        """Store events and start their runs, atomically; their first calls wait for ``start``.

        As Inngest's event API: the events before the first invalid one are stored (in one
        transaction, with the runs they start), nothing after it. ``headers`` are the
        sending request's: a W3C ``traceparent`` among them is kept with the events when
        tracing, so their runs continue that trace.

        Raises:
            EventError: no events, too many, or the first one invalid: nothing is stored.
        """
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise _events.EventError("no events in the request")
        if len(items) > _events.MAX_EVENTS:
            raise _events.EventError(f"at most {_events.MAX_EVENTS} events per request")
        now = self.clock.now()
        ids = _ids.seeded(seed, len(items)) if seed else [_ids.ulid(int(now * 1000)) for _ in items]
        records, error = _events.valid_prefix(items, now=now, ids=ids)
        if not records:
            raise error or _events.EventError("no events in the request")
        if headers and self.observer is not None:
            self.observer.received(records, headers)
        await self._apps.settled()  # not matched against a registry an app change replaces
        calls = await self._ingest_now(records, now)
        return _intake.Intake(ids[: len(records)], error, lambda: self.worker.dispatch(calls))

    def _ingest(self, tx: Tx, records: list[EventRecord], now: float) -> list[str]:
        """Store events and match them; returns the runs they started."""
        stored = tx.insert_events(records)  # a retried send (same seed) stores nothing twice
        tx.note_event_names({record.name for record in records})
        started: list[str] = []
        for record in records:
            if record.internal_id in stored:
                started.extend(self.transitions.fanout(tx, record, now))
        return started

    async def _ingest_now(self, records: list[EventRecord], now: float) -> list[_intake.Call]:
        """Store events and start their runs; returns the first calls leased for this node."""
        adopting = len(records) <= _intake.ADOPT_MAX_EVENTS  # big batches go through the queue

        def work(tx: Tx) -> _intake.Adopted:
            if adopting:
                self.worker.lease_as_queued(tx, None, now)
            started = self._ingest(tx, records, now)
            return _intake.adopted(tx, self.worker.adopt(tx, started if adopting else [], now))

        adopted = await self.store.atomic(work, small=adopting)
        self.committed(wake=adopted.wake, ended=adopted.ended)  # it may have cancelled runs
        return adopted.calls

    async def invoke(self, function_id: str, raw: object) -> str:
        """Start a function directly (``POST /invoke/{slug}``), whatever its triggers.

        Raises:
            NotFoundError: the function is not registered.
            EndpointOnlyError: it is a durable endpoint's function (its endpoint starts it).
        """
        fn = (await self._apps.settled()).get(function_id)
        if fn is None:
            raise NotFoundError(f"function {function_id!r} is not registered")
        if fn.is_endpoint:
            raise EndpointOnlyError(event_names.endpoint_only_problem(function_id))
        now = self.clock.now()
        body: dict[str, Any] = raw if isinstance(raw, dict) else {}
        data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
        event = _events.internal(
            _events.INVOKED,
            {**data, "_inngest": {"fn_id": function_id, "name": _events.INVOKED}},
            now=now,
        )
        self.worker.dispatch(await self._ingest_now([event], now))
        return event.internal_id

    async def commit(self, work: Callable[[Tx], T]) -> T:
        """``work`` in one transaction, then ``committed`` (it may have queued jobs and
        ended runs: the worker and the callers waiting look)."""
        result = await self.store.atomic(work)
        self.committed()
        return result

    async def metrics(self) -> str:
        """The Prometheus text exposition of this engine's metrics.

        Raises:
            LookupError: metrics are turned off.
        """
        if self.observer is None:
            raise LookupError("metrics are turned off (STEPLINE_METRICS=0)")
        return await self.observer.scrape(self.store, self.clock.now())

    async def idle(self) -> bool:
        """True when no job is due on the engine's clock and none is in flight here.

        With a ``ManualClock`` this is the moment to move time forward.
        """
        if self.worker.busy:
            return False
        due = await self.store.read(lambda tx: tx.queue.next_job_at())
        return (due is None or due > self.clock.now()) and not self.worker.busy

    # -- runs -----------------------------------------------------------------------------

    async def cancel(self, run_id: str, reason: str = "cancelled through the API") -> bool:
        """Cancel a run; False if it had already ended.

        Raises:
            NotFoundError: no such run.
        """
        await self.get_run(run_id)
        return await self.commit(
            lambda tx: self.transitions.cancel(tx, run_id, self.clock.now(), reason)
        )

    async def rerun(self, run_id: str) -> str:
        """Start a new run of the same function with the same trigger events."""
        run = await self.get_run(run_id)
        fn = (await self._apps.settled()).get(run.function_id)
        if fn is None:
            raise NotFoundError(f"function {run.function_id!r} is no longer registered")
        now = self.clock.now()

        def work(tx: Tx) -> str:
            events = [e for e in (tx.get_event(i) for i in run.event_ids) if e is not None]
            new = _starts.start_run(
                tx, fn, events, now, run_id=_ids.ulid(int(now * 1000)), origin=f"rerun:{run_id}"
            )
            assert new is not None
            if run.started_by is not None:  # a rerun stays its starter's run
                _starts.record_starter(tx, new.run_id, run.started_by)
            return new.run_id

        return await self.commit(work)

    async def wait_for_run(
        self,
        run_id: str,
        timeout: float = 30.0,
        *,
        read: bool = False,
        watched: asyncio.Future[Run] | None = None,
    ) -> Run:
        """Wait (in real time) until a run ends, and return it; ``read``: read it first,
        once the waiter is registered (``NotFoundError`` for no such run); ``watched``:
        the registration ``start_watched`` made (no read needed).

        Raises:
            TimeoutError: it did not end in time.
        """
        now = functools.partial(self.get_run, run_id) if read else None
        return await self._waiters.wait(run_id, timeout, now, watched=watched)

    def wait_for_run_blocking(self, run_id: str, timeout: float = 30.0) -> Run:
        """``wait_for_run(read=True)`` from a thread that may block (never the loop's).

        Raises:
            TimeoutError: it did not end in time.
            NotFoundError: no such run.
            EngineStopped: the engine stopped meanwhile.
        """
        return self._waiters.wait_blocking(run_id, timeout, lambda: self.get_run_blocking(run_id))

    async def long_poll(
        self, run_id: str, wait: float, *, watched: asyncio.Future[Run] | None = None
    ) -> Run:
        """``GET /v1/runs/{id}?wait=``: the run once it has ended, or as it is after ``wait``
        seconds (at once for 0); ``watched``: the registration ``start_watched`` made.

        Raises:
            NotFoundError: no such run.
        """
        if not wait:
            return await self.get_run(run_id)
        try:
            return await self.wait_for_run(run_id, timeout=wait, read=True, watched=watched)
        except asyncio.TimeoutError:  # still going: as it is now, not as it was
            return await self.get_run(run_id)

    def long_poll_blocking(self, run_id: str, wait: float) -> Run:
        """``long_poll`` from a thread that may block (never the loop's).

        Raises:
            NotFoundError: no such run.
            EngineStopped: the engine stopped meanwhile.
        """
        if not wait:
            return self.get_run_blocking(run_id)
        try:
            return self.wait_for_run_blocking(run_id, timeout=wait)
        except TimeoutError:  # still going: as it is now, not as it was
            return self.get_run_blocking(run_id)

    # -- checkpoints (SDK-facing) ---------------------------------------------------------------

    async def checkpoint(self, run_id: str, body: object) -> None:
        """``POST /v1/checkpoint/{run}/async``: persist steps an SDK ran ahead of reporting.

        Raises:
            NotFoundError: no such run.
            ValueError: the body is not a checkpoint, or carries async ops.
            CallLost: the call ``qi_id`` is no longer leased, or the run ended (409).
        """
        ops = response.checkpoint_ops(body, max_output=self.settings.max_step_output_bytes)
        await self.local.sink.record_http(run_id, body, ops)  # 404 from its transaction

    # -- reads (``reads``) ----------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """A run by id, with its attributes.

        Raises:
            NotFoundError: no such run.
        """
        return await self.reads.get_run(run_id)

    def get_run_blocking(self, run_id: str) -> Run:
        """``get_run`` from a thread that may block (never the event loop's)."""
        return self.reads.get_run_blocking(run_id)

    async def list_runs(self, where: RunFilter | None = None) -> list[Run]:
        """Runs, newest first, filtered and paginated, with their attributes."""
        return await self.reads.list_runs(where)

    async def run_steps(self, run_id: str) -> list[StepRecord]:
        """A run's step timeline, in completion order (pending steps last)."""
        return await self.reads.run_steps(run_id)

    async def run_retries(self, run_id: str) -> tuple[Run, list[StepRecord], dict[str, float]]:
        """A run, its step timeline and when each step waiting to be retried is due again
        (``Reads.run_retries``)."""
        return await self.reads.run_retries(run_id)

    async def run_attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of the run's steps that failed at least once, oldest first."""
        return await self.reads.run_attempts(run_id)

    async def get_event(self, event_id: str) -> EventRecord:
        """An event by internal id (or by its own ``id``)."""
        return await self.reads.get_event(event_id)

    async def list_events(self, where: EventFilter | None = None) -> list[EventRecord]:
        """Events, newest first."""
        return await self.reads.list_events(where)

    async def event_runs(self, event_id: str) -> list[EventRunLink]:
        """The runs an event started, and why it started none for other functions."""
        return await self.reads.event_runs(event_id)

    async def list_functions(self) -> list[FunctionRecord]:
        """Every registered function."""
        return await self.reads.list_functions()

    async def list_apps(self) -> list[AppRecord]:
        """Every synced app."""
        return await self.reads.list_apps()

    async def run_batch(self, run_id: str) -> list[dict[str, Any]]:
        """``GET /v0/runs/{id}/batch``: the run's trigger events."""
        return await self.reads.run_batch(run_id)

    async def run_actions(self, run_id: str) -> dict[str, Any]:
        """``GET /v0/runs/{id}/actions``: the memos of the run's finished steps."""
        return await self.reads.run_actions(run_id)

    # -- starts of one function (``starter``) -------------------------------------------------

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
        """Start a run of one function; returns ``(run_id, created)`` (see
        ``Starter.start_function`` for the arguments).

        Raises:
            NotFoundError: the function is not registered.
            EndpointOnlyError: it is a durable endpoint's function (its endpoint starts it).
            RunIdTakenError: ``run_id`` names a run of another function.
            SkippedError: flow control started no run (rate limit, singleton, debounce).
        """
        return await self.starter.start_function(
            function_id, data, idempotency_key=idempotency_key, headers=headers,
            started_by=started_by, run_id=run_id, attributes=attributes,
        )  # fmt: skip

    async def start_watched(
        self, function_id: str, data: dict[str, Any], *, watch: bool = True, **options: Any
    ) -> tuple[str, bool, asyncio.Future[Run] | None]:
        """``start_function`` (same arguments, same errors), and (``watch``) a caller
        registered for the end of a run it created (``Starter.start_watched``)."""
        return await self.starter.start_watched(function_id, data, watch=watch, **options)

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
        """``start_function`` from a thread that may block (never the event loop's): the
        same arguments and errors, and ``EngineStopped`` when the engine is not running
        (``Starter.start_function_blocking``)."""
        return self.starter.start_function_blocking(
            function_id, data, idempotency_key=idempotency_key, headers=headers,
            started_by=started_by, run_id=run_id, attributes=attributes,
        )  # fmt: skip

    # -- function pauses (``pausing``) --------------------------------------------------------

    async def pause(
        self, function_id: str, *, crons: CronPolicy = "queue", reason: str | None = None
    ) -> FunctionPause:
        """Pause a function: its runs are created but none of its calls runs until resumed.

        Raises:
            NotFoundError: the function is not registered.
            ValueError: ``crons`` is neither "queue" nor "skip".
        """
        return await self.pausing.pause(function_id, crons=crons, reason=reason)

    async def resume(self, function_id: str) -> bool:
        """Resume a paused function: its parked calls run, oldest first; whether it was
        paused.

        Raises:
            NotFoundError: the function is not registered.
        """
        return await self.pausing.resume(function_id)

    async def paused(self) -> dict[str, FunctionPause]:
        """The paused functions, by id."""
        return await self.pausing.paused()
