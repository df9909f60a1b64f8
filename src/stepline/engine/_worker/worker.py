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
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stepline import _json
from stepline._protocol.opcodes import Opcode
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
from stepline.engine._runs.view import KnownSteps, RunView, Snapshot
from stepline.engine._store import Store, Tx, faults
from stepline.engine._wire import response
from stepline.engine._worker import calls, drain, leases, onthread, recovery

logger = logging.getLogger("stepline.engine")
_LEASE_BATCH = 32
#: a step's result, as an answer reports it
_DONE_STEP = frozenset({Opcode.STEP_RUN, Opcode.STEP})
#: the shortest silence of the database taken for its loss (``_watch_contact``): a loaded
#: machine stalls for a second or two, and a node that gives its calls up makes them again
CUT_OFF_FLOOR = 5.0


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
        #: when (``time.monotonic``) the last transaction that reached the database began:
        #: a lease, a heartbeat or a probe; the lease's length past it, this node is cut off
        self.reached = time.monotonic()
        #: since when (monotonic) the database has been out of reach for longer than the
        #: lease: nothing is leased until it answers again (``_watch_contact``); or None
        self.cut_off: float | None = None
        self._silent_since = 0.0  # ``reached`` when it was cut off
        #: the calls given up as lost when the database went out of reach, by job id and
        #: lease epoch: their answers are recorded only if the fence lets them (no one
        #: leased them since), and nothing follows them; and their tasks (``stop``
        #: cancels them)
        self._lost: set[tuple[str, int]] = set()
        self._lost_tasks: set[asyncio.Task[None]] = set()
        #: the job each task in flight holds now (``current``, moved on by run affinity)
        self._holding: dict[asyncio.Task[None], list[Job]] = {}
        #: jobs leased while a task of this worker still held them: a call whose lapsed
        #: lease this worker took again goes on under the new lease, its answer recorded
        #: with its epoch (``record_answer``); a new attempt the task queued itself (a retry
        #: due at once) is spawned when the task ends (``_done``)
        self._renewed: dict[str, Job] = {}
        #: the heartbeat's (or probe's) transaction, while it waits on the database
        self._beating: asyncio.Task[None] | None = None

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Lease from now on (``adopt`` too, before the loop's first turn) and start the loop."""
        self._running = True
        self.reached = time.monotonic()  # the store opened just now
        return asyncio.create_task(self._run(), name="stepline-worker")

    async def _run(self) -> None:
        """Lease and dispatch jobs until ``stop``; a database error is logged and retried."""
        while not self.stopping:
            if self.refusal is not None or self.cut_off is not None:
                self.wake.clear()  # leases nothing: waits for its stop, or the database
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
        """Whether this worker takes calls now: running, not stopping, not refusing, not
        cut off from the database."""
        return self._running and self._taking

    @property
    def _taking(self) -> bool:
        """Not stopping, not refusing, and not cut off from the database."""
        return not self.stopping and self.refusal is None and self.cut_off is None

    async def _loop(self) -> None:
        while self._taking:
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
                began = time.monotonic()
                jobs, parked, leased_at, snapshots, next_due = await self.store.atomic(lease)
                self.reached = max(self.reached, began)
                if jobs and self.clock.now() > leased_at + self.settings.lease_seconds / 3:
                    # The transaction waited so long that the lease may lapse before the
                    # first heartbeat: leave the jobs to come due again rather than risk
                    # running them twice.
                    logger.warning("lease committed late; %d job(s) left to retry", len(jobs))
                    jobs = []
            for job in jobs:  # one whose lease lapsed while this worker calls it goes on
                held = self._inflight.get(job.job_id)  # as it is (the lease is renewed,
                if held is None or held.done():  # its answer recorded under the new epoch);
                    self._spawn(job, snapshots.get(job.job_id))  # a task that ended: a retry
                else:
                    self._renewed[job.job_id] = job
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
        self._holding[task] = current
        task.add_done_callback(functools.partial(self._done, current))
        if snapshot is not None and job.kind is JobKind.EXECUTE:
            now = onthread.start_now  # in a context of its own: the job's log fields
            started[0] = contextvars.copy_context().run(now, self, job, snapshot, current)

    def adopt(self, tx: Tx, run_ids: Sequence[str], now: float) -> list[tuple[Job, Snapshot]]:
        """In the transaction that started runs, lease their first calls for this worker.

        The caller hands them to ``dispatch`` once that transaction has committed: a run
        started here begins without a trip through the queue. Runs whose first call is
        not due yet, or is bound by concurrency limits, are left to the queue. The calls
        taken are ``tx.claimed``: no other node is woken for them (on Postgres, no
        ``NOTIFY`` when they are all the transaction queued).
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
                tx.claimed.add(job.job_id)
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
        job = current[0]
        if self._inflight.get(job.job_id) is task:  # not a retry's task spawned since
            del self._inflight[job.job_id]
            again = self._renewed.pop(job.job_id, None)
            if again is not None and again.attempt > job.attempt and self._taking:
                # the task queued this attempt (a retry due at once) and the loop leased it
                # before the task had ended: no one else runs it before its lease lapses
                self._spawn(again, None)
        if isinstance(task, asyncio.Task):
            self._holding.pop(task, None)
            if task in self._lost_tasks:
                self._lost_tasks.discard(task)
                self._lost.discard((current[0].job_id, current[0].lease_epoch))
        if self._full:  # otherwise the commit that ended the job has woken the loop already
            self.wake.set()

    async def heartbeat(self) -> None:
        """Extend the leases of in-flight jobs well before they expire; watch that the
        database is still in reach (``_watch_contact``), probing it while idle or cut off."""
        interval = self.settings.lease_seconds / 3
        try:
            while not self.stopping or self._inflight:  # calls finishing in a grace keep theirs
                # cut off, it probes every half second: leasing resumes as soon as it can
                await asyncio.sleep(interval if self.cut_off is None else min(interval, 0.5))
                self._watch_contact()
                if self._beating is not None and not self._beating.done():
                    continue  # the last one still waits on the database: none piles up
                # a call given up as lost keeps no lease: its job is free to be leased again
                ids = [i for i, task in self._inflight.items() if task not in self._lost_tasks]
                if ids:
                    self._beating = asyncio.create_task(self._extend(ids))
                elif self.cut_off is not None or time.monotonic() - self.reached > interval:
                    self._beating = asyncio.create_task(self._extend([]))  # a probe
        finally:
            if self._beating is not None:
                self._beating.cancel()

    async def _extend(self, ids: list[str]) -> None:
        """One heartbeat: extend the leases on ``ids`` (none: only a probe of the database)."""
        began = time.monotonic()
        until = self.clock.now() + self.settings.lease_seconds
        try:
            if ids:
                extend = functools.partial(leases.extend, owner=self.owner, ids=ids, until=until)
                await self.store.atomic(extend)
                self.beat = (until, frozenset(ids))
            else:
                await self.store.read(lambda tx: tx.queue.next_job_at())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next beat tries again, well before they lapse
            if ids:
                recovery.failed(exc, logger, "could not extend %d lease(s)", len(ids))
            return
        self.reached = max(self.reached, began)
        if self.cut_off is not None:
            gone = time.monotonic() - self._silent_since
            logger.warning(
                "the database answers again (out of reach about %.1f s): leasing resumed", gone
            )
            self.cut_off = None
            self.reached = time.monotonic()
            self.wake.set()

    def _watch_contact(self) -> None:
        """Past the lease's length (``CUT_OFF_FLOOR`` at least) without a transaction
        reaching the database, stop leasing and give up the calls in flight as lost.

        Their leases may have lapsed by now and other nodes taken them over: this node
        extends them no more and takes no call after theirs. A call still running goes
        on; its answer is recorded only if the fence lets it (``RunTransitions.apply``:
        no one leased the call since), else dropped. Leasing resumes once a probe
        reaches the database (``_extend``).
        """
        lease = self.settings.lease_seconds
        silent = time.monotonic() - self.reached
        if self.cut_off is not None or silent <= max(lease, CUT_OFF_FLOOR) or not self._running:
            return
        self.cut_off = time.monotonic()
        self._silent_since = self.reached
        lost = list(self._inflight.values())
        for task in lost:
            held = self._holding.get(task)
            if held is not None:
                self._lost.add((held[0].job_id, held[0].lease_epoch))
        self._lost_tasks.update(lost)
        self._inflight.clear()
        self._renewed.clear()
        logger.warning(
            "the database has been out of reach for %.1f s, past the lease (%g s): leasing "
            "stopped until it answers; %d call(s) in flight given up as lost (their answers "
            "are recorded only if no other node took them over)",
            silent, lease, len(lost),
        )  # fmt: skip

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
        lost = list(self._lost_tasks)  # their leases are not this node's to hand back
        for task in [*tasks.values(), *lost]:
            task.cancel()
        await asyncio.gather(*tasks.values(), *lost, return_exceptions=True)
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
            elif job.kind is JobKind.WAKE and current is not None:
                follow = await self._wake(job)
                if follow is not None:  # the woken run's next call, in this task
                    self.move_on(current, follow[0])
                    await self._execute(follow[0], follow[1], current)
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

    async def _wake(self, job: Job) -> tuple[Job, Snapshot] | None:
        """End a sleep; the run's next call, leased for this task in the same transaction.

        Waking a run is one unit of work with its next call: the call is inserted already
        leased (``lease_calls``) and read with every step of the run, so it skips a turn
        through the queue, where it would wait behind every older wake still due, and the
        lease's reads. It keeps the wake's slot whatever else is due. Crash-safe as any
        lease: lost with this node, the call is due again when its lease lapses.
        """

        def work(tx: Tx) -> tuple[tuple[Job, Snapshot] | None, bool]:
            now = self.clock.now()
            run_id = job.run_id
            taking = self.leasing and (job.job_id, job.lease_epoch) not in self._lost
            if taking and run_id is not None:
                # the job read with its run's row (locked) and whether any function is
                # paused: the wake's read of the run and the call's pause check send nothing
                tx.get_call(job.job_id)
                tx.queue.lease_calls(run_id, self.owner, now, now + self.settings.lease_seconds)
            view = self.transitions.wake(tx, job, now, whole=taking)
            follow = None
            if taking and view is not None and not view.run.status.terminal:
                follow = self._take_next(tx, view, now)
                if follow is not None:
                    tx.claimed.add(follow[0].job_id)
            tx.queue.unlease_calls()
            return follow, any(job_id not in tx.claimed for job_id in tx.queued)

        follow, wake = await self.store.atomic(work, small=True)
        self._on_commit(wake, None)
        return follow

    def _take_next(self, tx: Tx, view: RunView, now: float) -> tuple[Job, Snapshot] | None:
        """The run's next call leased for this task, with what the call reads of its run,
        when it is due now, bound by no concurrency key and let by pauses (run affinity)."""
        until = now + self.settings.lease_seconds
        nxt = _pause.let(tx, tx.queue.lease_run_call(view.run.run_id, self.owner, now, until), now)
        if nxt is None:
            return None
        stored = view.known_steps(tx)
        steps = list(stored.steps) if stored else list(view.steps.values())
        return nxt, (view.run, steps, stored)

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
        self._renewed.pop(current[0].job_id, None)
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
        if _steps_done(job, outcome):
            tx.may_answer_from_kept_rows()
        now = self.clock.now()
        lost = (job.job_id, job.lease_epoch) in self._lost
        taking = self._taking
        follow_on = follow_on and taking and not lost
        if follow_on:
            self.lease_as_queued(tx, job.run_id, now)
        lease = self.settings.lease_seconds
        renewed = self._renewed.get(job.job_id)
        if renewed is not None and renewed.lease_epoch > job.lease_epoch and not lost:
            job = job.copy()  # the call went on under the lease this worker took again
            job.lease_epoch = renewed.lease_epoch
        view = recording.answer(
            tx, self.transitions, job, outcome, now=now, owner=self.owner, known=known, lease=lease
        )
        if view is None:  # the answer changed nothing (but a slot may have been freed)
            if lost:
                logger.warning(
                    "job %s: the answer of a call given up as lost is not recorded (leased "
                    "again since, or its run ended)", job.job_id,
                )  # fmt: skip
            tx.queue.unlease_calls()
            return _Recorded(None, wake=bool(tx.queued), ended=[])
        follow = None
        if follow_on and not view.run.status.terminal and self._room(tx, now):
            follow = self._take_next(tx, view, now)
        tx.queue.unlease_calls()
        # events the answer emitted (a step's sendEvent, the run's function.finished)
        # are matched by this worker next, without a trip through the queue either
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


def _steps_done(job: Job, outcome: response.Outcome) -> bool:
    """Whether ``outcome`` only reports steps done, for a call without concurrency keys:
    recording it logs nothing and reads nothing but the call and its run."""
    if not isinstance(outcome, response.Ops) or outcome.divergence is not None:
        return False
    if job.payload.get("keys"):
        return False
    return {op.op for op in outcome.ops} <= _DONE_STEP  # one call, not one per op


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
