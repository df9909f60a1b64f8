"""A run's calls to a sync function served in this process, one after another on the
SDK's thread.

An app served in this process runs each call of a sync function on its SDK's thread pool
(``CommHandler.handle_pooled``): a hop from the engine's loop to a pool thread and back
for every step. With run affinity (the transaction recording an answer leases the run's
next call, ``QueueWorker.record_answer``) the pool thread goes on by itself instead: it records the
answer (``Store.atomic_blocking``; on SQLite at NORMAL on that thread while the writer is
idle), makes the next call that transaction leased, and so on. It hands back to the loop
when a commit needs the loop (it queued other jobs, ended the run, or leased its events'
fan-outs), when the next call goes elsewhere (another version, a function no longer
served here), when the worker stops, and after ``SLICE`` seconds; the loop then carries
on as with any other answer. When another call waits for the pool, the run's next call
goes to the back of the pool's queue (a run's next step never jumps ahead of calls queued
before it), still without the loop: the turn goes on on whichever thread takes it.

A call is bounded as ``InProcessDriver.request`` bounds one: the loop waits for the
thread with a timer set to the current call's deadline. A call still running then is
abandoned (its answer, whenever it comes, is dropped, its span ends as cancelled) and the
loop records its timeout, as after a call over HTTP. A cancelled wait (the worker
stopping past its grace) abandons the call the same way; a commit already under way on
the thread is waited for, so nothing writes once the worker has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from stepline._comm.pool import SdkPool
from stepline.engine._apps import registry as _registry
from stepline.engine._apps import versions
from stepline.engine._model import Job, Run, StepRecord
from stepline.engine._observe import attempts as _attempts
from stepline.engine._observe.observer import Observer
from stepline.engine._runs.view import KnownSteps, Snapshot
from stepline.engine._store import Store, Tx, faults
from stepline.engine._wire import response
from stepline.engine._worker.calls import Caller

__all__ = ["SLICE", "Call", "Last", "Recorded", "StartedTurn", "run", "start_now", "watch"]

#: A call to make: the run (as leased), its steps, and the steps as stored if known.
Call = tuple[Run, list[StepRecord], KnownSteps | None]

logger = logging.getLogger("stepline.engine")

#: The longest a pool thread goes on with one run's calls before handing back to the loop.
SLICE = 0.05


class Recorded(Protocol):
    """What recording an answer led to (``QueueWorker.record_answer`` returns it)."""

    @property
    def follow(self) -> tuple[Job, Snapshot] | None: ...
    @property
    def wake(self) -> bool: ...
    @property
    def ended(self) -> list[Run]: ...
    @property
    def spawn(self) -> list[Job]: ...


class _Worker(Protocol):
    """What of the worker the calls need (``QueueWorker`` has it)."""

    store: Store
    caller: Caller
    stopping: bool
    on_ended: Callable[[Run], None] | None
    observer: Observer | None

    @property
    def registry(self) -> _registry.Registry: ...

    def record_answer(
        self,
        tx: Tx,
        job: Job,
        outcome: response.Outcome,
        follow_on: bool,
        known: KnownSteps | None = None,
    ) -> Recorded: ...

    def move_on(self, current: list[Job], nxt: Job) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Last:
    """The last call the thread made: its answer, and the commit that recorded it (None:
    the loop records it: it timed out, or the database failed)."""

    run: Run
    job: Job
    outcome: response.Outcome
    known: KnownSteps | None
    recorded: Recorded | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Queued:
    """A turn that goes on behind the calls waiting for the pool: its next call."""

    job: Job
    snapshot: Call
    last: Last  # what the loop gets if the turn cannot be queued (the pool shut down)


class _Abandoned(Exception):
    """The loop gave up on the call in flight: its answer is dropped."""


class _Calls:
    """One pool thread's turn: the calls it makes, and what the loop sees of them."""

    def __init__(
        self,
        worker: _Worker,
        pool: SdkPool,
        fn: _registry.FunctionSpec,
        current: list[Job],
    ) -> None:
        self.worker = worker
        self.caller = worker.caller
        self.pool = pool
        self.fn = fn
        self.current = current
        self.lock = threading.Lock()
        #: the call in flight: its run and job, when it times out (``time.monotonic``)
        #: and when it started (``time.perf_counter``, for its duration)
        self.calling: tuple[Run, Job, float, float] | None = None
        self.recording = False  # a commit is under way on the thread
        self.abandoned = False
        self.ends = 0.0  # when this thread's slice of the turn is over (``_turn`` sets it)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[Last | None] | None = None

    # -- the pool thread --------------------------------------------------------------

    def start(self, job: Job, snapshot: Call) -> asyncio.Future[Last | None]:
        """Queue the turn on the pool (from the loop); the future of its last call."""
        self.loop = asyncio.get_running_loop()
        self.future = self.loop.create_future()
        self._queue(job, snapshot)
        return self.future

    def _queue(self, job: Job, snapshot: Call) -> None:
        """Submit the turn's next call to the pool, behind the calls waiting for it (the
        thread that takes it has a slice of its own)."""
        turn = functools.partial(contextvars.copy_context().run, self._turn, job, snapshot)
        self.pool.submit(turn)

    def _turn(self, job: Job, snapshot: Call) -> None:
        """Run the turn on this thread; queue it again, or tell the loop how it ended."""
        self.ends = time.monotonic() + SLICE
        try:
            last = self.go(job, snapshot)
            if isinstance(last, _Queued):
                try:
                    self._queue(last.job, last.snapshot)
                except RuntimeError:  # the pool shut down: the loop goes on with the run
                    self.worker.move_on(self.current, last.last.job)  # as it expects
                    last = last.last
                else:
                    return
        except BaseException as exc:  # handed to the loop's future
            self._settle(None, exc)
        else:
            self._settle(last, None)

    def _settle(self, last: Last | None, exc: BaseException | None) -> None:
        """Complete the loop's future (unless nobody waits for it any more)."""
        future, loop = self.future, self.loop
        assert future is not None
        assert loop is not None

        def settle() -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(last)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(settle)

    def go(self, job: Job, snapshot: Call) -> Last | _Queued | None:
        """Make calls until one needs the loop, or others wait for the pool; None: the
        loop abandoned one."""
        worker, fn = self.worker, self.fn
        run, steps, known = snapshot
        while True:
            try:
                outcome = self._call(run, steps, job, fn)
                if outcome is None:
                    return None
                follow_on = not worker.stopping
                record = functools.partial(
                    worker.record_answer, job=job, outcome=outcome, follow_on=follow_on, known=known
                )
                try:
                    recorded = worker.store.atomic_blocking(record)
                except faults.StoreUnavailable:  # the loop records it, retrying while it may
                    return Last(run, job, outcome, known, None)
            finally:
                with self.lock:
                    self.recording = False
            _attempts.logged(run, job, outcome)
            if recorded.ended and worker.on_ended is not None:
                for ended in recorded.ended:  # callers blocked on it go on now, not
                    worker.on_ended(ended)  # once the loop has heard of it
            done = Last(run, job, outcome, known, recorded)
            if recorded.follow is None or recorded.wake or recorded.ended or recorded.spawn:
                return done
            nxt, (leased, steps, known) = recorded.follow
            going = None if leased is None else self._next(leased, fn)
            if leased is None or going is None or worker.stopping:
                return done
            if time.monotonic() > self.ends:
                return done
            worker.move_on(self.current, nxt)
            run, job, fn = leased, nxt, going
            self.fn = fn
            if self.pool.waiting:  # others' calls go first: this one queues behind them
                return _Queued(job, (run, steps, known), done)

    def _call(
        self, run: Run, steps: list[StepRecord], job: Job, fn: _registry.FunctionSpec
    ) -> response.Outcome | None:
        caller = self.caller
        assert caller.local is not None
        url, request, headers = caller.prepare_local(run, steps, job, fn)
        try:
            with caller.watch(run, job, headers) as call:
                with self.lock:
                    if self.abandoned:
                        raise _Abandoned
                    deadline = time.monotonic() + caller.timeout(fn)
                    self.calling = (run, job, deadline, call.started)
                answer = caller.local.call_blocking(url, request, call.headers)
                with self.lock:
                    self.calling = None
                    if self.abandoned:
                        raise _Abandoned
                    self.recording = True
                outcome: response.Outcome = caller.read(call, answer)
                return outcome
        except _Abandoned:
            return None

    def _next(self, run: Run, fn: _registry.FunctionSpec) -> _registry.FunctionSpec | None:
        """The function the run's next call goes to, if it is ``fn``'s on this pool (and
        the call needs no version move recorded first)."""
        registry = self.worker.registry
        chosen = versions.route(run, registry.get(run.function_id), registry.versions)
        nxt = chosen.fn
        if chosen.move is not None or nxt is None or nxt.url != fn.url:
            return None
        return nxt if self.caller.pool(nxt) is self.pool else None

    # -- the loop -----------------------------------------------------------------------

    def left(self) -> float:
        """Seconds until the call in flight (or the next one) may time out."""
        with self.lock:
            calling = self.calling
        now = time.monotonic()
        deadline = calling[2] if calling is not None else now + self.caller.timeout(self.fn)
        return max(deadline - now, 0.0)

    def give_up(self, *, late_only: bool) -> tuple[Run, Job, float] | bool:
        """Abandon the call in flight (``late_only``: if past its deadline). The call's
        run, job and start (``perf_counter``) when it was abandoned; else whether the
        thread may still commit (True) or has nothing under way (False)."""
        with self.lock:
            calling = self.calling
            if calling is not None:
                run, job, deadline, counter = calling
                if late_only and time.monotonic() < deadline:
                    return True
                self.abandoned = True
                return run, job, counter
            if not late_only:
                self.abandoned = True
            return self.recording


@dataclasses.dataclass(frozen=True, slots=True)
class StartedTurn:
    """A turn ``start_now`` put on the SDK's thread before its task ran: the task
    ``watch``es it."""

    calls: _Calls
    future: asyncio.Future[Last | None]


def start_now(
    worker: _Worker, job: Job, snapshot: Snapshot, current: list[Job]
) -> StartedTurn | None:
    """Put a leased call (a run just started, its snapshot read in the same transaction)
    on the SDK's thread at once, from the loop, before the task that runs the job first
    runs, so the run's first step does not wait for a turn of the loop. None when the
    task must see to it (the function is not served on a pool here, the run moves to
    another version first, the worker stops): it then calls as it always does."""
    run, steps, known = snapshot
    if worker.stopping or run is None or run.status.terminal:
        return None
    registry = worker.registry
    chosen = versions.route(run, registry.get(run.function_id), registry.versions)
    pool = None if chosen.fn is None else worker.caller.pool(chosen.fn)
    if chosen.move is not None or chosen.fn is None or pool is None:
        return None
    if worker.observer is not None:  # the turn's thread copies these log fields (``_queue``)
        worker.observer.job_started(job)
    calls = _Calls(worker, pool, chosen.fn, current)
    try:
        return StartedTurn(calls, calls.start(job, (run, steps, known)))
    except RuntimeError:  # the pool shut down: the task finds out as it always does
        return None


async def run(
    worker: _Worker,
    *,
    pool: SdkPool,
    fn: _registry.FunctionSpec,
    job: Job,
    snapshot: Call,
    current: list[Job],
) -> Last:
    """Make ``job``'s call and the run's next ones on a thread of ``pool`` (see above)."""
    calls = _Calls(worker, pool, fn, current)
    return await watch(StartedTurn(calls, calls.start(job, snapshot)))


async def watch(started: StartedTurn) -> Last:
    """Wait for a turn on the SDK's thread: its last call, or the one that timed out."""
    calls, future = started.calls, started.future
    future.add_done_callback(functools.partial(_retrieved, calls))
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=calls.left())
            if done:
                last = future.result()
                assert last is not None  # only the loop abandons, and then stops waiting
                return last
            late = calls.give_up(late_only=True)
            if isinstance(late, tuple):
                return _timed_out(calls, *late)
    except asyncio.CancelledError:
        if calls.give_up(late_only=False) is True:  # a commit under way: let it finish
            await asyncio.wait({future})
        raise


def _timed_out(calls: _Calls, run: Run, job: Job, started: float) -> Last:
    """The abandoned call's answer: its timeout, as ``InProcessDriver.request`` gives it."""
    timeout = calls.caller.timeout(calls.fn)
    answer = response.RawResponse(0, {}, b"", error=f"ReadTimeout: no answer within {timeout:g}s")
    with calls.caller.watch(run, job, {}) as call:
        call.started = started
        outcome = calls.caller.read(call, answer)
    return Last(run, job, outcome, None, None)


def _retrieved(calls: _Calls, future: asyncio.Future[Last | None]) -> None:
    """An abandoned turn's fault, logged (nobody waits for it any more)."""
    if calls.abandoned and not future.cancelled() and future.exception() is not None:
        logger.error("a call on the SDK's thread failed", exc_info=future.exception())
