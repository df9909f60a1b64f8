"""The run transitions (PROTOCOL.md 4.8): what each outcome, wake-up, event and timeout does.

Every function here runs inside one store transaction (``Tx``): it reads the run,
decides, and writes the new state together with the queue items that depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepline import _cel, _json
from stepline._protocol import event_names
from stepline._protocol.opcodes import Opcode
from stepline._status import RunStatus
from stepline.engine import _events
from stepline.engine._apps.registry import FunctionSpec, Registry, compiled
from stepline.engine._backoff import Backoff
from stepline.engine._control import signals as _signals
from stepline.engine._errors import NotFoundError
from stepline.engine._flow import concurrency as _concurrency
from stepline.engine._model import YEAR, EventRecord, Job, JobKind, Pause, PauseKind, StepStatus
from stepline.engine._observe import tracing as _tracing
from stepline.engine._runs import fanout as _fanout
from stepline.engine._runs.starts import DISCOVERY, call, execute_job_id, expire
from stepline.engine._runs.view import INVOKE_TIMEOUT_ERROR, RunView, deadline, sleep_until
from stepline.engine._store import Tx
from stepline.engine._wire.response import Completed, Failed, Ops, Outcome, ReportedOp

if TYPE_CHECKING:
    from stepline.engine._runs.view import KnownSteps

_DONE_OPS = frozenset({Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_FAILED, Opcode.RUN_COMPLETE})


class RunTransitions:
    """Engine-wide rules; one instance per engine.

    Args:
        registry: returns the current function registry.
        backoff: the retry delay policy.
    """

    def __init__(
        self, registry: Callable[[], Registry], backoff: Backoff, *, trace_invokes: bool = False
    ) -> None:
        self._registry = registry
        self.backoff = backoff
        #: when tracing: a run started by ``step.invoke`` continues its parent run's trace
        self.trace_invokes = trace_invokes
        #: per thread (Postgres runs transactions on several): inside an inline fan-out
        self._local = threading.local()

    def fanout(self, tx: Tx, event: EventRecord, now: float) -> list[str]:
        """Match a stored event against triggers, waits and cancel rules; returns new run ids."""
        return _fanout.fanout(self, tx, event, now)

    @property
    def registry(self) -> Registry:
        """The functions registered now."""
        return self._registry()

    # -- applying an SDK answer -------------------------------------------------------

    def apply(
        self,
        tx: Tx,
        job: Job,
        outcome: Outcome,
        now: float,
        owner: str,
        *,
        known: KnownSteps | None = None,
        locked: bool = False,
    ) -> RunView | None:
        """Record what a call returned; the run as recorded, or None if that no longer
        matters. ``known``: the run's steps as the caller last saw them stored (a read
        fewer when no step was written since). ``locked``: ``job`` is the call as this
        transaction read it, as it reads it here (not read again). Every path reaches it
        through ``recording.answer``."""
        # locked: a lease that lapsed mid-call cannot be taken over while this applies;
        # with its run, unless its slots come first (their locks before the run's)
        keyed = bool(job.payload.get("keys"))
        if locked:
            current: Job | None = job
        elif keyed:
            current = tx.queue.get_job(job.job_id, lock=True)
        else:
            current = tx.get_call(job.job_id)
        if current is not None and (
            current.lease_owner != owner or current.lease_epoch != job.lease_epoch
        ):
            # Fenced: the call's lease lapsed and the job was leased again since, by
            # another worker or by this one (a node cut off from the database past its
            # lease, a call it gave up). The row is locked: no lease moves it meanwhile.
            return None
        _concurrency.release(tx, job, now)
        if current is None:
            return None  # the run ended (and its jobs went) while the call was in flight
        view = RunView.load(tx, job.run_id, known)
        if view is None or view.run.status.terminal:
            tx.queue.delete_job(job.job_id)
            return None  # cancelled (or finished) while the call was in flight
        fn = self._registry().get(view.run.function_id)
        run = view.run
        if outcome.request_version is not None:
            run.request_version = outcome.request_version
        if run.started_at is None:
            run.started_at = now
        run.status = RunStatus.RUNNING
        if current.step_id != DISCOVERY:  # official SDKs: a planned step no longer reached
            outcome = view.unreached(current.step_id, outcome)
        if outcome.divergence is not None:
            view.diverged(outcome.divergence, outcome, now)
        if isinstance(outcome, Completed):
            self._finish(tx, view, RunStatus.COMPLETED, outcome.output, error=None, now=now, fn=fn)
        elif isinstance(outcome, Failed):
            max_attempts = fn.max_attempts if fn else 1
            if job.attempt + 1 < max_attempts and not outcome.no_retry:
                self._retry(tx, current, outcome.retry_after, now)
                tx.update_run(run)
            else:
                for op in outcome.steps:  # a step failed the call: it and those before it
                    view.result(op, now)
                view.fail_step(current.step_id, outcome.error, now)
                self._finish(
                    tx, view, RunStatus.FAILED, outcome.output, error=outcome.error, now=now, fn=fn
                )
                return view
        else:
            self._apply_ops(tx, view, current, outcome, now=now, fn=fn)
        if not run.status.terminal:
            view.save(tx)
        return view

    def _apply_ops(
        self, tx: Tx, view: RunView, job: Job, outcome: Ops, *, now: float, fn: FunctionSpec | None
    ) -> None:
        run = view.run
        ops = sorted(outcome.ops, key=lambda o: o.op is not Opcode.WAIT_FOR_EVENT)
        if sum(1 for o in ops if o.op not in _DONE_OPS) > 1:
            run.force_plan = True
        retried = False
        race = False
        completed = False
        for op in ops:
            if op.op is Opcode.RUN_COMPLETE or op.op is Opcode.SYNC_RUN_COMPLETE:
                self._finish(
                    tx, view, RunStatus.COMPLETED, _json.dumps(op.data), error=None, now=now, fn=fn
                )
                return
            if op.op is Opcode.STEP_ERROR:
                max_attempts = fn.max_attempts if fn else 1
                step = view.step(op, StepStatus.PLANNED, now)
                step.attempts += 1
                step.error = op.error
                if job.attempt + 1 < max_attempts and not outcome.final(op):
                    self._retry(tx, job, outcome.retry_after, now)
                    retried = True
                    continue
                view.done(op, {"error": op.error}, StepStatus.FAILED, now)
                completed = True
                race = race or step.mode == "race"
            elif op.op is Opcode.STEP_NOT_FOUND:  # it ends; the run is discovered again
                completed = view.lost(op, now) or completed
            elif op.op in (Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_FAILED):
                step = view.result(op, now)
                completed = True
                race = race or step.mode == "race"
            else:
                self._schedule(tx, view, op, now)
        done = None if retried else job.job_id  # the call, gone once answered
        if completed:
            done = self.maybe_discover(tx, view, now, race=race, replacing=done)
        if done is not None:
            tx.queue.delete_job(done)

    def checkpoint(
        self,
        tx: Tx,
        run_id: str,
        ops: tuple[ReportedOp, ...],
        job: Job | None,
        now: float,
        *,
        known: KnownSteps | None = None,
    ) -> RunView | None:
        """Record steps an SDK ran and checkpointed before answering; the call goes on
        (every path reaches it through ``recording.checkpoint``).

        ``job`` is the call's (its retry budget starts again). Only the steps reported
        are read, unless the run completes or ``known`` still holds the run's steps as
        stored (then none is read). Returns the view as recorded (whole when ``known``
        was current: its ``known_steps`` are the next transaction's), None when the run
        had ended and nothing was recorded.

        Raises:
            NotFoundError: there is no run ``run_id``.
        """
        ends = (Opcode.RUN_COMPLETE, Opcode.SYNC_RUN_COMPLETE)
        if any(op.op in ends for op in ops) or (known is not None and known.current(tx, run_id)):
            view = RunView.load(tx, run_id, known)
        else:
            view = RunView.partial(tx, run_id, [op.id for op in ops])
        if view is None:
            raise NotFoundError(f"run {run_id!r} not found")
        if view.run.status.terminal:
            return None
        for op in ops:
            if op.op in ends:
                fn = self._registry().get(view.run.function_id)
                output = _json.dumps(op.data)
                self._finish(tx, view, RunStatus.COMPLETED, output, error=None, now=now, fn=fn)
                return view
            view.result(op, now)
        if job is not None and job.run_id == run_id and job.attempt:
            job.attempt = 0  # progress was made: the call's retry budget starts again
            tx.queue.update_job(job)
        view.save_steps(tx)  # only the steps changed (their ``seq`` is the run's order)
        return view

    def _schedule(self, tx: Tx, view: RunView, op: ReportedOp, now: float) -> None:
        """Start the async work an op asks for (plan, sleep, wait, invoke, gateway)."""
        existing = view.live(op.id)
        if existing is not None:
            return  # already planned, waiting or done: re-reporting it is a no-op
        rid = view.run.run_id
        if op.op is Opcode.STEP_PLANNED:
            view.step(op, StepStatus.PLANNED, now)
            tx.queue.enqueue(call(view.run, op.id, "plan", now))
        elif op.op is Opcode.SLEEP:
            until = sleep_until(op, now)
            step = view.step(op, StepStatus.SLEEPING, now)
            step.wait = {"until": until}
            tx.queue.enqueue(
                Job(execute_job_id(rid, op.id, "wake"), JobKind.WAKE, until, rid, op.id)
            )
        elif op.op in (Opcode.WAIT_FOR_EVENT, Opcode.WAIT_FOR_SIGNAL):
            self._wait(tx, view, op, now)
        elif op.op is Opcode.INVOKE:
            self._invoke(tx, view, op, now)
        elif op.op in (Opcode.AI_GATEWAY, Opcode.GATEWAY):
            view.step(op, StepStatus.CALLING, now)
            tx.queue.enqueue(
                Job(
                    execute_job_id(rid, op.id, "gateway"),
                    JobKind.GATEWAY,
                    now,
                    rid,
                    op.id,
                    payload={"op": op.op.value, "opts": op.opts},
                )
            )
        elif op.op is Opcode.DISCOVERY_REQUEST:
            self._discover(tx, view, now, f"dr{view.done_steps}", None)

    def _wait(self, tx: Tx, view: RunView, op: ReportedOp, now: float) -> None:
        if op.op is Opcode.WAIT_FOR_SIGNAL:
            return _signals.wait(self, tx, view, op, now)
        rid = view.run.run_id
        event_name = op.opts.get("event") or op.name
        expression = op.opts.get("if") or None
        timeout = deadline([op.opts.get("timeout")], now, default=0.0)
        step = view.step(op, StepStatus.WAITING, now)
        step.wait = {"event": event_name, "if": expression, "until": timeout}
        context = view.run.events[0]
        try:
            skip = (
                expression is not None
                and compiled(expression).substitute("event", context).is_constant_false
            )
        except (_cel.CelError, TypeError, ValueError) as exc:
            # A bad expression fails this step (the function may catch it), not the engine.
            error = {"name": "InvalidExpressionError", "message": f"wait_for_event if: {exc}"}
            view.done(op, {"error": error}, StepStatus.FAILED, now)
            self.maybe_discover(tx, view, now, race=step.mode == "race")
            return
        if not skip:
            tx.insert_pause(
                Pause(
                    f"{rid}:{op.id}",
                    rid,
                    PauseKind.WAIT,
                    str(event_name),
                    timeout,
                    op.id,
                    expression,
                    context=context,
                )
            )
        expire(tx, rid, op.id, timeout)

    def _invoke(self, tx: Tx, view: RunView, op: ReportedOp, now: float) -> None:
        run = view.run
        rid = run.run_id
        target = str(op.opts.get("function_id") or "")
        step = view.step(op, StepStatus.INVOKING, now)
        error = _not_invocable(target, self._registry().get(target))
        if error is not None:
            view.done(op, {"error": error}, StepStatus.FAILED, now)
            self.maybe_discover(tx, view, now, race=step.mode == "race")
            return
        timeout = deadline([op.opts.get("timeout")], now, default=YEAR)
        correlation = f"{rid}.{op.id}"
        step.wait = {"function_id": target, "until": timeout}
        tx.insert_pause(
            Pause(
                f"{rid}:{op.id}",
                rid,
                PauseKind.INVOKE,
                _events.FINISHED,
                timeout,
                op.id,
                correlation_id=correlation,
            )
        )
        expire(tx, rid, op.id, timeout)
        fn = self._registry().get(run.function_id)
        version = fn.config.get("version") if fn else None
        event = _events.invoked(
            run, op.opts.get("payload"), target=target, correlation=correlation,
            timeout=timeout, version=version, now=now,
        )  # fmt: skip
        if self.trace_invokes:
            _tracing.stamp([event], _tracing.child_of(run))
        self.emit(tx, event, now)

    # -- resumptions --------------------------------------------------------------------

    def resume(self, tx: Tx, pause: Pause, event: EventRecord, now: float) -> None:
        """A pause matched an event: resume the wait or invoke, or cancel the run."""
        if pause.kind is PauseKind.CANCEL or pause.step_id is None:
            view = RunView.load(tx, pause.run_id)
        else:
            view = RunView.waited(tx, pause.run_id, pause.step_id)
        if view is None or view.run.status.terminal or not tx.delete_pause(pause.pause_id):
            return
        if pause.kind is PauseKind.CANCEL:
            self._finish(
                tx,
                view,
                RunStatus.CANCELLED,
                None,
                error=None,
                now=now,
                fn=self._registry().get(view.run.function_id),
                reason=f"cancelled by event {event.name} ({event.internal_id})",
            )
            return
        if pause.kind is PauseKind.WAIT:
            memo: Any = event.payload
        else:
            data = event.payload.get("data", {})
            error = data.get("error")
            memo = {"error": error} if isinstance(error, dict) else {"data": data.get("result")}
        tx.queue.delete_job(execute_job_id(view.run.run_id, str(pause.step_id), "timeout"))
        self.finish_wait(tx, view, str(pause.step_id), memo, now)

    def wake(self, tx: Tx, job: Job, now: float, *, whole: bool = False) -> RunView | None:
        """A sleep ended: its memo is ``null``. The wake job goes in the statement that
        queues the run's next call where the store can (``replacing``). ``whole``: every
        step of the run is read (the caller makes the run's next call with them), else
        only the one that slept. The run's view, None if there is no such run."""
        view = None
        if job.run_id is not None and whole:
            view = RunView.load(tx, job.run_id)
        elif job.run_id is not None:
            view = RunView.waited(tx, job.run_id, str(job.step_id))
        gone: str | None = job.job_id
        if view is not None and not view.run.status.terminal:
            gone = self._end_wait(tx, view, str(job.step_id), None, now, replacing=gone)
        if gone is not None:
            tx.queue.delete_job(gone)
        return view

    def pause_timeout(self, tx: Tx, job: Job, now: float) -> None:
        """A wait-for-event (memo ``null``) or an invoke (memo: timeout error) expired."""
        tx.queue.delete_job(job.job_id)
        pause = tx.get_pause(str(job.payload.get("pause_id")))
        view = RunView.load(tx, job.run_id)
        if view is None or view.run.status.terminal:
            return
        step = view.steps.get(str(job.step_id))
        if step is None or step.status.done:
            return
        if pause is not None:
            tx.delete_pause(pause.pause_id)
        memo = {"error": INVOKE_TIMEOUT_ERROR} if step.status is StepStatus.INVOKING else None
        self.finish_wait(tx, view, step.step_id, memo, now)

    def gateway_done(
        self, tx: Tx, job: Job, memo: Any, *, failed: bool, retry_in: float | None, now: float
    ) -> None:
        """Record an AI/HTTP gateway call's result, or schedule its retry."""
        current = tx.queue.get_job(job.job_id)
        view = RunView.load(tx, job.run_id)
        if current is None or view is None or view.run.status.terminal:
            tx.queue.delete_job(job.job_id)
            return
        if retry_in is not None:
            current.attempt += 1
            current.available_at = now + retry_in
            current.lease_owner = None
            tx.queue.update_job(current)
            return
        tx.queue.delete_job(job.job_id)
        step = view.steps.get(str(job.step_id))
        if step is None or step.status.done:
            return
        status = StepStatus.FAILED if failed else StepStatus.COMPLETED
        self.finish_wait(tx, view, step.step_id, memo, now, status=status)

    def finish_wait(
        self,
        tx: Tx,
        view: RunView,
        step_id: str,
        memo: Any,
        now: float,
        *,
        status: StepStatus | None = None,
    ) -> None:
        """A step that waited ended (a sleep, a wait for an event or a signal, an invoke,
        a gateway call): record its memo and queue the run's next call if it is due."""
        self._end_wait(tx, view, step_id, memo, now, status=status)

    def _end_wait(
        self,
        tx: Tx,
        view: RunView,
        step_id: str,
        memo: Any,
        now: float,
        *,
        status: StepStatus | None = None,
        replacing: str | None = None,
    ) -> str | None:
        """``finish_wait``; ``replacing``: a job deleted with the insert of the run's
        next call, returned if no call was queued."""
        step = view.own(step_id)
        if step is None or step.status.done:
            return replacing
        failed = isinstance(memo, dict) and set(memo) == {"error"}
        step.status = status or (StepStatus.FAILED if failed else StepStatus.COMPLETED)
        step.memo = memo
        step.ended_at = now
        view.append(step)
        gone = self.maybe_discover(tx, view, now, race=step.mode == "race", replacing=replacing)
        view.save(tx)
        return gone

    # -- cancellation and timeouts ------------------------------------------------------

    def cancel(self, tx: Tx, run_id: str, now: float, reason: str) -> bool:
        """Cancel a run now; in-flight answers for it are ignored. False if already ended."""
        view = RunView.load(tx, run_id)
        if view is None or view.run.status.terminal:
            return False
        fn = self._registry().get(view.run.function_id)
        self._finish(tx, view, RunStatus.CANCELLED, None, error=None, now=now, fn=fn, reason=reason)
        return True

    def timeout(self, tx: Tx, job: Job, now: float) -> None:
        """A start or finish timeout fired: cancel the run if it is still (not yet) going."""
        tx.queue.delete_job(job.job_id)
        run = tx.get_run(str(job.run_id))
        if run is None or run.status.terminal:
            return
        which = job.payload.get("which")
        if which == "start" and run.started_at is not None:
            return
        self.cancel(tx, run.run_id, now, f"{which} timeout exceeded")

    # -- what follows a step -------------------------------------------------------------

    def maybe_discover(
        self, tx: Tx, view: RunView, now: float, *, race: bool, replacing: str | None = None
    ) -> str | None:
        """Queue the next call unless steps are pending and no race was won; ``replacing``
        (a job deleted with that insert): returned if no call was queued."""
        if not race and view.any_pending():
            return replacing
        self._discover(tx, view, now, f"d{view.done_steps}", replacing)
        return None

    # -- internals -----------------------------------------------------------------------

    def _discover(self, tx: Tx, view: RunView, now: float, tag: str, gone: str | None) -> None:
        run = view.run
        if run.request_version >= 2 or run.request_version < 0:
            run.force_plan = False
        tx.queue.enqueue(call(run, DISCOVERY, tag, now), replacing=gone)

    def _retry(self, tx: Tx, job: Job, retry_after: float | None, now: float) -> None:
        delay = (
            retry_after if retry_after is not None else self.backoff.delay(job.attempt, job.job_id)
        )
        job.attempt += 1
        job.available_at = now + delay
        job.lease_owner = None
        job.lease_expires = None
        tx.queue.update_job(job)

    def _finish(
        self,
        tx: Tx,
        view: RunView,
        status: RunStatus,
        output: str | None,
        *,
        error: dict[str, Any] | None,
        now: float,
        fn: FunctionSpec | None,
        reason: str | None = None,
    ) -> None:
        run = view.run
        run.status = status
        run.output = output
        run.ended_at = now
        run.cancel_reason = reason
        view.end_pending(now)  # same transaction: an ended run never shows a step asleep
        view.save(tx)
        handler = fn is not None and fn.is_failure_handler
        names: list[str] = []
        if not handler or run.correlation_id:
            names.append(_events.FINISHED)
        if not handler and status is RunStatus.FAILED:
            names.append(_events.FAILED)
        elif not handler and status is RunStatus.CANCELLED:
            names.append(_events.CANCELLED)
        run.attributes = tx.close_run(run.run_id, names)  # for its waiters
        tx.ended_runs.append(run)
        data = _events.run_ended(run, error=error)
        if not handler or run.correlation_id:
            self.emit(tx, _events.internal(_events.FINISHED, data, now=now), now, minted=True)
        if handler:
            return
        if status is RunStatus.FAILED:
            failed = _events.internal(_events.FAILED, data, now=now, event_id=run.run_id)
            self.emit(tx, failed, now, minted=True)
        elif status is RunStatus.CANCELLED:
            cancelled = _events.internal(_events.CANCELLED, data, now=now, event_id=run.run_id)
            self.emit(tx, cancelled, now, minted=True)

    def emit(self, tx: Tx, event: EventRecord, now: float, *, minted: bool = False) -> None:
        """Store an event and fan it out, in the caller's transaction.

        An event emitted by that fan-out (a run it cancels finishes, and so on) is
        queued for a fan-out of its own instead: one transaction does a bounded amount
        of work however long the chain. ``minted``: its internal id was made just now
        (``_events.internal``), so no other event has it and its insert is not checked.
        """
        if minted:
            tx.insert_minted_event(event)
        elif not tx.insert_event(event):
            return  # stored (and fanned out) already
        if getattr(self._local, "fanning", False):
            tx.queue.enqueue(_events.fanout_job(event, now))
            return
        self._local.fanning = True
        try:
            self.fanout(tx, event, now)
        finally:
            self._local.fanning = False


def _not_invocable(target: str, fn: FunctionSpec | None) -> dict[str, Any] | None:
    """The error an invoke step of ``target`` fails with (None: it may be invoked)."""
    if fn is None:
        message = f"could not invoke function {target!r}: it is not registered"
        return {"name": "FunctionNotFoundError", "message": message}
    if fn.is_endpoint:  # its endpoint alone starts it, and records who is calling
        message = f"could not invoke: {event_names.endpoint_only_problem(target)}"
        return {"name": "FunctionNotInvocableError", "message": message}
    return None
