"""Inline runs: the app executes a run's first call itself, under a lease it holds.

The durable-endpoint protocol, over the engine's REST API (``_http/endpoints.py``):

1. ``start``: create the run (idempotent per key and principal, flow control applied)
   and lease its first call to a fresh owner token. The answer carries the call's body,
   exactly as the worker would send it to the app, so the SDK runs it as any call. A
   run that cannot run now (throttled, concurrency-limited, leased elsewhere, ended) is
   answered without a lease: the caller answers 202 (or the ended run's output).
2. ``checkpoint``: record steps the app ran (sync ops only) and extend the lease; with no
   steps it is a heartbeat. Steps extend it only once a third of it has run since it was
   last extended (the SDK's heartbeats, every third, keep it meanwhile): a request whose
   steps follow each other quickly writes its call's row once, not at every step. Refused
   once the lease was lost (``LeaseLostError``).
3. ``answer``: the call's answer (status, headers, body as an SDK sends them), decoded
   and applied as the worker applies any answer: completion, failure and retries,
   sleeps, waits, invokes. The run as it then stands is returned.

A lease that lapses (the app died) is taken by a worker, which calls the app's serve
endpoint: the run resumes from its checkpoints and no recorded step runs again.

Between a call's transactions the engine keeps what it knows of the call (``_Kept``, by
its job): the run's steps as it stored them, which a checkpoint or the answer then reads
only if some other writer wrote a step since (the run's steps revision says so); whether
the call takes concurrency slots, which says how its answer reads it; and whether its
run held no wait, singleton or bucket, which its end then deletes none of.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepline._api import ownership
from stepline._status import RunStatus
from stepline.engine._control import pause as _pause
from stepline.engine._errors import NotFoundError, SkippedError
from stepline.engine._flow import concurrency as _concurrency
from stepline.engine._model import Job, Run
from stepline.engine._runs import recording, starts
from stepline.engine._runs.view import KnownSteps
from stepline.engine._store import Tx
from stepline.engine._wire import request as _request
from stepline.engine._wire import response

if TYPE_CHECKING:
    from stepline.engine._engine import Engine

__all__ = ["InlineRuns", "InlineStart", "LeaseLostError"]

#: Call state is handed over whole (no large-state offload): the app is its own caller.
_MAX_INLINE = 1 << 40
#: Calls whose steps are kept between transactions (a call handed back is never
#: answered: the oldest are let go), and the most steps kept for one: a longer run's
#: checkpoints read only the steps they record, which costs less than copying the rest.
_KEEP_CALLS = 1024
_KEEP_STEPS = 64
#: A checkpoint with steps extends its call's lease when less than this share of it is
#: left (a heartbeat always does).
_EXTEND_AT = 2 / 3


class LeaseLostError(RuntimeError):
    """The call's lease lapsed and was taken over (answered with 409): stop executing."""


@dataclasses.dataclass(frozen=True, slots=True)
class InlineStart:
    """What ``start`` did.

    Attributes:
        run: the run (new, or the one an earlier start with the same key made).
        created: this start created it.
        call: the first call's body when the caller holds its lease, else None.
        owner: the lease's owner token (with ``call``).
        job_id: the leased call's job id (with ``call``).
        lease_seconds: how long a lease lasts without a checkpoint or heartbeat.
    """

    run: Run
    created: bool
    call: dict[str, Any] | None = None
    owner: str | None = None
    job_id: str | None = None
    lease_seconds: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    """What the engine keeps of a leased inline call between its transactions."""

    steps: KnownSteps | None  # the run's steps as the last transaction stored them
    keyed: bool  # it holds concurrency slots: its answer locks them before its run
    #: its run held no wait, singleton or bucket when leased; only its own answer can
    #: write one while the call is held (checkpoints record steps that ran, no waits)
    bare: bool


class InlineRuns:
    """The engine's side of durable endpoints.

    Args:
        engine: the engine.
        committed: told of each commit (``Engine.committed``'s arguments); by default
            the engine itself, on its own loop. ``direct`` runs these methods on a web
            request's loop and passes one that hands the news to the engine's loop.
    """

    def __init__(
        self, engine: Engine, committed: Callable[[bool, Sequence[Run] | None], None] | None = None
    ) -> None:
        self.engine = engine
        self._committed = committed or engine.committed
        #: what is kept of each leased call, by job id
        self._kept: dict[str, _Kept] = {}
        self._kept_lock = threading.Lock()  # requests' threads share it

    async def start(
        self,
        function_id: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InlineStart:
        """Start a run and lease its first call to the caller when it may run now.

        Raises:
            NotFoundError: the function is not registered.
            SkippedError: flow control started no run (rate limit, singleton).
        """
        engine = self.engine
        fn = engine.registry.get(function_id)
        if fn is None:
            raise NotFoundError(f"function {function_id!r} is not registered")
        now = engine.clock.now()
        own_id = ownership.start_event_id(idempotency_key, started_by)
        event = starts.start_event(function_id, data, now, event_id=own_id, run_id=None)
        if headers and engine.observer is not None:
            engine.observer.received([event], headers)
        owner = f"inline:{uuid.uuid4().hex}"
        seconds = engine.settings.lease_seconds

        kept: list[_Kept] = []

        def work(tx: Tx) -> tuple[InlineStart | None, bool]:
            kept.clear()
            run_id, created = starts.start_direct(
                tx, engine.transitions.fanout, event, now, function_id=function_id,
                own_id=own_id, run_id=None, started_by=started_by,
            )  # fmt: skip
            if run_id is None:
                return None, bool(tx.queued)
            if engine.worker.refusal is not None:  # the schema moved past this engine
                run = tx.get_run(run_id)
                assert run is not None, "the start made (or found) it in this transaction"
                return InlineStart(run, created, lease_seconds=seconds), bool(tx.queued)
            job, run = _lease_first(
                tx, run_id, owner, now=now, until=now + seconds, recheck=seconds
            )
            if job is None:
                return InlineStart(run, created, lease_seconds=seconds), bool(tx.queued)
            steps = tx.get_steps(run_id)
            call, _ = _request.built(
                run, steps, job, max_attempts=fn.max_attempts, checkpoint=True,
                max_inline=_MAX_INLINE, endpoint=fn.is_endpoint,
            )  # fmt: skip
            leased = InlineStart(run, created, call, owner, job.job_id, seconds)
            revision = tx.steps_revision(run_id)
            known = None if revision is None else KnownSteps(run_id, revision, tuple(steps))
            keyed = bool(job.payload.get("keys"))  # as applying its answer reads it
            kept.append(_Kept(known, keyed, tx.holds_nothing(run_id)))
            # the worker need not wake for the call this request holds
            return leased, any(queued != job.job_id for queued in tx.queued)

        started, wake = await engine.store.atomic(work, small=True)
        if started is not None and started.job_id is not None and kept:
            self._keep(started.job_id, kept[0])
        self._committed(wake, None)
        if started is None:
            reasons = await engine.store.read(lambda tx: tx.event_links(event.internal_id))
            why = ", ".join(sorted({link.reason or "skipped" for link in reasons})) or "skipped"
            raise SkippedError(f"{function_id!r} started no run: {why}", event.internal_id)
        return started

    async def checkpoint(
        self, run_id: str, job_id: str, owner: str, ops: Sequence[response.ReportedOp]
    ) -> float:
        """Record steps run under the lease and extend it (steps: once a third of it has
        run since it was last extended); returns the lease's end.

        Raises:
            LeaseLostError: the caller no longer holds the call's lease.
        """
        engine = self.engine
        transitions = engine.transitions
        kept = self._kept.get(job_id)
        known = None if kept is None else kept.steps

        def work(tx: Tx) -> tuple[float, bool, KnownSteps | None]:
            now = engine.clock.now()
            # with its run's row (locked), which recording the steps reads next; a keyed
            # call's slots come after, skipping rows others hold (``extend_held``)
            job = _held(tx.get_call(job_id), run_id, owner)
            stored = known
            if ops:
                view = recording.checkpoint(
                    tx, transitions, run_id, tuple(ops), job=job, now=now, known=known
                )
                stored = None if view is None else view.known_steps(tx)
            seconds = engine.settings.lease_seconds
            until = job.lease_expires
            if not ops or until is None or until - now < seconds * _EXTEND_AT:
                until = now + seconds
                tx.queue.extend_held(job, until)
            return until, bool(tx.queued), stored

        until, wake, stored = await engine.store.atomic(work, small=True)
        if kept is not None and stored is not known:
            self._keep(job_id, dataclasses.replace(kept, steps=stored))
        if ops and wake:  # a checkpoint ends no run: no one waiting needs telling
            self._committed(wake, [])
        return float(until)

    async def answer(self, run_id: str, job_id: str, owner: str, raw: response.RawResponse) -> Run:
        """Apply the call's answer as the worker would; returns the run as it then stands.

        Raises:
            LeaseLostError: the caller no longer holds the call's lease.
        """
        engine = self.engine
        now = engine.clock.now()
        outcome = response.decode(raw, now=now)
        limit = engine.settings.max_step_output_bytes
        outcome = response.limit_outputs(outcome, limit, answer_bytes=len(raw.body))

        kept = self._forget(job_id)
        known = None if kept is None else kept.steps
        unkeyed = kept is not None and not kept.keyed
        bare = kept is not None and kept.bare

        def work(tx: Tx) -> tuple[Run, bool]:
            # locked as applying the answer reads it: a call known to hold no slots with
            # its run; else the job alone, as a keyed call's slots lock before its run
            call = tx.get_call(job_id) if unkeyed else tx.queue.get_job(job_id, lock=True)
            job = _held(call, run_id, owner)
            if bare:  # held since: ending the run deletes no wait, singleton or bucket
                tx.note_holds_nothing(run_id)
            # the inline call is the run's first: it began when the run started
            now = engine.clock.now()
            view = recording.answer(
                tx, engine.transitions, job, outcome, now=now, owner=owner, known=known,
                first=True, locked=unkeyed or bool(job.payload.get("keys")),
            )  # fmt: skip
            run = view.run if view is not None else tx.get_run(run_id)
            assert run is not None
            return run, bool(tx.queued)

        run, wake = await engine.store.atomic(work, small=True)
        self._committed(wake, [run] if run.status.terminal else [])
        return run

    def _keep(self, job_id: str, kept: _Kept) -> None:
        """Keep ``kept`` for the call's next transaction (its steps only while few)."""
        if kept.steps is not None and len(kept.steps.steps) > _KEEP_STEPS:
            kept = dataclasses.replace(kept, steps=None)
        with self._kept_lock:
            self._kept[job_id] = kept
            if len(self._kept) > _KEEP_CALLS:
                del self._kept[next(iter(self._kept))]

    def _forget(self, job_id: str) -> _Kept | None:
        """What was kept of the call, no longer kept (it is being answered)."""
        with self._kept_lock:
            return self._kept.pop(job_id, None)


def _lease_first(
    tx: Tx, run_id: str, owner: str, *, now: float, until: float, recheck: float
) -> tuple[Job | None, Run]:
    """Lease a run's due first call for an inline caller, within concurrency limits.

    Returns the job (None when the call is not due: throttled, delayed, debounced;
    already leased: a worker or another request runs it; answered already: the run went
    on; or parked on a concurrency limit or because its function is paused: it then waits
    in the queue) and the run as it now stands.
    """
    run = tx.get_run(run_id)
    assert run is not None, "the start made (or found) it in this transaction"
    # by its id, with no read first: not there, or not due, it is not leased
    first = starts.start_job_id(run_id)
    job = _pause.let(tx, tx.queue.lease_job(first, owner, now, until), now)  # paused: parked
    if job is None:
        return None, run
    # a call without limits takes no slot: its lease needs no admission, and the slots
    # that expired meanwhile are swept by the next lease that does (a parked call's
    # recheck lease among them), not by every request's start
    if _concurrency.limited(job):
        admitted, _ = _concurrency.admit(tx, [job], now=now, until=until, recheck=recheck)
        if not admitted:
            return None, tx.get_run(run_id) or run  # parking may have said why it waits
    if run.status is RunStatus.QUEUED:
        run = dataclasses.replace(run, status=RunStatus.RUNNING, started_at=now, waiting=None)
        tx.update_run(run)
    return job, run


def _held(job: Job | None, run_id: str, owner: str) -> Job:
    """``job`` (read locked by the caller) if ``owner`` holds its lease, for ``run_id``."""
    if job is None or job.run_id != run_id or job.lease_owner != owner:
        raise LeaseLostError(
            f"run {run_id}: the call's lease was lost (it lapsed and the engine took the "
            "call back); the run goes on without this request"
        )
    return job
