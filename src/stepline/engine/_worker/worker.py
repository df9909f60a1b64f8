"""The worker: leases due jobs, runs them, keeps their leases alive.

Job handling is split in two: I/O outside any transaction (the SDK call, the gateway
call), then one transaction that records the result and schedules what follows.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stepline import _json
from stepline._status import RunStatus
from stepline.engine._apps import registry as _registry
from stepline.engine._apps import versions
from stepline.engine._apps.registry import Registry
from stepline.engine._clock import Clock
from stepline.engine._config import EngineSettings
from stepline.engine._control import bulk as _bulk
from stepline.engine._control import pause as _pause
from stepline.engine._driver import Driver, InProcessDriver
from stepline.engine._gateway import proxy
from stepline.engine._model import Job, JobKind, Run
from stepline.engine._observe import attempts as _attempts
from stepline.engine._observe.observer import Observer
from stepline.engine._runs import recording, starts
from stepline.engine._runs.transitions import RunTransitions
from stepline.engine._runs.view import KnownSteps, Snapshot
from stepline.engine._store import Store, Tx, faults
from stepline.engine._wire import response
from stepline.engine._worker import calls, drain, leases, onthread, recovery

logger = logging.getLogger("stepline.engine")
_LEASE_BATCH = 32


class QueueWorker:
    """Processes the job queue of one store; several workers (processes) may share it."""

    def __init__(
        self,
        *,
        store: Store,
        transitions: RunTransitions,
        driver: Driver,
        clock: Clock,
        settings: EngineSettings,
        registry: Callable[[], Registry],
        on_commit: Callable[[bool, Sequence[Run] | None], None],
        on_ended: Callable[[Run], None] | None = None,
        observer: Observer | None = None,
        reload: Callable[[], Awaitable[None]] | None = None,
        local: InProcessDriver | None = None,
    ) -> None:
        self.store = store
        self.observer = observer
        self.transitions = transitions
        #: the calls to apps (``local``: those served in this process)
        self.caller = calls.Caller(
            driver, settings=settings, clock=clock, observer=observer, local=local
        )
        self.gateway = proxy.Gateway(settings)
        self.clock = clock
        self.settings = settings
        self._registry = registry
        self._reload = reload
        self._on_commit = on_commit
        #: told on the committing thread of each run a call's answer ended there (any
        #: thread; ``on_commit`` still follows on the loop)
        self.on_ended = on_ended
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        #: set once ``stop`` begins: no more leasing, and no call leased without a queue turn
        self.stopping = False
        #: why this worker leases nothing more while it runs (``refuse``), or None
        self.refusal: str | None = None
        #: set to cut a graceful stop's grace short (a second signal)
        self.halt = asyncio.Event()
        self._full = False
        self._running = False
        self.beat: tuple[float, frozenset[str]] = (0.0, frozenset())  # the last heartbeat

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Lease from now on (``adopt`` too, before the loop's first turn) and start the loop."""
        self._running = True
        return asyncio.create_task(self._run(), name="stepline-worker")

    async def _run(self) -> None:
        """Lease and dispatch jobs until ``stop``; a database error is logged and retried."""
        while not self.stopping:
            if self.refusal is not None:  # leases nothing more: waits for its stop
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database fault: logged by the store's guard
                await recovery.pause(exc, logger, "the worker's queue loop failed")

    def refuse(self, reason: str) -> None:
        """Lease no more work while running, for ``reason`` (the schema moved past this
        engine: ``schema_watch``); calls in flight finish, without taking their runs' next
        calls. Only a restart undoes it."""
        self.refusal = reason
        self.wake.set()

    @property
    def leasing(self) -> bool:
        """Whether this worker takes calls now: running, not stopping, not refusing."""
        return self._running and not self.stopping and self.refusal is None

    async def _loop(self) -> None:
        while not self.stopping and self.refusal is None:
            self.wake.clear()
            free = self.settings.concurrency - len(self._inflight)
            jobs: list[Job] = []
            parked = 0
            next_due: float | None = None
            if free > 0:
                lease = functools.partial(
                    leases.due,
                    clock=self.clock,
                    owner=self.owner,
                    seconds=self.settings.lease_seconds,
                    limit=min(free, _LEASE_BATCH),
                    recheck=max(self.settings.lease_seconds, 1.0),
                )
                jobs, parked, leased_at, snapshots, next_due = await self.store.atomic(lease)
                if jobs and self.clock.now() > leased_at + self.settings.lease_seconds / 3:
                    # The transaction waited so long that the lease may lapse before the
                    # first heartbeat: leave the jobs to come due again rather than risk
                    # running them twice.
                    logger.warning("lease committed late; %d job(s) left to retry", len(jobs))
                    jobs = []
            for job in jobs:  # one whose lease lapsed while this worker calls it goes on
                held = self._inflight.get(job.job_id)  # as it is (the lease is renewed);
                if held is None or held.done():  # a task that ended: a new attempt (a retry)
                    self._spawn(job, snapshots.get(job.job_id))
            if len(jobs) + parked == min(free, _LEASE_BATCH) > 0:
                continue
            if free <= 0:
                self._full = True  # a finishing job wakes the loop (only then)
                await self.wake.wait()
                self._full = False
                continue
            # read in the lease's transaction: no second round trip before sleeping
            deadline = self.clock.now() + self.settings.poll_interval
            if next_due is not None:
                deadline = min(deadline, next_due)
            await self.clock.sleep_until(deadline, self.wake)

    def _spawn(self, job: Job, snapshot: Snapshot | None) -> None:
        current = [job]  # the job this task holds (run affinity moves it on)
        started: list[onthread.StartedTurn | None] = [None]  # read once the task runs
        task = asyncio.create_task(self._process(job, snapshot, current, started))
        self._inflight[job.job_id] = task  # before the call can move ``current`` on
        task.add_done_callback(functools.partial(self._done, current))
        if snapshot is not None and job.kind is JobKind.EXECUTE:
            now = onthread.start_now  # in a context of its own: the job's log fields
            started[0] = contextvars.copy_context().run(now, self, job, snapshot, current)

    def adopt(self, tx: Tx, run_ids: Sequence[str], now: float) -> list[tuple[Job, Snapshot]]:
        """In the transaction that started runs, lease their first calls for this worker.

        The caller hands them to ``dispatch`` once that transaction has committed: a run
        started here begins without a trip through the queue. Runs whose first call is
        not due yet, or is bound by concurrency limits, are left to the queue.
        """
        taken: list[tuple[Job, Snapshot]] = []
        if not self.leasing:
            tx.queue.unlease_calls()
            return taken
        until = now + self.settings.lease_seconds
        for run_id in run_ids:
            if not self._room(tx, now, len(taken)):
                break
            job = _pause.let(tx, tx.queue.lease_run_call(run_id, self.owner, now, until), now)
            if job is not None:
                taken.append((job, leases.snapshot(tx, run_id, now)))
        tx.queue.unlease_calls()
        return taken

    def lease_as_queued(self, tx: Tx, run_id: str | None, now: float) -> None:
        """Have ``tx`` insert the calls it queues next (``run_id``'s, None: any run's)
        leased by this worker already, when it has room: ``adopt`` and run affinity then
        take them with no statement of their own (each ends with ``tx.queue.unlease_calls``)."""
        if self.leasing and self._room(tx, now):
            tx.queue.lease_calls(run_id, self.owner, now, now + self.settings.lease_seconds)

    def dispatch(self, taken: Sequence[tuple[Job, Snapshot]]) -> None:
        """Run the calls ``adopt`` leased (after their transaction committed)."""
        for job, snapshot in taken:
            self._spawn(job, snapshot)

    @property
    def registry(self) -> Registry:
        """The functions registered now."""
        return self._registry()

    @property
    def busy(self) -> bool:
        """Whether any job is in flight in this worker."""
        return bool(self._inflight)

    def _done(self, current: list[Job], task: object = None) -> None:
        if self._inflight.get(current[0].job_id) is task:  # not a retry's task spawned since
            del self._inflight[current[0].job_id]
        if self._full:  # otherwise the commit that ended the job has woken the loop already
            self.wake.set()

    async def heartbeat(self) -> None:
        """Extend the leases of in-flight jobs well before they expire."""
        interval = self.settings.lease_seconds / 3
        while not self.stopping or self._inflight:  # calls finishing in a grace keep theirs
            await asyncio.sleep(interval)
            ids = list(self._inflight)
            if ids:
                until = self.clock.now() + self.settings.lease_seconds
                extend = functools.partial(leases.extend, owner=self.owner, ids=ids, until=until)
                try:
                    await self.store.atomic(extend)
                    self.beat = (until, frozenset(ids))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the next beat tries again, well before they lapse
                    recovery.failed(exc, logger, "could not extend %d lease(s)", len(ids))

    async def stop(self, grace: float = 0.0) -> None:
        """Stop leasing; give in-flight calls ``grace`` seconds, then cancel and hand back.

        The jobs' leases (and concurrency slots) are made to expire now, so another
        worker, or this one after a restart, takes them over without waiting a lease
        period. A cancelled call may have run its step already: steps are executed at
        least once, and recorded once.
        """
        self.stopping = True
        self.wake.set()
        await drain.settle(self._inflight, grace, self.halt)
        tasks = dict(self._inflight)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        if tasks:
            release = functools.partial(
                leases.extend, owner=self.owner, ids=list(tasks), until=self.clock.now()
            )
            try:
                await self.store.atomic(release)
            except Exception as exc:  # their leases lapse by themselves instead
                recovery.failed(exc, logger, "could not hand back %d job(s) on stop", len(tasks))

    # -- one job --------------------------------------------------------------------------

    async def _process(
        self,
        job: Job,
        snapshot: Snapshot | None = None,
        current: list[Job] | None = None,
        started: list[onthread.StartedTurn | None] | None = None,
    ) -> None:
        if self.observer is not None:
            self.observer.job_started(job)
        try:
            if job.kind is JobKind.EXECUTE:
                await self._execute(job, snapshot, current, started[0] if started else None)
            elif job.kind is JobKind.GATEWAY:
                await self._gateway(job)
            else:
                heavy = job.kind in (JobKind.FANOUT, JobKind.BULK)  # many runs at once
                await self._atomic(lambda tx: self._simple(tx, job), small=not heavy)
        except asyncio.CancelledError:
            raise
        except faults.StoreUnavailable:  # due again at once, retried when the fault clears
            await recovery.hand_back(self, current[0] if current else job)
        except Exception:
            # A fault of ours: the lease lapses and the job is retried; log loudly.
            logger.exception("job %s (%s) failed inside the engine", job.job_id, job.kind.value)

    async def _atomic(self, work: Callable[[Tx], Any], *, small: bool = True) -> Any:
        def tracked(tx: Tx) -> tuple[Any, bool]:
            return work(tx), bool(tx.queued)

        result, queued = await self.store.atomic(tracked, small=small)
        self._on_commit(queued, None)  # the loop needs waking only for jobs queued
        return result

    def _simple(self, tx: Tx, job: Job) -> None:
        now = self.clock.now()
        if job.kind is JobKind.WAKE:
            self.transitions.wake(tx, job, now)
        elif job.kind is JobKind.PAUSE_TIMEOUT:
            self.transitions.pause_timeout(tx, job, now)
        elif job.kind is JobKind.TIMEOUT:
            self.transitions.timeout(tx, job, now)
        elif job.kind is JobKind.FANOUT:
            tx.queue.delete_job(job.job_id)
            event = tx.get_event(str(job.payload.get("event_id")))
            if event is not None:
                self.transitions.fanout(tx, event, now)
        elif job.kind is JobKind.CRON:  # or no run, while paused with crons="skip"
            fn = self._registry().get(str(job.payload.get("function_id")))
            starts.cron_tick(tx, fn, job, now, _pause.start_cron)
        elif job.kind is JobKind.BULK:  # a bulk action's next batch
            _bulk.batch(tx, job, self.transitions, self.settings, now)

    async def _execute(
        self,
        job: Job,
        snapshot: Snapshot | None = None,
        current: list[Job] | None = None,
        started: onthread.StartedTurn | None = None,
    ) -> None:
        """Make a run's call and record its answer; then its next calls, while due at once.

        Run affinity: the transaction recording an answer also leases the run's next call
        when it is due now (``record_answer``), so consecutive steps skip the queue, the lease
        transaction and the reads before the call. ``current`` holds the job this task
        runs (for ``_inflight``, which heartbeats and hand-backs go by).
        """
        follow = await self._execute_one(
            job, snapshot, follow_on=current is not None, current=current, started=started
        )
        while follow is not None and current is not None:
            nxt, snapshot = follow
            self.move_on(current, nxt)
            follow = await self._execute_one(nxt, snapshot, follow_on=True, current=current)

    def move_on(self, current: list[Job], nxt: Job) -> None:
        """The task running ``current[0]`` goes on with ``nxt``: heartbeats, hand-backs
        and the task's end go by it now. (Also from a pool thread: ``_flow.onthread``;
        the dict's single operations hold the GIL.)"""
        task = self._inflight.get(current[0].job_id)
        if task is not None:
            self._inflight[nxt.job_id] = task
        self._inflight.pop(current[0].job_id, None)
        current[0] = nxt
        if self.observer is not None:
            self.observer.job_started(nxt)

    async def _execute_one(
        self,
        job: Job,
        snapshot: Snapshot | None,
        *,
        follow_on: bool,
        current: list[Job] | None = None,
        started: onthread.StartedTurn | None = None,
    ) -> tuple[Job, Snapshot] | None:
        if started is not None:  # its call on the SDK's thread already (``_spawn``)
            last = await onthread.watch(started)
            if last.recorded is not None:
                return self._recorded(last.recorded)
            return await self._commit(last.run, last.job, last.outcome, last.known, follow_on)
        rid = str(job.run_id)
        leased_started = snapshot is not None  # the lease marked the run Running already
        if snapshot is None:
            snapshot = await self.store.read(lambda tx: (tx.get_run(rid), tx.get_steps(rid), None))
        run, steps, known = snapshot
        if run is None or run.status.terminal:
            await self._atomic(lambda tx: leases.drop(tx, job, self.clock.now()))
            return None
        fn = await self._function(run.function_id)
        fn = await versions.routed(run, fn, self._registry().versions, self._atomic, self.clock)
        if fn is None:
            message = f"function {run.function_id} is no longer registered"
            error = {"name": "FunctionNotFound", "message": message}
            outcome: response.Outcome = response.Failed(_json.dumps(error), error, no_retry=True)
        else:
            if run.status is RunStatus.QUEUED and not leased_started:
                await self._atomic(lambda tx: leases.mark_started(tx, rid, self.clock.now()))
            pool = self.caller.pool(fn) if follow_on else None
            if pool is None or current is None:
                outcome = await self.caller.call(run, steps, job, fn)
            else:  # this call and the run's next ones on the SDK's thread
                last = await onthread.run(
                    self, pool=pool, fn=fn, job=job, snapshot=(run, steps, known), current=current
                )
                run, job, outcome, known = last.run, last.job, last.outcome, last.known
                if last.recorded is not None:  # logged on the thread, as its fields are bound
                    return self._recorded(last.recorded)
        return await self._commit(run, job, outcome, known, follow_on and fn is not None)

    async def _commit(
        self,
        run: Run,
        job: Job,
        outcome: response.Outcome,
        known: KnownSteps | None,
        follow_on: bool,
    ) -> tuple[Job, Snapshot] | None:
        """Record a call's answer here (kept through a database fault); the follow-on."""
        follow_on = follow_on and not self.stopping
        recorded: _Recorded = await recovery.commit(
            self, job, lambda tx: self.record_answer(tx, job, outcome, follow_on, known)
        )
        _attempts.logged(run, job, outcome)
        return self._recorded(recorded)

    def _recorded(self, recorded: onthread.Recorded) -> tuple[Job, Snapshot] | None:
        """Tell who needs to know what recording an answer did; the follow-on."""
        self._on_commit(recorded.wake, recorded.ended)
        for other in recorded.spawn:
            self._spawn(other, None)
        return recorded.follow

    def record_answer(
        self,
        tx: Tx,
        job: Job,
        outcome: response.Outcome,
        follow_on: bool,
        known: KnownSteps | None = None,
    ) -> _Recorded:
        """The transaction's work recording a call's answer (``recording.answer``); with
        ``follow_on``, it also leases the run's next call if due now, and the fan-outs of
        the events the answer emitted. ``known``: the run's steps as stored when the call
        was leased."""
        now = self.clock.now()
        follow_on = follow_on and self.refusal is None
        if follow_on:
            self.lease_as_queued(tx, job.run_id, now)
        lease = self.settings.lease_seconds
        view = recording.answer(
            tx, self.transitions, job, outcome, now=now, owner=self.owner, known=known, lease=lease
        )
        if view is None:  # the answer changed nothing (but a slot may have been freed)
            tx.queue.unlease_calls()
            return _Recorded(None, wake=bool(tx.queued), ended=[])
        follow = None
        if follow_on and not view.run.status.terminal and self._room(tx, now):
            until = now + self.settings.lease_seconds
            nxt = _pause.let(
                tx, tx.queue.lease_run_call(view.run.run_id, self.owner, now, until), now
            )
            if nxt is not None:
                stored = view.known_steps(tx)
                steps = list(stored.steps) if stored else list(view.steps.values())
                follow = nxt, (view.run, steps, stored)
        tx.queue.unlease_calls()
        # events the answer emitted (a step's sendEvent, the run's function.finished)
        # are matched by this worker next, without a trip through the queue either
        taking = not self.stopping and self.refusal is None
        fanouts = [i for i in tx.queued if i.startswith("fanout:")] if taking else []
        spawn = self._take(tx, fanouts, now)
        # the worker loop needs waking only for jobs it has not taken already
        tx.claimed.update([job.job_id for job in spawn] + ([follow[0].job_id] if follow else []))
        wake = any(job_id not in tx.claimed for job_id in tx.queued)
        ended = [view.run] if view.run.status.terminal else []
        return _Recorded(follow, wake=wake, ended=ended, spawn=spawn)

    def _take(self, tx: Tx, job_ids: Sequence[str], now: float) -> list[Job]:
        taken: list[Job] = []
        until = now + self.settings.lease_seconds
        for job_id in job_ids:
            if not self._room(tx, now, len(taken) + 1):
                break
            job = tx.queue.lease_job(job_id, self.owner, now, until)
            if job is not None:
                taken.append(job)
        return taken

    def _room(self, tx: Tx, now: float, extra: int = 0) -> bool:
        """Whether a run may take (or keep) a slot for its next call without a queue turn."""
        if len(self._inflight) + extra < self.settings.concurrency:
            return True
        due = tx.queue.next_job_at()
        return due is None or due > now

    async def _function(self, function_id: str) -> _registry.FunctionSpec | None:
        """The function, re-reading registrations once if this node has not seen it yet.

        Another process sharing the database may have synced it without telling this one
        (SQLite has no notifications).
        """
        fn = self._registry().get(function_id)
        if fn is None and self._reload is not None:
            await self._reload()
            fn = self._registry().get(function_id)
        return fn

    async def _gateway(self, job: Job) -> None:
        opts = job.payload.get("opts") or {}
        rid = str(job.run_id)
        steps = await self.store.read(lambda tx: tx.get_steps(rid))
        index = proxy.call_index(steps, job.step_id)
        memo, failed, retry_in = await self.gateway.call(
            opts, job, self.transitions.backoff, index=index
        )
        await self._atomic(
            lambda tx: self.transitions.gateway_done(
                tx, job, memo, failed=failed, retry_in=retry_in, now=self.clock.now()
            )
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Recorded:
    """What recording an answer led to: the run's next call taken (if any), and who to tell.

    Attributes:
        wake: the transaction queued jobs this worker has not taken (wake its loop).
        ended: the runs it ended (only ever the call's own run), for callers waiting.
        spawn: other jobs it queued and leased for this worker (its events' fan-outs).
    """

    follow: tuple[Job, Snapshot] | None
    wake: bool
    ended: list[Run]
    spawn: list[Job] = dataclasses.field(default_factory=list)
